"""`make site`: the README, docs/ and executed notebooks as a static HTML site that draws its interactive figures
with no network (headless Chromium, every host unresolvable), and only ever empties a folder it made itself."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from alkit import site
from helpers import CHROMIUM, page_json

ROOT = Path(__file__).resolve().parent.parent

COUNT = """
<script>
window.addEventListener('load', () => setTimeout(() => {
  const out = document.createElement('pre'); out.id = 'alkit-count';
  const divs = [...document.querySelectorAll('.alkit-plotly')];
  out.textContent = JSON.stringify({divs: divs.length,
    drawn: divs.filter(d => d.querySelector('svg.main-svg')).length,
    traces: divs.map(d => d.querySelectorAll('g.trace, g.hm, image').length),
    plotly: typeof window.Plotly});
  document.body.appendChild(out);
}, 500));
</script>
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "site"
    info = site.build(out, root=ROOT, log=lambda line: None)
    return out, info


def test_every_page_is_built_and_every_link_between_pages_resolves(built):
    out, info = built
    pages = [out / p for p in info["pages"]]
    assert out / "index.html" in pages and all(p.is_file() for p in pages)
    assert any(p.parts[-2] == "docs" for p in pages) and any(p.parts[-2] == "cpu" for p in pages)
    for page in pages:
        text = page.read_text()
        assert not re.search(r'<script[^>]+src="(https?:)?//', text), f"{page}: a script from the network"
        for href in re.findall(r'href="([^"#]+\.html)(?:#[^"]*)?"', text):
            if not re.match(r"[a-z]+:", href):
                assert (page.parent / href).resolve().is_file(), f"{page.relative_to(out)}: dead link {href}"
    index = (out / "index.html").read_text()
    assert 'href="docs/cpu_profile.html"' in index and "<table>" in index  # Markdown links and tables rendered
    # a notebook's link to a Markdown file opens that file's page, from the smoke notebook and from an executed copy
    assert 'href="../docs/method.html"' in (out / "notebooks" / "02_vaal_vs_random.html").read_text()
    assert 'href="../../docs/method.html"' in (out / "notebooks" / "cpu" / "02_vaal_vs_random.html").read_text()
    for src in re.findall(r'<img[^>]+src="([^":]+)"', index):
        assert (out / src).is_file(), f"README image {src} not copied"


def test_a_folder_the_site_did_not_make_is_never_emptied(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    with pytest.raises(site.SiteError, match="is not a site alkit built"):
        site.build(mine, root=ROOT)
    assert (mine / "keep.txt").read_text() == "mine"
    assert site.main(["--out", str(mine)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --out ") and (mine / "keep.txt").exists()
    with pytest.raises(site.SiteError, match="the checkout or a folder above it"):
        site.build(ROOT.parent, root=ROOT)


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine")
@pytest.mark.parametrize("page", ["notebooks/03_three_class_start.html", "notebooks/paper/02_vaal_vs_random.html"])
def test_a_notebook_page_draws_its_figures_with_no_network(built, page):
    out, info = built
    n = info["figures"][page]
    assert n >= 1
    probe = out / page.replace(".html", ".probe.html")  # beside the page: its relative paths hold
    probe.write_text((out / page).read_text().replace("</body>", COUNT + "</body>"))
    got = page_json(probe, "alkit-count", (1200, 900), 20000)
    assert got["plotly"] == "object" and got["divs"] == n and got["drawn"] == n, got
    assert all(t > 0 for t in got["traces"]), got  # every figure has something drawn in it


def test_make_site_writes_the_site_and_says_how_long(tmp_path):
    out = subprocess.run([sys.executable, "-m", "alkit.site", "--out", str(tmp_path / "s")], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.match(r"site: \d+ pages, \d+ interactive figures in \d+ notebooks, [\d.]+ s -> ", out.stdout)
    assert (tmp_path / "s" / "index.html").is_file() and (tmp_path / "s" / site.MARKER).is_file()
