"""Results on disk: the layout of a run folder, atomic writes, per-run provenance, tidy per-cycle records,
and loading them back.

The layout, owned here (every other module asks these functions for a path)::

    <root>/<profile>/<experiment>/            experiment_dir       norm_comparison.json  norm_comparison_path
        <arm>/seed<N>/                          run_dir
            learner.pt                          warm_start_path      the learner a warm start continues from
            config.json                         config_path          the resolved config, seed, git commit, versions
            records.jsonl                       records_path         one JSON object per finished cycle
            learners/cycleNN.pt                 learner_path         the fitted learner (``save_learner``)
            latent/cycleNN.npz                  latent_path          latent codes of a pool sample (``latent_sample``)
            latent/umap_cycleNN.npz             umap_path            their 2-D UMAP map (cached by alkit.derive)
            views/cycleNN.npz                   views_path           reconstructions and samples (cached by alkit.derive)
            oracle/                             session_dir          an oracle session (alkit.oracle): its own
                                                                     config.json, records.jsonl, latent/ and
                labels.json, draft.json, proposal.json   labels_path, draft_path, proposal_path
        .seed<N>.lock                           lock_path

``config.json`` and ``records.jsonl`` are written atomically (temp file + ``os.replace``), so a run
killed at any moment leaves either the old file or the new one, never half a line.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

CONFIG_FILE = "config.json"
RECORDS_FILE = "records.jsonl"
NORM_COMPARISON_FILE = "norm_comparison.json"
LABELS_FILE, DRAFT_FILE, PROPOSAL_FILE = "labels.json", "draft.json", "proposal.json"


def experiment_dir(root: str | Path, profile: str, name: str) -> Path:
    """The folder of an experiment's runs: ``<root>/<profile>/<name>``."""
    return Path(root) / profile / name


def run_dir(folder: str | Path, arm: str, seed: int) -> Path:
    """The folder of one run of an experiment (``folder``): ``<arm>/seed<seed>``."""
    return Path(folder) / arm / f"seed{seed}"


def session_dir(run: str | Path) -> Path:
    """The folder of an oracle session (:mod:`alkit.oracle`) beside a run's own files: ``oracle/``."""
    return Path(run) / "oracle"


def config_path(run: str | Path) -> Path:
    return Path(run) / CONFIG_FILE


def records_path(run: str | Path) -> Path:
    return Path(run) / RECORDS_FILE


def _cycle_name(cycle: int, suffix: str) -> str:
    return f"cycle{cycle:02d}{suffix}"


def learner_path(run: str | Path, cycle: int) -> Path:
    """The learner fitted in ``cycle``, pickled (``save_learner``): ``learners/cycleNN.pt``."""
    return Path(run) / "learners" / _cycle_name(cycle, ".pt")


def latent_path(run: str | Path, cycle: int) -> Path:
    """The latent codes saved in ``cycle`` (``latent_sample``): ``latent/cycleNN.npz``."""
    return Path(run) / "latent" / _cycle_name(cycle, ".npz")


def latent_cycles(run: str | Path) -> list[int]:
    """Cycles (rounds) with saved latent codes (:func:`latent_path`) in a run or oracle session folder, sorted."""
    return sorted(int(p.stem[5:]) for p in (Path(run) / "latent").glob("cycle[0-9][0-9].npz"))


def umap_path(latent: str | Path) -> Path:
    """The cached UMAP map of a :func:`latent_path` file, beside it: ``latent/umap_cycleNN.npz``."""
    latent = Path(latent)
    return latent.with_name(f"umap_{latent.name}")


def views_path(run: str | Path, cycle: int) -> Path:
    """The cached reconstructions and samples of ``cycle``'s learner: ``views/cycleNN.npz``."""
    return Path(run) / "views" / _cycle_name(cycle, ".npz")


def warm_start_path(run: str | Path) -> Path:
    """The last cycle's learner a warm-started run continues from: ``learner.pt``."""
    return Path(run) / "learner.pt"


def norm_comparison_path(folder: str | Path) -> Path:
    """The cached exact-vs-approximate norm comparison of an experiment (:func:`alkit.derive.norm_comparison`)."""
    return Path(folder) / NORM_COMPARISON_FILE


def labels_path(session: str | Path) -> Path:
    """An oracle session's answers so far (:mod:`alkit.oracle`)."""
    return Path(session) / LABELS_FILE


def draft_path(session: str | Path) -> Path:
    """An oracle session's answers of the current round, not yet submitted."""
    return Path(session) / DRAFT_FILE


def proposal_path(session: str | Path) -> Path:
    """An oracle session's current batch, written after training."""
    return Path(session) / PROPOSAL_FILE


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


class RecordsError(ValueError):
    """A ``records.jsonl`` that cannot be read as it is; the message names the file, the line and the fix.
    ``last``: the bad line is the file's last (:func:`repair_records` can drop it)."""

    def __init__(self, message: str, last: bool = False):
        super().__init__(message)
        self.last = last


def read_records(path: str | Path) -> list[dict]:
    """The records of a ``records.jsonl`` (none when it does not exist).

    A line that is not a JSON object is a :class:`RecordsError`. alkit writes the file atomically, so
    a cut-off last line means something else damaged it (a copy interrupted, a full disk on another
    tool's side): the message says that ``alkit run ... --repair`` (:func:`repair_records`) drops it.
    """
    path = Path(path)
    if not path.exists():
        return []
    out = []
    lines = path.read_bytes().split(b"\n")
    last = max((i for i, line in enumerate(lines, 1) if line.strip()), default=0)
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError(f"a {type(rec).__name__}, not a record")
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            if n == last:
                raise RecordsError(f"{path}: line {n} (the last) is incomplete or corrupt ({exc}); the {len(out)} "
                                   "records before it are intact; fix: alkit run <the parameter file> --repair drops "
                                   "that line (its cycle is trained again)", last=True) from None
            raise RecordsError(f"{path}: line {n} of {last} is corrupt ({exc}), and records follow it; not "
                               "repairable by dropping a last line: restore the file, or delete the run folder "
                               "to train the run again") from None
        out.append(rec)
    return out


def repair_records(path: str | Path) -> int | None:
    """Drop an incomplete or corrupt *last* line of ``path`` (atomically); returns its line number, None if intact.

    A corrupt line followed by good ones is left alone (:func:`read_records` raises for it)."""
    path = Path(path)
    try:
        read_records(path)
        return None
    except RecordsError as exc:
        if not exc.last:
            raise  # an earlier line: dropping the last one would not help
    lines = path.read_bytes().split(b"\n")
    last = max(i for i, line in enumerate(lines) if line.strip())
    kept = b"".join(line + b"\n" for line in lines[:last] if line.strip())
    atomic_write_bytes(path, kept)
    return last + 1


class RunLocked(RuntimeError):
    """The run folder is being trained by another process (its lock is held); ``holder`` says which."""

    def __init__(self, message: str, holder: str = "another process"):
        super().__init__(message)
        self.holder = holder


def lock_path(run_dir: str | Path) -> Path:
    """The lock file of a run folder: ``.<seedN>.lock`` beside it (not inside: a shared run is copied into
    place by replacing its folder, which must not take the lock away)."""
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.lock"


@contextlib.contextmanager
def run_lock(run_dir: str | Path, wait: bool = False, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold ``run_dir``'s lock while the block trains it: one writer per run, across processes and machines.

    An advisory ``flock`` on :func:`lock_path` (Linux: also over NFS). The kernel releases it when the
    process ends, however it ends, so a killed run never leaves a stale lock. Held by another process:
    :class:`RunLocked` naming the holder (``wait=False``), or ``on_wait(holder)`` and a blocking wait.
    A group of runs trained together takes the locks of all of them with :func:`run_locks`.
    """
    import fcntl  # POSIX only: imported where a lock is taken, so reading records works everywhere

    path = lock_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, file_mode())
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            if not wait:
                raise RunLocked(f"{run_dir}: being trained by another process ({holder}); skipped (run it again "
                                "once that one ends, or pass --wait to wait for it)", holder) from None
            if on_wait is not None:
                on_wait(holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race with a process opening it)


@contextlib.contextmanager
def run_locks(run_dirs: Iterable[str | Path], wait: bool = False, on_wait=None) -> Iterator[None]:
    """The locks of several runs (a group trained together), taken in a fixed order so two groups cannot
    deadlock; all or none: a run locked elsewhere raises :class:`RunLocked` and releases those taken."""
    with contextlib.ExitStack() as stack:
        for d in sorted({str(Path(d)) for d in run_dirs}):
            stack.enter_context(run_lock(d, wait=wait, on_wait=on_wait))
        yield


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
    import torch  # results is the bottom layer and reads records without torch (alkit.batch, figure code)

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
        # without its config.json (deleted by hand) a run keeps its place: <experiment>/<arm>/seed<N> by its folders
        meta = read_json(cfg_path) if cfg_path.exists() else {
            "arm": run_dir.parent.name, "experiment": run_dir.parent.parent.name, "config_missing": True}
        for r in read_records(rec_path):
            row = {"run": str(run_dir.relative_to(folder)), "arm": meta.get("arm"), "experiment": meta.get("experiment")}
            if meta.get("config_missing"):
                row["config_missing"] = True
            row.update(r)
            rows.append(row)
    return rows


def to_frame(rows: list[dict]):
    """``pandas.DataFrame(rows)`` when pandas is installed (it is optional)."""
    import pandas as pd

    return pd.DataFrame(rows)
