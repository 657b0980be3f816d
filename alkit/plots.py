"""Plotly figures drawn from result records (never from models).

What every figure shares, so that a reader can compare them at a glance:

- one colour and one legend position per method in every notebook (:data:`ARM_COLORS`, :data:`ARM_ORDER`);
- accuracies in percent;
- a subtitle with the setting (:func:`alkit.analysis.setting`) and what the lines, bars or colours mean;
- each seed as a thin line and the mean over seeds on top (with 2-5 seeds a +-1 sd band says little);
- chance levels where they explain the plot, and the study's own numbers labelled as its single run.

Saving (PNG, SVG, offline HTML) is :mod:`alkit.export`; ``plots.show`` and ``plots.save`` are the same functions.
"""
from __future__ import annotations

import base64
import io
import math
import re
from typing import Iterable, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import analysis
from .data import FASHION_MNIST_CLASSES
from .export import Shown, save, show  # noqa: F401  (notebooks call plots.show)

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
# one colour per method in every figure; arms not named here take PALETTE colours by position
ARM_COLORS = {"random": "#1f77b4", "vaal": "#d62728", "m2_vaal": "#2ca02c", "tavaal": "#9467bd", "m2_disc": "#ff7f0e",
              "least_confidence": "#8c564b", "entropy": "#e377c2", "margin": "#bcbd22", "bald": "#17becf",
              "coreset": "#7f7f7f", "alg1": "#393b79", "alg2": "#e6550d", "kernel_norm_approx": "#637939",
              "kernel_norm_exact": "#b5cf6b", "network_norm": "#8ca252",
              "m2": "#8c564b", "m2_random": "#8c564b", "m2_vaal_detached": "#17becf",
              # same-learner random controls alone (beside their arm they take its colour, dashed: CONTROL_OF)
              "tavaal_random": "#9467bd", "m2_vaal_random": "#2ca02c", "m2_vaal_detached_random": "#17becf"}
#: a random-acquisition control -> the arm whose learner it shares: drawn beside it in that arm's colour, dashed
#: (``random`` trains VAAL's task model step for step; ``m2_random`` trains ``m2_disc``'s M2 step for step)
CONTROL_OF = {"random": "vaal", "tavaal_random": "tavaal", "m2_vaal_random": "m2_vaal",
              "m2_vaal_detached_random": "m2_vaal_detached", "m2_random": "m2_disc"}
#: what a dashed line means, in the subtitle of a figure that has one
CONTROLS_TEXT = ("dashed: random acquisition, same learner as the solid line of its colour (a seed's random "
                 "controls draw identical batches)")
#: the legend order of every figure: baselines first, then the VAAL family, the M2 family, the rest
ARM_ORDER = ("random", "vaal", "tavaal", "tavaal_random", "m2", "m2_random", "m2_vaal", "m2_vaal_random",
             "m2_vaal_detached", "m2_vaal_detached_random", "m2_disc",
             "least_confidence", "entropy", "margin", "bald", "coreset", "kernel_norm_exact", "kernel_norm_approx",
             "network_norm", "alg1", "alg2")
FASHION_CLASSES = FASHION_MNIST_CLASSES  # the default axis labels: the dataset registry's (alkit.data.DATASETS)
LAYOUT = dict(template="plotly_white", font=dict(size=13), margin=dict(l=60, r=20, t=95, b=50))
STUDY_STYLE = dict(line=dict(color="black", dash="dot"), marker=dict(symbol="x", size=8, color="black"))
#: the discriminator loss of alkit (mean BCE on labelled + mean BCE on unlabelled) when D outputs 0.5 everywhere
DISC_LOSS_AT_CHANCE = 2 * math.log(2)
SEEDS_TEXT = "thin lines: one seed each; thick: mean over seeds"
TITLE_PAD = 12  # pixels above a figure's title
#: legends below the plot, in rows: a legend on the right took up to half of the figure's width
BOTTOM_LEGEND = dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0, font=dict(size=12))


def ordered(arms: Iterable[str]) -> list[str]:
    """``arms`` in the legend order shared by every figure: known methods by :data:`ARM_ORDER`, others after, as given."""
    arms = list(dict.fromkeys(arms))
    rank = {a: i for i, a in enumerate(ARM_ORDER)}
    return sorted(arms, key=lambda a: (rank.get(a, len(rank)), arms.index(a)))


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


#: one palette per meaning: classes take colours no method takes (Paul Tol's "muted" set, and two more) ...
CLASS_PALETTE = ["#88ccee", "#cc6677", "#ddcc77", "#117733", "#332288", "#aa4499", "#44aa99", "#999933", "#882255",
                 "#661100", "#6699cc", "#aaaa00"]
#: ... and data splits are greys
SPLIT_COLORS = {"test": "#222222", "validation": "#8a8a8a", "train": "#555555"}


def class_color(c: int) -> str:
    """The colour of class ``c`` in every figure (never a method's colour)."""
    return CLASS_PALETTE[c % len(CLASS_PALETTE)]


def arm_color(arm: str, i: int) -> str:
    """The fixed colour of a known method (or a data split), else the ``i``-th palette colour."""
    return ARM_COLORS.get(str(arm)) or SPLIT_COLORS.get(str(arm)) or _color(i)


def arm_styles(arms: Sequence[str]) -> dict[str, tuple[str, str]]:
    """(colour, dash) of each of ``arms`` drawn together: one hue per learner, its random control dashed
    (:data:`CONTROL_OF`) where the arm it controls is drawn too; every other arm solid in its own colour."""
    present = set(arms)
    return {arm: (arm_color(CONTROL_OF[arm], i), "dash") if CONTROL_OF.get(arm) in present
            else (arm_color(arm, i), "solid") for i, arm in enumerate(arms)}


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _empty(title: str, subtitle: str = "") -> go.Figure:
    """Axes-free figure with only its title: nothing on disk to draw yet (``export.show`` then writes a note instead)."""
    return go.Figure(layout=dict(title=_title(title, subtitle)))


def _title(title: str, subtitle: str = "") -> dict:
    # the PARTIAL note of a setting line (alkit.analysis.setting) on a line of its own: the subtitle would overflow
    subtitle = subtitle.replace(" · PARTIAL:", "<br>PARTIAL:")
    # pinned to the top of the figure (plotly centres an unpinned title in the top margin, so a margin grown for
    # panel titles moved it down onto them); _fit_top sizes the margin below it
    return dict(text=title, subtitle=dict(text=subtitle, font=dict(size=11, color="#555")), x=0.01, xanchor="left",
                yref="container", y=1, yanchor="top", pad=dict(t=TITLE_PAD))


def _join(*parts: str) -> str:
    return " · ".join(p for p in parts if p)


def _seed_traces(rows: list[dict], arm: str, y: str, x: str, scale: float, color: str, yfn=None,
                 dash: str = "solid") -> list[go.Scatter]:
    """One thin line per seed of ``arm`` (no legend entry; hover names the seed)."""
    out = []
    for (seed,), rs in sorted(analysis.group((r for r in rows if r.get("arm") == arm and r.get(y) is not None), "seed").items(),
                              key=lambda kv: analysis.seed_order(kv[0][0])):
        rs = sorted(rs, key=lambda r: r[x])
        out.append(go.Scatter(x=[r[x] for r in rs], y=[scale * r[y] for r in rs], mode="lines", showlegend=False,
                              legendgroup=str(arm), line=dict(color=color, width=1, dash=dash), opacity=0.45,
                              hovertemplate=f"{arm}, seed {seed}<br>{x}=%{{x}}<br>%{{y:.2f}}<extra></extra>"))
    return out


def curves(
    rows: list[dict], y: str = "test_acc", *, title: str, ytitle: str, subtitle: str = "", x: str = "n_labelled",
    scale: float = 1.0, order: Sequence[str] | None = None, study: Mapping[int, float] | None = None,
    study_name: str = "the study (one run, reported)", chance: float | None = None, chance_text: str = "chance",
    hlines: Sequence[tuple[float, str]] = (), study_mode: str = "lines+markers", log_x: bool = False,
) -> go.Figure:
    """``y`` of each record against ``x``: each seed as a thin line, the mean over seeds as a thick one, per arm.

    ``scale`` multiplies ``y`` (100: fractions to percent). ``study`` ({x: value}, already in the plotted
    units) is drawn as a dotted black line on the same axes when its ``x`` range meets ours, else in a
    panel of its own on the right with the same y axis (e.g. the study's 1,000-8,000 labels beside a CPU
    run at 100-400). ``chance`` and ``hlines`` (value, text) draw dotted reference lines. ``study_mode``
    "markers" draws the study's values as points only (values it reported apart, never joined by a line);
    ``log_x`` a logarithmic label axis (a 50-label start beside a 1,000-label anchor).
    """
    arms = ordered(order or [r["arm"] for r in rows])
    ours = [r[x] for r in rows if r.get(y) is not None]
    apart = bool(study) and bool(ours) and (max(study) < min(ours) or min(study) > max(ours))
    fig = make_subplots(rows=1, cols=2, column_widths=[0.72, 0.28], shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=["alkit", "the study, at its own labels"]) if apart else go.Figure()
    where = dict(row=1, col=1) if apart else {}
    table = analysis.curve(rows, y=y, x=x)
    styles = arm_styles([a for a in arms if any(r.get("arm") == a for r in table)])
    for i, arm in enumerate(arms):
        c, dash = styles.get(arm, (arm_color(arm, i), "solid"))
        for t in _seed_traces(rows, arm, y, x, scale, c, dash=dash):
            fig.add_trace(t, **where)
        rs = sorted((r for r in table if r["arm"] == arm), key=lambda r: r[x])
        if not rs:
            continue
        lo, hi = min(r["n"] for r in rs), max(r["n"] for r in rs)  # fewer seeds at the right while runs are under way
        seeds = f"{hi} seed{'s' if hi != 1 else ''}" if lo == hi else f"{lo}\u2013{hi} seeds"
        fig.add_trace(go.Scatter(
            x=[r[x] for r in rs], y=[scale * r["mean"] for r in rs], mode="lines+markers", legendgroup=str(arm),
            name=arm if hi == 1 else f"{arm} (mean of {seeds})", line=dict(color=c, width=3, dash=dash),
            customdata=[[scale * r["std"], r["n"]] for r in rs],
            hovertemplate=f"{arm}<br>{x}=%{{x}}<br>mean %{{y:.2f}} (sd %{{customdata[0]:.2f}}, %{{customdata[1]}} seeds)<extra></extra>",
        ), **where)
    if study:
        fig.add_trace(go.Scatter(x=list(study), y=list(study.values()), mode=study_mode, name=study_name,
                                 **STUDY_STYLE), **(dict(row=1, col=2) if apart else {}))
    for value, text in ([(chance, chance_text)] if chance is not None else []) + list(hlines):
        fig.add_hline(y=value, line_dash="dot", line_color="#666", annotation_text=text,
                      annotation_position="top left", annotation_font_size=11)
    xtitle = "labelled images" if x == "n_labelled" else x
    dashed = CONTROLS_TEXT if "dash" in {d for _, d in styles.values()} else ""
    several = any(r["n"] > 1 for r in table)  # one seed: no thin lines to explain
    fig.update_layout(title=_title(title, _join(subtitle, SEEDS_TEXT if several else "") + (f"<br>{dashed}" if dashed else "")),
                      yaxis_title=ytitle, legend=BOTTOM_LEGEND, **LAYOUT)
    fig.update_xaxes(title_text=xtitle, tickangle=0, nticks=6)
    if log_x:  # ticks at 1-2-5 steps only (plotly's log axis labels every minor digit)
        xs = ours + list(study or {})
        vals = [v * 10 ** e for e in range(0, 7) for v in (1, 2, 5) if min(xs) <= v * 10 ** e <= max(xs)]
        fig.update_xaxes(type="log", tickvals=vals, ticktext=[f"{v:,}" for v in vals])
    _fit_top(fig, panel_lines=1 if apart else 0)
    return fig


def _fit_top(fig: go.Figure, panel_lines: int = 0) -> None:
    """A top margin that holds the title, every subtitle line and ``panel_lines`` lines of the panels' own titles
    without overprinting (:func:`alkit.export.fit_subtitle` adds a line's height for each line it wraps)."""
    sub = fig.layout.title.subtitle.text or ""
    lines = sub.count("<br>") + 1 if sub else 0
    fig.update_layout(margin=dict(t=TITLE_PAD + 30 + 16 * lines + 14 + (18 * panel_lines + 6 if panel_lines else 0)))


def differences(rows: list[dict], baseline: str = "random", y: str = "test_acc", *, title: str, subtitle: str = "",
                scale: float = 100, unit: str = "points", order: Sequence[str] | None = None, ncols: int = 4) -> go.Figure:
    """Small multiples, one panel per arm: ``y`` minus ``baseline``'s at the same seed and cycle
    (:func:`alkit.analysis.differences`), each seed thin, the mean over seeds thick, zero dotted."""
    diffs = analysis.differences(rows, baseline=baseline, y=y)
    arms = [a for a in ordered(order or [r["arm"] for r in rows]) if a != baseline and any(d["arm"] == a for d in diffs)]
    ncols = max(1, min(ncols, len(arms)))
    nrows = max(1, math.ceil(len(arms) / ncols))
    fig = make_subplots(rows=nrows, cols=ncols, shared_yaxes=True, shared_xaxes=True, subplot_titles=arms,
                        horizontal_spacing=0.03, vertical_spacing=0.12)
    for k, arm in enumerate(arms):
        where = dict(row=k // ncols + 1, col=k % ncols + 1)
        c = arm_color(arm, k)
        for t in _seed_traces(diffs, arm, "diff", "n_labelled", scale, c):
            fig.add_trace(t, **where)
        mean = analysis.curve([d for d in diffs if d["arm"] == arm], y="diff")
        fig.add_trace(go.Scatter(x=[m["n_labelled"] for m in mean], y=[scale * m["mean"] for m in mean], mode="lines+markers",
                                 line=dict(color=c, width=3), name=arm, showlegend=False,
                                 hovertemplate=f"{arm} − {baseline}<br>%{{x}} labels<br>mean %{{y:+.2f}} {unit}<extra></extra>"),
                      **where)
        fig.add_hline(y=0, line_dash="dot", line_color="#666", **where)
    fig.update_layout(title=_title(title, _join(subtitle, f"0 = {baseline}; {SEEDS_TEXT}")), **LAYOUT)
    fig.update_yaxes(title_text=f"{unit}", col=1)
    fig.update_xaxes(title_text="labelled images", row=nrows)
    return fig


def _wrap(text: str, width: int) -> str:
    """``text`` broken into lines of at most about ``width`` characters at spaces (plotly's ``<br>``)."""
    lines, line = [], ""
    for word in str(text).split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "<br>".join(lines + [line])


def _short_batch(name: str) -> str:
    """"initial set" -> "start", "batch 3" -> "3", "batch 3 (2 seeds)" -> "3*": the columns of a class histogram."""
    if name == "initial set":
        return "start"
    m = re.fullmatch(r"batch (\d+)( \(.*\))?", name)
    return (m.group(1) + ("*" if m.group(2) else "")) if m else name


def class_histograms(rows: list[dict], *, arms: Sequence[str], class_names: Sequence[str] = FASHION_CLASSES,
                     title: str = "Classes of the initial set and of each selected batch", subtitle: str = "",
                     start_classes: Sequence[int] = (), study: Mapping[str, Sequence[int]] | None = None,
                     study_name: str = "the study (one run)") -> go.Figure:
    """One heatmap per arm: class (rows, every class named once, on the left) x the initial labelled set and then
    each acquired batch (columns).

    Counts are summed over seeds (the cell text); the colour is the share of its column, so the initial set
    and the much smaller batches read on one scale. ``start_classes`` are starred. Arms whose every batch is
    identical (random controls of one seed draw the same batches whatever the learner) share one panel, named
    so. ``study`` adds a panel of the study's reported counts ({column name: counts per class}).
    """
    arms = ordered(arms)
    panels: list[tuple[list[str], list]] = []
    for arm in arms:
        table = analysis.class_counts_by_cycle(rows, arm, len(class_names))
        if not table:  # an arm with no record: no panel
            continue
        same = next((p for p in panels if p[1] == table), None)
        if same is not None:
            same[0].append(arm)
        else:
            panels.append(([arm], table))
    if not panels and not study:
        return _empty(title, subtitle)
    named = [(" = ".join(a) + (" (identical batches)" if len(a) > 1 else ""), table) for a, table in panels]
    if study:
        named.append((study_name, list(study.items())))
    widths = [len(table) + 1 for _, table in named]
    chars = max(12, int(110 * min(widths) / sum(widths)))  # about what a panel of that share holds at 13 px
    titles = [_wrap(name, chars) for name, _ in named]
    names = [f"{n} ★" if i in set(start_classes) else n for i, n in enumerate(class_names)]
    fig = make_subplots(rows=1, cols=len(named), subplot_titles=titles, shared_yaxes=True, horizontal_spacing=0.02,
                        column_widths=[w / sum(widths) for w in widths])
    for j, (_, table) in enumerate(named, 1):
        columns = [_short_batch(name) for name, _ in table]
        counts = np.array([c for _, c in table], float).reshape(len(table), len(class_names)).T
        share = counts / np.maximum(counts.sum(0, keepdims=True), 1)
        fig.add_trace(go.Heatmap(z=share, x=columns, y=names, zmin=0, zmax=1, coloraxis="coloraxis", text=counts,
                                 texttemplate="%{text:.0f}", textfont=dict(size=11), xgap=1, ygap=1,
                                 customdata=[[name for name, _ in table]] * len(names),
                                 hovertemplate="%{customdata}<br>%{y}: %{text:.0f} images (%{z:.0%} of the column)"
                                               "<extra></extra>"), 1, j)
        fig.update_xaxes(tickangle=0, type="category", row=1, col=j)
    fig.update_yaxes(autorange="reversed", tickfont=dict(size=12))
    fig.update_annotations(font_size=13)
    note = "numbers: images, summed over seeds; colour: share of the column; columns: the initial set, then each batch"
    if any("*" in _short_batch(name) for _, table in named for name, _ in table):
        note += " (* fewer seeds so far)"
    if start_classes:
        note += "; ★ classes of the initial set"
    fig.update_layout(title=_title(title, _join(subtitle, note)),
                      coloraxis=dict(colorscale="Blues", cmin=0, cmax=1,
                                     colorbar=dict(title=dict(text="share", side="right"), thickness=14)), **LAYOUT)
    _fit_top(fig, panel_lines=max(t.count("<br>") + 1 for t in titles))
    fig.update_layout(margin_l=110)
    return fig


def _confusion_heatmap(m: np.ndarray, class_names: Sequence[str], visible: bool = True) -> go.Heatmap:
    share = m / np.maximum(m.sum(1, keepdims=True), 1)
    return go.Heatmap(z=share, x=list(class_names), y=list(class_names), zmin=0, zmax=1, coloraxis="coloraxis",
                      visible=visible, hovertemplate="true %{y}<br>predicted %{x}<br>%{z:.0%} of the row<extra></extra>")


def _accuracy_text(m: np.ndarray) -> str:
    return f"{100 * np.trace(m) / max(m.sum(), 1):.1f} %"


def confusion_matrices(mats: dict[str, np.ndarray], class_names: Sequence[str] = FASHION_CLASSES,
                       title: str = "Test confusion (row-normalised)", subtitle: str = "") -> go.Figure:
    """Row-normalised confusion matrices, three per row; rows are true classes, columns predicted.

    Each panel's title carries the accuracy of its (summed) counts; class names label the
    rows of the first column and the columns of each column's lowest panel.
    """
    names = list(mats)
    ncols = min(3, len(names))
    nrows = int(np.ceil(len(names) / ncols))
    counts = {n: np.asarray(mats[n], float) for n in names}
    titles = [f"{n} · acc {_accuracy_text(m)}" for n, m in counts.items()]
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=titles, horizontal_spacing=0.03, vertical_spacing=0.1)
    for k, name in enumerate(names):
        row, col = k // ncols + 1, k % ncols + 1
        fig.add_trace(_confusion_heatmap(counts[name], class_names), row, col)
        fig.update_xaxes(showticklabels=k + ncols >= len(names), tickangle=-45, row=row, col=col)
        fig.update_yaxes(autorange="reversed", showticklabels=col == 1, row=row, col=col)
    fig.update_layout(title=_title(title, subtitle), coloraxis=dict(colorscale="Viridis", cmin=0, cmax=1,
                                                                    colorbar=dict(title=dict(text="share of the row",
                                                                                             side="right"))), **LAYOUT)
    return fig


def confusion_slider(by_cycle: dict[str, dict[int, np.ndarray]], labels: Mapping[int, str] | None = None,
                     class_names: Sequence[str] = FASHION_CLASSES, title: str = "Test confusion per cycle",
                     subtitle: str = "") -> go.Figure:
    """One panel per arm (three per row) and a slider over the cycles: ``by_cycle[arm][cycle]`` = summed counts.

    Each step shows that cycle's matrices and puts its accuracy in the panel titles; ``labels``
    names the cycles on the slider (e.g. "cycle 3 · 200 labels").
    """
    arms = list(by_cycle)
    cycles = sorted({c for per in by_cycle.values() for c in per})
    if not arms:
        return _empty(title, subtitle)
    ncols = min(3, len(arms))
    nrows = int(np.ceil(len(arms) / ncols))
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=arms, horizontal_spacing=0.03, vertical_spacing=0.1)
    owner = []  # (arm index, cycle) of each trace
    for k, arm in enumerate(arms):
        row, col = k // ncols + 1, k % ncols + 1
        for c in cycles:
            m = by_cycle[arm].get(c)
            if m is None:
                continue
            fig.add_trace(_confusion_heatmap(np.asarray(m, float), class_names, visible=c == cycles[-1]), row, col)
            owner.append((k, c))
        fig.update_xaxes(showticklabels=k + ncols >= len(arms), tickangle=-45, row=row, col=col)
        fig.update_yaxes(autorange="reversed", showticklabels=col == 1, row=row, col=col)
    base_notes = list(fig.layout.annotations)
    steps = []
    for c in cycles:
        notes = []
        for k, arm in enumerate(arms):
            m = by_cycle[arm].get(c)
            notes.append(dict(base_notes[k].to_plotly_json(), text=f"{arm} · acc {_accuracy_text(np.asarray(m, float))}"
                              if m is not None else f"{arm} · (no cycle {c})"))
        steps.append(dict(method="update", label=(labels or {}).get(c, f"cycle {c}"),
                          args=[{"visible": [oc == c for _, oc in owner]}, {"annotations": notes}]))
    fig.update_layout(annotations=steps[-1]["args"][1]["annotations"] if steps else base_notes,
                      sliders=[dict(active=len(steps) - 1, steps=steps, pad=dict(t=40), currentvalue=dict(prefix=""))],
                      title=_title(title, subtitle), **LAYOUT,
                      coloraxis=dict(colorscale="Viridis", cmin=0, cmax=1,
                                     colorbar=dict(title=dict(text="share of the row", side="right"))))
    return fig


def confusion_grid(by_cycle: dict[str, dict[int, np.ndarray]], cycles: Sequence[int], labels: Mapping[int, str] | None = None,
                   class_names: Sequence[str] = FASHION_CLASSES, title: str = "Test confusion at chosen cycles",
                   subtitle: str = "", ncols: int = 4) -> go.Figure:
    """The static counterpart of :func:`confusion_slider`: each arm's matrix at each of ``cycles``, ``ncols``
    panels to a row. A cycle whose matrices are identical for every arm (the first cycle of arms that share a
    learner, a start and the seeds) is one panel, "every arm", not one per arm. Rows are the true class,
    columns the predicted one; the figure's height follows its rows (``layout.height``)."""
    arms = list(by_cycle)
    if not arms or not cycles:
        return _empty(title, subtitle)
    panels = []  # (title, matrix or None)
    for c in cycles:
        mats = [by_cycle[arm].get(c) for arm in arms]
        name = (labels or {}).get(c, f"cycle {c}")
        if len(arms) > 1 and all(m is not None for m in mats) and all(np.array_equal(mats[0], m) for m in mats[1:]):
            panels.append((f"every arm · {name} · acc {_accuracy_text(np.asarray(mats[0], float))}", mats[0]))
            continue
        for arm, m in zip(arms, mats):
            panels.append((f"{arm} · {name} · acc {_accuracy_text(np.asarray(m, float))}" if m is not None
                           else f"{arm} · no cycle {c}", m))
    ncols = min(ncols, len(panels))
    nrows = int(np.ceil(len(panels) / ncols))
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=[_wrap(p, 34) for p, _ in panels],
                        horizontal_spacing=0.035, vertical_spacing=0.3 / nrows)
    for k, (_, m) in enumerate(panels):
        row, col = k // ncols + 1, k % ncols + 1
        if m is not None:
            fig.add_trace(_confusion_heatmap(np.asarray(m, float), class_names), row, col)
        last_row = k + ncols >= len(panels)
        fig.update_xaxes(showticklabels=last_row, tickangle=-45, row=row, col=col,
                         title_text="predicted class" if last_row else None, title_standoff=4)
        fig.update_yaxes(autorange="reversed", showticklabels=col == 1, row=row, col=col,
                         title_text="true class" if col == 1 else None)
    fig.update_annotations(font_size=11)
    fig.update_layout(title=_title(title, subtitle), **LAYOUT, height=200 + 250 * nrows,
                      coloraxis=dict(colorscale="Viridis", cmin=0, cmax=1,
                                     colorbar=dict(title=dict(text="share of the row", side="right"))))
    _fit_top(fig, panel_lines=2)
    return fig


STATUS_NAMES = {0: "unlabelled (pool sample)", 1: "labelled", 2: "just selected"}
UNKNOWN_COLOR, UNKNOWN_NAME = "#bbbbbb", "class unknown"
# selected points are open rings drawn last, so the unlabelled and labelled points under them stay visible
STATUS_STYLE = {0: dict(size=5, opacity=0.5, symbol="circle"), 1: dict(size=6, opacity=0.85, symbol="diamond"),
                2: dict(size=11, opacity=1.0, symbol="circle")}
SELECTED_RING = dict(width=2.2, color="#000000")  # the just-selected points: filled in their class colour, ringed black


def latent_scatter(panels: dict[str, dict], class_names: Sequence[str] = FASHION_CLASSES,
                   title: str = "UMAP of the latent space", subtitle: str = "") -> go.Figure:
    """Scatter per panel of 2-D coordinates: colour = class, marker = split; hover shows class, split, cycle.

    ``panels[name]`` = ``{"xy": (N, 2), "y": (N,), "status": (N,), "cycle": int}``. The legend lists the
    classes (colours) and, in grey, the three marker shapes.
    """
    names = list(panels)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.04)
    for j, name in enumerate(names, 1):
        p = panels[name]
        for status in (0, 1, 2):
            for c in [-1, *range(len(class_names))]:  # -1: an image without a label (own data), grey
                sel = (p["status"] == status) & (p["y"] == c)
                if not sel.any():
                    continue
                style = dict(STATUS_STYLE[status])
                colour, cname = (UNKNOWN_COLOR, UNKNOWN_NAME) if c < 0 else (class_color(c), class_names[c])
                line = SELECTED_RING if status == 2 else dict(width=0)
                fig.add_trace(go.Scattergl(
                    x=p["xy"][sel, 0], y=p["xy"][sel, 1], mode="markers",
                    marker=dict(color=colour, line=line, **style),
                    name=cname, legendgroup=f"c{c}", showlegend=False,
                    hovertemplate=f"{cname}<br>{STATUS_NAMES[status]}<br>cycle {p['cycle']}<extra></extra>",
                ), 1, j)
    unknown = any((p["y"] < 0).any() for p in panels.values())
    for c, cname in [*enumerate(class_names), *([(-1, UNKNOWN_NAME)] if unknown else [])]:  # legend: colours = classes ...
        fig.add_trace(go.Scattergl(x=[None], y=[None], mode="markers", name=cname, legendgroup=f"c{c}",
                                   marker=dict(color=UNKNOWN_COLOR if c < 0 else class_color(c), size=8, symbol="square")), 1, 1)
    for status, text in STATUS_NAMES.items():  # ... and shapes = splits
        fig.add_trace(go.Scattergl(x=[None], y=[None], mode="markers", name=text, legendgroup=f"s{status}",
                                   marker=dict(color="#bbb", line=SELECTED_RING if status == 2 else dict(width=0),
                                               **dict(STATUS_STYLE[status], size=9 if status < 2 else 11, opacity=1))), 1, 1)
    fig.update_layout(title=_title(title, subtitle), legend=dict(itemsizing="constant"), **LAYOUT)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    return fig


def image_grid(images: np.ndarray, ncols: int, title: str, row_labels: Iterable[str] | None = None,
               width: int = 900, subtitle: str = "") -> go.Figure:
    """A mosaic of (N, 28, 28) images in [0, 1], ``ncols`` per row, as one grayscale image.

    The mosaic travels as an 8-bit PNG inside the figure (:func:`gray_png_uri`): its HTML is tens of kB where
    a heatmap of the same pixels, each a decimal number, was 0.9 MB. The figure's height follows the mosaic's
    aspect ratio at ``width`` (set in its layout, which :func:`alkit.export.save` uses), so no empty band is left
    under the images.
    """
    images = np.asarray(images, float)
    n, h, w = images.shape
    nrows = int(np.ceil(n / ncols))
    mosaic = np.full((nrows * (h + 2), ncols * (w + 2)), 0.5)  # grey gutters between images
    for k in range(n):
        r, c = divmod(k, ncols)
        mosaic[r * (h + 2) + 1 : r * (h + 2) + 1 + h, c * (w + 2) + 1 : c * (w + 2) + 1 + w] = images[k]
    fig = go.Figure(go.Image(source=gray_png_uri(mosaic), hoverinfo="skip"))
    labels = list(row_labels or [])
    margin = dict(l=110 if any(labels) else 20, r=20, t=95 if subtitle else 60, b=10)
    plot_w = width - margin["l"] - margin["r"]
    height = int(margin["t"] + margin["b"] + plot_w * mosaic.shape[0] / mosaic.shape[1])
    fig.update_layout(**dict(LAYOUT, margin=margin), title=_title(title, subtitle), width=width, height=height)
    fig.update_xaxes(visible=False, range=[-0.5, mosaic.shape[1] - 0.5], constrain="domain")
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain",
                     tickvals=[r * (h + 2) + h / 2 for r in range(len(labels))], ticktext=labels,
                     showticklabels=bool(labels), showgrid=False, zeroline=False)
    return fig


def gray_png_uri(gray: np.ndarray) -> str:
    """An (H, W) array in [0, 1] as a data URI of an 8-bit grayscale PNG (0 black, 1 white), pixel for pixel."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.round(np.clip(gray, 0, 1) * 255).astype(np.uint8), "L").save(buf, "PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def seed_bars(values: Mapping[str, Mapping], *, title: str, ytitle: str, subtitle: str = "", scale: float = 1.0,
              reference: tuple[float, str] | None = None) -> go.Figure:
    """One bar per arm at the mean over seeds, each seed's own value as a dot on it.

    ``values`` = ``{arm: {seed: value}}`` (:func:`alkit.analysis.per_seed`); ``reference`` = (value, text)
    draws a dotted line (e.g. 1 = like random).
    """
    arms = ordered(values)
    fig = go.Figure()
    for i, arm in enumerate(arms):
        v = np.array(list(values[arm].values()), float) * scale
        c = arm_color(arm, i)
        fig.add_trace(go.Bar(x=[arm], y=[v.mean()], marker_color=_rgba(c, 0.55), marker_line=dict(color=c, width=1.5),
                             showlegend=False, hovertemplate=f"{arm}<br>mean over {len(v)} seeds %{{y:.3g}}<extra></extra>"))
        fig.add_trace(go.Scatter(x=[arm] * len(v), y=v, mode="markers", showlegend=False,
                                 marker=dict(color=c, size=8, line=dict(color="white", width=1)),
                                 text=[f"seed {s}" for s in values[arm]],
                                 hovertemplate=f"{arm}, %{{text}}: %{{y:.3g}}<extra></extra>"))
    if reference:
        fig.add_hline(y=reference[0], line_dash="dot", line_color="#666", annotation_text=reference[1],
                      annotation_position="top right", annotation_font_size=11)
    fig.update_layout(title=_title(title, _join(subtitle, "bars: mean over seeds; dots: one seed each")),
                      yaxis_title=ytitle, **LAYOUT)
    return fig


# --------------------------------------------------------------------------------------------
# issue 29: the low-budget strategies of notebook 05 (typiclust, probcover, badge) and their "why" figure

ARM_COLORS.update({"typiclust": "#a55194", "probcover": "#31a354", "badge": "#843c39"})
ARM_ORDER = ARM_ORDER + ("typiclust", "probcover", "badge")  # after the study's algorithms, as in the parameter files


def coverage_balance(coverage: list[dict], balance: list[dict], *, order: Sequence[str], title: str, subtitle: str = "",
                     num_classes: int | None = None) -> go.Figure:
    """Two panels per label count: the latent coverage of each method's labelled set (%) and its class entropy.

    ``coverage``: rows of :func:`alkit.analysis.lowbudget.coverage_rows` (share of pool points within
    delta of a labelled point, in the latent the batch was chosen in); ``balance``: rows of
    :func:`alkit.analysis.lowbudget.balance_rows`. Each seed thin, the mean over seeds thick; the right
    panel has a dotted line at ln C, a perfectly balanced labelled set (C = ``num_classes``, else the
    balance rows' ``classes``).
    """
    if not coverage and not balance:
        return _empty(title, subtitle)
    arms = [a for a in ordered(order) if any(r["arm"] == a for r in coverage + balance)]
    others = [a for a in ordered(r["arm"] for r in coverage + balance) if a not in arms]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.09,
                        subplot_titles=["latent coverage of the labelled set (%)", "class entropy of the labelled set (nats)"])
    for i, arm in enumerate(arms):
        c = arm_color(arm, i)
        for col, (data, key, scale) in enumerate(((coverage, "coverage", 100.0), (balance, "class_entropy", 1.0)), start=1):
            mine = [r for r in data if r["arm"] == arm]
            for t in _seed_traces(mine, arm, key, "n_labelled", scale, c):
                fig.add_trace(t, row=1, col=col)
            mean = analysis.curve(mine, y=key)
            fig.add_trace(go.Scatter(x=[m["n_labelled"] for m in mean], y=[scale * m["mean"] for m in mean], mode="lines+markers",
                                     line=dict(color=c, width=3), name=arm, legendgroup=str(arm), showlegend=col == 1,
                                     hovertemplate=f"{arm}<br>%{{x}} labels<br>mean %{{y:.3f}}<extra></extra>"), row=1, col=col)
    num_classes = num_classes or next((r["classes"] for r in balance if r.get("classes")), None)
    if num_classes:
        fig.add_hline(y=math.log(num_classes), line_dash="dot", line_color="#666", row=1, col=2,
                      annotation_text=f"balanced: ln {num_classes}", annotation_position="top left",
                      annotation_font_size=11)
        # from 0 (one class) to balanced: a zoomed axis (2.24-2.30 nats) made near-balanced sets look far apart
        fig.update_yaxes(range=[0, 1.08 * math.log(num_classes)], row=1, col=2)
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    note = (f"not drawn, to keep the lines apart: {', '.join(others)} (their numbers are in the text below)"
            if others else "")
    fig.update_layout(title=_title(title, _join(subtitle, SEEDS_TEXT) + (f"<br>{note}" if note else "")),
                      legend=BOTTOM_LEGEND, **LAYOUT)
    fig.update_xaxes(title_text="labelled images")
    _fit_top(fig, panel_lines=1)
    return fig
