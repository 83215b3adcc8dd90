"""The named prompt sets on the real upstream files, loaded through the fetch path a user takes, with
``MGT_BENCH_DATA_MIRROR`` pointing at a folder of byte-identical copies (see prompt_set_fixtures). The
counts and categories are the upstream files' own (docs/scorers.md, "Prompt sets")."""
from __future__ import annotations

import collections
import csv
import hashlib
import json
import re

import pytest

from bench.cli import main
from bench.config import load_config
from bench.prompt_files import FILES, HPSV2_STYLES
from bench.prompts import load_prompts
from prompt_set_fixtures import REPO, SKIP_REASON, refuse_downloads, shared_prompt_sets

MIRROR = shared_prompt_sets()
pytestmark = pytest.mark.skipif(MIRROR is None, reason=SKIP_REASON)
#: the files the mirror can hold: ChallengeBench's repository has no licence, so no copy of it is kept
MIRRORED = sorted(k for k in FILES if not k.startswith(("challengebench/", "prompt2seed/")))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("prompt-set-cache")


@pytest.fixture(autouse=True)
def through_the_mirror(monkeypatch, cache):
    if not MIRROR.is_dir():
        pytest.fail(f"MGT_BENCH_DATA_MIRROR={MIRROR} is not a folder")
    monkeypatch.setenv("MGT_BENCH_DATA_MIRROR", str(MIRROR))
    monkeypatch.setenv("MGT_BENCH_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    refuse_downloads(monkeypatch)
    return cache / "prompt-sets"


def _counts(prompts, attribute="category"):
    return dict(collections.Counter(getattr(p, attribute) for p in prompts))


def test_the_pinned_sha256_are_the_provenance_tables():
    sources = MIRROR / "SOURCES.md"
    if not sources.is_file():
        pytest.skip(f"{sources} is not there")
    table = dict(re.findall(r"`data/prompt-sets/([^`]+)` \|.*\| `([0-9a-f]{64})` \|", sources.read_text()))
    for key in MIRRORED:
        assert table[key] == FILES[key].sha256, key
    for key, file in FILES.items():
        if (MIRROR / key).is_file():
            assert hashlib.sha256((MIRROR / key).read_bytes()).hexdigest() == file.sha256, key


@pytest.mark.parametrize("name, params, total, categories", [
    ("drawbench", {}, 200, {"Colors": 25, "Conflicting": 10, "Counting": 19, "DALL-E": 20, "Descriptions": 20,
                            "Gary Marcus et al.": 10, "Misspellings": 10, "Positional": 20, "Rare Words": 7,
                            "Reddit": 38, "Text": 21}),
    ("partiprompts", {}, 1632, {"Animals": 314, "Artifacts": 287, "World Knowledge": 214, "People": 177,
                                "Outdoor Scenes": 131, "Illustrations": 124, "Vehicles": 104, "Food & Beverage": 74,
                                "Arts": 66, "Abstract": 51, "Produce & Plants": 50, "Indoor Scenes": 40}),
    ("partiprompts", {"category_column": "Challenge"}, 1632, {
        "Fine-grained Detail": 312, "Basic": 272, "Simple Detail": 232, "Style & Format": 206, "Imagination": 150,
        "Complex": 113, "Writing & Symbols": 91, "Quantity": 90, "Perspective": 70, "Linguistic Structures": 61,
        "Properties & Positioning": 35}),
    ("geneval", {}, 553, {"position": 100, "color_attr": 100, "two_object": 99, "colors": 94, "single_object": 80,
                          "counting": 80}),
    ("hpsv2-benchmark", {}, 3200, {style: 800 for style in HPSV2_STYLES}),
])
def test_counts_and_categories_through_the_fetch_path(name, params, total, categories, through_the_mirror):
    prompts = load_prompts(name, **params)
    assert len(prompts) == total and _counts(prompts) == categories
    assert len({p.id for p in prompts}) == total
    for key in [k for k in MIRRORED if k.startswith(name + "/")]:
        if name == "drawbench" and key.endswith(".json"):
            continue
        cached = through_the_mirror / key  # the copy now in the cache is the pinned file, byte for byte
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == FILES[key].sha256


def test_partiprompts_row_1560_keeps_its_quotes():
    prompts = load_prompts("partiprompts")
    assert prompts[1560].text.startswith('"G I G G L E" painted in')
    assert prompts[1560].id == "01560" and prompts[1560].metadata["Challenge"] == "Writing & Symbols"


def test_texts_are_byte_exact_unless_stripped():
    """Compared with an independent reading of the raw bytes (no csv module): 10 Parti prompts and 115
    HPDv2 photo prompts carry leading or trailing spaces, and they stay."""
    raw = (MIRROR / "partiprompts" / "PartiPrompts.tsv").read_bytes().decode("utf-8")
    upstream = [line.split("\t")[0] for line in raw.split("\n")[1:] if line]
    parti = load_prompts("partiprompts")
    assert [p.text for p in parti] == upstream
    assert sum(p.text != p.text.strip() for p in parti) == 10
    photo = load_prompts("hpsv2-benchmark", styles="photo")
    assert [p.text for p in photo] == json.loads((MIRROR / "hpsv2-benchmark" / "photo.json").read_bytes())
    assert sum(p.text != p.text.strip() for p in photo) == 115
    stripped = load_prompts("hpsv2-benchmark", styles="photo", strip=True)
    assert [p.text for p in stripped] == [p.text.strip() for p in photo]


def test_drawbench_csv_and_hpdv2_json_hold_the_same_prompts():
    with open(MIRROR / "drawbench" / "DrawBench.csv", newline="", encoding="utf-8") as handle:
        sheet = [row["Prompts"] for row in csv.DictReader(handle)]
    fetched = load_prompts("drawbench")
    assert [p.text for p in fetched] == sheet
    folder = load_prompts("drawbench", path=str(MIRROR / "drawbench"))  # holds both: the CSV wins
    assert [(p.text, p.category) for p in folder] == [(p.text, p.category) for p in fetched]
    hpdv2 = load_prompts("drawbench", path=str(MIRROR / "drawbench" / "drawbench.json"))
    assert [p.text for p in hpdv2] == sheet and {p.category for p in hpdv2} == {""}


def test_geneval_metadata_stays_with_each_prompt():
    prompts = load_prompts("geneval")
    lines = (MIRROR / "geneval" / "evaluation_metadata.jsonl").read_text(encoding="utf-8").splitlines()
    assert [p.metadata for p in prompts] == [json.loads(line) for line in lines]
    counting = [p for p in prompts if p.category == "counting"]
    assert len(counting) == 80 and all("exclude" in p.metadata for p in counting)
    assert not any("exclude" in p.metadata for p in prompts if p.category != "counting")
    relations = {obj["position"][0] for p in prompts for obj in p.metadata["include"] if "position" in obj}
    assert relations == {"above", "below", "left of", "right of"}


def test_hpsv2_ids_are_the_benchmarks_image_names():
    prompts = load_prompts("hpsv2-benchmark", styles=["anime", "photo"], limit=400)
    assert [p.id for p in prompts[398:402]] == ["anime-00398", "anime-00399", "photo-00000", "photo-00001"]
    anime = json.loads((MIRROR / "hpsv2-benchmark" / "anime.json").read_bytes())
    assert prompts[329].text == anime[329]


def test_the_cache_serves_without_the_mirror(monkeypatch, cache):
    load_prompts("geneval")
    monkeypatch.delenv("MGT_BENCH_DATA_MIRROR")
    assert len(load_prompts("geneval")) == 553


def test_shipped_configs_name_their_sets_and_load_them():
    named = 0
    for path in sorted((REPO / "bench" / "configs").glob("*.toml")):
        config = load_config(path.stem)
        source, params = config.prompt_source
        assert "path" not in params, f"{path.name} names a file instead of a set"
        if source != "synthetic-world":
            named += 1
            assert load_prompts(source, **params), path.name
    assert named >= 4


def test_check_of_the_paper_config_passes(capsys):
    # --device cpu: --check makes a run's device check, and this config's device is cuda
    assert main(["--config", "paper-meissonic-1024", "--check", "--device", "cpu"]) == 0
    assert "3200 prompts" in capsys.readouterr().out


def test_drawbench_runs_on_the_synthetic_world(tmp_path, capsys):
    """The world maps any text to the scenes whose attributes it names (docs/scorers.md, "Prompt sets")."""
    out = tmp_path / "run"
    code = main(["--prompts", "drawbench", "--limit", "2", "--samplers", "vanilla", "--metrics", "world-loglik",
                 "--steps", "3", "--seeds", "0", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    with open(out / "samples.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["prompt"], r["category"]) for r in rows] == [("A red colored car.", "Colors"),
                                                            ("A black colored car.", "Colors")]
