"""The report's figures say what their axes mean and stay legible (labels apart, equal cost said, identical
trajectories merged, legends off the data, win rates in %), units reach means, and the end-of-run summary
follows the headline."""
from __future__ import annotations

import json

import matplotlib
import matplotlib.text

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.ticker import PercentFormatter  # noqa: E402

from bench.report import compute_tables, load_run, render_comparison, render_report  # noqa: E402
from bench.report import compare as compare_module  # noqa: E402
from bench.report import plots  # noqa: E402
from bench.report.console import cost_summary  # noqa: E402
from bench.report.labels import equal_cost_axis, place_labels, wrap_name  # noqa: E402
from run_fixture import make_run_dir  # noqa: E402


@pytest.fixture
def captured(monkeypatch):
    """Figures as they are saved (plots._save closes them): [(path name, figure)]."""
    figures = []
    original = plots._save

    def keep(fig, path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
        figures.append((path.name, fig))
        return path

    monkeypatch.setattr(plots, "_save", keep)
    monkeypatch.setattr(compare_module, "_save", keep)
    monkeypatch.setitem(matplotlib.rcParams, "figure.max_open_warning", 0)  # kept open until the test ends
    yield figures
    for _, fig in figures:
        plt.close(fig)
    del original


def _boxes(texts):
    """The texts' own boxes (an annotation's extent would include its leader line)."""
    fig = texts[0].figure
    renderer = fig.canvas.get_renderer()
    return [matplotlib.text.Text.get_window_extent(t, renderer) for t in texts]


def _overlapping(boxes) -> list[tuple[int, int]]:
    return [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes)) if boxes[i].overlaps(boxes[j])]


def test_labels_of_points_in_one_column_do_not_overlap():
    fig, ax = plt.subplots(figsize=(4, 3), layout="constrained")
    xs = [16] * 6 + [46]
    ys = [0.590, 0.5901, 0.5903, 0.5905, 0.6, 0.62, 0.5902]
    names = ["vanilla", "noise-reg", "differential", "halton", "cfg-linear", "a-longer-name", "zigzag"]
    ax.scatter(xs, ys)
    equal_cost_axis(ax, xs, "forward passes per image")  # not equal: leaves the axis alone
    anns = place_labels(ax, xs, ys, names)
    fig.savefig(__import__("io").BytesIO())
    boxes = _boxes(anns)
    assert _overlapping(boxes) == []
    frame = ax.get_window_extent(fig.canvas.get_renderer())
    assert all(b.x0 >= frame.x0 - 1 and b.x1 <= frame.x1 + 1 for b in boxes)  # inside the panel
    assert ax.get_xlabel() == ""
    plt.close(fig)


def test_wrap_name_keeps_every_character():
    name = "noise-reg[scale=0.5,temperature=2.0]@steps=32,guidance=4.5"
    wrapped = wrap_name(name)
    assert wrapped.replace("\n", "") == name and max(len(x) for x in wrapped.split("\n")) <= 22
    assert wrap_name("vanilla") == "vanilla"


def test_quality_vs_cost_says_equal_cost_and_keeps_names_apart(tmp_path, captured):
    run = make_run_dir(tmp_path / "r", n_prompts=6, seeds=(0,), variants={"vanilla": 0.0, "weak": 0.05, "b": 0.0, "c": 0.01})
    loaded = load_run(run, n_boot=20)
    plots.quality_vs_cost(loaded, compute_tables(loaded), tmp_path / "q.png")
    (_, fig), = captured
    panels = [a for a in fig.axes if a.get_visible() and a.axison]
    passes = [ax for ax in panels if "forward passes" in ax.get_xlabel()]
    assert passes  # one panel per metric has passes on its x axis (the fixture has no FLOPs column)
    for ax in passes:
        assert ax.get_xlabel() == "equal cost: forward passes per image = 16 for every variant"
        assert [t.get_text() for t in ax.get_xticklabels()] == ["16"]
    for ax in panels:
        names = [c for c in ax.texts if c.get_text() in {"vanilla", "weak", "b", "c"}]
        assert len(names) == 4 and _overlapping(_boxes(names)) == []


def test_win_rate_axes_are_percent_and_say_which_way_is_better(tmp_path, captured):
    run = make_run_dir(tmp_path / "r", n_prompts=6, seeds=(0,))
    loaded = load_run(run, n_boot=20)
    t = compute_tables(loaded)
    plots.win_rate_plot(loaded, t, tmp_path / "w.png")
    plots.pairwise_heatmap(loaded, t, tmp_path / "p.png")
    (_, wins), (_, pair) = captured
    panels = [a for a in wins.axes if a.axison]
    assert len(panels) == 3
    for ax in panels:
        assert isinstance(ax.xaxis.get_major_formatter(), PercentFormatter)
        assert ax.get_xlabel() == "← worse · win rate vs vanilla · better →"
        assert "↓" not in ax.get_title() and "↑" not in ax.get_title()  # arrows beside a win-rate axis misread
    titles = {a.get_title() for a in panels}
    assert "toy_nll\n(lower score is better)" in titles and "HPS v2.1\n(higher score is better)" in titles
    colourbar = [a for a in pair.axes if a.get_label() == "<colorbar>"]
    assert colourbar and isinstance(colourbar[0].yaxis.get_major_formatter(), PercentFormatter)


def test_identical_trajectories_share_one_labelled_line(tmp_path, captured):
    run = make_run_dir(tmp_path / "r", n_prompts=4, seeds=(0,))
    loaded = load_run(run, n_boot=20)
    t = compute_tables(loaded)
    plots.trajectory_plot(loaded, t, tmp_path / "t.png")
    (_, fig), = captured
    ax = fig.axes[0]
    assert len(ax.lines) == 1 and "identical for all 4 variants" in ax.get_title()
    samples = pd.read_csv(run / "samples.csv", dtype={"prompt_id": str})
    samples.loc[samples["variant"] == "strong", "trajectory"] = json.dumps([200, 100, 0])
    samples.to_csv(run / "samples.csv", index=False)
    loaded = load_run(run, n_boot=20)
    plots.trajectory_plot(loaded, compute_tables(loaded), tmp_path / "t2.png")
    fig = captured[-1][1]
    labels = [text.get_text() for legend in fig.legends for text in legend.get_texts()]
    assert len(fig.axes[0].lines) == 2 and "strong" in labels
    assert any(label.replace("\n", " ") == "vanilla, weak, worse (identical)" for label in labels)


def test_compare_legend_is_outside_the_panels(tmp_path, captured):
    a = make_run_dir(tmp_path / "a", n_prompts=6, seeds=(0,))
    b = make_run_dir(tmp_path / "b", n_prompts=6, seeds=(0,), rng_seed=3)
    render_comparison(a, b, tmp_path / "cmp")  # without report tables: each run's win rates computed here
    (_, fig), = [c for c in captured if c[0] == "comparison_win_rates.png"]
    panels = [ax for ax in fig.axes if ax.axison]
    assert panels and all(ax.get_legend() is None for ax in panels) and len(fig.legends) == 1
    renderer = fig.canvas.get_renderer()
    legend_box = fig.legends[0].get_window_extent(renderer)
    assert not any(legend_box.overlaps(ax.get_window_extent(renderer)) for ax in panels)
    assert all(isinstance(ax.xaxis.get_major_formatter(), PercentFormatter) for ax in panels)


def test_units_reach_means_and_their_axes(tmp_path, captured):
    from metrics.base import METRICS

    assert METRICS.get("world-loglik").unit == "nats/token"
    run = make_run_dir(tmp_path / "r", n_prompts=6, seeds=(0,))
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["metrics"]["clip_score"]["unit"] = "100·cos"
    (run / "manifest.json").write_text(json.dumps(manifest))
    md = render_report(run, n_boot=20)["markdown"].read_text(encoding="utf-8")
    assert "| clip_score (100·cos) |" in md  # all comparisons: the metric with the unit of its means
    assert "clip_score (100·cos) |" in md.split("## Scores per variant")[1].split("##")[0]
    assert "mean clip_score (100·cos) |" in md.split("## Cost")[1].split("##")[0]
    qc = [fig for name, fig in captured if name == "quality_vs_cost.png"][0]
    assert any(ax.get_ylabel() == "mean clip_score (100·cos) ↑" for ax in qc.axes)


def _sweep_run(root):
    variants = {"vanilla@steps=2": 0.0, "vanilla@steps=3": 0.2, "x@steps=2": 1.0, "x@steps=3": -0.5}
    run = make_run_dir(root, n_prompts=8, seeds=(0,), variants=variants)
    manifest = json.loads((run / "manifest.json").read_text())
    points = {v: {"variant": v.split("@")[0], "steps": int(v[-1]), "guidance": 3.0, "values": {"steps": int(v[-1])},
                  "baseline": f"vanilla@steps={v[-1]}"} for v in variants}
    manifest.update(baseline="vanilla@steps=2", sweep={"axes": {"steps": [2, 3]}, "baseline": "vanilla", "points": points})
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


def test_every_sweep_baseline_says_baseline_and_the_caption_names_its_intervals(tmp_path):
    run = _sweep_run(tmp_path / "sweep")
    md = render_report(run, n_boot=20)["markdown"].read_text(encoding="utf-8")
    head = md.split("## Headline")[1].split("##")[0]
    cost = md.split("## Cost")[1].split("##")[0]
    for section in (head, cost):
        row = next(line for line in section.splitlines() if line.startswith("| vanilla@steps=3 |"))
        assert "baseline" in row and "missing" not in row
    assert "whiskers = the win-rate table's clustered Clopper–Pearson intervals" in md
    lines = cost_summary(run).splitlines()
    rows = {line.split()[0]: line for line in lines[1:] if line.split() and "@" in line.split()[0]}
    assert "baseline" in rows["vanilla@steps=3"] and "baseline" in rows["vanilla@steps=2"]


def test_end_of_run_summary_follows_the_headline(tmp_path):
    run = make_run_dir(tmp_path / "r", n_prompts=24, seeds=(0, 1))
    render_report(run, n_boot=50)
    text = cost_summary(run)
    lines = text.splitlines()
    head = pd.read_csv(run / "tables" / "headline.csv")
    order = [line.split()[0] for line in lines[1:1 + len(head)]]
    assert order == list(head["variant"])
    assert lines[0].startswith("variant") and "HPS v2.1 win rate [95 % CI]" in lines[0]
    strong = next(line for line in lines if line.startswith("strong "))
    r = head.set_index("variant").loc["strong"]
    assert r.significant_hpsv2 and r.direction_hpsv2 == "better"
    assert f"{100 * r.win_rate_hpsv2:.0f} % [{100 * r.win_rate_hpsv2_lo:.0f}, {100 * r.win_rate_hpsv2_hi:.0f}] ▲*" in strong
    assert next(line for line in lines if line.startswith("vanilla ")).split()[1] == "baseline"
    assert "▲* / ▼* = better / worse than the baseline on HPS v2.1" in text
