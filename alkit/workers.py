"""Workers: the function a worker runs per payload (one run, or one fused group) and the pools that run it.

A payload is what :func:`alkit.jobs.run_tasks` hands out: ``{"id", "exp", "arm", "seed", ...}`` for one run,
``{"id", "ids", "members", ...}`` for a fused group. A worker reports back through ``send(kind, task_id,
value)``: ``"cycle"`` after each cycle, ``"abandoned"`` for a cycle given up to the time box, ``"waiting"``
while another process holds the run's lock, and one of ``"done"``, ``"locked"``, ``"failed"`` at the end.

Two pools with one interface (``submit`` / ``get`` / ``dead`` / ``close``): :class:`InlinePool` runs in this
process, :class:`ProcessPool` in spawned processes (CUDA cannot fork); :class:`alkit.cluster.RayPool` is the
third, with each payload a Ray task that calls :func:`run_payload`.
"""
from __future__ import annotations

import multiprocessing as mp
import queue
import traceback

import torch

from . import learners, strategies  # noqa: F401  (registries: a spawned worker knows every built-in name)
from .experiment import run_group, run_one, run_shared_first
from .plugins import import_module
from .results import RunLocked, write_failure




def _cycle_message(r: dict) -> dict:
    """What a worker reports of a written cycle record."""
    return {"cycle": r["cycle"], "test_acc": r["test_acc"], "stopped": bool(r.get("stopped")),
            "seconds": sum(r["seconds"].values())}


def _done_message(recs: list[dict]) -> dict:
    """What a worker reports of a run that ended (finished or paused by the time box)."""
    return {"done": len(recs), "stopped": bool(recs and recs[-1].get("stopped")),
            "test_acc": recs[-1]["test_acc"] if recs else None}


def execute(payload: dict, device: str | None, cache: dict, send) -> None:
    """Run one task; ``send(kind, task_id, value)`` reports each cycle and the end (done or failed)."""
    tid = payload["id"]
    try:
        recs = run_one(payload["exp"], payload["arm"], payload["seed"], cache, device=device,
                       force=payload["force"], deadline=payload["deadline"], cycle_estimate=payload["estimate"],
                       wait=payload.get("wait", False),
                       on_wait=lambda holder: send("waiting", tid, holder),
                       time_limit=payload["time_limit"],
                       on_abandon=lambda e: send("abandoned", tid, {"seconds": e.seconds, "why": str(e)}),
                       on_cycle=lambda r: send("cycle", tid, _cycle_message(r)))
        send("done", tid, _done_message(recs))
    except RunLocked as exc:  # another process trains it: skipped, not failed
        send("locked", tid, f"another process trains it ({exc.holder})")
    except Exception as exc:  # noqa: BLE001  (reported by the main process; other runs go on)
        send("failed", tid, _failure(exc))


def _failure(exc: BaseException) -> str:
    """A failed run's report: its error and notes on the first line, then the traceback's last frames; a file
    that could not be written (a read-only folder, a full disk) is that one line alone, naming the path."""
    one_line = write_failure(exc)
    if one_line is not None:
        return one_line
    notes = "\n".join(getattr(exc, "__notes__", []))
    return (f"{type(exc).__name__}: {exc}" + (f" ({notes})" if notes else "") + "\n"
            + "".join(traceback.format_exception(exc, limit=-3)))


def execute_group(payload: dict, device: str | None, cache: dict, send) -> None:
    """Run one fusion group in lockstep (:func:`alkit.experiment.run_group`); reports per run as :func:`execute`."""
    ids, members = payload["ids"], payload["members"]
    try:
        outs = run_group(members, cache, device=device, force=payload["force"], deadline=payload["deadline"],
                         wait=payload.get("wait", False),
                         on_wait=lambda holder: [send("waiting", tid, holder) for tid in ids],
                         cycle_estimate=payload["estimate"], time_limit=payload["time_limit"],
                         on_abandon=lambda e: [send("abandoned", tid, {"seconds": e.seconds, "why": str(e)})
                                               for tid in ids],
                         on_cycle=lambda k, r: send("cycle", ids[k], _cycle_message(r)))
    except RunLocked as exc:  # another process trains one of them: the group is skipped, not failed
        for tid in ids:
            send("locked", tid, f"another process trains a run of its fused group ({exc.holder})")
        return
    except Exception as exc:  # noqa: BLE001  (the whole group: reported per run)
        outs = [exc] * len(ids)
    for tid, recs in zip(ids, outs):
        if isinstance(recs, Exception):
            send("failed", tid, _failure(recs))
        else:
            send("done", tid, _done_message(recs))


def execute_shared(payload: dict, device: str | None, cache: dict, send) -> None:
    """Runs that share their first cycle (:func:`alkit.experiment.run_shared_first`), one after another; each
    run's end is reported as it comes, as :func:`execute` reports it."""
    ids, members = payload["ids"], payload["members"]

    def done(k: int, recs) -> None:
        if isinstance(recs, RunLocked):
            send("locked", ids[k], f"another process trains it ({recs.holder})")
        elif isinstance(recs, Exception):
            send("failed", ids[k], _failure(recs))
        else:
            send("done", ids[k], _done_message(recs))

    try:
        run_shared_first(members, cache, device=device, force=payload["force"], deadline=payload["deadline"],
                         wait=payload.get("wait", False),
                         on_wait=lambda holder: [send("waiting", tid, holder) for tid in ids],
                         cycle_estimate=payload["estimate"], time_limit=payload["time_limit"],
                         on_abandon=lambda k, e: send("abandoned", ids[k], {"seconds": e.seconds, "why": str(e)}),
                         on_cycle=lambda k, r: send("cycle", ids[k], _cycle_message(r)), on_done=done)
    except RunLocked as exc:  # another process trains one of them (the first cycle's locks: all or none)
        for tid in ids:
            send("locked", tid, f"another process trains a run that shares its first cycle ({exc.holder})")
    except Exception as exc:  # noqa: BLE001  (reported per run)
        for tid in ids:
            send("failed", tid, _failure(exc))


def run_payload(payload: dict, device: str | None, cache: dict, send) -> None:
    """What a worker (a local process, this process, a Ray task) does with a payload: one run, one fused group, or
    runs that share their first cycle."""
    if "members" not in payload:
        execute(payload, device, cache, send)
    else:
        (execute_shared if payload.get("share_first") else execute_group)(payload, device, cache, send)


def worker_main(device: str | None, threads: int | None, imports: list[str], tasks, messages, index: int) -> None:
    """Entry point of a spawned worker: set threads, import registrations, run tasks until ``None``."""
    if threads:
        torch.set_num_threads(threads)
    for module in imports:
        import_module(module)
    cache: dict = {}
    messages.put(("ready", index, None))
    while (payload := tasks.get()) is not None:
        run_payload(payload, device, cache, lambda kind, tid, value: messages.put((kind, tid, value)))
        messages.put(("ready", index, None))


class InlinePool:
    """One worker: this process. ``submit`` returns when the payload has ended, so the messages that only report
    (:data:`LIVE`) go to ``live`` as they are sent, when the scheduler has set it: a run's cycle lines appear as
    it trains and "waiting" while it waits (they came in one burst at the end before, "waiting" after the wait);
    the others, which free the worker, wait for ``get``."""

    LIVE = ("cycle", "waiting", "abandoned")

    def __init__(self, device: str | None, threads: int | None):
        if threads:
            torch.set_num_threads(threads)
        self.devices = [device]
        self.cache: dict = {}
        self.inbox: list[tuple] = [("ready", 0, None)]
        self.live = None  # the scheduler's handler of LIVE messages: live(kind, task_id, value)

    def submit(self, worker: int, payload: dict) -> None:
        def send(kind: str, tid: int, value) -> None:
            if self.live is not None and kind in self.LIVE:
                self.live(kind, tid, value)
            else:
                self.inbox.append((kind, tid, value))

        run_payload(payload, self.devices[0], self.cache, send)
        self.inbox.append(("ready", worker, None))

    def get(self, timeout: float):
        return self.inbox.pop(0) if self.inbox else None

    def dead(self) -> list[int]:
        return []

    def close(self) -> None:
        pass


class ProcessPool:
    """``len(devices)`` spawned workers, each with its own task queue and one shared message queue."""

    def __init__(self, devices: list[str | None], threads: int | None, imports: list[str]):
        ctx = mp.get_context("spawn")
        self.devices = devices
        self.messages = ctx.Queue()
        self.queues = [ctx.Queue() for _ in devices]
        self.procs = [ctx.Process(target=worker_main, args=(d, threads, imports, q, self.messages, i), daemon=True)
                      for i, (d, q) in enumerate(zip(devices, self.queues))]
        for p in self.procs:
            p.start()

    def submit(self, worker: int, payload: dict) -> None:
        self.queues[worker].put(payload)

    def get(self, timeout: float):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def dead(self) -> list[int]:
        return [i for i, p in enumerate(self.procs) if not p.is_alive()]

    def close(self) -> None:
        for q, p in zip(self.queues, self.procs):
            if p.is_alive():
                q.put(None)
        for p in self.procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
