"""Plotly figures drawn from result records (never from models), and their export.

Every figure is saved three ways by :func:`save`: PNG and SVG (static, via
kaleido and a headless Chromium; the server is started once per process) and
an interactive HTML file. :func:`show` puts both the interactive figure and
the PNG into a notebook cell, so the notebook reads well in Jupyter and on
GitHub alike.
"""
from __future__ import annotations

import atexit
import base64
import hashlib
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .results import atomic_write_bytes

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
# one colour per method in every figure; arms not named here take PALETTE colours by position
ARM_COLORS = {"random": "#1f77b4", "vaal": "#d62728", "m2_vaal": "#2ca02c", "tavaal": "#9467bd", "m2_disc": "#ff7f0e",
              "least_confidence": "#8c564b", "entropy": "#e377c2", "margin": "#bcbd22", "bald": "#17becf",
              "coreset": "#7f7f7f", "alg1": "#393b79", "alg2": "#e6550d", "kernel_norm_approx": "#637939", "network_norm": "#8ca252",
              "m2": "#2ca02c", "m2_random": "#98df8a", "m2_vaal_detached": "#006d2c"}
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
LAYOUT = dict(template="plotly_white", font=dict(size=13), margin=dict(l=60, r=20, t=60, b=50))

_server_started = False


def _start_kaleido() -> None:
    global _server_started
    if not _server_started:
        import kaleido

        kaleido.start_sync_server(silence_warnings=True)
        atexit.register(kaleido.stop_sync_server, silence_warnings=True)
        _server_started = True


def save(fig: go.Figure, stem: str | Path, width: int = 900, height: int = 500, static: bool = True) -> dict:
    """Write ``stem``.png, .svg and .html; returns ``{"png": bytes, "paths": [...]}``.

    ``static=False`` writes only the HTML (when no Chromium is available).
    The HTML loads plotly.js from its CDN to keep committed files small. The
    element ids plotly would draw at random (HTML div, SVG clip paths) are
    derived from the file name, and a file whose bytes would not change is not
    rewritten: redrawing the same results leaves a git checkout clean.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    uid = hashlib.sha1(stem.name.encode()).hexdigest()[:6]
    for i, trace in enumerate(fig.data):  # plotly.js would name each trace's SVG group at random
        if trace.uid is None:
            trace.uid = f"{uid}-{i}"
    paths = [stem.with_suffix(".html")]
    _write_if_changed(paths[0], fig.to_html(include_plotlyjs="cdn", full_html=True, div_id=f"alkit-{uid}").encode())
    png = None
    if static:
        import warnings

        import plotly.io as pio

        _start_kaleido()
        with warnings.catch_warnings():  # plotly warns that kaleido's server ignores per-call options
            warnings.filterwarnings("ignore", message="The kopts argument is ignored")
            png = pio.to_image(fig, format="png", width=width, height=height, scale=1.5)
            svg = pio.to_image(fig, format="svg", width=width, height=height)
        _write_if_changed(stem.with_suffix(".png"), png)
        _write_if_changed(stem.with_suffix(".svg"), _stable_svg_ids(svg, uid))
        paths += [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    return {"png": png, "paths": [str(p) for p in paths]}


def _stable_svg_ids(svg: bytes, uid: str) -> bytes:
    """Replace the random id plotly.js gives a graph (``defs-3fa2c1``, ``clip3fa2c1xy``, ...) by ``uid``."""
    m = re.search(rb'id="defs-([0-9a-f]+)"', svg)
    if not m:
        return svg
    return re.sub(rb"(clip|defs-|legend|#g|id=\"g)" + m.group(1), rb"\g<1>" + uid.encode(), svg)


def _write_if_changed(path: Path, data: bytes) -> None:
    if not (path.exists() and path.read_bytes() == data):
        atomic_write_bytes(path, data)


class Shown:
    """A notebook display object carrying the interactive figure and its PNG."""

    def __init__(self, fig: go.Figure, png: bytes | None):
        self.fig, self.png = fig, png

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = {"application/vnd.plotly.v1+json": self.fig.to_plotly_json(), "text/plain": "<plotly figure>"}
        if self.png:
            bundle["image/png"] = base64.b64encode(self.png).decode()
        return bundle


def show(fig: go.Figure, stem: str | Path, **kw) -> Shown:
    """Save ``fig`` under ``stem`` (see :func:`save`) and return an object that displays it."""
    return Shown(fig, save(fig, stem, **kw)["png"])


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def arm_color(arm: str, i: int) -> str:
    """The fixed colour of a known method, else the ``i``-th palette colour."""
    return ARM_COLORS.get(str(arm), _color(i))


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def curves(
    table: list[dict], *, title: str, ytitle: str, by: str = "arm", x: str = "n_labelled", scale: float = 1.0,
    study: dict | None = None, study_name: str = "study (reported)", order: Sequence[str] | None = None,
) -> go.Figure:
    """Mean line and +-1 std band per arm from :func:`alkit.analysis.curve`; optional study markers."""
    fig = go.Figure()
    arms = list(order) if order else list(dict.fromkeys(r[by] for r in table))
    for i, arm in enumerate(arms):
        rs = sorted((r for r in table if r[by] == arm), key=lambda r: r[x])
        if not rs:
            continue
        xs = [r[x] for r in rs]
        m = np.array([r["mean"] for r in rs]) * scale
        s = np.array([r["std"] for r in rs]) * scale
        c = arm_color(arm, i)
        fig.add_trace(go.Scatter(x=xs + xs[::-1], y=list(m + s) + list((m - s)[::-1]), fill="toself", mode="lines",
                                 fillcolor=_rgba(c, 0.15), line=dict(width=0), hoverinfo="skip",
                                 showlegend=False, legendgroup=str(arm)))
        fig.add_trace(go.Scatter(
            x=xs, y=m, mode="lines+markers", name=f"{arm} (n={rs[0]['n']} seeds)", line=dict(color=c),
            legendgroup=str(arm), customdata=np.stack([s, [r["n"] for r in rs]], axis=1),
            hovertemplate=f"{arm}<br>{x}=%{{x}}<br>mean=%{{y:.3f}} ± %{{customdata[0]:.3f}}<br>seeds=%{{customdata[1]}}<extra></extra>",
        ))
    if study:
        fig.add_trace(go.Scatter(x=list(study), y=list(study.values()), mode="markers+lines", name=study_name,
                                 line=dict(color="black", dash="dot"), marker=dict(symbol="x", size=9)))
    fig.update_layout(title=title, xaxis_title="labelled images" if x == "n_labelled" else x, yaxis_title=ytitle, **LAYOUT)
    return fig


def class_histograms(rows: list[dict], *, arms: Sequence[str], class_names: Sequence[str] = FASHION_CLASSES,
                     title: str = "Classes of each selected batch", key: str = "selected_class_counts") -> go.Figure:
    """One heatmap per arm: acquisition cycle (rows) x class (columns), counts summed over seeds."""
    fig = make_subplots(rows=1, cols=len(arms), subplot_titles=list(arms), shared_yaxes=True, horizontal_spacing=0.03)
    zmax = 1
    mats = []
    for arm in arms:
        rs = [r for r in rows if r["arm"] == arm and r.get(key)]
        cycles = sorted({r["cycle"] for r in rs})
        mat = np.zeros((len(cycles), len(class_names)))
        for r in rs:
            mat[cycles.index(r["cycle"])] += r[key]
        mats.append((cycles, mat))
        zmax = max(zmax, mat.max() if mat.size else 1)
    for j, (cycles, mat) in enumerate(mats, 1):
        fig.add_trace(go.Heatmap(z=mat, x=list(class_names), y=[f"cycle {c}" for c in cycles], zmin=0, zmax=zmax,
                                 coloraxis="coloraxis",
                                 hovertemplate="%{y}<br>%{x}: %{z:.0f} selected<extra></extra>"), 1, j)
    fig.update_layout(title=title, coloraxis=dict(colorscale="Blues", colorbar=dict(title="picked")), **LAYOUT)
    fig.update_xaxes(tickangle=45)
    fig.update_yaxes(autorange="reversed")
    return fig


def confusion_matrices(mats: dict[str, np.ndarray], class_names: Sequence[str] = FASHION_CLASSES,
                       title: str = "Test confusion (row-normalised)") -> go.Figure:
    """Row-normalised confusion matrices, three per row; rows are true classes, columns predicted.

    Each panel's title carries the accuracy of its (summed) counts; class names label the
    rows of the first column and the columns of each column's lowest panel.
    """
    names = list(mats)
    ncols = min(3, len(names))
    nrows = int(np.ceil(len(names) / ncols))
    counts = {n: np.asarray(mats[n], float) for n in names}
    titles = [f"{n} · acc {np.trace(m) / max(m.sum(), 1):.1%}" for n, m in counts.items()]
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=titles, horizontal_spacing=0.03, vertical_spacing=0.1)
    for k, name in enumerate(names):
        m = counts[name] / np.maximum(counts[name].sum(1, keepdims=True), 1)
        row, col = k // ncols + 1, k % ncols + 1
        fig.add_trace(go.Heatmap(z=m, x=list(class_names), y=list(class_names), zmin=0, zmax=1, coloraxis="coloraxis",
                                 hovertemplate="true %{y}<br>predicted %{x}<br>%{z:.2f}<extra></extra>"), row, col)
        fig.update_xaxes(showticklabels=k + ncols >= len(names), tickangle=-45, row=row, col=col)
        fig.update_yaxes(autorange="reversed", showticklabels=col == 1, row=row, col=col)
    fig.update_layout(title=title, coloraxis=dict(colorscale="Viridis", cmin=0, cmax=1, colorbar=dict(title="share")), **LAYOUT)
    return fig


STATUS_NAMES = {0: "unlabelled", 1: "labelled", 2: "just selected"}
STATUS_STYLE = {0: dict(size=5, opacity=0.45, symbol="circle"), 1: dict(size=6, opacity=0.8, symbol="diamond"),
                2: dict(size=7, opacity=0.9, symbol="x")}


def latent_scatter(panels: dict[str, dict], class_names: Sequence[str] = FASHION_CLASSES,
                   title: str = "UMAP of the latent space") -> go.Figure:
    """Scatter per panel of 2-D coordinates: colour = class, marker = split; hover shows class, split, cycle.

    ``panels[name]`` = ``{"xy": (N, 2), "y": (N,), "status": (N,), "cycle": int}``.
    """
    names = list(panels)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.04)
    for j, name in enumerate(names, 1):
        p = panels[name]
        for status in (0, 1, 2):
            for c in range(len(class_names)):
                sel = (p["status"] == status) & (p["y"] == c)
                if not sel.any():
                    continue
                fig.add_trace(go.Scattergl(
                    x=p["xy"][sel, 0], y=p["xy"][sel, 1], mode="markers",
                    marker=dict(color=_color(c), line=dict(width=0), **STATUS_STYLE[status]),
                    name=f"{class_names[c]}", legendgroup=f"c{c}", showlegend=(j == 1 and status == 0),
                    hovertemplate=f"{class_names[c]}<br>{STATUS_NAMES[status]}<br>cycle {p['cycle']}<extra></extra>",
                ), 1, j)
    fig.update_layout(title=title + " — ● unlabelled, ◆ labelled, ✕ just selected", legend=dict(itemsizing="constant"),
                      **LAYOUT)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    return fig


def image_grid(images: np.ndarray, ncols: int, title: str, row_labels: Iterable[str] | None = None) -> go.Figure:
    """A mosaic of (N, 28, 28) images in [0, 1], ``ncols`` per row, as one grayscale heatmap."""
    images = np.asarray(images, float)
    n, h, w = images.shape
    nrows = int(np.ceil(n / ncols))
    mosaic = np.full((nrows * (h + 2), ncols * (w + 2)), 0.5)  # grey gutters between images
    for k in range(n):
        r, c = divmod(k, ncols)
        mosaic[r * (h + 2) + 1 : r * (h + 2) + 1 + h, c * (w + 2) + 1 : c * (w + 2) + 1 + w] = images[k]
    fig = go.Figure(go.Heatmap(z=mosaic, colorscale="gray", showscale=False,
                               hoverinfo="skip", zmin=0, zmax=1))
    fig.update_layout(title=title, **LAYOUT)
    fig.update_xaxes(visible=False)
    labels = list(row_labels or [])
    fig.update_yaxes(autorange="reversed", scaleanchor="x",
                     tickvals=[r * (h + 2) + h / 2 for r in range(len(labels))], ticktext=labels,
                     showticklabels=bool(labels), showgrid=False, zeroline=False)
    return fig


def bars(rows: list[dict], *, x: str, y: str, err: str | None = None, title: str, ytitle: str,
         color: str | None = None) -> go.Figure:
    """Grouped bars: one bar per row (``x`` category), optional error bars and colour groups.

    Without ``color`` groups each bar takes its category's method colour (:data:`ARM_COLORS`).
    """
    fig = go.Figure()
    groups = list(dict.fromkeys(r[color] for r in rows)) if color else [None]
    for i, g in enumerate(groups):
        rs = [r for r in rows if color is None or r[color] == g]
        colors = arm_color(g, i) if color else [arm_color(r[x], j) for j, r in enumerate(rs)]
        fig.add_trace(go.Bar(x=[r[x] for r in rs], y=[r[y] for r in rs], name=str(g) if g is not None else y,
                             marker_color=colors, showlegend=bool(color),
                             error_y=dict(type="data", array=[r[err] for r in rs]) if err else None))
    fig.update_layout(title=title, yaxis_title=ytitle, barmode="group", **LAYOUT)
    return fig
