"""A static HTML site of the companion: ``python -m alkit.site --out site`` (``make site``).

The README (``index.html``), every ``docs/`` page and every executed notebook (``notebooks/*.ipynb``: the `smoke`
profile; ``notebooks/<profile>/*.ipynb``: `cpu`, `paper`), with a navigation bar. Markdown is rendered by
``mistune`` and notebooks by ``nbconvert``'s ``basic`` template (no CDN script: nothing is fetched when a page
opens). A notebook's interactive figures (plotly outputs) are drawn in the page by one local copy of plotly.js
(``plotly.min.js`` at the site's root); images the pages link (the README's figures) are copied beside them.
Building needs no network and no Node runtime: only packages the notebooks already need.
"""
from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import sys
import time
from pathlib import Path

from .notebook import find_root

PROFILES_ORDER = ("cpu", "paper", "smoke")
MARKER = ".alkit-site"


class SiteError(ValueError):
    """A site that cannot be built where it was asked (one ``error:`` line from the command)."""
CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; color: #1b1f24; }
nav { background: #f3f4f6; padding: .6em 1.2em; border-bottom: 1px solid #ddd; font-size: 14px; line-height: 1.8; }
nav a { margin-right: .9em; color: #0b57d0; text-decoration: none; }
nav b { margin-right: .4em; }
main { max-width: 1100px; margin: 1.5em auto; padding: 0 1.2em 4em; line-height: 1.5; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #d0d7de; padding: .3em .6em; }
pre, code { font-family: SFMono-Regular, Consolas, monospace; font-size: 13px; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; }
img { max-width: 100%; }
.jp-InputArea, .input_area { background: #f6f8fa; }
.jp-OutputArea-output pre { background: none; }
.alkit-plotly { width: 100%; }
"""
PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · alkit</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{css}</style>{head}</head>
<body><nav>{nav}</nav><main>
{body}
</main></body></html>
"""


def markdown_html(text: str) -> str:
    """Markdown (GitHub's flavour as the README uses it: tables, fenced code, strikethrough) as HTML."""
    import mistune

    return mistune.create_markdown(escape=False, plugins=["table", "strikethrough", "url"])(text)


def _link_pages(body: str, here: Path, page: Path, site_pages: dict[Path, Path]) -> str:
    """Links to the site's Markdown sources become links to their pages (``README.md`` is ``index.html``); ``here``:
    the source's folder, ``page``: this page below the site, ``site_pages``: source -> page."""
    def repl(m):
        target = m.group(1)
        path, _, anchor = target.partition("#")
        if re.match(r"[a-z]+:", target) or not path.endswith(".md"):
            return m.group(0)
        dest = site_pages.get((here / path).resolve())
        if dest is None:
            return m.group(0)
        link = Path(_relpath(dest, page.parent)).as_posix()
        return f'href="{link}{"#" + anchor if anchor else ""}"'
    return re.sub(r'href="([^"]+)"', repl, body)


def _relpath(target: Path, start: Path) -> str:
    import os

    return os.path.relpath(target, start)


def _copy_images(body: str, here: Path, site: Path, root: Path) -> None:
    """Copy every local image a page shows (``<img src>``) to the same place below ``site``."""
    for src in re.findall(r'<img[^>]+src="([^"]+)"', body):
        if re.match(r"[a-z]+:", src):
            continue
        path = (here / src).resolve()
        try:
            rel = path.relative_to(root)
        except ValueError:
            continue
        if path.is_file():
            (site / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, site / rel)


def plotly_outputs_to_html(nb) -> int:
    """Give each plotly output of ``nb`` an HTML form drawn by the site's plotly.js (``window.Plotly``); returns
    how many. nbconvert prefers ``text/html`` to the output's PNG, which stays in the notebook file only."""
    n = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            spec = out.get("data", {}).get("application/vnd.plotly.v1+json")
            if spec is None:
                continue
            n += 1
            div = f"alkit-plot-{n}"
            payload = json.dumps({"data": spec.get("data", []), "layout": spec.get("layout", {})}).replace("</", "<\\/")
            height = (spec.get("layout") or {}).get("height") or 500
            out["data"] = {"text/html": f'<div id="{div}" class="alkit-plotly" style="height:{int(height)}px"></div>'
                                        f'<script>(function(){{var s={payload};'
                                        f'Plotly.newPlot("{div}", s.data, s.layout, {{responsive: true}});}})();</script>',
                           "text/plain": "<plotly figure>"}
    return n


def notebook_html(path: Path) -> tuple[str, int]:
    """(the body of ``path``'s page, its number of interactive figures), from nbconvert's ``basic`` template."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(path, as_version=4)
    n = plotly_outputs_to_html(nb)
    exporter = HTMLExporter(template_name="basic")
    body, _ = exporter.from_notebook_node(nb)
    return body, n


def pages(root: Path) -> list[tuple[str, Path, Path]]:
    """(title, source, page relative to the site) of every page, README first."""
    out = [("README", root / "README.md", Path("index.html"))]
    out += [(p.stem, p, Path("docs") / f"{p.stem}.html") for p in sorted((root / "docs").glob("*.md"))]
    out += [(p.stem, p, Path("ARCHITECTURE.html")) for p in [root / "ARCHITECTURE.md"] if p.exists()]
    for profile in PROFILES_ORDER:  # each page where its notebook is, so the notebook's own links hold
        folder = root / "notebooks" if profile == "smoke" else root / "notebooks" / profile
        for nb in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
            out.append((f"{profile}: {nb.stem}", nb, nb.relative_to(root).with_suffix(".html")))
    return out


def _nav(all_pages: list[tuple[str, Path, Path]], here: Path) -> str:
    start = here.parent
    groups: dict[str, list[str]] = {}
    for title, _, page in all_pages:
        group = "notebooks (" + title.split(":")[0] + ")" if ":" in title else "docs" if page.parts[0] == "docs" else "home"
        name = title.split(": ")[-1]
        groups.setdefault(group, []).append(f'<a href="{Path(_relpath(page, start)).as_posix()}">{html.escape(name)}</a>')
    return "<br>".join(f"<b>{html.escape(g)}</b> " + " ".join(links) for g, links in groups.items())


def build(out: Path, root: Path | None = None, log=print) -> dict:
    """Write the site into ``out`` (emptied first); returns what it wrote: pages, figures and seconds."""
    import plotly.offline

    t = time.perf_counter()
    root = Path(root or find_root()).resolve()
    out = Path(out).resolve()
    # the folder is emptied first: only one this function made (its marker inside) or a new one, never the checkout
    if out == root or out in root.parents:
        raise SiteError(f"--out {out}: the checkout or a folder above it; allowed: a folder of its own")
    if out.exists() and not (out / MARKER).is_file():
        raise SiteError(f"--out {out}: exists and is not a site alkit built (no {MARKER} in it); allowed: a new "
                        "folder, or one an earlier `make site` wrote")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("written by python -m alkit.site; emptied by the next build\n")
    (out / "plotly.min.js").write_text(plotly.offline.get_plotlyjs())
    # the figures' own interactive pages (a notebook links its large figures there), with their shared plotly.js
    for page in sorted((root / "figures").rglob("*.html")):
        dest = out / page.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(page, dest)
    shutil.copy2(out / "plotly.min.js", out / "figures" / f"plotly-{plotly.offline.get_plotlyjs_version()}.min.js")
    all_pages = pages(root)
    site_pages = {src.resolve(): page for _, src, page in all_pages}  # source -> its page, for _link_pages
    figures = {}
    for title, src, page in all_pages:
        dest = out / page
        dest.parent.mkdir(parents=True, exist_ok=True)
        js = Path(_relpath(out / "plotly.min.js", dest.parent)).as_posix()
        if src.suffix == ".md":
            body = markdown_html(src.read_text())
            body = _link_pages(body, src.parent, page, site_pages)
            # an image's path is relative to its Markdown file, whose page sits at the same depth below the site
            _copy_images(body, src.parent, out, root)
            head = ""
        else:
            body, n = notebook_html(src)
            body = _link_pages(body, src.parent, page, site_pages)
            figures[str(page)] = n
            head = f'<script src="{js}"></script>'
        dest.write_text(PAGE.format(title=html.escape(title), css=CSS, head=head, nav=_nav(all_pages, page), body=body))
    seconds = time.perf_counter() - t
    log(f"site: {len(all_pages)} pages, {sum(figures.values())} interactive figures in {len(figures)} notebooks, "
        f"{seconds:.1f} s -> {out}")
    return {"pages": [str(p) for _, _, p in all_pages], "figures": figures, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alkit.site", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="site", help="the site's folder (emptied first; default: site)")
    args = ap.parse_args(argv)
    try:
        build(Path(args.out))
    except SiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
