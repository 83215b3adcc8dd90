"""Point labels that do not overlap, and a cost axis that says "equal cost" when every point costs the same.

Scatter plots of a handful of variants (quality against cost) put many points in one column: most
design choices cost exactly the baseline's forward passes, so their names would be printed on top of
each other. `place_labels` is a small, deterministic form of what adjustText (Flöhr, github.com/
Phlya/adjustText) does by simulation: each label is tried beside its point, then one line higher or
lower, alternating, on the side of the point with more room, and takes the first position that
overlaps no label placed before it, no marker and stays inside the axes (else the least-overlapping
one). A label moved away from its point gets a thin leader line.
"""
from __future__ import annotations

import math

import numpy as np

#: how many line heights a label may move up or down before the least-bad position is taken.
MAX_STEPS = 12


def wrap_name(name: str, width: int = 22) -> str:
    """A long variant name on several lines, broken after its own separators ("[", ",", "@", "=", "-", "_")
    where possible, so a label stays about ``width`` characters wide instead of crossing the next panel."""
    name = str(name)
    if len(name) <= width:
        return name
    pieces, current = [], ""
    for ch in name:
        current += ch
        if ch in "[],@=-_;: " and len(current) >= width // 3:
            pieces.append(current)
            current = ""
    if current:
        pieces.append(current)
    lines, line = [], ""
    for piece in pieces:
        while len(piece) > width:  # a run of characters without a separator: cut it
            if line:
                lines.append(line)
                line = ""
            lines.append(piece[:width])
            piece = piece[width:]
        if len(line) + len(piece) > width and line:
            lines.append(line)
            line = ""
        line += piece
    if line:
        lines.append(line)
    return "\n".join(x.rstrip() for x in lines)


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Area shared by two boxes (x0, y0, x1, y1)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _outside(box: tuple[float, float, float, float], frame: tuple[float, float, float, float]) -> float:
    """Area of a box that lies outside the axes frame."""
    area = (box[2] - box[0]) * (box[3] - box[1])
    return area - _overlap(box, frame)


def place_labels(ax, xs, ys, labels, fontsize: float = 7.0, marker_px: float | None = None) -> list:
    """Annotate each finite point (xs[i], ys[i]) with labels[i] so that no two labels overlap.

    Call after the data and the axis limits are final. The figure is drawn once first, so that a
    constrained layout has placed the axes; the labels are then kept out of the layout
    (``set_in_layout(False)``), so saving the figure does not move the axes under them. Returns the
    annotations in the order of the points (None for a point that is not finite).
    """
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    px_per_pt = fig.dpi / 72.0
    marker = marker_px if marker_px is not None else 4.0 * px_per_pt
    frame_bb = ax.get_window_extent(renderer)
    frame = (frame_bb.x0, frame_bb.y0, frame_bb.x1, frame_bb.y1)
    xy = ax.transData.transform(np.column_stack([np.asarray(xs, float), np.asarray(ys, float)]))
    finite = np.isfinite(xy).all(axis=1)
    markers = [(x - marker, y - marker, x + marker, y + marker) for (x, y), ok in zip(xy, finite) if ok]

    sizes = []
    for text in labels:
        probe = ax.text(0, 0, str(text), fontsize=fontsize)
        bb = probe.get_window_extent(renderer)
        probe.remove()
        sizes.append((bb.width, bb.height))

    gap = 2.0 * px_per_pt
    placed: list[tuple[float, float, float, float]] = []
    out: list = [None] * len(labels)
    # top to bottom, then left to right: labels of one column stack in reading order
    order = sorted((i for i in range(len(labels)) if finite[i]), key=lambda i: (-xy[i, 1], xy[i, 0], i))
    for i in order:
        x, y = xy[i]
        w, h = sizes[i]
        step = h + 1.0
        room_right = frame[2] - x
        sides = (1, -1) if room_right >= w + marker + gap or room_right >= x - frame[0] else (-1, 1)
        best = None
        for k in range(2 * MAX_STEPS + 1):
            dy = step * ((k + 1) // 2) * (1 if k % 2 else -1) if k else 0.0
            for side in sides:
                dx = side * (marker + gap)
                x0 = x + dx if side > 0 else x + dx - w
                box = (x0, y + dy - h / 2, x0 + w, y + dy + h / 2)
                cost = (sum(_overlap(box, p) for p in placed) + sum(_overlap(box, m) for m in markers)
                        + 10.0 * _outside(box, frame))
                if best is None or cost < best[0] - 1e-9:
                    best = (cost, dx, dy, side, box)
                if cost == 0:
                    break
            if best[0] == 0:
                break
        _, dx, dy, side, box = best
        placed.append(box)
        moved = abs(dy) > 0.5 * h
        ann = ax.annotate(str(labels[i]), (float(xs[i]), float(ys[i])), xytext=(dx / px_per_pt, dy / px_per_pt),
                          textcoords="offset points", ha="left" if side > 0 else "right", va="center",
                          fontsize=fontsize, annotation_clip=False,
                          arrowprops=dict(arrowstyle="-", lw=0.5, color="#777777", shrinkA=0, shrinkB=3) if moved else None)
        ann.set_in_layout(False)
        out[i] = ann
    return out


def equal_cost_axis(ax, values, what: str) -> bool:
    """When every finite cost in ``values`` is the same, replace a meaningless axis range (15.25–16.75)
    by one tick at that cost and the label "equal cost: ``what`` = N for every variant"; returns whether
    it did."""
    finite = np.asarray([v for v in np.asarray(values, float) if math.isfinite(v)])
    if not len(finite) or not np.all(finite == finite[0]):
        return False
    value = float(finite[0])
    half = max(abs(value) * 0.5, 1.0)
    ax.set_xlim(value - half, value + half)
    ax.set_xticks([value], [f"{value:g}"])
    ax.set_xlabel(f"equal cost: {what} = {value:g} for every variant")
    return True
