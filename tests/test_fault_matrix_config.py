"""The fault matrix, continued: configuration values and plugins (see tests/test_fault_matrix.py).

Rows: every config key's wrong type and out-of-range value fails at config time with one line and
exit code 2 before anything is written; names are not paths; dotted variant names; the device check
of --check; sampler components and metrics that return NaN or the wrong shape; plugins that raise,
call sys.exit() or are broken installed packages; a plugin run repeated from its directory; plain
progress on the clock; third-party notices kept out of the log. Runs are tiny (2 prompts × 2 seeds,
3 steps, one per-image metric) and in-process.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from helpers import cli, one_error_line
from bench.config import DEFAULTS
from bench.report.rundir import ReportSettings
from mgt_common import registry

#: the tiny run, as one top-level line per key (inline tables), so any key can be replaced
BASE = {
    "name": "config-matrix",
    "limit": 2,
    "seeds": [0, 1],
    "steps": 3,
    "guidance": 3.0,
    "samplers": ["vanilla"],
    "metrics": ["world-loglik"],
    "batch_size": 2,
    "bootstrap": 200,
    "model": {"name": "synthetic", "grid": 8, "text_strength": 0.25},
    "prompts": {"source": "synthetic-world", "n": 12},
}


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {toml_value(v)}' for k, v in value.items()) + " }"
    return repr(value)


def write_config(path: Path, **changes) -> Path:
    values = {**BASE, **changes}
    path.write_text("".join(f"{key} = {toml_value(value)}\n" for key, value in values.items() if value is not None))
    return path


# -- every key: a wrong type and an out-of-range value ----------------------------------------------------

#: key → [(value, what the one line says)]: a wrong type first, then out-of-range values
BAD_VALUES = {
    "name": [(5, "name must be a string"), ("../../../x", "name must be a plain name, not a path")],
    "description": [(5, "description must be a string"), (["a", "b"], "description cannot be a list")],
    "out": [(7, "out must be a directory path"), ("", "out must be a directory path")],
    "model": [(5, "model must be a model name"), ({"name": ""}, "model must be a model name"),
              ({"name": "synthetc"}, "unknown model 'synthetc'")],
    "prompts": [(5, "prompts must be a prompt-set name"),
                ({"source": "synthetic-world", "n": "many"}, "n must be an integer"),
                ({"source": "synthetic-world", "bogus": 1}, "unknown parameter 'bogus'")],
    "limit": [("two", "limit must be a positive integer"), (0, "limit must be a positive integer")],
    "seeds": [("0,1", "seeds must be a non-empty list"), ([18446744073709551616 // 2 ** 1], "seeds must be"),
              ([-1], "seeds must be"), ([], "seeds must be")],
    "steps": [("many", "steps must be an integer"), (1000000000, "steps must be at most"), (0, "steps must be")],
    "guidance": [("high", "guidance must be a finite number"), (1e308, "guidance must be at most"),
                 (float("nan"), "guidance must be a finite number"), (-1.0, "guidance must be a finite number >= 0")],
    "height": [("big", "height must be a positive integer"), (0, "height must be"), (10**6, "height must be")],
    "width": [(2.5, "width must be a positive integer"), (-8, "width must be")],
    "negative_prompt": [(5, "negative_prompt must be a string"), (["a"], "negative_prompt cannot be a list")],
    "baseline": [(5, "baseline must be a variant name"), ("vanila", "unknown sampler variant 'vanila'")],
    "samplers": [(5, "samplers must be a non-empty list"), ([], "samplers must be a non-empty list"),
                 (["vanilla", "vanilla"], "lists a variant twice")],
    "variants": [(5, "variants must be tables"),
                 ({"bad": {"guidance": {"name": "linear", "start": -1.0}}}, "variants.bad")],
    "metrics": [(5, "metrics must be a list"), ([{"name": "fid", "reference_per_prompt": -1}],
                                                "reference_per_prompt must be >= 1"),
                ([{"name": "world-loglik", "bogus": 1}], "unknown parameter 'bogus'"),
                (["hpsv3"], "unknown metric 'hpsv3'")],
    "batch_size": [("8", "batch_size must be an integer"), (0, "batch_size must be"), (10**7, "batch_size must be")],
    "device": [(5, "device must be cpu, cuda"), ("tpu", "device must be cpu, cuda")],
    "dtype": [(32, "dtype must be float32"), ("float8", "dtype must be float32")],
    "bootstrap": [("many", "bootstrap must be an integer"), (10, "bootstrap must be an integer in [100"),
                  (10**9, "bootstrap must be")],
    "plugins": [("x.py", "plugins must be a list"), (["/nonexistent/plugin.py"], "no such file")],
    "report": [(5, "report must be a table"), ({"colour": "red"}, "report.colour is not a report setting")],
}
REPORT_BAD = {
    "primary_metric": [(5, "report.primary_metric must be"), ("nope", "'nope' is not one of the configured metrics")],
    "confidence": [("high", "report.confidence must be"), (1.5, "report.confidence must be")],
    "correction": [(1, "report.correction must be"), ("bonferroni", "report.correction must be")],
    "alpha": [("small", "report.alpha must be"), (0.0, "report.alpha must be")],
    "test_unit": [(1, "report.test_unit must be"), ("image", "report.test_unit must be")],
    "n_boot": [(1.5, "report.n_boot must be"), (5, "report.n_boot must be")],
    "bootstrap_seed": [("zero", "report.bootstrap_seed must be"), (-1, "report.bootstrap_seed must be")],
    "grid_rows": [("3", "report.grid_rows must be"), (1000, "report.grid_rows must be")],
    "gallery_mib": [("big", "report.gallery_mib must be"), (0, "report.gallery_mib must be")],
}
CASES = [(key, value, expected) for key, cases in BAD_VALUES.items() for value, expected in cases] + \
        [("report", {field: value}, expected) for field, cases in REPORT_BAD.items() for value, expected in cases]


def test_every_key_and_report_setting_has_bad_values():
    assert set(BAD_VALUES) == set(DEFAULTS)
    assert set(REPORT_BAD) == {f.name for f in dataclasses.fields(ReportSettings)}
    for key, cases in {**BAD_VALUES, **REPORT_BAD}.items():
        assert len(cases) >= 2, f"{key}: a wrong type and an out-of-range value"


@pytest.mark.parametrize("key,value,expected", CASES, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(CASES)])
def test_a_bad_value_fails_at_config_time(tmp_path, capsys, monkeypatch, key, value, expected):
    monkeypatch.chdir(tmp_path)  # a name without `out` would write under ./results
    config = write_config(tmp_path / "c.toml", **{key: value}, **({"samplers": ["vanilla", "bad"]} if key == "variants" else {}))
    out = tmp_path / "run"
    args = ["--config", config] + (["--out", out] if key != "out" else [])
    code, _, err = cli(capsys, *args)
    assert code == 2 and expected in one_error_line(err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"], "something was written"


def test_bad_values_from_flags_fail_the_same_way(tmp_path, capsys):
    config = write_config(tmp_path / "c.toml")
    for args, expected in ((["--seeds", "18446744073709551616"], "seeds must be"),
                           (["--guidance", "1e308"], "guidance must be at most"),
                           (["--steps", "1000000000"], "steps must be at most"),
                           (["--primary-metric", "nope"], "not one of the configured metrics"),
                           (["--confidence", "7"], "report.confidence must be"),
                           (["--set", "prompts.bogus=1"], "unknown parameter 'bogus'"),
                           (["--set", "report.colour=\"red\""], "report.colour is not a report setting")):
        code, _, err = cli(capsys, "--config", config, "--out", tmp_path / "run", *args)
        assert code == 2 and expected in one_error_line(err), (args, err)
    assert not (tmp_path / "run").exists()


def test_unknown_keys_name_the_nearest_one(tmp_path, capsys):
    (tmp_path / "c.toml").write_text('batch_sise = 4\n')
    code, _, err = cli(capsys, "--config", tmp_path / "c.toml", "--out", tmp_path / "run")
    assert code == 2 and "unknown key 'batch_sise'. Did you mean 'batch_size'?" in one_error_line(err)


def test_a_name_is_not_a_path(tmp_path, capsys, monkeypatch):
    """`name = "../../../x"` without `out` used to write outside results/."""
    work = tmp_path / "a" / "b" / "c"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    config = write_config(work / "c.toml", name="../../../escaped")
    code, _, err = cli(capsys, "--config", config)
    assert code == 2 and "not a path" in one_error_line(err)
    assert not any(tmp_path.rglob("escaped")) and not (work / "results").exists()


def test_a_dotted_variant_name_says_to_quote_it(tmp_path, capsys):
    (tmp_path / "c.toml").write_text('samplers = ["vanilla", "tri-peak-0.3"]\n\n[variants.tri-peak-0.3]\n'
                                     'base = "vanilla"\nreveal_schedule = "linear"\n')
    code, _, err = cli(capsys, "--config", tmp_path / "c.toml", "--out", tmp_path / "run", "--check")
    line = one_error_line(err)
    assert code == 2 and "[variants.tri-peak-0.3] is read by TOML as variant 'tri-peak-0'" in line
    assert '[variants."tri-peak-0.3"]' in line
    (tmp_path / "c.toml").write_text('samplers = ["vanilla", "tri-peak-0.3"]\n\n[variants."tri-peak-0.3"]\n'
                                     'base = "vanilla"\nreveal_schedule = "linear"\n')
    assert cli(capsys, "--config", tmp_path / "c.toml", "--check", "--limit", "2")[0] == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_check_runs_the_device_preflight(tmp_path, capsys):
    config = write_config(tmp_path / "c.toml")
    code, out, err = cli(capsys, "--config", config, "--device", "cuda", "--check")
    assert code == 2 and "CUDA is not available on this machine" in one_error_line(err) and "ok" not in out


# -- sampler components that return NaN ---------------------------------------------------------------------

NAN_PLUGIN = '''
import torch

from samplers.components import Confidence, ProbabilityCorrector, RevealSchedule, register_component
from samplers.variant import register_variant


@register_component("confidence", "nan-confidence")
class NanConfidence(Confidence):
    """NaN everywhere."""

    def score(self, probs, sampled, ctx):
        return torch.full(sampled.shape, float("nan"), device=ctx.device)


@register_component("probability_corrector", "nan-corrector")
class NanCorrector(ProbabilityCorrector):
    """NaN probabilities from the second step on."""

    def __call__(self, probs, ctx):
        return probs * float("nan") if ctx.step >= 1 else probs


@register_component("reveal_schedule", "nan-schedule")
class NanSchedule(RevealSchedule):
    """A masked fraction of NaN (floor() would have turned it into a count)."""

    def mask_ratio(self, progress):
        return progress * float("nan")


register_variant("nan-confidence", {"base": "vanilla", "confidence": "nan-confidence"})
register_variant("nan-schedule", {"base": "vanilla", "reveal_schedule": "nan-schedule"})
register_variant("nan-corrector", {"base": "vanilla", "probability_correctors": ["nan-corrector"]})
'''


def plugin_file(factory, name: str, text: str) -> Path:
    """One file per plugin for the whole module: in one process, a plugin's names register once."""
    path = factory.mktemp("plugins") / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def nan_plugin(tmp_path_factory):
    return plugin_file(tmp_path_factory, "nan_plugin.py", NAN_PLUGIN)


def test_check_names_the_component_that_returned_nan(tmp_path, capsys, nan_plugin):
    config = write_config(tmp_path / "c.toml")
    code, out, err = cli(capsys, "--plugin", nan_plugin, "--config", config, "--check",
                         "--samplers", "vanilla,nan-confidence,nan-corrector,nan-schedule")
    assert code == 2 and "ok  vanilla" in out
    assert "variants.nan-schedule: reveal_schedule 'nan-schedule' (nan_plugin.py): mask_ratio() returned" in err
    assert "variants.nan-confidence: confidence 'nan-confidence' (nan_plugin.py): score() returned NaN" in err
    assert "variants.nan-corrector: probability_corrector 'nan-corrector' (nan_plugin.py): __call__() returned NaN" in err
    assert "multinomial" not in err and "Traceback" not in err


@pytest.mark.parametrize("variant,culprit", [
    ("nan-confidence", "confidence 'nan-confidence' (nan_plugin.py): score() returned NaN"),
    ("nan-corrector", "probability_corrector 'nan-corrector' (nan_plugin.py): __call__() returned NaN"),
    ("nan-schedule", "reveal_schedule 'nan-schedule' (nan_plugin.py): mask_ratio() returned"),
])
def test_a_run_stops_at_the_component_that_returned_nan(tmp_path, capsys, nan_plugin, variant, culprit):
    """A NaN confidence used to reveal every token at step 0 (1 forward pass instead of 16) and write images."""
    config = write_config(tmp_path / "c.toml")
    out = tmp_path / "run"
    code, _, err = cli(capsys, "--plugin", nan_plugin, "--config", config, "--out", out, "--samplers", f"vanilla,{variant}")
    line = one_error_line(err)
    assert code == 2 and f"sampler variant {variant!r}" in line and culprit in line, line
    journal = out / "journal" / "generated.jsonl"
    made = [json.loads(x)["variant"] for x in journal.read_text().splitlines()] if journal.exists() else []
    assert variant not in made and not (out / "samples.csv").exists()


def test_the_engine_watches_nan_only_at_masked_positions():
    """A confidence may hold NaN or ±inf at committed positions (the re-mask policy ignores them), and
    ±inf at masked ones: none of that is flagged; a NaN at a masked position is."""
    from samplers.output_checks import StepWatch

    unknown = torch.tensor([[True, True, False]])
    watch = StepWatch()
    watch.confidence(0, torch.tensor([[float("inf"), -float("inf"), float("nan")]]), unknown)
    probs = torch.tensor([[[0.5, 0.5], [1.0, 0.0], [float("nan"), float("nan")]]])
    watch.sampled(0, probs, torch.tensor([[0, 1, 0]]), unknown)
    assert watch.first() is None
    watch.confidence(1, torch.tensor([[0.0, float("nan"), 0.0]]), unknown)
    assert watch.first() == (1, "confidence")


# -- metrics that return NaN or the wrong shape -------------------------------------------------------------

METRIC_PLUGIN = '''
import torch

from metrics.base import PerImageMetric, register_metric


@register_metric("nan-metric")
class NanMetric(PerImageMetric):
    """NaN for the second image of every batch."""

    def score(self, batch):
        values = torch.ones(len(batch.prompts), dtype=torch.float64)
        values[1:] = float("nan")
        return values


@register_metric("long-metric")
class LongMetric(PerImageMetric):
    """One score too many."""

    def score(self, batch):
        return torch.zeros(len(batch.prompts) + 1, dtype=torch.float64)


@register_metric("list-metric")
class ListMetric(PerImageMetric):
    """A list instead of a tensor."""

    def score(self, batch):
        return [0.0] * len(batch.prompts)
'''


@pytest.fixture(scope="module")
def metric_plugin(tmp_path_factory):
    return plugin_file(tmp_path_factory, "metric_plugin.py", METRIC_PLUGIN)


@pytest.mark.parametrize("metric,expected", [
    ("nan-metric", "metric 'nan-metric' returned nan for 3 of 4 images"),
    ("long-metric", "metric 'long-metric': score() returned shape (5,) for 4 images"),
    ("list-metric", "metric 'list-metric': score() returned list"),
])
def test_a_metric_returning_nan_or_the_wrong_shape_is_one_line(tmp_path, capsys, metric_plugin, metric, expected):
    """NaN used to end in sqlite3.IntegrityError (NOT NULL), a wrong shape in a RuntimeError: tracebacks."""
    plugin = metric_plugin
    config = write_config(tmp_path / "c.toml")
    out = tmp_path / "run"
    code, _, err = cli(capsys, "--plugin", plugin, "--config", config, "--out", out, "--metrics", metric)
    assert code == 2 and expected in one_error_line(err)
    assert not (out / "scores.csv").exists()
    import sqlite3

    with sqlite3.connect(out / "cache" / "scores.sqlite") as db:  # nothing half-scored was cached
        assert db.execute("SELECT COUNT(*) FROM scores").fetchone()[0] == 0


def test_a_set_metric_nan_is_not_defined_and_infinity_an_error():
    from metrics.base import MetricOutputError, SetMetricResult, checked_set_results

    class Stub:
        name = "stub"

    checked = checked_set_results(Stub(), {"stub": SetMetricResult(value=float("nan"), n=1)})
    assert checked["stub"].warnings == ["stub: not defined for this set (the metric gave no reason)"]
    with pytest.raises(MetricOutputError, match="must be finite"):
        checked_set_results(Stub(), {"stub": SetMetricResult(value=float("inf"))})
    with pytest.raises(MetricOutputError, match="SetMetricResult"):
        checked_set_results(Stub(), {"stub": 3.0})


# -- plugins that fail, exit, or are broken installed packages ----------------------------------------------

FAILING_PLUGIN = '''
import sys

from samplers.components import Confidence, register_component
from samplers.variant import register_variant


def helper(value):
    raise ValueError(f"bad value {value}")


@register_component("confidence", "raises")
class Raises(Confidence):
    """Fails at the second step."""

    def score(self, probs, sampled, ctx):
        if ctx.step >= 1:
            helper(ctx.step)
        return probs.max(dim=-1).values


@register_component("confidence", "exits")
class Exits(Confidence):
    """Calls sys.exit(3)."""

    def score(self, probs, sampled, ctx):
        sys.exit(3)


register_variant("raises", {"base": "vanilla", "confidence": "raises"})
register_variant("exits", {"base": "vanilla", "confidence": "exits"})
'''


@pytest.fixture(scope="module")
def failing_plugin(tmp_path_factory):
    return plugin_file(tmp_path_factory, "failing_plugin.py", FAILING_PLUGIN)


def line_of(text: str, code: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if line.strip() == code)


RAISE_LINE = line_of(FAILING_PLUGIN, 'raise ValueError(f"bad value {value}")')


@pytest.mark.parametrize("variant,expected", [
    ("raises", "plugin failing_plugin.py failed in confidence 'raises'.score "
               f"(failing_plugin.py:{RAISE_LINE}): ValueError: bad value 1"),
    ("exits", "plugin failing_plugin.py failed in confidence 'exits'.score "
              f"(failing_plugin.py:{line_of(FAILING_PLUGIN, 'sys.exit(3)')}): it called sys.exit(3)"),
])
def test_a_plugin_failure_names_the_plugin_and_where(tmp_path, capsys, failing_plugin, variant, expected):
    plugin = failing_plugin
    config = write_config(tmp_path / "c.toml")
    out = tmp_path / "run"
    code, _, err = cli(capsys, "--plugin", plugin, "--config", config, "--out", out, "--samplers", f"vanilla,{variant}")
    assert code == 2 and expected in one_error_line(err)
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"


def test_a_plugin_that_exits_on_import(tmp_path, capsys):
    plugin = tmp_path / "exits_on_import.py"
    plugin.write_text("import sys\nsys.exit(3)\n")
    code, _, err = cli(capsys, "--plugin", plugin, "--list")
    assert code == 2 and "exits_on_import.py failed to import: it called sys.exit(3)" in one_error_line(err)


class BrokenEntryPoint:
    name, value, group = "broken", "mgt_no_such_package.plugin", "mgt_bench.samplers"

    def load(self):
        raise ImportError("No module named 'mgt_no_such_package'")


@pytest.fixture
def broken_entry_point(monkeypatch):
    monkeypatch.setattr(registry.metadata, "entry_points",
                        lambda group: [BrokenEntryPoint()] if group == "mgt_bench.samplers" else [])
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setattr(registry, "_broken", [])


def test_a_broken_installed_plugin_stops_only_what_needs_it(tmp_path, capsys, broken_entry_point):
    """It used to stop every run, even `--samplers vanilla`."""
    config = write_config(tmp_path / "c.toml")
    assert cli(capsys, "--config", config, "--check")[0] == 0  # built-in names never load entry points
    code, _, err = cli(capsys, "--config", config, "--check", "--samplers", "vanilla,from-the-package")
    line = one_error_line(err)
    assert code == 2 and "unknown sampler variant 'from-the-package'" in line
    assert "entry point 'broken' (mgt_no_such_package.plugin, group mgt_bench.samplers) failed to load" in line
    code, out, _ = cli(capsys, "--list")
    assert code == 0 and "installed plugins that failed to load" in out and "No module named" in out


# -- a plugin run, repeated from its directory ----------------------------------------------------------------

PLUGIN = '''
from samplers.variant import register_variant

register_variant("far-confident", {"base": "vanilla", "reveal_schedule": "linear"})
'''


def test_a_plugin_run_is_recorded_and_can_be_repeated(tmp_path, capsys):
    plugin = tmp_path / "plugins" / "far.py"
    plugin.parent.mkdir()
    plugin.write_text(PLUGIN)
    config = write_config(tmp_path / "c.toml", samplers=["vanilla", "far-confident"])
    out = tmp_path / "run"
    assert cli(capsys, "--plugin", plugin, "--config", config, "--out", out)[0] == 0
    record = json.loads((out / "manifest.json").read_text())["plugins"]
    import hashlib

    assert {"path": str(plugin.resolve()), "sha256": hashlib.sha256(plugin.read_bytes()).hexdigest()} in record["files"]

    # resuming without the flag names the plugin to pass (it used to suggest 'remdm-conf')
    registry._plugin_files.pop(plugin.resolve(), None)
    from samplers.variant import VARIANT_PRESETS

    VARIANT_PRESETS._entries.pop("far-confident", None)
    code, _, err = cli(capsys, "--config", config, "--out", out)
    line = one_error_line(err)
    assert code == 2 and f"was made with plugin {plugin.resolve()}: pass --plugin {plugin.resolve()}" in line

    # the config's `plugins` key, relative to the config file, repeats it with no flag
    write_config(tmp_path / "c.toml", samplers=["vanilla", "far-confident"], plugins=["plugins/far.py"])
    code, printed, _ = cli(capsys, "--config", config, "--out", out)
    assert code == 0 and "0 images generated, 8 reused" in printed

    # a changed plugin file is pointed out
    plugin.write_text(PLUGIN + "\n# edited\n")
    registry._plugin_files.pop(plugin.resolve(), None)
    VARIANT_PRESETS._entries.pop("far-confident", None)
    code, _, err = cli(capsys, "--config", config, "--out", out)
    assert code == 0 and f"plugin {plugin.resolve()} changed since" in err


# -- operability ----------------------------------------------------------------------------------------------

def test_plain_progress_ticks_on_the_clock(monkeypatch, capsys):
    """A first batch of minutes printed nothing off a terminal: the line comes on time, not on progress."""
    from bench.progress import Progress, heartbeat

    monkeypatch.setenv("MGT_BENCH_PROGRESS_SECONDS", "0.05")
    with Progress("generate", 4):
        time.sleep(0.4)  # no update at all
    with heartbeat("set metric fid: vanilla"):
        time.sleep(0.3)
    err = capsys.readouterr().err
    assert err.count("mgt-bench: generate: 0/4 images (0%)") >= 3
    assert "mgt-bench: set metric fid: vanilla: still running" in err


def test_third_party_notices_are_dropped_and_ours_kept(capsys):
    import warnings

    from bench.third_party import quiet_third_party_notices

    quiet_third_party_notices()
    logger = logging.getLogger("torch.utils._pytree")
    kept = []
    handler = logging.Handler()
    handler.emit = kept.append
    logger.addHandler(handler)
    try:
        logger.warning("%s is an Enum subclass and is now natively supported by torch.compile as an opaque value", "X")
        logger.warning("something else entirely")
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in kept] == ["something else entirely"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        quiet_third_party_notices()
        warnings.warn_explicit("old API", DeprecationWarning, "x.py", 1, module="torchao.quantization")
        warnings.warn_explicit("ours", UserWarning, "x.py", 1, module="bench.runner")
    assert [str(w.message) for w in caught] == ["ours"]
