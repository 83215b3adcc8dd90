"""Reports of a benchmark run: a self-contained HTML page, its Markdown twin, CSV tables and PNG plots.

Only the run directory is read (samples.csv, scores.csv, set_metrics.csv, manifest.json and the PNGs);
no model, no scorer, no torch. ``render_report`` is what ``run_bench.py`` calls after scoring and for
``--report-only RUN_DIR``; ``render_comparison`` serves ``--compare RUN_A RUN_B``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .compare import render_comparison
from .curves import render_curves
from .document import build_sections, provenance_line
from .gallery import gallery_section
from .html import render_html
from .markdown import render_markdown
from .plots import render_all
from .rundir import Run, ReportSettings, load_run
from .tables import ReportTables, compute_tables

__all__ = ["render_report", "render_comparison", "load_run", "compute_tables", "Run", "ReportSettings", "ReportTables"]


def render_report(run_dir: Path | str, screenshot: bool = False, **settings: Any) -> dict[str, Path]:
    """Write ``report.html``, ``report.md``, ``tables/*.csv`` and ``plots/*.png`` into ``run_dir``.

    ``settings`` override the report settings of the manifest (``n_boot``, ``bootstrap_seed``,
    ``confidence``, ``correction`` ("holm" | "bh" | "none"), ``alpha``, ``test_unit``, ``primary_metric``,
    ``grid_rows``, ``gallery_mib``). With ``screenshot=True`` a headless-Chromium screenshot ``report.png`` is added
    when a browser is available (key ``"screenshot"``). Returns the written paths by name.
    """
    run_dir = Path(run_dir)
    run = load_run(run_dir, **settings)
    tables = compute_tables(run)
    paths: dict[str, Path] = {}
    paths.update(tables.write(run_dir / "tables"))
    plots = render_all(run, tables, run_dir / "plots")
    paths.update(plots)
    sections = build_sections(run, tables, plots)
    # a sweep's curves (bench/report/curves.py) go before the cost section: they are its per-point view
    curve_paths, curve_sections = render_curves(run, tables.win_rates, run_dir)
    paths.update(curve_paths)
    at = next((i for i, sec in enumerate(sections) if sec.title == "Cost"), len(sections))
    sections[at:at] = curve_sections
    # the paired gallery (bench/report/gallery.py) follows the static image grid it generalises
    gallery = gallery_section(run, tables)
    if gallery is not None:
        at = next((i + 1 for i, sec in enumerate(sections) if sec.title == "Image grid"), len(sections))
        sections.insert(at, gallery)
    title = f"mgt-bench report: {run_dir.name}" + (f" ({run.model_label})" if run.model_label else "")
    line = provenance_line(run)
    paths["html"] = render_html(title, line, sections, run_dir / "report.html")
    paths["markdown"] = render_markdown(title, line, sections, run_dir / "report.md")
    if screenshot:
        from .screenshot import screenshot as take

        shot = run_dir / "report.png"
        if take(paths["html"], shot):
            paths["screenshot"] = shot
    return paths
