"""Run every notebook of a profile through papermill, with a per-notebook timeout and a runtime summary.

``python -m alkit.batch --profile smoke`` executes ``notebooks/NN_*.ipynb`` with
``params/smoke/NN_*.yaml`` *in place* (the committed notebooks carry the smoke
outputs); any other profile writes executed copies to ``notebooks/<profile>/``.
Each notebook runs in its own papermill process, so a timeout or crash in one
does not stop the others; finished experiments inside it are kept on disk.
``--draw-only`` sets ``$ALKIT_DRAW_ONLY``: the notebooks train nothing and draw the
records on disk, partial ones included (a GPU profile's results on a laptop); oracle
sessions (notebook 06), which train as they label, are skipped.

An executed notebook keeps no volatile metadata (:func:`strip_volatile`: papermill's and nbclient's timestamps
and durations, the paths it ran from), so a rerun that changes no output changes no file. A copy written to
another folder has its Markdown cells' relative links rebased there (:func:`rebase_links`), so that
``[docs/method.md](../docs/method.md)`` in ``notebooks/02_*.ipynb`` still opens that file from
``notebooks/cpu/02_*.ipynb``; the figures the code cells link are placed by ``$ALKIT_NOTEBOOK_DIR``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import yaml

from .config import DRAW_ONLY_ENV, NOTEBOOK_DIR_ENV
from .results import atomic_write_bytes

#: papermill's notebook-level and cell-level keys that change at every run (the rest, parameters and status, stays)
VOLATILE_PAPERMILL = ("start_time", "end_time", "duration", "input_path", "output_path")

ROOT = Path(__file__).resolve().parent.parent


def notebooks_for(profile: str, root: Path = ROOT, only: list[str] | None = None) -> list[tuple[Path, Path]]:
    """(notebook, params file) pairs of a profile, in notebook order; missing params are an error."""
    pairs = []
    for nb in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        if only and not any(nb.stem.startswith(o) for o in only):
            continue
        params = root / "params" / profile / f"{nb.stem}.yaml"
        if not params.exists():
            raise FileNotFoundError(f"no parameters for {nb.name} in profile {profile!r}: expected {params}")
        pairs.append((nb, params))
    if not pairs:
        raise FileNotFoundError(f"no notebooks found under {root / 'notebooks'}" + (f" matching {only}" if only else ""))
    return pairs


def is_oracle_session(params: Path) -> bool:
    """True when a notebook's parameters name an ``oracle`` (notebook 06): its session trains as it labels."""
    return bool((yaml.safe_load(params.read_text()) or {}).get("oracle"))


def run_notebook(nb: Path, params: Path, out: Path, profile: str, timeout: float, root: Path = ROOT,
                 draw_only: bool = False) -> dict:
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "papermill", str(nb), str(out), "-f", str(params), "-p", "profile", profile,
           "--cwd", str(root), "--no-progress-bar", "--log-level", "WARNING"]
    env = dict(os.environ, ALKIT_QUIET="1", PYTHONUNBUFFERED="1")
    env[NOTEBOOK_DIR_ENV] = str(out.resolve().parent)  # notebooks/<profile>/ for an executed copy: links start there
    if draw_only:
        env[DRAW_ONLY_ENV] = "1"
    started = time.time()
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
        status = "ok" if proc.returncode == 0 else "failed"
        tail = (proc.stdout + proc.stderr)[-3000:] if proc.returncode else ""
    except subprocess.TimeoutExpired:
        status, tail = "timeout", f"killed after {timeout:.0f} s"
    seconds = round(time.perf_counter() - t, 1)
    if out.exists():
        rebase_links(out, nb.parent)
        strip_volatile(out)
    return {"notebook": nb.name, "status": status, "seconds": seconds,
            "runs_trained": _runs_written_since(root / "results" / profile / nb.stem, started), "log_tail": tail}


#: a Markdown link's or an HTML attribute's target in a Markdown cell: ](target) or href="target" / src="target"
_LINK = re.compile(r'(\]\()([^)\s]+)(\))|((?:href|src)=")([^"]+)(")')


def rebase_links(path: Path, source_dir: Path) -> bool:
    """Rewrite the relative link targets of notebook ``path``'s Markdown cells, written for a notebook in
    ``source_dir``, so that they reach the same files from ``path``'s folder (links with a scheme, absolute paths
    and in-page anchors stay). Rewrites the file, atomically, only if that changes it; True if rewritten."""
    here, there = Path(source_dir).resolve(), path.resolve().parent
    if here == there:
        return False

    def repl(m: re.Match) -> str:
        pre, target, post = (m.group(1), m.group(2), m.group(3)) if m.group(1) else (m.group(4), m.group(5), m.group(6))
        if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:|[/#]", target):
            return m.group(0)
        file, hash_, anchor = target.partition("#")
        moved = Path(os.path.relpath(here / file, there)).as_posix()
        return f"{pre}{moved}{hash_}{anchor}{post}"

    def edit(nb) -> None:
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = _LINK.sub(repl, cell.source)

    return _edit_notebook(path, edit)


def strip_volatile(path: Path) -> bool:
    """Remove the timestamps, durations and paths papermill and nbclient store in notebook ``path`` (notebook
    and cell metadata; outputs untouched) and give the injected-parameters cell a fixed id; rewrite it,
    atomically, only if that changes it. True if rewritten."""
    def edit(nb) -> None:
        for cell in nb.cells:
            if "injected-parameters" in cell.metadata.get("tags", []):
                cell.id = "injected-parameters"  # papermill gives the cell it injects a new random id every run
        for meta in [nb.metadata] + [cell.metadata for cell in nb.cells]:
            meta.pop("execution", None)  # nbclient's iopub / shell timestamps
            for key in VOLATILE_PAPERMILL:
                meta.get("papermill", {}).pop(key, None)

    return _edit_notebook(path, edit)


def _edit_notebook(path: Path, edit) -> bool:
    """Apply ``edit`` (a function that changes a notebook node in place) to notebook ``path`` and rewrite the
    file, atomically and in nbformat's layout (as papermill writes it), only if that changes its bytes."""
    before = path.read_bytes()
    nb = nbformat.reads(before.decode("utf-8"), as_version=nbformat.NO_CONVERT)
    edit(nb)
    after = nbformat.writes(nb).encode("utf-8")
    if after == before:
        return False
    atomic_write_bytes(path, after)
    return True


def _runs_written_since(folder: Path, started: float) -> int:
    """How many runs below ``folder`` wrote records after ``started`` (0: the notebook only redrew)."""
    return sum(1 for p in folder.rglob("records.jsonl") if p.stat().st_mtime >= started) if folder.exists() else 0


def _merge_runtimes(report: Path, new: list[dict]) -> list[dict]:
    """Write ``new`` rows into ``report``, keeping the rows of notebooks not rerun (``--only``).

    A notebook that only redrew (``runs_trained == 0``) keeps an earlier row that trained, so the
    report goes on saying what a from-scratch run costs.
    """
    old = {r["notebook"]: r for r in (json.loads(report.read_text()) if report.exists() else [])}
    for r in new:
        kept = old.get(r["notebook"])
        if not (r.get("runs_trained") == 0 and r["status"] == "ok" and kept and kept.get("runs_trained")):
            old[r["notebook"]] = r
    rows = sorted(old.values(), key=lambda r: r["notebook"])
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(rows, indent=2) + "\n")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alkit.batch", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 02 03")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per notebook (default: 900 smoke, 14400 otherwise)")
    ap.add_argument("--draw-only", action="store_true",
                    help="train nothing: draw the records on disk, partial runs included ($ALKIT_DRAW_ONLY=1)")
    args = ap.parse_args(argv)
    timeout = args.timeout or (900 if args.profile == "smoke" else 4 * 3600)
    summary = []
    for nb, params in notebooks_for(args.profile, only=args.only):
        if args.draw_only and is_oracle_session(params):
            print(f"[{args.profile}] {nb.name}: skipped (an oracle session trains as it labels; draw-only trains nothing)",
                  flush=True)
            continue
        out = nb if args.profile == "smoke" else ROOT / "notebooks" / args.profile / nb.name
        print(f"[{args.profile}] {nb.name} ...{' (draw only)' if args.draw_only else ''}", flush=True)
        row = run_notebook(nb, params, out, args.profile, timeout, draw_only=args.draw_only)
        print(f"[{args.profile}] {nb.name}: {row['status']} in {row['seconds']:.1f} s", flush=True)
        if row["log_tail"]:
            print(row["log_tail"], file=sys.stderr)
        summary.append(row)
    report = ROOT / "figures" / args.profile / "runtimes.json"
    rows = _merge_runtimes(report, [{k: v for k, v in r.items() if k != "log_tail"} for r in summary])
    print("\nnotebook                              status   seconds  runs trained")
    for r in rows:
        print(f"{r['notebook']:<37} {r['status']:<8} {r['seconds']:>7.1f}  {r.get('runs_trained', '?'):>12}")
    print(f"{'total':<37} {'':<8} {sum(r['seconds'] for r in rows):>7.1f}   (written to {report.relative_to(ROOT)})")
    return 0 if all(r["status"] == "ok" for r in summary) else 1


if __name__ == "__main__":
    raise SystemExit(main())
