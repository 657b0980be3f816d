"""Every committed `smoke` figure, rendered in headless Chromium at its static size: no title, subtitle, panel
title, annotation, axis title or legend overprints another, and no text is cut off at the figure's edge.

The boxes are the browser's own layout boxes (``getBoundingClientRect`` of plotly's SVG text and legend),
measured on the figure's HTML page (offline: the shared local plotly.js), resized to the figure's static size:
its committed PNG's pixels over ``export.PNG_SCALE`` (the SVG's size; the SVG itself is not committed). A figure
is opened and looked at before it is committed; this test keeps the defects found that way (overprinted panel titles, legends over the plot) from coming back.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from alkit.export import PNG_SCALE, plotlyjs_path
from helpers import CHROMIUM, page_json

ROOT = Path(__file__).resolve().parent.parent
FIGURES = sorted((ROOT / "figures" / "smoke").rglob("*.html"))
#: overlaps smaller than this (CSS px, each way) are glyph padding, not text over text
SLACK = 2.0

pytestmark = [pytest.mark.browser, pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine")]

# plotly's SVG classes of every text a reader must be able to read, by kind
MEASURE = r"""
<script>
window.addEventListener('load', () => setTimeout(async () => {
  const out = document.createElement('pre'); out.id = 'alkit-boxes';
  try {
    const gd = document.querySelector('.plotly-graph-div');
    await Plotly.relayout(gd, {width: %(width)d, height: %(height)d, autosize: false});
    const o = gd.getBoundingClientRect();
    const pick = (sel, kind) => [...gd.querySelectorAll(sel)].map(e => {
      const r = e.getBoundingClientRect();
      const turned = /rotate\((?!0[,)])/.test((e.getAttribute('transform') || '') + (e.parentNode.getAttribute('transform') || ''));
      return {kind, text: (e.textContent || '').slice(0, 70), x0: r.left - o.left, y0: r.top - o.top,
              x1: r.right - o.left, y1: r.bottom - o.top, turned};
    }).filter(b => b.x1 - b.x0 > 0.5 && b.y1 - b.y0 > 0.5);
    const items = [].concat(
      pick('text.gtitle', 'title'), pick('text.gtitle-subtitle', 'subtitle'),
      pick('g.annotation-text-g text', 'annotation'), pick('g.legend rect.bg', 'legend'),
      pick('g[class^="g-x"][class$="title"] text, g[class^="g-y"][class$="title"] text', 'axis title'),
      pick('g.cbtitle text, g.colorbar text.cbtitle', 'colorbar title'),
      pick('g.xtick text, g.ytick text', 'tick label'), pick('g.cbaxis text', 'tick label'));
    out.textContent = JSON.stringify({width: gd._fullLayout.width, height: gd._fullLayout.height, items});
  } catch (e) { out.textContent = JSON.stringify({error: String(e)}); }
  document.body.appendChild(out);
}, 300));
</script>
"""


def static_size(png: Path) -> tuple[int, int]:
    """The width and height (CSS px) the PNG and SVG of a figure were drawn at."""
    with Image.open(png) as im:
        return tuple(round(n / PNG_SCALE) for n in im.size)


def boxes(html: Path, tmp: Path) -> dict:
    """The text boxes of ``html``'s figure at its static size, read from the page Chromium renders."""
    width, height = static_size(html.with_suffix(".png"))
    page = tmp / html.relative_to(ROOT)
    page.parent.mkdir(parents=True, exist_ok=True)
    plotlyjs_path(page)  # the shared plotly.js in tmp/figures/ (no network)
    page.write_text(html.read_text().replace("</body>", MEASURE % {"width": width, "height": height} + "</body>"))
    got = page_json(page, "alkit-boxes", (width + 40, height + 40), 15000)
    assert "error" not in got, f"{html.name}: {got.get('error')}"
    return got


def overlap(a: dict, b: dict) -> bool:
    return min(a["x1"], b["x1"]) - max(a["x0"], b["x0"]) > SLACK and min(a["y1"], b["y1"]) - max(a["y0"], b["y0"]) > SLACK


def defects(found: dict) -> list[str]:
    """Text cut off at the figure's edge, and pairs of texts that overprint each other."""
    w, h, items = found["width"], found["height"], found["items"]
    out = [f"{b['kind']} {b['text']!r} cut off at the edge ({b['x0']:.0f}..{b['x1']:.0f} x {b['y0']:.0f}..{b['y1']:.0f} "
           f"of {w} x {h})" for b in items
           if b["x0"] < -SLACK or b["y0"] < -SLACK or b["x1"] > w + SLACK or b["y1"] > h + SLACK]
    texts = items
    for i, a in enumerate(texts):
        for b in texts[i + 1:]:
            if a["kind"] == b["kind"] == "tick label" and a.get("turned") and b.get("turned"):
                continue  # the boxes of slanted labels overlap where their glyphs do not
            if overlap(a, b):
                out.append(f"{a['kind']} {a['text']!r} overprints {b['kind']} {b['text']!r}")
    return out


def test_the_static_size_is_the_svg_size(tmp_path):
    """A PNG's pixels over PNG_SCALE give back the width and height its SVG states, odd sizes included."""
    import plotly.graph_objects as go

    from alkit import export
    fig = go.Figure(go.Scatter(x=[0, 1], y=[1, 0]), layout={"title": "t"})
    for size in ((901, 477), (640, 360)):
        export.save(fig, tmp_path / f"f{size[0]}", *size)
        svg = (tmp_path / f"f{size[0]}.svg").read_text()[:2000]
        assert f'width="{size[0]}"' in svg and f'height="{size[1]}"' in svg
        assert static_size(tmp_path / f"f{size[0]}.png") == size


def test_the_checks_catch_overprinted_and_cut_off_text():
    title = {"kind": "title", "text": "t", "x0": 10, "x1": 200, "y0": 10, "y1": 30}
    panel = {"kind": "annotation", "text": "p", "x0": 150, "x1": 300, "y0": 20, "y1": 40}
    apart = {"kind": "annotation", "text": "q", "x0": 310, "x1": 400, "y0": 20, "y1": 40}
    tick = {"kind": "tick label", "text": "1", "x0": 150, "x1": 160, "y0": 20, "y1": 30}
    cut = {"kind": "legend", "text": "", "x0": 380, "x1": 520, "y0": 100, "y1": 200}
    found = defects({"width": 500, "height": 300, "items": [title, panel, apart, tick, cut]})
    assert found == ["legend '' cut off at the edge (380..520 x 100..200 of 500 x 300)",
                     "title 't' overprints annotation 'p'", "title 't' overprints tick label '1'",
                     "annotation 'p' overprints tick label '1'"]


@pytest.mark.slow
@pytest.mark.parametrize("html", FIGURES, ids=[str(p.relative_to(ROOT / "figures" / "smoke")) for p in FIGURES])
def test_no_smoke_figure_overprints_or_cuts_its_text(html, tmp_path):
    found = boxes(html, tmp_path)
    assert any(b["kind"] == "title" for b in found["items"]), f"{html.name}: no title measured"
    assert not defects(found), "\n".join(defects(found))
