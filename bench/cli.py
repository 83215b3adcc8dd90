"""The command line: ``python run_bench.py`` / ``mgt-bench``.

Flags equal config keys (``--batch-size`` ↔ ``batch_size``) and override the config file. A user
mistake prints one line naming the key and the fix and exits with code 2; nothing is written.
"""
from __future__ import annotations

import argparse
import errno
import signal
import sqlite3
import sys
import threading
from pathlib import Path

from mgt_common.errors import ConfigError, UserError
from mgt_common.registry import load_plugin_file, plugin_failure

from .third_party import quiet_third_party_notices


def is_disk_full_error(exc: BaseException) -> bool:
    """ENOSPC / EDQUOT from a write, or SQLite's own "database or disk is full" (the score cache)."""
    if isinstance(exc, sqlite3.OperationalError):
        return "disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def _sweepable(kind, what: str):
    """An argparse type: one value (``8``) or a comma-separated sweep (``8,16,32`` → [8, 16, 32])."""
    def parse(text: str):
        parts = [p.strip() for p in text.split(",")]
        try:
            values = [kind(p) for p in parts]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: give {what}, or comma-separated {what} to sweep") from None
        return values[0] if len(values) == 1 else values

    return parse


#: [report] keys as flags (``primary_metric`` ↔ ``--primary-metric``): type and help. A test keeps these equal
#: to the report's settings (bench/report/rundir.py ReportSettings).
REPORT_FLAGS = {
    "primary_metric": (str, "the metric that orders the headline and picks the image grid"),
    "confidence": (float, "interval level of every interval (default 0.95)"),
    "correction": (str, "multiple-comparison correction: holm, bh or none (default holm)"),
    "alpha": (float, "level at which an adjusted p-value survives (default 0.05)"),
    "test_unit": (str, "what the sign and Wilcoxon tests count: prompt or pair (default prompt)"),
    "n_boot": (int, "bootstrap resamples of the report (default: --bootstrap)"),
    "bootstrap_seed": (int, "seed of every bootstrap (default 0)"),
    "grid_rows": (int, "best and worst pairs shown in the image grid, each (default 3)"),
    "gallery_mib": (float, "MiB of thumbnails the paired gallery may embed in report.html (default 8)"),
}


def package_version() -> str:
    """The installed mgt-bench's version (pyproject.toml's, through the package metadata)."""
    from importlib import metadata

    try:
        return metadata.version("mgt-bench")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


def parse_assignment(text: str) -> tuple[str, object]:
    """``TABLE.KEY=VALUE`` → (``TABLE.KEY``, value read as TOML, or the text itself when it is not TOML)."""
    import tomllib

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set {text!r}: give TABLE.KEY=VALUE, e.g. --set model.compile=true")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value  # a bare path or name: --set model.path=/data/Meissonic
    return key.strip(), parsed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgt-bench",
        description="Benchmark sampler design choices of masked generative image transformers: generate, "
                    "score, compare with the baseline prompt by prompt, and report win rates.",
        epilog="With no arguments, runs the shipped default config on the synthetic world (CPU, offline).")
    run = parser.add_argument_group("run")
    run.add_argument("--config", help="TOML experiment file, or the name of a shipped config (see --list)")
    run.add_argument("--out", help="run directory (default: the config's `out`, else results/<name>)")
    run.add_argument("--samplers", help="comma-separated variant names to run (the baseline is always added)")
    run.add_argument("--limit", type=int, help="use only the first N prompts")
    run.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2")
    run.add_argument("--steps", type=_sweepable(int, "integers"),
                     help="sampling steps T; a comma-separated list sweeps them, e.g. 8,16,32 (docs/sweeps.md)")
    run.add_argument("--guidance", type=_sweepable(float, "numbers"),
                     help="base classifier-free guidance scale w; a comma-separated list sweeps it, e.g. 2,3,4")
    run.add_argument("--model", help="registered model name (its parameters come from the config's [model])")
    run.add_argument("--prompts", help="prompt-set name or prompt file path")
    run.add_argument("--metrics", help="comma-separated metric names")
    run.add_argument("--device", help="cpu, cuda, cuda:N, mps or auto")
    run.add_argument("--dtype", choices=["float32", "bfloat16", "float16"])
    run.add_argument("--batch-size", type=int, dest="batch_size", help="images generated per batch")
    run.add_argument("--height", type=int, help="image height in pixels (default: the model's)")
    run.add_argument("--width", type=int, help="image width in pixels (default: the model's)")
    run.add_argument("--negative-prompt", dest="negative_prompt",
                     help="negative prompt for the unconditional branch (default: the model's)")
    run.add_argument("--baseline", help="the variant every other one is compared with (default: vanilla)")
    run.add_argument("--bootstrap", type=int, help="bootstrap resamples for every interval (default: 1000)")
    run.add_argument("--name", help="the run's name (default output: results/<name>)")
    run.add_argument("--description", help="a line describing the run (recorded in manifest.json)")
    run.add_argument("--fresh", action="store_true", help="delete the run directory first and start over")
    run.add_argument("--shard", metavar="INDEX/COUNT",
                     help="generate only shard INDEX (0-based) of COUNT, e.g. 0/4; under torchrun, accelerate launch "
                          "or a SLURM job array the shard comes from the launcher's environment (see docs/scaling.md)")
    run.add_argument("--plugin", action="append", default=[], metavar="FILE.py", dest="plugins",
                     help="import a Python file that registers components, metrics or models (repeatable; adds to "
                          "the config's `plugins`). A plugin is code: it runs with your rights (docs/plugins.md)")
    run.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE", dest="assignments",
                     help="set a key of a table, as the config file would: --set model.compile=true, "
                          "--set prompts.n=12, --set report.alpha=0.01 (VALUE is read as TOML, else as text)")
    report = parser.add_argument_group("report (the config's [report] keys; docs/report.md)")
    for key, (flag_type, text) in REPORT_FLAGS.items():
        report.add_argument("--" + key.replace("_", "-"), dest=f"report_{key}", type=flag_type, help=text,
                            metavar=key.split("_")[-1].upper())
    actions = parser.add_argument_group("other actions")
    actions.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    actions.add_argument("--list", action="store_true", help="list every registered component, variant, model, "
                                                             "metric, prompt set and shipped config")
    actions.add_argument("--check", action="store_true",
                         help="build every variant of the config and run it on a tiny random model (seconds); "
                              "a broken plugin fails here, before any run starts; writes nothing")
    actions.add_argument("--merge", metavar="RUN_DIR",
                         help="merge the shards of a sharded run once all are done: tables, scores, report (once)")
    actions.add_argument("--report-only", metavar="RUN_DIR", help="re-render the report of a finished run, no model")
    actions.add_argument("--power", type=float, metavar="WIN_RATE",
                         help="print how many prompts × seeds the config needs to find a pair-level win rate "
                              "(e.g. 0.6) with 80 %% power, then exit (metrics/power.py)")
    actions.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"),
                         help="report the same variants across two finished runs (written to --out)")
    return parser


def overrides_from(args: argparse.Namespace) -> dict:
    overrides = {key: getattr(args, key) for key in
                 ("out", "limit", "steps", "guidance", "device", "dtype", "batch_size", "height", "width",
                  "negative_prompt", "baseline", "bootstrap", "name", "description")}
    if args.samplers:
        overrides["samplers"] = [s.strip() for s in args.samplers.split(",") if s.strip()]
    if args.metrics:
        overrides["metrics"] = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if args.seeds:
        try:
            overrides["seeds"] = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            raise UserError(f"--seeds {args.seeds!r}: give comma-separated integers, e.g. 0,1,2") from None
    if args.prompts:
        overrides["prompts"] = args.prompts
    report = {key: getattr(args, f"report_{key}") for key in REPORT_FLAGS
              if getattr(args, f"report_{key}", None) is not None}
    if report:
        overrides["report"] = report
    if args.plugins:
        overrides["plugins"] = list(args.plugins)
    return overrides


class Terminated(KeyboardInterrupt):
    """SIGTERM (what SLURM, Kubernetes and `kill` send), handled as Ctrl-C is: the stage in progress stops,
    an interrupted generation's time is recorded, and the run resumes when started again."""


def _terminate(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    # SIGTERM ends the run as Ctrl-C does (message, timings kept, exit 128 + 15) instead of dying silently
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if on_main_thread else None
    try:
        return _main(argv)
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_third_party_notices()
    try:
        for plugin in args.plugins:
            load_plugin_file(plugin)
        if args.list:
            from .listing import print_listing

            print_listing()
            return 0
        if args.check:
            return check(args)
        if args.merge:
            return merge(Path(args.merge))
        if args.report_only:
            return report_only(Path(args.report_only))
        if args.power is not None:
            return power(args)
        if args.compare:
            return compare(Path(args.compare[0]), Path(args.compare[1]), Path(args.out) if args.out else None)
        return run(args)
    except UserError as exc:
        print(f"mgt-bench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (OSError, sqlite3.OperationalError) as exc:
        if not is_disk_full_error(exc):
            raise
        where = getattr(exc, "filename", None) or "the output directory"
        print(f"mgt-bench: error: disk full at {where}; nothing lost: every finished file is complete and journalled. "
              "Free space (or pass another --out), then re-run the same command to resume", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        signal_name = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
        print(f"mgt-bench: interrupted ({signal_name}); run the same command again to resume", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
    except SystemExit as exc:  # a plugin's sys.exit() must not end the run without a word
        failure = plugin_failure(exc)
        if failure is None:
            raise
        print(f"mgt-bench: error: {failure}", file=sys.stderr)
        return failure.exit_code
    except Exception as exc:  # a plugin's exception is named as the plugin's; the harness's own keep their traceback
        failure = plugin_failure(exc)
        if failure is None:
            raise
        print(f"mgt-bench: error: {failure}", file=sys.stderr)
        return failure.exit_code


def config_from(args: argparse.Namespace):
    """The config file (or the shipped default) with the command line's flags applied."""
    from .config import load_config

    assignments = [parse_assignment(text) for text in args.assignments]
    config = load_config(args.config, overrides_from(args), assignments)
    if args.model:
        config.values["model"] = {**config.values["model"], "name": args.model} \
            if config.values["model"].get("name") == args.model else {"name": args.model}
    return config


def power(args: argparse.Namespace) -> int:
    """`--power WIN_RATE`: the prompts needed per number of seeds, at the config's α and primary family size."""
    from metrics.power import format_power_table

    config = config_from(args)
    if not 0.5 < args.power < 1:
        raise UserError(f"--power {args.power}: give the pair-level win rate to detect, between 0.5 and 1 (e.g. 0.6)")
    family = sum(1 for point in config.sweep().points if point.name != point.baseline)
    alpha = float((config.values.get("report") or {}).get("alpha", 0.05))
    seeds = sorted({1, 2, 4, 8, len(config.seeds)})
    print(format_power_table(args.power, seeds, alpha, max(family, 1)))
    print(f"(this config: {len(config.seeds)} seed(s) per prompt, {max(family, 1)} comparison(s) in the primary family)")
    return 0


def check(args: argparse.Namespace) -> int:
    from .check import check_config
    from .preflight import check_device

    config = config_from(args)
    check_device(str(config.device))  # the run's own device preflight: --check must not say ok to a run that cannot start
    check_config(config)
    return 0


def run(args: argparse.Namespace) -> int:
    from .runner import Benchmark
    from .sharding import detect_shard

    from .plugins import plugin_hint, warn_changed_plugins
    from .runner import default_out

    shard = detect_shard(args.shard)
    out = Path(args.out) if args.out else None
    try:
        config = config_from(args)
        out = out or default_out(config)
        benchmark = Benchmark(config, shard=shard)
    except ConfigError as exc:  # resuming without the plugin the run was made with: name it
        hint = plugin_hint(out, str(exc)) if out is not None else ""
        if hint:
            raise ConfigError(f"{exc}. {hint}") from None
        raise
    warn_changed_plugins(benchmark.store.root)
    result = benchmark.run(fresh=args.fresh)
    where = f"shard {shard} ({shard.source}): " if shard.is_sharded else ""
    print(f"mgt-bench: {where}{result.generated} images generated, {result.reused} reused, in {result.run_dir}")
    if not result.merged:
        if shard.launched_together:
            print(f"mgt-bench: shard {shard}: done; rank 0 scores and reports")
        else:
            print(f"mgt-bench: shard {shard}: done; once every shard is, run: python run_bench.py --merge {result.run_dir}")
        return 0
    for kind in ("html", "markdown"):
        if kind in result.report:
            print(f"mgt-bench: report ({kind}): {result.report[kind]}")
    if result.report:
        from .report.console import cost_summary

        print(cost_summary(result.run_dir))
    return 0


def merge(run_dir: Path) -> int:
    """Score and report a run whose shards were separate jobs, with the configuration its manifest records."""
    from .config import BenchConfig
    from .runner import Benchmark
    from .rundir.store import RunDirectory

    from .plugins import load_recorded_plugins

    manifest = RunDirectory(run_dir).read_manifest()
    if manifest is None or "config" not in manifest:
        raise UserError(f"--merge {run_dir}: not an mgt-bench run directory (no manifest.json); pass the --out "
                        "directory the shards wrote to")
    load_recorded_plugins(manifest, f"--merge {run_dir}")
    config = BenchConfig(values=manifest["config"], source=manifest.get("config_source", "<manifest>"))
    result = Benchmark(config, out=run_dir).merge()
    print(f"mgt-bench: merged {result.reused} images in {result.run_dir}")
    for kind in ("html", "markdown"):
        if kind in result.report:
            print(f"mgt-bench: report ({kind}): {result.report[kind]}")
    return 0


def report_only(run_dir: Path) -> int:
    from .rundir.finished import check_finished
    from .rundir.lock import RunLock
    from .rundir.store import RunDirectory
    from .runner import render

    store = RunDirectory(run_dir)
    manifest = store.read_manifest() if run_dir.is_dir() else None
    if manifest is None:
        raise UserError(f"--report-only {run_dir}: not an mgt-bench run directory (no manifest.json)")
    # alone in the directory (no run may be rewriting the tables meanwhile), and only once every table is
    # verified: nothing is rewritten for a run that is not finished or whose tables were damaged
    with RunLock(run_dir, exclusive=True, role="report-only"):
        store.sweep_temp_files()
        check_finished(store, store.read_manifest() or manifest, "--report-only")
        paths = render(run_dir)
    for kind, path in paths.items():
        if kind in ("html", "markdown"):
            print(f"mgt-bench: report ({kind}): {path}")
    return 0


def compare(run_a: Path, run_b: Path, out: Path | None) -> int:
    from .report import render_comparison
    from .rundir.finished import check_finished
    from .rundir.guard import check_comparison_out, mark_comparison
    from .rundir.store import RunDirectory

    for run_dir in (run_a, run_b):
        manifest = RunDirectory(run_dir).read_manifest() if run_dir.is_dir() else None
        if manifest is None:
            raise UserError(f"--compare {run_dir}: not an mgt-bench run directory (no manifest.json)")
        check_finished(RunDirectory(run_dir), manifest, "--compare")
    out = out or Path("results") / f"compare-{run_a.name}-vs-{run_b.name}"
    check_comparison_out(out)
    paths = render_comparison(run_a, run_b, out)
    mark_comparison(out)
    for kind, path in paths.items():
        if kind in ("html", "markdown"):
            print(f"mgt-bench: comparison ({kind}): {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
