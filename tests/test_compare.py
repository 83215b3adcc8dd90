"""--compare RUN_A RUN_B: each run's own win rates (the numbers of its report), and a clear answer when
the runs have nothing in common instead of an empty section."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from bench.cli import main
from bench.report import compute_tables, load_run, render_comparison
from run_fixture import make_run_dir


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    a = make_run_dir(root / "run-a", n_prompts=10, seeds=(0,), variants={"vanilla": 0.0, "strong": 1.5, "weak": 0.05})
    b = make_run_dir(root / "run-b", n_prompts=10, seeds=(0,), rng_seed=5,
                     variants={"vanilla": 0.0, "strong": 1.0, "weak": 0.3})
    for run in (a, b):  # the tables a report writes (render_report's plots are not needed here)
        compute_tables(load_run(run)).write(run / "tables")
    return a, b


def test_side_by_side_uses_each_runs_own_tables(two_runs, tmp_path):
    a, b = two_runs
    paths = render_comparison(a, b, tmp_path / "cmp")
    sbs = pd.read_csv(paths["tables/comparison_win_rates"]).set_index(["variant", "metric"])
    for run, tag in ((a, "a"), (b, "b")):
        own = pd.read_csv(run / "tables" / "win_rates.csv").set_index(["variant", "metric"])
        assert set(own.index) == set(sbs.index)
        for col in ("win_rate", "win_rate_lo", "win_rate_hi"):  # the intervals too: no re-bootstrap
            assert sbs[f"{col.replace('win_rate', f'win_rate_{tag}')}"].to_dict() == pytest.approx(
                own.loc[sbs.index, col].to_dict(), abs=1e-6)
    assert (sbs["change"] - (sbs["win_rate_b"] - sbs["win_rate_a"])).abs().max() < 1e-9
    assert "its own report" in paths["markdown"].read_text()


def test_run_without_report_tables_is_recomputed_and_says_so(two_runs, tmp_path):
    a, b = two_runs
    bare = tmp_path / "run-bare"
    shutil.copytree(b, bare)
    shutil.rmtree(bare / "tables")
    paths = render_comparison(a, bare, tmp_path / "cmp")
    assert "run-bare: it has no tables/win_rates.csv" in paths["markdown"].read_text()
    # the same numbers as b's report tables (the bare copy is b without them)
    expected = pd.read_csv(b / "tables" / "win_rates.csv").set_index(["variant", "metric"])
    sbs = pd.read_csv(paths["tables/comparison_win_rates"]).set_index(["variant", "metric"])
    assert sbs["win_rate_b_lo"].to_dict() == pytest.approx(expected.loc[sbs.index, "win_rate_lo"].to_dict(), abs=1e-6)


def _rename_metrics(run):
    scores = pd.read_csv(run / "scores.csv")
    scores["metric"] = "other_" + scores["metric"]
    scores.to_csv(run / "scores.csv", index=False)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["metrics"] = {f"other_{k}": v for k, v in manifest["metrics"].items()}
    (run / "manifest.json").write_text(json.dumps(manifest))


def _rename_prompts(run):
    for name in ("samples.csv",):
        table = pd.read_csv(run / name)
        table["prompt"] = "another " + table["prompt"]
        table.to_csv(run / name, index=False)


def test_nothing_in_common_is_an_error_not_an_empty_report(two_runs, tmp_path, capsys):
    a, _ = two_runs
    c = make_run_dir(tmp_path / "run-c", n_prompts=4, seeds=(0,), variants={"vanilla": 0.0, "strong": 1.0})
    _rename_metrics(c)
    out = tmp_path / "cmp"
    assert main(["--compare", str(a), str(c), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "nothing to compare: they share no per-image metric" in err and err.count("\n") == 1
    assert not out.exists()
    d = make_run_dir(tmp_path / "run-d", n_prompts=4, seeds=(0,), variants={"vanilla": 0.0, "other": 1.0})
    _rename_prompts(d)
    assert main(["--compare", str(a), str(d), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "they share no variant besides their baselines" in err and "no prompt" in err
    assert not out.exists()
    assert main(["--compare", str(a), str(tmp_path / "missing"), "--out", str(out)]) == 2


def test_no_shared_variant_says_so_in_its_section(two_runs, tmp_path):
    a, _ = two_runs
    e = make_run_dir(tmp_path / "run-e", n_prompts=10, seeds=(0,), variants={"vanilla": 0.0, "other": 1.0})
    paths = render_comparison(a, e, tmp_path / "cmp")
    md = paths["markdown"].read_text()
    section = md.split("## Win rate against each run's own baseline", 1)[1].split("##", 1)[0]
    assert "Not available: the runs share no variant besides their baselines" in section
    assert "|" not in section  # no empty table
    assert "## B against A, paired by prompt and seed" in md  # the shared baseline is still paired
