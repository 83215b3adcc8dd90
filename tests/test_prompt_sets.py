"""Prompt-set loaders on small files in each source format, bad files, and the HPSv2-layout export."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from bench.export import export_hpsv2_layout
from bench.prompt_sets import HPSV2_STYLES
from bench.prompts import PROMPT_SETS, load_prompts
from mgt_common.errors import ConfigError


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))


@pytest.fixture
def hpd(tmp_path):
    """A miniature zhwang/HPDv2 checkout: benchmark/<style>.json, three prompts per style."""
    root = tmp_path / "HPDv2"
    (root / "benchmark").mkdir(parents=True)
    for style in HPSV2_STYLES:
        (root / "benchmark" / f"{style}.json").write_text(json.dumps([f"{style} prompt {i}" for i in range(3)]))
    return root


def test_hpsv2_benchmark_from_a_local_folder(hpd):
    prompts = load_prompts("hpsv2-benchmark", path=str(hpd))
    assert len(prompts) == 12
    assert [p.category for p in prompts[:3]] == ["anime"] * 3
    assert prompts[4].id == "concept-art-00001" and prompts[4].text == "concept-art prompt 1"
    photo = load_prompts("hpsv2-benchmark", path=str(hpd / "benchmark"), styles=["photo"], limit=2)
    assert [p.id for p in photo] == ["photo-00000", "photo-00001"]


def test_hpsv2_benchmark_errors(hpd, tmp_path):
    with pytest.raises(ConfigError, match="unknown style"):
        load_prompts("hpsv2-benchmark", path=str(hpd), styles=["sketch"])
    (hpd / "benchmark" / "photo.json").write_text("{not json")
    with pytest.raises(ConfigError, match="photo.json line 1: not valid JSON"):
        load_prompts("hpsv2-benchmark", path=str(hpd))
    (hpd / "benchmark" / "photo.json").write_text(json.dumps({"prompts": 3}))
    with pytest.raises(ConfigError, match="JSON list of prompt strings"):
        load_prompts("hpsv2-benchmark", path=str(hpd))
    (hpd / "benchmark" / "photo.json").unlink()
    with pytest.raises(ConfigError, match="has no 'photo.json'"):
        load_prompts("hpsv2-benchmark", path=str(hpd))
    # the hub dataset, offline and not cached: says what and how
    with pytest.raises(ConfigError, match="hf download --repo-type dataset zhwang/HPDv2 benchmark/anime.json"):
        load_prompts("hpsv2-benchmark")


def test_drawbench_csv_with_categories_and_json(tmp_path):
    path = tmp_path / "drawbench.csv"
    path.write_text('Prompts,Category\n"A red colored car.",Colors\n"A, comma",Text\n,Misc\n', encoding="utf-8")
    prompts = load_prompts("drawbench", path=str(path))
    assert [(p.text, p.category) for p in prompts] == [("A red colored car.", "Colors"), ("A, comma", "Text")]
    bad = tmp_path / "bad.csv"
    bad.write_text("caption,kind\nx,y\n")
    with pytest.raises(ConfigError, match="no Prompts / Prompt / prompt / text column"):
        load_prompts("drawbench", path=str(bad))
    (tmp_path / "db.json").write_text(json.dumps(["one", "two"]))
    assert [p.text for p in load_prompts("drawbench", path=str(tmp_path / "db.json"))] == ["one", "two"]


def test_partiprompts_tsv(tmp_path):
    path = tmp_path / "PartiPrompts.tsv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["Prompt", "Category", "Challenge", "Note"])
        writer.writerow(["bond", "Abstract", "Basic", ""])
        writer.writerow(["a sign that says\n'hello'", "Artifacts", "Writing & Symbols", "multi-line"])
    prompts = load_prompts("partiprompts", path=str(tmp_path))  # the folder holding it
    assert [p.category for p in prompts] == ["Abstract", "Artifacts"]
    assert prompts[1].text == "a sign that says\n'hello'"  # a quoted field spanning lines survives
    assert [p.category for p in load_prompts("partiprompts", path=str(path), category_column="Challenge")] == \
        ["Basic", "Writing & Symbols"]
    with pytest.raises(ConfigError, match="none ships with mgt-bench"):
        load_prompts("partiprompts")


def test_geneval_jsonl(tmp_path):
    path = tmp_path / "evaluation_metadata.jsonl"
    rows = [{"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"},
            {"tag": "counting", "include": [], "prompt": "a photo of three cups"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    prompts = load_prompts("geneval", path=str(path))
    assert [(p.id, p.category) for p in prompts] == [("00000", "single_object"), ("00001", "counting")]
    path.write_text(json.dumps(rows[0]) + "\n{broken\n")
    with pytest.raises(ConfigError, match="line 2: not valid JSON"):
        load_prompts("geneval", path=str(path))
    path.write_text(json.dumps({"tag": "x"}) + "\n")
    with pytest.raises(ConfigError, match="needs a 'prompt'"):
        load_prompts("geneval", path=str(path))
    path.write_text("")
    with pytest.raises(ConfigError, match="holds no prompts"):
        load_prompts("geneval", path=str(path))


def test_challengebench_with_the_papers_seed_file(tmp_path):
    path = tmp_path / "challengebench.txt"
    path.write_text("\n".join(["first hard prompt", "second", "", "third"] * 2))  # listed twice, as the paper's
    seeds = tmp_path / "HPD_prompt2seed.json"
    seeds.write_text(json.dumps({"0": 11, "1": 22, "2": 33, "3": 44, "4": 55}))
    prompts = load_prompts("challengebench", path=str(path), seeds=str(seeds))
    assert len(prompts) == 6 and len({p.id for p in prompts}) == 6
    assert [p.seed for p in prompts] == [11, 22, 33, 44, 55, 11]  # line k gets seeds[k mod len]: copies differ
    assert prompts[0].text == prompts[3].text and prompts[0].seed != prompts[3].seed
    path.write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_prompts("challengebench", path=str(path))


def test_prompt2seed_file(tmp_path):
    path = tmp_path / "hpsv2_prompt2seed.txt"
    path.write_text("0, Australian soldiers surrendering to an emu., 42\n1, a cat, with a hat, 7\n")
    prompts = load_prompts("prompt2seed", path=str(path))
    assert [(p.id, p.text, p.seed) for p in prompts] == [("0", "Australian soldiers surrendering to an emu.", 42),
                                                        ("1", "a cat, with a hat", 7)]
    path.write_text("0, a cat, seven\n")
    with pytest.raises(ConfigError, match="seed 'seven'"):
        load_prompts("prompt2seed", path=str(path))


@pytest.mark.parametrize("name,content,check", [
    ("p.txt", "a cat\n\na dog\n", lambda ps: [p.text for p in ps] == ["a cat", "a dog"]),
    ("p.csv", "prompt,category,seed\na cat,animals,3\n", lambda ps: (ps[0].category, ps[0].seed) == ("animals", 3)),
    ("p.jsonl", '{"prompt": "a cat", "category": "animals", "seed": 5}\n', lambda ps: ps[0].seed == 5),
    ("q.csv", 'prompt,seed\n"a sign that says\n""hi""",1\nnext,2\n', lambda ps: [p.text for p in ps] == ['a sign that says\n"hi"', "next"]),
])
def test_generic_files(tmp_path, name, content, check):
    path = tmp_path / name
    path.write_text(content)
    assert check(load_prompts(str(path)))


@pytest.mark.parametrize("name,content,message", [
    ("empty.txt", "", "holds no prompts"),
    ("wrong.csv", "caption\na cat\n", "no 'prompt' column"),
    ("latin.txt", "caf\xe9".encode("latin-1"), "not UTF-8"),
    ("bad.jsonl", '{"prompt": "x"}\n{oops\n', "not valid JSON"),
])
def test_generic_bad_files(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError, match=message):
        load_prompts(str(path))


def test_registered_names():
    for name in ("hpsv2-benchmark", "drawbench", "partiprompts", "geneval", "challengebench", "prompt2seed"):
        assert name in PROMPT_SETS


def _run_dir(tmp_path):
    run = tmp_path / "run"
    (run / "images").mkdir(parents=True)
    rows = []
    rng = np.random.default_rng(0)
    for variant in ("vanilla", "zigzag"):
        for prompt_id, category in (("anime-00000", "anime"), ("photo-00002", "photo"), ("00007", "")):
            for seed in (5, 3):
                image = run / "images" / f"{variant}-{prompt_id}-{seed}.png"
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(image)
                rows.append({"unit_key": f"{variant}{prompt_id}{seed}", "variant": variant, "prompt_id": prompt_id,
                             "prompt": "p", "category": category, "seed": seed, "steps": 8, "forward_passes": 8,
                             "seconds": 0.1, "image_path": str(image.relative_to(run))})
    with open(run / "samples.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return run


def test_export_in_the_hpsv2_layout(tmp_path):
    run = _run_dir(tmp_path)
    out = tmp_path / "export"
    written = export_hpsv2_layout(run, out)
    assert written == {"vanilla": 2, "zigzag": 2}
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.jpg"))
    assert files == ["vanilla/anime/00000.jpg", "vanilla/photo/00002.jpg", "zigzag/anime/00000.jpg", "zigzag/photo/00002.jpg"]
    with Image.open(out / "vanilla" / "anime" / "00000.jpg") as exported, Image.open(run / "images" / "vanilla-anime-00000-3.png") as src:
        assert exported.format == "JPEG" and exported.size == src.size  # the smallest seed (3) was chosen
        diff = np.abs(np.asarray(exported, dtype=float) - np.asarray(src, dtype=float)).mean()
    assert diff < 60  # JPEG of noise is lossy; a different image would differ by ~85 on average
    assert export_hpsv2_layout(run, tmp_path / "seed5", variants=["zigzag"], seed=5) == {"zigzag": 2}
    with pytest.raises(ConfigError, match="no HPSv2-benchmark images"):
        export_hpsv2_layout(run, tmp_path / "none", seed=99)
