"""Sweeps (bench/sweep.py, bench/report/curves.py): grid expansion, names, pairing at the same steps and
guidance, unchanged keys of unswept configs, curves in a rendered report, and clear errors for lists
where one value is required."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.config import load_config, stable_hash
from bench.plan import make_plan
from bench.prompts import Prompt
from bench.sweep import build_variants, expand, point_name
from helpers import write_tiny_config
from metrics import stats

SWEEP = """
steps = [4, 8]
guidance = [2, 3.5]
variants.noise-reg.logits_processors.0.scale = [0.5, 2]
"""
TABLES = """
[variants.cfg-ramp]
base = "vanilla"
guidance = { name = "linear", start = [0.0, 1.0] }
"""


def _config(tmp_path, extra: str, samplers=("vanilla", "noise-reg", "cfg-ramp"), tables: str = TABLES, **kw):
    path = write_tiny_config(tmp_path / "c.toml", samplers=samplers, extra=extra, **kw)
    path.write_text(path.read_text() + tables)
    return path


def test_grid_names_pairing_and_specs(tmp_path):
    text = _config(tmp_path, SWEEP).read_text().replace("steps = 6\n", "").replace("guidance = 3.0\n", "")
    (tmp_path / "c.toml").write_text(text)
    config = load_config(str(tmp_path / "c.toml"))
    sweep = config.sweep()
    names = [p.name for p in sweep.points]
    # the baseline over steps × guidance; each variant over steps × guidance × its own parameter
    assert len(names) == 4 + 8 + 8 == len(set(names))
    assert names[:4] == ["vanilla@steps=4,cfg=2", "vanilla@steps=4,cfg=3.5", "vanilla@steps=8,cfg=2",
                         "vanilla@steps=8,cfg=3.5"]
    assert "noise-reg[scale=2]@steps=8,cfg=3.5" in names and "cfg-ramp[start=0]@steps=4,cfg=2" in names
    by = sweep.by_name()
    for p in sweep.points:  # every point is paired with the baseline at its own steps and guidance
        base = by[p.baseline]
        assert base.variant == "vanilla" and (base.steps, base.guidance) == (p.steps, p.guidance)
    assert sweep.axes == {"steps": [4, 8], "guidance": [2, 3.5], "scale": [0.5, 2], "start": [0.0, 1.0]}
    variants = build_variants(sweep, config.variants)
    noise = variants["noise-reg[scale=0.5]@steps=4,cfg=2"]
    assert noise.name == "noise-reg[scale=0.5]@steps=4,cfg=2"
    assert noise.logits_processors[0].scale == 0.5 and noise.logits_processors[0].name == "noise-regularization"
    # the patch changes only the swept parameter of the preset: its schedule stays the preset's
    from samplers.variant import build_variant

    preset = build_variant("noise-reg").resolved()["logits_processors"][0]
    assert preset["schedule"] == "cosine" and preset["scale"] != 0.5
    assert noise.resolved()["logits_processors"][0] == {**preset, "scale": 0.5}
    assert variants["cfg-ramp[start=1]@steps=8,cfg=3.5"].guidance.start == 1.0
    assert by["noise-reg[scale=2]@steps=8,cfg=3.5"].values == {"steps": 8, "guidance": 3.5, "scale": 2}


def test_names_only_show_what_is_swept():
    assert point_name("vanilla", {}, {}) == "vanilla"
    assert point_name("noise-reg", {"scale": 2.0}, {}) == "noise-reg[scale=2]"
    assert point_name("zigzag", {}, {"steps": 8, "guidance": 3.0}) == "zigzag@steps=8,cfg=3"
    # two swept parameters of one name: labelled by their full path
    values = {"samplers": ["vanilla", "two"], "baseline": "vanilla", "steps": 8, "guidance": 3.0,
              "variants": {"two": {"logits_processors": [{"name": "noise-regularization", "scale": [1.0, 2.0]},
                                                         {"name": "noise-regularization", "scale": [3.0]}]}}}
    names = [p.name for p in expand(values).points]
    assert names == ["vanilla", "two[logits_processors.0.scale=1,logits_processors.1.scale=3]",
                     "two[logits_processors.0.scale=2,logits_processors.1.scale=3]"]


def _old_key(model, config, variant, prompt, seed):
    """The unit key exactly as main computed it before sweeps existed."""
    return stable_hash({"model": model, "device_type": "cpu", "steps": config.steps, "guidance": config.guidance,
                        "sampler": variant.resolved(), "prompt": prompt.text, "negative_prompt": None,
                        "seed": seed}, length=32)


def test_unswept_keys_unchanged_and_swept_points_share_them(tmp_path):
    model = {"name": "synthetic", "grid": [8, 8]}
    prompts = [Prompt("a", "a red square"), Prompt("b", "a blue circle")]
    plain = load_config(str(write_tiny_config(tmp_path / "plain.toml", steps=6, samplers=("vanilla", "zigzag"))))
    sweep = plain.sweep()
    assert not sweep.is_sweep and [p.name for p in sweep.points] == ["vanilla", "zigzag"]
    variants = build_variants(sweep, plain.variants)
    units = make_plan(plain, prompts, variants, model, None)
    assert [u.key for u in units] == [_old_key(model, plain, variants[u.variant], u.prompt, u.seed) for u in units]
    # the point at steps 6 of a sweep is the same image as the unswept run's: the same key
    swept = load_config(str(write_tiny_config(tmp_path / "swept.toml", samplers=("vanilla", "zigzag"))),
                        {"steps": [4, 6]})
    sv = build_variants(swept.sweep(), swept.variants)
    keys = {(u.variant, u.prompt.id, u.seed): u.key for u in make_plan(swept, prompts, sv, model, None)}
    for u in units:
        assert keys[(f"{u.variant}@steps=6", u.prompt.id, u.seed)] == u.key
    assert keys[("zigzag@steps=4", "a", 0)] != keys[("zigzag@steps=6", "a", 0)]


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    config = _config(root, "", samplers=("vanilla", "noise-reg"), tables="", limit=3, steps=3)
    text = config.read_text().replace("steps = 3\n", "steps = [2, 3]\nvariants.noise-reg.logits_processors.0.scale"
                                                     " = [10, 2]\n").replace("seeds = [0, 1]", "seeds = [0]")
    # exact world metrics only: FID's feature network is tested elsewhere and costs more than the sweep
    text = text.replace('metrics = ["world-loglik", "world-alignment", { name = "fid", reference_per_prompt = 2 }]',
                        'metrics = ["world-loglik", "world-alignment"]')
    assert "fid" not in text
    config.write_text(text)
    out = root / "run"
    assert main(["--config", str(config), "--out", str(out), "--batch-size", "5"]) == 0
    return config, out


def test_sweep_run_records_values_and_pairs_at_the_same_steps(sweep_run):
    _, out = sweep_run
    samples = pd.read_csv(out / "samples.csv")
    assert set(samples["variant"]) == {"vanilla@steps=2", "vanilla@steps=3", "noise-reg[scale=2]@steps=2",
                                       "noise-reg[scale=10]@steps=2", "noise-reg[scale=2]@steps=3",
                                       "noise-reg[scale=10]@steps=3"}
    assert (samples["steps"] == samples["variant"].str[-1].astype(int)).all()
    assert (samples["forward_passes"] == samples["steps"]).all() and (samples["guidance"] == 3.0).all()
    row = samples[samples["variant"] == "noise-reg[scale=10]@steps=3"].iloc[0]
    assert row["base_variant"] == "noise-reg" and json.loads(row["sweep_values"]) == {"scale": 10, "steps": 3}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["baseline"] == "vanilla@steps=2"
    assert manifest["sweep"]["points"]["noise-reg[scale=10]@steps=3"]["baseline"] == "vanilla@steps=3"
    assert manifest["variants"]["noise-reg[scale=10]@steps=3"]["forward_passes_per_image"] == 3
    # the report's win rate of a point is the paired comparison with the baseline at the same steps
    scores = pd.read_csv(out / "scores.csv", dtype={"prompt_id": str})
    wins = pd.read_csv(out / "tables" / "win_rates.csv")
    assert set(wins["variant"]) == {v for v in samples["variant"] if not v.startswith("vanilla")}
    sub = scores[scores["variant"].isin(["vanilla@steps=3", "noise-reg[scale=10]@steps=3"])]
    hib = {"world-loglik": True, "world-alignment": True}
    direct = stats.win_rate_table(stats.paired_differences(sub, "vanilla@steps=3", hib), n_boot=200)
    mine = wins[wins["variant"] == "noise-reg[scale=10]@steps=3"].set_index("metric")
    for r in direct.itertuples():
        assert mine.loc[r.metric, "n_pairs"] == r.n_pairs == 3
        assert mine.loc[r.metric, "mean_baseline"] == pytest.approx(r.mean_baseline, rel=1e-5)


def test_report_has_curves(sweep_run):
    _, out = sweep_run
    md = (out / "report.md").read_text()
    for title in ("## Sweep curves", "## Curves against sampling steps T", "## Curves against scale",
                  "## Quality against measured cost"):
        assert title in md
    assert md.index("## Sweep curves") < md.index("## Cost")
    assert "vanilla at the same steps" in md
    for name in ("curves_steps", "curves_scale", "curves_cost"):
        assert (out / "plots" / f"{name}.png").stat().st_size > 1000
    curves = pd.read_csv(out / "tables" / "curves.csv")
    per = curves[(curves["kind"] == "per-image") & (curves["metric"] == "world-loglik")]
    assert len(per) == 6
    # baseline first, then along the swept values as numbers (scale was listed as [10, 2])
    assert list(per["variant"]) == ["vanilla@steps=2", "vanilla@steps=3", "noise-reg[scale=2]@steps=2",
                                    "noise-reg[scale=10]@steps=2", "noise-reg[scale=2]@steps=3",
                                    "noise-reg[scale=10]@steps=3"]
    base = per[per["is_baseline"]]
    assert set(base["variant"]) == {"vanilla@steps=2", "vanilla@steps=3"} and (base["win_rate"] == 0.5).all()
    # the curve's mean is the plain mean of the point's scores, inside its interval
    scores = pd.read_csv(out / "scores.csv")
    for r in per.itertuples():
        values = scores[(scores["variant"] == r.variant) & (scores["metric"] == "world-loglik")]["value"]
        assert r.mean == pytest.approx(values.mean(), rel=1e-5) and r.mean_lo <= r.mean + 1e-9 <= r.mean_hi + 2e-9
    # win rates in the curves are the report's own numbers
    wins = pd.read_csv(out / "tables" / "win_rates.csv").set_index(["variant", "metric"])
    for r in per[~per["is_baseline"]].itertuples():
        assert r.win_rate == pytest.approx(wins.loc[(r.variant, "world-loglik"), "win_rate"], rel=1e-5)
        assert r.forward_passes == r.steps


def test_sweep_images_do_not_depend_on_batch_size(sweep_run, tmp_path):
    config, out = sweep_run
    from bench.runner import Benchmark

    again = tmp_path / "again"  # one image per batch, no report (the images are the point here)
    Benchmark(load_config(str(config), {"batch_size": 1, "metrics": ["world-loglik"]}), out=again).run(report=False)
    a = pd.read_csv(out / "samples.csv").set_index(["variant", "prompt_id", "seed"])
    b = pd.read_csv(again / "samples.csv").set_index(["variant", "prompt_id", "seed"]).loc[a.index]
    assert (a["unit_key"] == b["unit_key"]).all()
    digest = lambda root, p: hashlib.sha256((root / p).read_bytes()).hexdigest()  # noqa: E731
    assert [digest(out, p) for p in a["image_path"]] == [digest(again, p) for p in b["image_path"]]


@pytest.mark.parametrize("extra,expected", [
    ("height = [256, 512]\n", "height cannot be a list ([256, 512]): only steps, guidance and variant parameters"),
    ("batch_size = [4, 8]\n", "batch_size cannot be a list"),
    ("bootstrap = [100, 200]\n", "bootstrap cannot be a list"),
    ("limit = [2]\n", "limit cannot be a list"),
    ("baseline = [\"vanilla\"]\n", "baseline cannot be a list"),
    ("steps = []\n", "steps is an empty list"),
    ("steps = [4, 4]\n", "steps sweeps a value twice"),
    ("steps = [4, 0]\n", "steps (in the sweep [4, 0]) must be an integer >= 1"),
    ("guidance = [2.0, -1.0]\n", "guidance (in the sweep [2.0, -1.0]) must be a finite number >= 0"),
    ("variants.vanilla.confidence.start = [1.0, 2.0]\n", "the baseline 'vanilla' sweeps confidence.start"),
    ("variants.noise-reg.logits_processors.3.scale = [1.0, 2.0]\n", "variants.noise-reg.logits_processors.3: noise-reg has 1"),
    ("variants.noise-reg.logits_processors.0.scale = []\n", "variants.noise-reg.logits_processors.0.scale is an empty list"),
    ("variants.noise-reg.logits_processors.0.scale = [1.0, -1.0]\n", "variants.noise-reg"),
])
def test_lists_where_they_do_not_belong(tmp_path, capsys, extra, expected):
    path = write_tiny_config(tmp_path / "c.toml", samplers=("vanilla", "noise-reg"))
    text = path.read_text()
    for key in ("steps", "guidance", "limit", "batch_size", "bootstrap"):
        if extra.startswith(f"{key} ="):
            text = "\n".join(line for line in text.splitlines() if not line.startswith(f"{key} =")) + "\n"
    head, tables = text.split("[model]", 1)
    path.write_text(head + extra + "[model]" + tables)
    out = tmp_path / "run"
    code = main(["--config", str(path), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert expected in err and "Traceback" not in err and err.count("\n") == 1
    assert not out.exists()


def test_flags_sweep_and_reject_bad_lists(tmp_path, capsys):
    path = write_tiny_config(tmp_path / "c.toml")
    config = load_config(str(path), {"steps": [2, 3], "guidance": [2.0, 3.0]})
    assert [p.name for p in config.sweep().points][:2] == ["vanilla@steps=2,cfg=2", "vanilla@steps=2,cfg=3"]
    from bench.cli import build_parser

    args = build_parser().parse_args(["--steps", "8,16,32", "--guidance", "3"])
    assert args.steps == [8, 16, 32] and args.guidance == 3.0
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(path), "--out", str(tmp_path / "run"), "--steps", "8,x"])
    assert exit_info.value.code == 2 and "give integers, or comma-separated integers" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_single_value_lists_keep_unswept_names(tmp_path):
    config = load_config(str(write_tiny_config(tmp_path / "c.toml", samplers=("vanilla", "zigzag"))), {"steps": [6]})
    sweep = config.sweep()
    assert not sweep.is_sweep and [p.name for p in sweep.points] == ["vanilla", "zigzag"]
    assert np.all([p.steps == 6 for p in sweep.points])


def test_shard_cost_uses_each_points_own_steps(tmp_path):
    from bench.sharding import unit_cost
    from bench.sweep import steps_by_variant

    config = load_config(str(write_tiny_config(tmp_path / "c.toml", samplers=("vanilla", "zigzag"))),
                         {"steps": [4, 8]})
    sweep = config.sweep()
    variants = build_variants(sweep, config.variants)
    prompts = [Prompt("a", "a red square")]
    units = {u.variant: u for u in make_plan(config, prompts, variants, {"name": "synthetic"}, None)}
    cost = unit_cost(variants, steps_by_variant(sweep))
    # zig-zag takes 3(T − 1) + 1 forward passes (arXiv 2411.10781), vanilla T
    assert [cost(units[v]) for v in ("vanilla@steps=4", "vanilla@steps=8", "zigzag@steps=4", "zigzag@steps=8")] \
        == [4, 8, 10, 22]
    assert cost(units["zigzag@steps=8"]) == variants["zigzag@steps=8"].forward_passes(8)


def test_check_runs_every_point_of_a_sweep(tmp_path, capsys):
    path = write_tiny_config(tmp_path / "c.toml", samplers=("vanilla", "noise-reg"),
                             extra="variants.noise-reg.logits_processors.0.scale = [0.5, 2]\n")
    out = tmp_path / "run"
    assert main(["--check", "--config", str(path), "--out", str(out), "--steps", "3,5"]) == 0
    text = capsys.readouterr().out
    for name in ("vanilla@steps=3", "vanilla@steps=5", "noise-reg[scale=0.5]@steps=3", "noise-reg[scale=2]@steps=5"):
        assert f"ok  {name}: {name[-1]} forward passes" in text
    assert "all 6 variant(s) ran" in text and not out.exists()
