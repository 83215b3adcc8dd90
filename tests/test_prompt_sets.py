"""Prompt-set loaders on small files the tests write in each upstream format (the real files:
test_prompt_set_sources.py), bad files, generic prompt files and the HPSv2-layout export."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from bench.export import export_hpsv2_layout
from bench.prompt_sets import HPSV2_STYLES
from bench.prompts import PROMPT_SETS, Prompt, load_prompts
from mgt_common.errors import ConfigError
from prompt_set_fixtures import isolated_cache  # noqa: F401  (a fixture)


@pytest.fixture(autouse=True)
def _no_fetching(isolated_cache):  # noqa: F811
    """Every loader here reads a given `path`; a fetch would find an empty cache and no network."""


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


def test_hpsv2_benchmark_keeps_texts_byte_exact_unless_told(hpd):
    # as COCO captions in HPDv2's photo.json: a trailing space, a leading one, a newline inside
    texts = ["A man riding a horse. ", " two cats", "a sign\nthat says hi", "  "]
    (hpd / "benchmark" / "photo.json").write_text(json.dumps(texts))
    prompts = load_prompts("hpsv2-benchmark", path=str(hpd), styles="photo")
    assert [p.text for p in prompts] == texts[:3]
    assert [p.id for p in prompts] == ["photo-00000", "photo-00001", "photo-00002"]  # the blank 4th is skipped
    stripped = load_prompts("hpsv2-benchmark", path=str(hpd), styles="photo", strip=True)
    assert [p.text for p in stripped] == ["A man riding a horse.", "two cats", "a sign\nthat says hi"]
    with pytest.raises(ConfigError, match="strip must be true or false"):
        load_prompts("hpsv2-benchmark", path=str(hpd), strip="yes")


def test_hpsv2_benchmark_errors(hpd, tmp_path):
    with pytest.raises(ConfigError, match="unknown style"):
        load_prompts("hpsv2-benchmark", path=str(hpd), styles=["sketch"])
    with pytest.raises(ConfigError, match="limit must be a positive integer"):
        load_prompts("hpsv2-benchmark", path=str(hpd), limit="25")
    (hpd / "benchmark" / "photo.json").write_text("{not json")
    with pytest.raises(ConfigError, match="photo.json line 1: not valid JSON"):
        load_prompts("hpsv2-benchmark", path=str(hpd))
    (hpd / "benchmark" / "photo.json").write_text(json.dumps({"prompts": 3}))
    with pytest.raises(ConfigError, match="JSON list of prompt strings"):
        load_prompts("hpsv2-benchmark", path=str(hpd))
    (hpd / "benchmark" / "photo.json").unlink()
    with pytest.raises(ConfigError, match="holds none of 'photo.json', 'benchmark/photo.json'"):
        load_prompts("hpsv2-benchmark", path=str(hpd))
    with pytest.raises(ConfigError, match="must be a folder"):
        load_prompts("hpsv2-benchmark", path=str(hpd / "benchmark" / "anime.json"))
    with pytest.raises(ConfigError, match="must be a folder"):
        load_prompts("hpsv2-benchmark", path="zhwang/HPDv2")  # a hub id is no longer a path


def _drawbench_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["Prompts", "Category"])
        writer.writerows(rows)


def test_drawbench_csv_with_categories_and_json(tmp_path):
    path = tmp_path / "drawbench.csv"
    _drawbench_csv(path, [["A red colored car.", "Colors"], ["A, comma", "Text"], ["", "Misc"],
                          ['A sign that says "Deep Learning". ', "Gary Marcus et al. "]])
    prompts = load_prompts("drawbench", path=str(path))
    assert [(p.id, p.text, p.category) for p in prompts] == [
        ("00000", "A red colored car.", "Colors"), ("00001", "A, comma", "Text"),
        # the text byte-exact (the CSV's quoting undone, the space kept); the category label trimmed
        ("00003", 'A sign that says "Deep Learning". ', "Gary Marcus et al.")]
    bad = tmp_path / "bad.csv"
    bad.write_text("caption,kind\nx,y\n")
    with pytest.raises(ConfigError, match="no Prompts / Prompt / prompt / text column"):
        load_prompts("drawbench", path=str(bad))
    (tmp_path / "db.json").write_text(json.dumps(["one", " two"]))
    assert [p.text for p in load_prompts("drawbench", path=str(tmp_path / "db.json"))] == ["one", " two"]


def test_a_drawbench_folder_prefers_the_csv_with_categories(tmp_path):
    folder = tmp_path / "drawbench"
    folder.mkdir()
    (folder / "drawbench.json").write_text(json.dumps(["A red colored car."]))
    assert [p.category for p in load_prompts("drawbench", path=str(folder))] == [""]
    _drawbench_csv(folder / "DrawBench.csv", [["A red colored car.", "Colors"]])
    assert [p.category for p in load_prompts("drawbench", path=str(folder))] == ["Colors"]


def test_partiprompts_tsv_has_no_quoting(tmp_path):
    path = tmp_path / "PartiPrompts.tsv"
    # the upstream layout: a header, exactly three tabs a line, no quoting, a trailing newline
    path.write_text("Prompt\tCategory\tChallenge\tNote\n"
                    "bond\tAbstract\tBasic\tBiology-inspired concepts with multiple meanings\n"
                    '"G I G G L E" painted in thick colorful lettering\tIllustrations\tWriting & Symbols\t\n'
                    " a tiger \tAnimals\tBasic\t\n", encoding="utf-8")
    prompts = load_prompts("partiprompts", path=str(tmp_path))  # the folder holding it
    assert [p.text for p in prompts] == ["bond", '"G I G G L E" painted in thick colorful lettering', " a tiger "]
    assert [p.category for p in prompts] == ["Abstract", "Illustrations", "Animals"]
    assert prompts[0].metadata == {"Category": "Abstract", "Challenge": "Basic",
                                   "Note": "Biology-inspired concepts with multiple meanings"}
    assert [p.category for p in load_prompts("partiprompts", path=str(path), category_column="Challenge")] == \
        ["Basic", "Writing & Symbols", "Basic"]
    assert load_prompts("partiprompts", path=str(path), strip=True)[2].text == "a tiger"
    path.write_text("Prompt\tCategory\tChallenge\tNote\nbond\tAbstract\tBasic\n")
    with pytest.raises(ConfigError, match="data row 1: 3 field"):
        load_prompts("partiprompts", path=str(path))
    path.write_text("Prompt\tCategory\tChallenge\tNote\nbond\tAbstract\tBasic\t\textra\n")
    with pytest.raises(ConfigError, match="data row 1: 5 field"):
        load_prompts("partiprompts", path=str(path))


def test_partiprompts_category_column_must_exist(tmp_path):
    path = tmp_path / "PartiPrompts.tsv"
    path.write_text("Prompt\tCategory\tChallenge\tNote\nbond\tAbstract\tBasic\t\n")
    with pytest.raises(ConfigError, match="no Kind column"):
        load_prompts("partiprompts", path=str(path), category_column="Kind")
    with pytest.raises(ConfigError, match="neither an existing file nor a folder"):
        load_prompts("partiprompts", path=str(tmp_path / "nowhere.tsv"))


def test_geneval_keeps_each_lines_metadata(tmp_path):
    path = tmp_path / "evaluation_metadata.jsonl"
    rows = [{"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"},
            {"tag": "counting", "include": [{"class": "cup", "count": 3}], "exclude": [{"class": "cup", "count": 4}],
             "prompt": "a photo of three cups"},
            {"tag": "position", "include": [{"class": "dog", "count": 1},
                                            {"class": "cat", "count": 1, "position": ["left of", 0]}],
             "prompt": "a photo of a cat left of a dog\u2028"}]  # U+2028 is a line break to str.splitlines, not to JSONL
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    prompts = load_prompts("geneval", path=str(path))
    assert [(p.id, p.category) for p in prompts] == [("00000", "single_object"), ("00001", "counting"), ("00002", "position")]
    assert [p.metadata for p in prompts] == rows
    assert prompts[2].text == "a photo of a cat left of a dog\u2028"
    path.write_text(json.dumps(rows[0]) + "\n{broken\n")
    with pytest.raises(ConfigError, match="line 2: not valid JSON"):
        load_prompts("geneval", path=str(path))
    path.write_text(json.dumps({"tag": "x"}) + "\n")
    with pytest.raises(ConfigError, match="needs a 'prompt' string"):
        load_prompts("geneval", path=str(path))
    path.write_text("")
    with pytest.raises(ConfigError, match="holds no prompts"):
        load_prompts("geneval", path=str(path))


def _challengebench_file(path, prompts):
    """The upstream format: one prompt a line, most lines ending in two spaces, the list written twice,
    LF line ends and no newline after the last line."""
    lines = [p + ("  " if i % 3 else "") for i, p in enumerate(prompts)]
    path.write_bytes("\n".join(lines + lines).encode("utf-8"))


def test_challengebench_is_read_as_the_papers_code_reads_it(tmp_path):
    path = tmp_path / "challengebench.txt"
    texts = ["4k nasa, reactor, fusion futuristic theoretical a of blueprint", "Weather crappy Welsh.",
             "convolutional neural networks, scientific drawing, in thesis"]
    _challengebench_file(path, texts)
    seeds = tmp_path / "HPD_prompt2seed.json"
    seeds.write_text(json.dumps({"0": 8, "1": 37, "2": 1, "3": 27}))  # the paper's shape: index -> seed
    prompts = load_prompts("challengebench", path=str(tmp_path), seeds=str(seeds))
    assert [p.text for p in prompts] == texts * 2  # stripped, as the paper's load_prompt strips each line
    assert [p.id for p in prompts] == [f"{i:05d}" for i in range(6)]
    assert [p.seed for p in prompts] == [8, 37, 1, 27, 8, 37]  # line k gets seeds[k mod len]: copies differ
    # the object's own order, as the paper's `seed_list.items()`, not its keys sorted
    seeds.write_text('{"1": 37, "0": 8}')
    assert [p.seed for p in load_prompts("challengebench", path=str(path), seeds=str(seeds))] == [37, 8, 37, 8, 37, 8]
    assert [p.seed for p in load_prompts("challengebench", path=str(path), seeds=[5, 6])] == [5, 6, 5, 6, 5, 6]
    assert {p.seed for p in load_prompts("challengebench", path=str(path), seeds="config")} == {None}


@pytest.mark.parametrize("seeds, message", [
    ([], "non-empty list of integers"), (["1"], "non-empty list of integers"), (3, "must be \"paper\""),
    ("nowhere.json", "does not exist"),
])
def test_challengebench_bad_seeds(tmp_path, seeds, message):
    path = tmp_path / "challengebench.txt"
    _challengebench_file(path, ["a"])
    with pytest.raises(ConfigError, match=message):
        load_prompts("challengebench", path=str(path), seeds=str(tmp_path / seeds) if seeds == "nowhere.json" else seeds)


def test_challengebench_bad_files(tmp_path):
    path = tmp_path / "challengebench.txt"
    path.write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_prompts("challengebench", path=str(path), seeds="config")
    seeds = tmp_path / "seeds.json"
    seeds.write_text('{"0": "eight"}')
    path.write_text("a\n")
    with pytest.raises(ConfigError, match="integer seeds"):
        load_prompts("challengebench", path=str(path), seeds=str(seeds))


def test_prompt2seed_splits_at_comma_space_as_the_paper(tmp_path):
    path = tmp_path / "hpsv2_prompt2seed.txt"
    path.write_text("0, Australian soldiers surrendering to an emu., 42\n"
                    "1, a cat, with a hat, 7\n"
                    "2, a cat,with a hat , 9\n"  # "," alone does not split; the space before ", 9" stays
                    "3, the last line, 5")
    prompts = load_prompts("prompt2seed", path=str(tmp_path))
    assert [(p.id, p.text, p.seed) for p in prompts] == [
        ("0", "Australian soldiers surrendering to an emu.", 42), ("1", "a cat, with a hat", 7),
        ("2", "a cat,with a hat ", 9), ("3", "the last line", 5)]
    path.write_text("0, a cat, seven\n")
    with pytest.raises(ConfigError, match="seed 'seven'"):
        load_prompts("prompt2seed", path=str(path))
    path.write_text("0,a cat,7\n")
    with pytest.raises(ConfigError, match="expected 'idx, prompt, seed'"):
        load_prompts("prompt2seed", path=str(path))


def test_metadata_is_not_part_of_a_prompts_identity():
    a, b = Prompt("1", "a cat", metadata={"tag": "x", "include": [1]}), Prompt("1", "a cat")
    assert a == b and hash(a) == hash(b)


@pytest.mark.parametrize("name,content,check", [
    ("p.txt", "a cat\n\na dog\n", lambda ps: [p.text for p in ps] == ["a cat", "a dog"]),
    ("p.csv", "prompt,category,seed\na cat,animals,3\n", lambda ps: (ps[0].category, ps[0].seed) == ("animals", 3)),
    ("p.jsonl", '{"prompt": "a cat", "category": "animals", "seed": 5}\n', lambda ps: ps[0].seed == 5),
    ("q.csv", 'prompt,seed\n"a sign that says\n""hi""",1\nnext,2\n', lambda ps: [p.text for p in ps] == ['a sign that says\n"hi"', "next"]),
    # a .tsv has no quoting (IANA TSV, as PartiPrompts): a leading double quote is part of the prompt
    ("p.tsv", 'prompt\tseed\n"GIGGLE" painted on a wall\t1\n', lambda ps: ps[0].text == '"GIGGLE" painted on a wall'),
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
