"""Figure export: PNG and SVG through kaleido (a headless Chromium, started once per process), and an
interactive HTML page that loads one shared local plotly.js, so it draws offline.

:func:`show` saves a figure and returns an object a notebook displays: the interactive figure with a
PNG fallback, or, for figures too large to keep in a committed notebook, a small JPEG and a link to
the HTML. Redrawing the same results rewrites no file (stable element ids, unchanged bytes kept).
"""
from __future__ import annotations

import atexit
import base64
import hashlib
import io
import os
import re
import warnings
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import plotly.offline

from .config import NOTEBOOK_DIR_ENV
from .notebook import find_root
from .results import atomic_write_bytes

_server_started = False


def _start_kaleido() -> None:
    global _server_started
    if not _server_started:
        import kaleido  # heavy (a headless Chromium): imported when the first static image is asked for

        _keep_tabs_loaded(kaleido)
        kaleido.start_sync_server(silence_warnings=True)
        atexit.register(kaleido.stop_sync_server, silence_warnings=True)
        _server_started = True


def _keep_tabs_loaded(kaleido) -> None:
    """Reload kaleido's page before an SVG only, not after every image.

    kaleido 1.x reloads its page after each image (``Kaleido._return_kaleido_tab``), so every PNG, SVG and
    JPEG parsed plotly.js (4.8 MB) again: a third of the drawing time (notebook 01 redrawn from its results:
    29.7 CPU-seconds with every reload, 19.1 with none, 2 cores). PNGs and JPEGs are the same bytes in a page
    that has drawn other figures (kaleido's script hands each figure to ``Plotly.toImage``, which draws it in
    an element of its own and purges it); SVGs are not (plotly writes some attributes in another order), so
    an SVG is drawn in a freshly loaded page: one reload per figure (``save``: PNG, SVG, then the notebook's
    PNG or JPEG) instead of three. ``tests/test_plots.py::test_images_do_not_depend_on_the_page_having_drawn_others``
    checks the bytes; the committed figures redraw unchanged. Only the kaleido versions whose tab handling this
    was read from (:data:`KALEIDO_TABS_READ`) are changed; any other reloads as it does."""
    from importlib.metadata import version

    if version("kaleido") not in KALEIDO_TABS_READ or getattr(kaleido.Kaleido, "_alkit_keeps_tabs", False):
        return
    from kaleido._kaleido_tab._tab import _KaleidoTab

    async def put_back(self, tab):  # kaleido's, less the reload
        await self.tabs_ready.put(tab)

    draw = _KaleidoTab._calc_fig

    async def calc_fig(self, spec, **kw):
        if spec.get("format") == "svg" and getattr(self, "_alkit_drawn", False):
            await self.reload()
        self._alkit_drawn = True
        return await draw(self, spec, **kw)

    kaleido.Kaleido._return_kaleido_tab = put_back
    _KaleidoTab._calc_fig = calc_fig
    kaleido.Kaleido._alkit_keeps_tabs = True


#: kaleido versions whose ``Kaleido._return_kaleido_tab`` (reload, then back in the queue) and
#: ``_KaleidoTab._calc_fig(spec, ...)`` were read
KALEIDO_TABS_READ = ("1.5.0",)


def plotlyjs_path(html: Path) -> Path:
    """The one shared plotly.js of ``html``'s figures: ``plotly-<version>.min.js`` in the nearest folder
    named ``figures`` above it (else beside it), written there from the installed plotly if missing."""
    html = Path(html).resolve()
    folder = next((a for a in html.parents if a.name == "figures"), html.parent)
    path = folder / f"plotly-{plotly.offline.get_plotlyjs_version()}.min.js"
    if not path.exists():
        atomic_write_bytes(path, plotly.offline.get_plotlyjs().encode())
    return path


def figure_html(fig: go.Figure, html: Path, div_id: str) -> str:
    """``fig`` as a full HTML page that loads the shared local plotly.js (relative path: works offline and
    from a copy of the folder), and the CDN's copy only where that file is missing."""
    local = plotlyjs_path(html)
    rel = Path(os.path.relpath(local, Path(html).resolve().parent)).as_posix()
    cdn = f"https://cdn.plot.ly/plotly-{plotly.offline.get_plotlyjs_version()}.min.js"
    loader = (f'<script src="{rel}"></script>\n<script>window.Plotly || document.write('
              f"'<script src=\"{cdn}\" charset=\"utf-8\"><\\/script>')</script>")
    page = fig.to_html(include_plotlyjs=False, full_html=True, div_id=div_id)
    return page.replace("<body>", "<body>\n" + loader, 1)


#: the saved PNG's pixels per CSS pixel: its size divided by this is the figure's static size (the SVG's)
PNG_SCALE = 1.5


def save(fig: go.Figure, stem: str | Path, width: int | None = None, height: int | None = None, static: bool = True,
         still: go.Figure | None = None) -> dict:
    """Write ``stem``.png, .svg and .html; returns ``{"png": bytes, "paths": [...]}``.

    ``static=False`` writes only the HTML (when no Chromium is available). ``still``: another figure
    for the PNG and SVG (e.g. a grid of chosen cycles where the HTML has a slider over all of them).
    The HTML loads one shared local plotly.js (:func:`plotlyjs_path`, not 4.8 MB in
    every file), so it draws offline. The element ids plotly would draw at random (HTML div, SVG clip paths) are
    derived from the file name, and a file whose bytes would not change is not
    rewritten: redrawing the same results leaves a git checkout clean.
    """
    width, height = _size(still or fig, width, height)
    for f in {id(fig): fig, id(still or fig): still or fig}.values():
        fit_subtitle(f, width)
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    uid = hashlib.sha1(stem.name.encode()).hexdigest()[:6]
    for f in (fig, still or fig):
        for i, trace in enumerate(f.data):  # plotly.js would name each trace's SVG group at random
            if trace.uid is None:
                trace.uid = f"{uid}-{i}"
    paths = [stem.with_suffix(".html")]
    _write_if_changed(paths[0], figure_html(fig, paths[0], f"alkit-{uid}").encode())
    png = None
    if static:
        png = to_image(still or fig, "png", width, height, scale=PNG_SCALE)
        svg = to_image(still or fig, "svg", width, height)
        _write_if_changed(stem.with_suffix(".png"), png)
        _write_if_changed(stem.with_suffix(".svg"), _stable_svg_ids(svg, uid))
        paths += [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    return {"png": png, "paths": [str(p) for p in paths]}


#: pixels per character of an 11 px subtitle (Arial's mean advance is about 0.55 em; a margin for wide glyphs)
SUBTITLE_CHAR_PX = 6.2
SUBTITLE_LINE_PX = 16


def fit_subtitle(fig: go.Figure, width: int) -> None:
    """Break ``fig``'s subtitle lines at " · " (else at spaces) so that each fits ``width`` pixels, and give the
    top margin one line's height for each line added: a subtitle is never cut at the figure's edge."""
    sub = fig.layout.title.subtitle.text if fig.layout.title and fig.layout.title.subtitle else None
    if not sub:
        return
    chars = max(20, int((width - 30) / SUBTITLE_CHAR_PX))
    out = []
    for line in sub.split("<br>"):
        while len(line) > chars:
            cut = line.rfind(" · ", 0, chars)
            cut = cut if cut > chars // 3 else line.rfind(" ", 0, chars)
            if cut <= 0:
                break
            out.append(line[:cut])
            line = line[cut:].lstrip(" ·")
        out.append(line)
    added = len(out) - (sub.count("<br>") + 1)
    if added:
        top = fig.layout.margin.t if fig.layout.margin and fig.layout.margin.t is not None else 100
        fig.update_layout(title_subtitle_text="<br>".join(out), margin_t=top + SUBTITLE_LINE_PX * added)


def _size(fig: go.Figure, width: int | None, height: int | None) -> tuple[int, int]:
    """The export size: as asked, else the figure's own layout size, else 900 x 500."""
    return width or fig.layout.width or 900, height or fig.layout.height or 500


def to_image(fig: go.Figure, fmt: str, width: int, height: int, scale: float = 1.0) -> bytes:
    """``fig`` as PNG / SVG / JPEG bytes through kaleido's server (started once per process)."""
    _start_kaleido()
    with warnings.catch_warnings():  # plotly warns that kaleido's server ignores per-call options
        warnings.filterwarnings("ignore", message="The kopts argument is ignored")
        image = pio.to_image(fig, format=fmt, width=width, height=height, scale=scale)
    return compact_png(image) if fmt == "png" else image


def compact_png(png: bytes) -> bytes:
    """The same pixels in about a quarter fewer bytes: no alpha channel where every pixel is opaque (kaleido
    writes RGBA with alpha 255 throughout) and an optimised zlib stream. Lossless: it decodes to the same RGB."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        if im.mode == "RGBA" and im.getchannel("A").getextrema() == (255, 255):
            im = im.convert("RGB")
        out = io.BytesIO()
        im.save(out, "PNG", optimize=True)
    return out.getvalue() if out.tell() < len(png) else png


def _stable_svg_ids(svg: bytes, uid: str) -> bytes:
    """Replace the random id plotly.js gives a graph (``defs-3fa2c1``, ``clip3fa2c1xy``, ...) by ``uid``."""
    m = re.search(rb'id="defs-([0-9a-f]+)"', svg)
    if not m:
        return svg
    return re.sub(rb"(clip|defs-|legend|#g|id=\"g)" + m.group(1), rb"\g<1>" + uid.encode(), svg)


def _write_if_changed(path: Path, data: bytes) -> None:
    if not (path.exists() and path.read_bytes() == data):
        atomic_write_bytes(path, data)


#: a figure whose notebook output (plotly JSON + PNG at scale 1) is larger than this is shown as a JPEG
#: of at most JPEG_PIXELS pixels and a link to its HTML (UMAP scatters, image grids), so that each
#: committed notebook stays under 1 MB
INLINE_LIMIT = 150_000
JPEG_PIXELS = 150_000


class Shown:
    """A notebook display object: the interactive figure and its PNG, or (large figures) a JPEG and a link."""

    def __init__(self, fig: go.Figure, png: bytes | None, html: Path | None = None, size: tuple[int, int] = (900, 500),
                 still: go.Figure | None = None):
        self.fig, self.png, self.html, self.size, self.still = fig, png, html, size, still or fig

    def _png1(self) -> bytes:
        """The PNG for the notebook: scale 1 (the saved file is PNG_SCALE)."""
        if not hasattr(self, "_small_png"):
            self._small_png = to_image(self.still, "png", *self.size, scale=1)
        return self._small_png

    def is_large(self) -> bool:
        if self.html is None or not self.png:
            return False
        if self.fig.data and all(t.type == "image" for t in self.fig.data):
            return True  # an image grid: its picture twice (plotly's and the PNG) buys no hover; the JPEG and a link
        # the saved PNG is at PNG_SCALE: the notebook's scale-1 copy has about 1 / PNG_SCALE**2 of its bytes (an
        # estimate that spares a render of every large figure, which is shown as a JPEG instead)
        png1 = len(self._small_png) if hasattr(self, "_small_png") else int(len(self.png) / PNG_SCALE**2)
        return len(plotly_json_bytes(self.fig.to_plotly_json())) + 4 * png1 // 3 > INLINE_LIMIT

    def _ipython_display_(self):
        from IPython.display import Markdown, display

        if not self.is_large():
            display(self._repr_mimebundle_(), raw=True)
            return
        scale = min(1.0, (JPEG_PIXELS / (self.size[0] * self.size[1])) ** 0.5)
        jpeg = to_image(self.still, "jpeg", *self.size, scale=scale)
        display({"image/jpeg": base64.b64encode(jpeg).decode(), "text/plain": "<figure>"}, raw=True)
        rel = notebook_link(self.html)
        display(Markdown(f"Interactive: [{rel.removeprefix('../')}]({rel}); full-resolution PNG beside it "
                         "(a redraw writes an SVG there too)."))

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = {"application/vnd.plotly.v1+json": self.fig.to_plotly_json(), "text/plain": "<plotly figure>"}
        if self.png:
            bundle["image/png"] = base64.b64encode(self._png1() if self.html is not None else self.png).decode()
        return bundle


def plotly_json_bytes(spec: dict) -> bytes:
    return pio.json.to_json_plotly(spec).encode()


def notebook_link(html: Path) -> str:
    """``html`` relative to the folder of the notebook being executed (``$ALKIT_NOTEBOOK_DIR``, which
    ``python -m alkit.batch`` sets: ``notebooks/<profile>/`` for an executed copy), else to ``notebooks/`` (the
    committed smoke notebooks); as given where neither can be found."""
    try:
        start = os.environ.get(NOTEBOOK_DIR_ENV) or find_root() / "notebooks"
        return Path(os.path.relpath(Path(html).resolve(), start)).as_posix()
    except (FileNotFoundError, ValueError):
        return Path(html).as_posix()


def has_data(fig: go.Figure) -> bool:
    """True when some trace of ``fig`` has a value to draw (an ``x``, ``y`` or ``z`` that is not None, or an image
    trace's ``source``)."""
    for t in fig.data:
        if getattr(t, "source", None):
            return True
        for key in ("z", "y", "x"):
            values = getattr(t, key, None)
            if values is not None and any(v is not None for v in np.asarray(values, dtype=object).ravel()):
                return True
    return False


def show(fig: go.Figure, stem: str | Path, **kw):
    """Save ``fig`` under ``stem`` (see :func:`save`) and return an object that displays it.

    A figure with nothing to draw (no record has its measure yet: partial results) is neither saved
    nor drawn as empty axes; a one-line note says so instead.
    """
    if not has_data(fig):
        from IPython.display import Markdown

        title = fig.layout.title.text or Path(stem).name
        return Markdown(f"*{title}: nothing to draw yet (no record on disk has this measure).*")
    size = _size(kw.get("still") or fig, kw.get("width"), kw.get("height"))
    return Shown(fig, save(fig, stem, **kw)["png"], Path(stem).with_suffix(".html"), size, kw.get("still"))


