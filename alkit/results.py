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

A results folder is something people copy, share and commit, so opening one must be as safe as opening a CSV
(issue 47): ``.pt`` files hold state_dicts and plain values only and are loaded with ``weights_only=True``
(:func:`load_tensors`: a file that needs code to load is refused); no file of a run folder is read or written
through a link (:func:`read_bytes`, :func:`run_lock` open with ``O_NOFOLLOW``; :func:`atomic_write_bytes`
replaces a link rather than writing through it); and :func:`check_no_links` refuses a symbolic link anywhere
below the results root before anything is written or deleted there. Each refusal is a :class:`RunFolderError`
naming the file.
"""
from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import platform
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .cpu import cpu_kind, cpu_model  # noqa: F401  (cpu_model: provenance, imported from here by benchmarks)

CONFIG_FILE = "config.json"
RECORDS_FILE = "records.jsonl"
NORM_COMPARISON_FILE = "norm_comparison.json"
LABELS_FILE, DRAFT_FILE, PROPOSAL_FILE = "labels.json", "draft.json", "proposal.json"
#: the ``format`` of the two ``.pt`` files of a run folder: dicts of state_dicts and plain values (issue 47)
WARM_START_FORMAT = "alkit warm start 1"
LEARNER_FORMAT = "alkit learner 1"
#: ``os.open`` flag that refuses a symbolic link as the last component (0 where the platform has none)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class RunFolderError(ValueError):
    """A file or folder of a results folder that alkit refuses to read or write as it is: a symbolic link, a
    ``.pt`` file that needs code to load, a ``config.json`` that is not alkit's, a path that is not writable.
    The message names the path, what is wrong and the fix."""


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
    """The modules of the learner fitted in ``cycle`` (``save_learner``): ``learners/cycleNN.pt``, a dict of
    state_dicts (:data:`LEARNER_FORMAT`, read by :func:`load_tensors`)."""
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
    """The last cycle's modules a warm-started run continues from: ``learner.pt``, a dict of state_dicts
    (:data:`WARM_START_FORMAT`, read by :func:`load_tensors`)."""
    return Path(run) / "learner.pt"


def warm_start_previous_path(run: str | Path) -> Path:
    """The cycle before :func:`warm_start_path`'s: kept while the newer cycle's record is being written, so that a
    run killed between the two writes resumes from the modules of its last recorded cycle."""
    return Path(run) / "learner.previous.pt"


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
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``.

    Never through a link: the temp file is new (``O_EXCL``), and ``os.replace`` replaces a link at ``path``
    instead of writing to where it points. An :class:`OSError` (a read-only folder, a full disk) names
    ``path``, not the temp file, and leaves the old ``path`` as it was."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(exc.filename or path.parent)) from exc
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:  # named by the file the user knows, not the temp file
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), file_mode())  # mkstemp makes 0600; results are shared like any file the user writes
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno and exc.filename in (None, tmp):
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
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
    """The JSON value of a file of a results folder (never through a link: :func:`read_bytes`)."""
    return json.loads(read_bytes(path))


def _link_error(path: Path, what: str = "") -> RunFolderError:
    try:
        target = f" (to {_cut(os.readlink(path), 200)})"
    except OSError:
        target = ""
    return RunFolderError(
        f"{path}: is a symbolic link{target}{what}; alkit reads, writes and deletes nothing of a results folder "
        "through a link (a copied or shared folder could point anywhere); allowed: plain folders and files below "
        "the results root: replace the link by a copy of what it points to, or delete it")


def _cut(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters (paths and values in one-line messages)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_bytes(path: str | Path) -> bytes:
    """The bytes of a regular file, opened without following a link (``O_NOFOLLOW``) and without waiting on a
    FIFO; a link, a folder or a device is a :class:`RunFolderError` naming it (a missing file: the
    ``FileNotFoundError`` of ``open``)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        if os.path.islink(path):
            raise _link_error(path) from None
        if exc.errno == errno.EISDIR:
            raise RunFolderError(f"{path}: is a folder, not a file; allowed: the file alkit writes there") from None
        raise
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
            raise RunFolderError(f"{path}: is {kind}, not a file; allowed: the file alkit writes there")
        return fh.read()


def read_json_object(path: str | Path) -> dict:
    """A JSON object of a results folder (a run's or an oracle session's ``config.json``); anything else (a link,
    bytes that are not JSON, a list) is a :class:`RunFolderError` naming the file and the fix."""
    path = Path(path)
    try:
        value = json.loads(read_bytes(path))
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError (and RunFolderError, re-raised below)
        if isinstance(exc, RunFolderError):
            raise
        raise RunFolderError(f"{path}: not JSON ({_cut(str(exc))}); {_CONFIG_FIX}") from None
    if not isinstance(value, dict):
        raise RunFolderError(f"{path}: a JSON {type(value).__name__}, not an object; {_CONFIG_FIX}")
    return value


_CONFIG_FIX = ("allowed: the config.json alkit writes; fix: alkit run <the parameter file> --repair rewrites it "
               "from the parameter file (if the records are its runs), or --force trains the run again")


def read_run_config(run: str | Path) -> dict:
    """A run folder's ``config.json`` as alkit wrote it: an object whose ``config`` is an object. Damaged (not
    JSON, not an object, no ``config``), a link, a folder: a :class:`RunFolderError` with the fix (``--repair``)."""
    path = config_path(run)
    meta = read_json_object(path)
    if not isinstance(meta.get("config"), dict):
        raise RunFolderError(f"{path}: has no \"config\" object (found {_cut(repr(meta.get('config')), 40)}); "
                             f"{_CONFIG_FIX}")
    return meta


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
    if not os.path.lexists(path):
        return []
    out = []
    lines = read_bytes(path).split(b"\n")
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
    lines = read_bytes(path).split(b"\n")
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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # never through a link (issue 47: a planted link made the truncate and write below hit a file outside the
        # results root); O_NONBLOCK: a FIFO planted as the lock file cannot make the open wait
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0), file_mode())
    except OSError as exc:
        if os.path.islink(path):
            raise _link_error(path, ", the lock file of a run") from None
        raise OSError(exc.errno, exc.strerror, str(exc.filename or path)) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:  # a hard link would write to the other name too
            kind = "a hard link" if stat.S_ISREG(info.st_mode) else "not a file"
            raise RunFolderError(f"{path}: the lock file of a run is {kind}; alkit writes nothing through a link "
                                 "and locks only a plain file; allowed: a plain file, or none (delete it: alkit "
                                 "makes it)")
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


def check_no_links(root: str | Path, path: str | Path) -> None:
    """A :class:`RunFolderError` for the first symbolic link below ``root`` on the way to ``path`` or anywhere
    inside ``path`` (a folder: walked without following links). Called before a run folder is written or deleted:
    a link there would make a run write outside the results root, and ``--force`` or a shared run's copy delete
    at its target (issue 47). ``root`` itself may be a link (where the user keeps results is the user's choice);
    a ``path`` that does not exist yet passes. Also refuses, once a path is inside it, any folder that cannot be
    listed."""
    root, path = Path(root), Path(path)
    p = root
    for part in path.relative_to(root).parts:
        p = p / part
        if p.is_symlink():
            raise _link_error(p)
        if not p.exists():
            return
    if not p.is_dir():
        return
    todo = [p]
    while todo:
        folder = todo.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            raise RunFolderError(f"{folder}: cannot be listed ({exc.strerror}); allowed: a results folder you can "
                                 "read and write") from None
        for entry in entries:
            if entry.is_symlink():
                raise _link_error(Path(entry.path))
            if entry.is_dir(follow_symlinks=False):
                todo.append(Path(entry.path))


def check_writable(root: str | Path, run: str | Path, where: str = "--results-root") -> None:
    """A :class:`RunFolderError` naming the path when a run folder below ``root`` cannot be made or written:
    a file where a folder must be (the results root is a file), a folder on a read-only file system or without
    write permission (the run folder, its sub-folders, the folder of its lock file, an existing lock file, or
    the nearest existing folder above one that does not exist yet). Checked before anything is written, so a
    run that cannot write fails as one line, not as a traceback in training (``where``: the option or key
    that names the root)."""
    root, run = Path(root), Path(run)
    top = root
    while not os.path.lexists(top) and top != top.parent:  # the nearest existing folder above the root
        top = top.parent
    rel = run.relative_to(root).parts
    chain = [top] + [root.joinpath(*rel[:i]) for i in range(len(rel) + 1)]
    deepest = top
    for p in chain:
        if not os.path.lexists(p):
            break
        if not p.is_dir():
            raise RunFolderError(f"{where}: {_cut(str(root), 200)!r}: {_cut(str(p), 200)} is a file, not a folder; "
                                 "allowed: a folder, or a path that does not exist yet (alkit makes it)")
        deepest = p
    need = [deepest]
    if run.is_dir():
        need = [run.parent, run] + [d for d in (run / n for n in ("learners", "latent", "views")) if d.is_dir()]
    lock = lock_path(run)
    for p in need + ([lock] if os.path.lexists(lock) else []):
        if not os.access(p, os.W_OK | (os.X_OK if p.is_dir() else 0)):
            try:
                read_only = bool(os.statvfs(p).f_flag & os.ST_RDONLY)
            except OSError:
                read_only = False
            why = "it is on a read-only file system" if read_only else "permission denied"
            raise RunFolderError(f"{where}: {_cut(str(root), 200)!r}: {_cut(str(p), 200)} is not writable ({why}); "
                                 "allowed: a results root you can write to (another --results-root, or make it writable)")


#: errno values that say a path cannot be written: one line for them (:func:`write_failure`), not a traceback
WRITE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def write_failure(exc: BaseException) -> str | None:
    """One line for an :class:`OSError` that says a file could not be written (permission, a read-only or full
    disk), naming the path; None for any other exception. Records and configs are written atomically, so what
    was written before stays intact."""
    if not isinstance(exc, OSError) or exc.errno not in WRITE_ERRNOS:
        return None
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return (f"cannot write {exc.filename or 'a file of the run folder'}: {exc.strerror}; nothing written before is "
            f"lost (finished cycles are kept): {'free some space' if full else 'make it writable'}, then run the "
            "same command again")


def save_tensors(path: str | Path, obj: dict) -> None:
    """``torch.save`` of a dict of state_dicts and plain values, atomically (:func:`atomic_write_bytes`)."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_tensors(path: str | Path, fmt: str, what: str) -> dict:
    """A ``.pt`` file of a run folder written by :func:`save_tensors`: a dict whose ``format`` is ``fmt``, loaded
    with ``torch.load(weights_only=True)`` onto the CPU, never through a link. A file that needs more (a pickled
    object whose loading would run code: a planted file, or a learner pickled by alkit before issue 47), a file
    torch cannot read, or another format is a :class:`RunFolderError` naming it; nothing in it runs."""
    import pickle

    import torch

    path = Path(path)
    if not os.path.lexists(path):
        raise RunFolderError(f"{path}: missing; {what} needs it; allowed: the file alkit writes there; fix: "
                             "alkit run <the parameter file> --force trains the run again")
    data = read_bytes(path)
    try:
        obj = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001  (whatever the file holds, it is refused as one line)
        text = " ".join(str(exc).split())
        detail = text[text.find("WeightsUnpickler error:"):] if "WeightsUnpickler error:" in text else text
        needs_code = isinstance(exc, pickle.UnpicklingError) and "global" in text.lower()  # "Unsupported global: ..."
        why = ("loading it needs more than tensors and plain values (a pickled object whose loading could run "
               f"code: {_cut(detail.split('. ')[0], 120)})" if needs_code else
               f"torch cannot read it ({type(exc).__name__}: {_cut(detail, 120)})")
        raise RunFolderError(f"{path}: refused: {why}; alkit loads {what} with torch.load(weights_only=True) and "
                             "runs no code from a results folder; allowed: the state_dicts alkit writes there (a "
                             "file from alkit before issue 47 holds a pickled learner: delete it and train the run "
                             "again with --force)") from None
    if not isinstance(obj, dict) or obj.get("format") != fmt or not isinstance(obj.get("modules"), dict):
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise RunFolderError(f"{path}: not {what} of alkit (format {_cut(repr(found), 40)}); allowed: a dict of "
                             f"format {fmt!r} with its modules' state_dicts; fix: --force trains the run again")
    return obj


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


def environment() -> dict:
    """Versions and device facts stored beside every result.

    ``cpu``, ``cpu_kind`` (its fastest unit, :func:`alkit.cpu.cpu_kind`: amx_bf16, avx512_bf16, avx512f,
    avx2) and ``torch_cpu_capability`` (the SIMD kernels torch dispatches to: DEFAULT, AVX2, AVX512, ...)
    are recorded because CPU results are only reproducible bit for bit on the same kind of machine: other
    CPUs take other kernels and round differently (and a bf16 run is several times slower without bf16 units).
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
        "cpu_kind": cpu_kind(),
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
        meta = read_json_object(cfg_path) if os.path.lexists(cfg_path) else {
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
