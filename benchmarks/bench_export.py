"""Figure export: kaleido's own page handling (a reload after every image) against alkit's (a reload before an
SVG only, :func:`alkit.export._keep_tabs_loaded`), in one run on this machine.

    .venv/bin/python benchmarks/bench_export.py              # the committed smoke figures of notebooks 01-05
    .venv/bin/python benchmarks/bench_export.py --repeat 2   # each way twice, alternating

Each way draws every figure of ``figures/smoke`` that has an interactive HTML beside its PNG (the figure JSON is
read back from that HTML) as ``export.show`` and a notebook do: PNG at scale 1.5, SVG, then the notebook's
scale-1 PNG, in a Chromium of its own (a fresh process per way and repeat, so neither warms the other). It
prints the drawing's wall seconds, the machine's busy CPU-seconds while that process ran (/proc/stat: Chromium's
processes included, and its start and the imports; run it on an otherwise idle machine), the ratios
kaleido / alkit, and whether the two ways gave the same bytes for every image (they must).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: one way in a fresh process: draws the figures, prints "drawing-wall-seconds hash-of-all-images figures"
_DRAW = r"""
import hashlib, json, re, sys, time
from pathlib import Path
import kaleido
import plotly.io as pio
from alkit import export

if sys.argv[1] == "kaleido":
    kaleido.Kaleido._alkit_keeps_tabs = True  # export._keep_tabs_loaded then leaves kaleido as it is
figs = []
for html in sys.argv[2:]:
    text = Path(html).read_text()
    spec = re.search(r"Plotly\.newPlot\(\s*\"[^\"]+\",\s*(\[.*?\]),\s*(\{.*?\}),\s*\{\"responsive\"", text, re.S)
    figs.append(pio.from_json(json.dumps({"data": json.loads(spec.group(1)), "layout": json.loads(spec.group(2))})))
h, t = hashlib.sha1(), time.perf_counter()
for i, fig in enumerate(figs):
    for j, trace in enumerate(fig.data):  # as export.save: stable ids, so equal figures are equal bytes
        trace.uid = f"f{i}-{j}"
    w, hgt = export._size(fig, None, None)
    for fmt, scale in (("png", 1.5), ("svg", 1.0), ("png", 1.0)):
        img = export.to_image(fig, fmt, w, hgt, scale=scale)
        h.update(export._stable_svg_ids(img, f"f{i}") if fmt == "svg" else img)
print(time.perf_counter() - t, h.hexdigest(), len(figs))
"""


def busy_seconds() -> float | None:
    """The machine's busy CPU-seconds so far (Linux /proc/stat; None elsewhere): Chromium's processes included."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    import os

    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--figures", default="figures/smoke", help="folder of committed figures (HTML beside PNG)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each way, alternating")
    args = ap.parse_args()
    htmls = sorted(str(p) for p in (ROOT / args.figures).rglob("*.html") if p.with_suffix(".png").exists())
    if not htmls:
        sys.exit(f"error: --figures: {args.figures!r} has no figure (an .html beside a .png)")
    got = {"kaleido": [], "alkit": []}
    for _ in range(args.repeat):
        for how in got:
            before = busy_seconds()
            out = subprocess.run([sys.executable, "-c", _DRAW, how, *htmls], cwd=ROOT, capture_output=True, text=True)
            after = busy_seconds()
            if out.returncode:
                sys.exit(out.stderr[-3000:])
            wall, digest, _ = out.stdout.split()
            got[how].append((float(wall), after - before if before is not None else float("nan"), digest))
    n_images = 3 * len(htmls)
    print(f"{len(htmls)} figures of {args.figures}, {n_images} images per way (PNG 1.5x, SVG, PNG 1x), "
          f"{args.repeat} run(s) each")
    for how, runs in got.items():
        wall = sum(r[0] for r in runs) / len(runs)
        cpu = sum(r[1] for r in runs) / len(runs)
        print(f"  {how:8s} drawing {wall:6.1f} s wall ({wall / n_images:.3f} s per image)   machine cpu {cpu:6.1f} s")
    mean = {how: (sum(r[0] for r in runs) / len(runs), sum(r[1] for r in runs) / len(runs)) for how, runs in got.items()}
    print(f"  kaleido / alkit: wall {mean['kaleido'][0] / mean['alkit'][0]:.2f}x, cpu "
          f"{mean['kaleido'][1] / mean['alkit'][1]:.2f}x")
    same = len({r[2] for runs in got.values() for r in runs}) == 1
    print(f"  same bytes for every image: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
