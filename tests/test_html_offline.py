"""The interactive HTML figures draw offline: headless Chromium, every host unresolvable, pixels checked."""
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from alkit.export import plotlyjs_path
from helpers import CHROMIUM

ROOT = Path(__file__).resolve().parent.parent
FIGURE = ROOT / "figures" / "smoke" / "02_vaal_vs_random" / "accuracy.html"


def read_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit, non-interlaced PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def inked(png: bytes) -> float:
    """Share of pixels in the middle of the page (the plot area) that are not white."""
    width, height, rows = read_png(png)
    bpp = len(rows[0]) // width
    n = ink = 0
    for row in rows[height // 5: 4 * height // 5]:
        for x in range(width // 10, 9 * width // 10):
            px = row[x * bpp: x * bpp + 3]
            n += 1
            ink += px != b"\xff\xff\xff"
    return ink / n


def screenshot(html: Path, out: Path) -> bytes:
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND",
         "--window-size=900,500", "--virtual-time-budget=5000", f"--screenshot={out}", html.as_uri()],
        capture_output=True, text=True, timeout=120, cwd=out.parent)
    assert out.exists(), proc.stderr[-2000:]
    return out.read_bytes()


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine")
def test_a_committed_html_figure_draws_offline_and_a_missing_plotlyjs_would_show(tmp_path):
    page = tmp_path / "figures" / "smoke" / "02_vaal_vs_random" / "accuracy.html"
    page.parent.mkdir(parents=True)
    shutil.copy(FIGURE, page)
    blank = inked(screenshot(page, tmp_path / "without.png"))  # no plotly.js beside it, no network: nothing drawn
    js = plotlyjs_path(page)
    assert js.parent == tmp_path / "figures" and js.stat().st_size > 1_000_000
    assert js.name in FIGURE.read_text() and "cdn.plot.ly" not in FIGURE.read_text().split("<script src=")[1][:200]
    drawn = inked(screenshot(page, tmp_path / "with.png"))
    assert blank < 0.01, blank
    assert drawn > 0.05 and drawn > 10 * max(blank, 0.001), drawn  # title, grid, axes and curves (measured ~0.10)
