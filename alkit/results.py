"""Results on disk: atomic writes, per-run provenance, tidy per-cycle records, and loading them back.

A run folder holds ``config.json`` (the resolved config, seed, git commit,
versions) and ``records.jsonl`` (one JSON object per finished cycle). Both
are written atomically (temp file + ``os.replace``), so a run killed at any
moment leaves either the old file or the new one, never half a line.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

CONFIG_FILE = "config.json"
RECORDS_FILE = "records.jsonl"


def _default(o: Any):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def dumps(obj: Any, **kw) -> str:
    return json.dumps(obj, default=_default, **kw)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new content, never a mix."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, file_mode())  # mkstemp makes 0600; results are shared like any file the user writes
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def file_mode() -> int:
    """The mode ``open()`` gives a new file under the user's umask (0o644 under 022, 0o664 under 002).

    Temp files (``mkstemp``) are 0600 whatever the umask; files renamed into place get this mode
    instead, so results and figures in a group folder on a cluster stay readable by the group.
    """
    return 0o666 & ~_umask()


def _umask() -> int:
    """The process umask, read without changing it where Linux shows it (no window for other threads)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    with open(path) as fh:
        return json.load(fh)


def write_records(path: str | Path, records: Iterable[dict]) -> None:
    """Rewrite a JSON-lines file atomically (records files are small: one line per cycle)."""
    atomic_write_text(path, "".join(dumps(r, sort_keys=True) + "\n" for r in records))


def read_records(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    out = []
    with path.open() as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{n}: corrupt record line: {exc}") from exc
    return out


def git_commit(cwd: str | Path | None = None) -> str:
    """The current git commit, ``-dirty`` when tracked code or parameters differ from it; ``unknown`` outside git.

    Changes under ``notebooks/``, ``results/`` and ``figures/`` do not count: those are
    what a run writes (papermill executes the notebooks in place), not what produced it.
    Outside a git checkout (a copy of the tree on a GPU machine) ``$ALKIT_GIT_COMMIT`` is used
    (the device kit writes it from the checkout it was prepared in).
    """
    cwd = cwd or Path(__file__).resolve().parent
    fallback = os.environ.get("ALKIT_GIT_COMMIT") or "unknown"
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return fallback
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
             *(f":(top,exclude){d}" for d in ("notebooks", "results", "figures"))],
            cwd=cwd, capture_output=True, text=True, timeout=10,
        )
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return fallback


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``'s "model name"; ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    """Versions and device facts stored beside every result.

    ``cpu`` and ``torch_cpu_capability`` (the SIMD kernels torch dispatches to: DEFAULT, AVX2,
    AVX512, ...) are recorded because CPU results are only reproducible bit for bit on the same
    kind of machine: other CPUs take other kernels and round differently.
    """
    import torch

    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        capability = None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_cpu_capability": capability,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def load_results(folder: str | Path) -> list[dict]:
    """All per-cycle records below ``folder`` as one list of flat dicts.

    Each record gains ``run`` (the run folder relative to ``folder``) and the
    run's ``arm`` and ``experiment`` from its config. Runs are found by their
    ``records.jsonl``; records are ordered by run folder, then cycle.
    """
    folder = Path(folder)
    rows = []
    for rec_path in sorted(folder.rglob(RECORDS_FILE)):
        run_dir = rec_path.parent
        cfg_path = run_dir / CONFIG_FILE
        meta = read_json(cfg_path) if cfg_path.exists() else {}
        for r in read_records(rec_path):
            row = {"run": str(run_dir.relative_to(folder)), "arm": meta.get("arm"), "experiment": meta.get("experiment")}
            row.update(r)
            rows.append(row)
    return rows


def to_frame(rows: list[dict]):
    """``pandas.DataFrame(rows)`` when pandas is installed (it is optional)."""
    import pandas as pd

    return pd.DataFrame(rows)
