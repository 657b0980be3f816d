"""A run whose config equals a finished run's is copied, not trained (issue 48: the cpu profile's 04 shares three
arms with 03).

Within one call of ``alkit run`` the runs are matched in memory (:func:`alkit.jobs.plan`'s ``same_as``); across
calls, a run that has no cycle on disk looks for a *finished twin*: a finished run folder of the same profile under
the same results root whose ``config.json`` holds the same config, ``device`` aside (:func:`finished_twin`). So
``alkit run params/cpu/04_discriminator_only.yaml`` after 03 ran, or notebook 04 run through papermill after
notebook 03, copies 03's ``m2_vaal`` runs instead of training them again. Only ``config.json`` and
``records.jsonl`` are read to find one (JSON, no code runs); a folder that cannot be read, or a link, is passed
over, and a twin that is not finished is not one.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from .results import (CONFIG_FILE, RECORDS_FILE, RecordsError, RunFolderError, check_no_links, dumps, read_json,
                      read_records, read_run_config, run_lock, write_json)


def config_key(config: dict) -> str:
    """What two runs must share to be twins: their config as JSON, sorted, ``device`` left out."""
    return dumps({k: v for k, v in config.items() if k != "device"}, sort_keys=True)


def finished_twin(root: str | Path, profile: str, config: dict, exclude: str | Path) -> Path | None:
    """The first finished run folder (sorted by path) under ``<root>/<profile>/*/*/seed*`` other than
    ``exclude`` whose config matches ``config`` (:func:`config_key`); None where there is none."""
    base, want, exclude = Path(root) / profile, config_key(config), Path(exclude)
    if not base.is_dir():
        return None
    for run in sorted(base.glob("*/*/seed*")):
        if run == exclude or run.name.startswith(".") or any(p.is_symlink() for p in (run, run.parent, run.parent.parent)):
            continue
        try:
            saved = read_run_config(run)["config"]
            if config_key(saved) != want:
                continue
            recs = read_records(run / RECORDS_FILE)
        except (RunFolderError, RecordsError, OSError, ValueError):
            continue
        cycles = saved.get("cycles")
        if recs and ((isinstance(cycles, int) and len(recs) >= cycles + 1) or recs[-1].get("stopped")):
            return run
    return None


def copy_run(root: str | Path, src: Path, dst: Path, meta: dict) -> list[dict]:
    """Copy the finished run folder ``src`` to ``dst`` (both under ``root``), atomically (a temp folder renamed into
    place), under ``dst``'s lock; ``meta`` (experiment, arm, profile) and ``copied_from`` replace those of its
    ``config.json``. Returns ``dst``'s records (another process's, where it finished ``dst`` first)."""
    check_no_links(root, dst)  # before the lock makes its folders: no link on the way (issue 47)
    with run_lock(dst, wait=True):  # another alkit run may copy or train the same folder
        return copy_locked(root, src, dst, meta)


def copy_locked(root: str | Path, src: Path, dst: Path, meta: dict) -> list[dict]:
    """:func:`copy_run` with ``dst``'s lock held by the caller."""
    # no link in either folder nor the temp one, checked under the lock (nothing planted in between; issue 47):
    # copytree would copy what a link points to, rmtree delete at its target
    for path in (src, dst, dst.with_name(f".{dst.name}.copy")):
        check_no_links(root, path)
    have = read_records(dst / RECORDS_FILE)
    if have:  # the other process got there first
        return have
    tmp = dst.with_name(f".{dst.name}.copy")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(".*.tmp"))
    saved = read_json(tmp / CONFIG_FILE)
    saved.update(meta, copied_from=str(src))
    write_json(tmp / CONFIG_FILE, saved)
    if dst.exists():  # an empty or stale folder (no records: only runs that have none are copied)
        shutil.rmtree(dst)
    os.replace(tmp, dst)
    return read_records(dst / RECORDS_FILE)
