"""The labelling grid in a real browser: JupyterLab in headless Chromium, a screenshot, one label entered.

A notebook that builds a tiny :class:`~alkit.oracle.LabelSession` and displays its
:class:`~alkit.label_widget.LabelGrid` is opened in JupyterLab (its own config, data, runtime and IPython
folders under ``tmp_path``; the venv's ``python3`` kernel and lab extensions) and driven through the
DevTools protocol (``websocket-client``): run all cells, wait for the rendered widget (8 image tiles,
not "Loading widget..."), screenshot it (also to ``$ALKIT_SCREENSHOT`` when set), choose class 3 in the
first tile's drop-down as a user would, and see that answer reach the kernel and ``draft.json``; then click
"save" and see ``labels.json`` and the grid's next round. Skipped when Chromium or JupyterLab is missing.
"""
from __future__ import annotations

import base64
import importlib.util
import io
import itertools
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from helpers import CHROMIUM

ROOT = Path(__file__).resolve().parent.parent
MISSING = [m for m in ("jupyterlab", "jupyterlab_widgets", "ipywidgets", "nbformat", "websocket")
           if importlib.util.find_spec(m) is None]
BUDGET = 8  # proposed images per round
WIDTH, HEIGHT = 1400, 1000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (chromium, chromium-browser, google-chrome)"),
    pytest.mark.skipif(bool(MISSING), reason=f"not installed: {', '.join(MISSING)} (pip install -e .[notebooks,test])"),
]

SETUP = f"""\
from helpers import synthetic_images
from alkit.own_data import from_arrays
from alkit.loop import RunConfig
from alkit.oracle import LabelSession
from alkit.label_widget import LabelGrid
x, y = synthetic_images(200, seed=9)
data = from_arrays(x[:120].numpy(), y[:120].numpy(), val_images=x[120:160].numpy(), val_labels=y[120:160].numpy(),
                   test_images=x[160:].numpy(), test_labels=y[160:].numpy(), class_names=[f"c{{i}}" for i in range(10)])
cfg = RunConfig(initial={{"kind": "stratified", "n": 20}}, budget={BUDGET}, cycles=2, device="cpu", learner="classifier",
                learner_params={{"iterations": 6, "batch_size": 16, "val_every": 3}}, strategy="entropy", seed=3)
grid = LabelGrid(LabelSession(cfg, "session", data=data))"""


class Gone(Exception):
    """A process the test waits on has exited: waiting longer is pointless."""


def wait_for(what: str, check, timeout: float, every: float = 0.25, diagnose=lambda: ""):
    """``check()`` until it returns something truthy (returned); fails naming ``what`` after ``timeout`` s."""
    end, last = time.monotonic() + timeout, None
    while time.monotonic() < end:
        try:
            last = check()
        except Gone as exc:
            pytest.fail(f"{exc} while waiting for {what}{diagnose()}")
        except Exception as exc:  # noqa: BLE001 - not ready yet (file half-written, page reloading, ...)
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r}){diagnose()}")


def read_json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def stop(proc: subprocess.Popen | None, grace: float = 10) -> None:
    """End ``proc`` and its process group (it was started in a session of its own): TERM, then KILL."""
    if proc is None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue


def pids_mentioning(text: str) -> list[int]:
    """Our own processes whose command line mentions ``text`` (a path under this test's tmp_path)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if text in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    out.append(int(d.name))
            except OSError:
                pass
    return out


class DevTools:
    """A minimal Chrome DevTools protocol client over one page target's websocket."""

    def __init__(self, ws_url: str):
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=120, suppress_origin=True)
        self.ids = itertools.count(1)

    def send(self, method: str, **params):
        n = next(self.ids)
        self.ws.send(json.dumps({"id": n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expression: str):
        """Value of a JavaScript expression in the page (promises awaited); raises on a thrown exception."""
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(r["exceptionDetails"].get("exception", {}).get("description", r["exceptionDetails"]))
        return r["result"].get("value")

    def click(self, x: float, y: float) -> None:
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001
            pass


@pytest.fixture
def lab(tmp_path):
    """JupyterLab serving ``tmp_path`` on localhost, isolated from the user's Jupyter folders: (url, token, log)."""
    home = tmp_path / "jupyter"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "IPYTHONDIR": str(home / "ipython"),
           "JUPYTER_PLATFORM_DIRS": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
           # the kernel imports this checkout's alkit and tests/helpers.py (the notebook shows no paths)
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    env.pop("JUPYTER_PORT", None)
    settings = home / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    token, log = secrets.token_hex(16), (tmp_path / "jupyter.log").open("w")
    proc = url = None
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--port=0", f"--IdentityProvider.token={token}",
             "--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={tmp_path}", "--LabApp.expose_app_in_browser=True",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
             "--ServerApp.jpserver_extensions={'jupyter_lsp': False}", "--ServerApp.terminals_enabled=False", "--allow-root"],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

        def server():
            if proc.poll() is not None:
                raise Gone(f"jupyter lab exited with {proc.returncode}")
            info = [json.loads(p.read_text()) for p in (home / "runtime").glob("jpserver-*.json")]
            url = f"http://127.0.0.1:{info[0]['port']}"
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=10) as r:
                return url if r.status == 200 else None

        tail = lambda: "\n--- jupyter log ---\n" + (tmp_path / "jupyter.log").read_text()[-4000:]  # noqa: E731
        url = wait_for("JupyterLab to answer", server, timeout=180, diagnose=tail)
        yield url, token, tail
    finally:
        if url is not None and proc.poll() is None:  # a clean shutdown also shuts the kernels down
            try:
                req = urllib.request.Request(f"{url}/api/shutdown?token={token}", method="POST")
                urllib.request.urlopen(req, timeout=10).close()
                proc.wait(30)
            except Exception:  # noqa: BLE001
                pass
        stop(proc)
        for pid in pids_mentioning(str(home / "runtime")):  # a kernel left behind (it runs in its own session)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium with a fresh profile under ``tmp_path``; a DevTools client on its blank page."""
    profile = tmp_path / "chromium"
    proc = client = None
    log = (tmp_path / "chromium.log").open("w")
    try:
        proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
             "--remote-allow-origins=*", f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
             "--disable-background-networking", "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)

        def page():
            if proc.poll() is not None:
                raise Gone(f"chromium exited with {proc.returncode}")
            port = int((profile / "DevToolsActivePort").read_text().split()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                return next((t["webSocketDebuggerUrl"] for t in json.load(r) if t["type"] == "page"), None)

        client = DevTools(wait_for("Chromium's DevTools page target", page, timeout=120))
        client.send("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False)
        client.send("Emulation.setFocusEmulationEnabled", enabled=True)
        yield client
    finally:
        if client is not None:
            try:
                client.send("Browser.close")
            except Exception:  # noqa: BLE001
                pass
            client.close()
        stop(proc, grace=5)
        for pid in pids_mentioning(str(profile)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()


def ink_in(png: bytes, box: dict) -> tuple[float, int]:
    """(share of non-white pixels, number of distinct colours) inside ``box`` (CSS px = device px here)."""
    try:
        from PIL import Image
    except ImportError:  # Pillow is not a test dependency: the pure decoder of the HTML figure test
        from test_html_offline import read_png

        width, height, rows = read_png(png)
        bpp = len(rows[0]) // width
        pixels = [bytes(row[x * bpp:x * bpp + 3]) for row in rows for x in range(width)]
    else:
        img = Image.open(io.BytesIO(png)).convert("RGB")
        (width, height), data = img.size, img.tobytes()
        pixels = [data[i:i + 3] for i in range(0, len(data), 3)]
    x0, y0 = max(0, int(box["x"])), max(0, int(box["y"]))
    x1, y1 = min(width, int(box["x"] + box["width"])), min(height, int(box["y"] + box["height"]))
    inside = [pixels[y * width + x] for y in range(y0, y1) for x in range(x0, x1)]
    assert inside, f"box {box} outside the {width}x{height} screenshot"
    return sum(p != b"\xff\xff\xff" for p in inside) / len(inside), len(set(inside))


def test_the_grid_renders_in_jupyterlab_and_a_label_chosen_in_the_page_reaches_the_disk(tmp_path, lab, browser):
    import nbformat

    url, token, jupyter_log = lab
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SETUP), nbformat.v4.new_code_cell("grid.widget")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, tmp_path / "grid.ipynb")
    session = tmp_path / "session"
    page = browser

    def diagnose() -> str:
        try:
            text = page.js("document.body ? document.body.innerText.slice(-3000) : ''")
        except Exception as exc:  # noqa: BLE001
            text = f"(page unreadable: {exc})"
        return f"\n--- page text ---\n{text}{jupyter_log()}"

    page.send("Page.navigate", url=f"{url}/lab/tree/grid.ipynb?token={token}")
    # the notebook panel (not shell.currentWidget: that follows focus, which a headless page may not have)
    panel = "[...window.jupyterapp.shell.widgets('main')].find(w => w.context && w.context.path === 'grid.ipynb')"
    ready = f"""(() => {{ const w = window.jupyterapp && {panel};
        const c = w && w.sessionContext, k = c && c.session && c.session.kernel;
        return {{path: w ? w.context.path : null, cells: w && w.content.widgets ? w.content.widgets.length : 0,
                 connection: k ? k.connectionStatus : null, kernel: k ? k.status : null}}; }})()"""

    def opened():
        s = page.js(ready)
        assert (s["path"], s["cells"], s["connection"], s["kernel"]) == ("grid.ipynb", 2, "connected", "idle"), s
        return s

    wait_for("JupyterLab with the notebook open and its kernel idle", opened, timeout=240, diagnose=diagnose)
    page.js(f"""(() => {{ const app = window.jupyterapp, w = {panel}; app.shell.collapseLeft(); app.shell.activateById(w.id);
        app.commands.execute('notebook:run-all-cells', {{semanticWidget: w.id}}); return true; }})()""")

    tiles = ".alkit-label-grid .widget-image"
    state = f"""(() => {{ const g = document.querySelector('.alkit-label-grid');
        return {{grid: !!g, images: g ? g.querySelectorAll('img').length : 0,
                 selects: g ? g.querySelectorAll('select').length : 0,
                 loading: document.body.innerText.includes('Loading widget'),
                 broken: document.body.innerText.includes('Error displaying widget'),
                 errors: [...document.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
                          .map(e => e.innerText.slice(-500))}}; }})()"""

    def rendered():
        s = page.js(state)
        if any("Traceback" in e for e in s["errors"]):
            raise Gone("a cell failed: " + "\n".join(s["errors"]))
        if s["broken"]:
            raise Gone("JupyterLab cannot display the widget (widget manager / jupyterlab_widgets missing?)")
        return s if s["images"] == BUDGET and s["selects"] == BUDGET and not s["loading"] else None

    wait_for(f"the rendered grid with {BUDGET} image tiles", rendered, timeout=300, diagnose=diagnose)
    assert page.js(f"document.querySelectorAll('{tiles}').length") == BUDGET  # widgets, not a text repr

    # the screenshot: the grid on screen, drawn (tiles and controls), saved for the README
    box = page.js("""(() => { const g = document.querySelector('.alkit-label-grid'); g.scrollIntoView({block: 'end'});
        const r = g.getBoundingClientRect(); return {x: r.x, y: r.y, width: r.width, height: r.height}; })()""")
    first = page.js("""(() => { const r = document.querySelector('.alkit-label-grid img').getBoundingClientRect();
        return {x: r.x, y: r.y, width: r.width, height: r.height}; })()""")
    assert box["width"] > 500 and box["height"] > 150, box
    assert first["width"] >= 28 and first["height"] >= 28, first
    time.sleep(0.5)  # let the scroll paint
    png = base64.b64decode(page.send("Page.captureScreenshot", format="png")["data"])
    (tmp_path / "grid_screenshot.png").write_bytes(png)
    if os.environ.get("ALKIT_SCREENSHOT"):
        out = Path(os.environ["ALKIT_SCREENSHOT"])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(png)
    ink, _ = ink_in(png, box)
    tile_ink, colours = ink_in(png, first)
    assert ink > 0.05, f"the grid's box is blank in the screenshot ({ink:.3f} non-white)"
    assert tile_ink > 0.5 and colours > 10, (tile_ink, colours)  # a dark image with bright bands and noise

    # one label through the page: class 3 for the first tile, as a user picks it from the drop-down
    first_index = read_json(session / "proposal.json")["indices"][0]
    picked = page.js("""(() => { const s = document.querySelector('.alkit-label-0 select');
        const text = o => o.textContent.replace(/\\s+/g, ' ').trim();  // ipywidgets writes spaces as &nbsp;
        const i = [...s.options].findIndex(o => text(o) === '3 c3');
        if (i < 0) return [...s.options].map(text);
        s.focus(); s.selectedIndex = i;
        s.dispatchEvent(new Event('input', {bubbles: true})); s.dispatchEvent(new Event('change', {bubbles: true}));
        return text(s.options[i]); })()""")
    assert picked == "3 c3", picked
    draft = wait_for("draft.json with the label chosen in the page",
                     lambda: (d := read_json(session / "draft.json")) and d["answers"] == {str(first_index): 3} and d,
                     timeout=60, diagnose=diagnose)
    assert draft["round"] == 0

    # save: a real mouse click on the button; the kernel saves the round, trains and shows round 1
    button = page.js("""(() => { const b = document.querySelector('button.alkit-submit, .alkit-submit button')
        || document.querySelector('.alkit-submit'); b.scrollIntoView({block: 'center'});
        const r = b.getBoundingClientRect(); return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()""")
    page.click(button["x"], button["y"])
    labels = wait_for("labels.json with the saved answer",
                      lambda: read_json(session / "labels.json"), timeout=60, diagnose=diagnose)
    assert [(a["index"], a["label"], a["round"]) for a in labels["answers"]] == [(first_index, 3, 0)]
    wait_for("the grid's next round", lambda: "Round 1" in page.js(
        "document.querySelector('.alkit-label-head').innerText"), timeout=180, diagnose=diagnose)
    assert page.js("document.querySelectorAll('.alkit-label-grid img').length") == BUDGET
