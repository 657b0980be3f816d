"""Many runs at once, in a time box: the (arm, seed) runs of parameter files, spread over worker processes.

``alkit run params/paper/*.yaml --jobs 4 --devices cuda:0 --time-limit 540``:

This module plans the runs (:func:`plan`) and schedules them (:func:`run_tasks`); the workers and their pools
are :mod:`alkit.workers` (Ray's: :mod:`alkit.cluster`), device names :mod:`alkit.devices`, the display
:class:`alkit.progress.RunsDisplay`.

* **Workers.** ``jobs`` worker processes per device (spawned: CUDA cannot fork), devices taken
  round-robin, each with its own torch thread count (``threads``, default: CPU cores / workers)
  and its own data cache. A run is the unit of work; the main process hands the next unfinished
  run to the first idle worker, in parameter-file / arm / seed order. Every run writes its own
  folder exactly as :func:`alkit.experiment.run_experiment` does, so records do not depend on
  ``jobs`` (on CPU they depend on the thread count: torch's reductions round differently with
  another number of threads, so compare at equal ``threads``).
* **Time box.** ``time_limit`` seconds from the start: a run is handed out only if its first cycle
  fits (:func:`alkit.engine.timebox.cycle_fits`, estimated from measured cycles of the same arm: on disk from
  earlier chunks or seen in this one; with no measurement, only while half the box is left), and a
  worker starts no cycle that its run's own cycle times say will not end in time, and a cycle whose
  own pace says it will not end in time is given up mid-way (:mod:`alkit.engine.timebox`): it keeps nothing,
  frees the device, and its lower-bound length becomes the arm's estimate. What is finished stays on
  disk; the same command later resumes, with the records an uninterrupted run gives.
* **Shared runs.** A run whose config (seed included; device aside) equals an earlier one's in
  another experiment (``paper`` 04's ``m2_vaal`` arm is 03's) is trained once and copied into the
  second folder when finished (``config.json`` says ``copied_from``): same config, same records. A run
  with no cycle on disk whose twin finished in an earlier call (any experiment of the same profile and
  results root) is copied from it at once (:mod:`alkit.shared_runs`).
* **Progress.** One line per run (started / each cycle / finished) and an overall count, as tqdm
  bars on a terminal and plain lines otherwise (``ALKIT_QUIET``, logs): :class:`alkit.progress.RunsDisplay`.

``jobs * len(devices) == 1`` runs in this process (no worker), through the same code. With
``ray`` (``alkit run --executor ray``) every run is a Ray task instead (:mod:`alkit.cluster`), driven by
the same loop: same folders, summary, resume, shared runs and time box.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from . import results, shared_runs
from .config import ConfigError, to_dict
from .cluster import RayPool
from .data import DATASETS
from .devices import check_devices, on_cuda
from .experiment import Experiment
from .engine import timebox
from .loop import config_difference, first_cycle_key, fusion_key
from .results import RECORDS_FILE, read_records
from .progress import RunsDisplay
from .workers import InlinePool, ProcessPool


@dataclass
class Task:
    """One (experiment, arm, seed) run and what is known of its cost."""

    exp: Experiment
    arm: str
    seed: int
    total: int  # cycles + 1 (trainings of the run)
    done: int = 0  # cycles on disk
    stopped: bool = False  # ended early by its stopping rule (finished)
    same_as: int | None = None  # index of an earlier task with the identical config: copied, not trained
    copy_from: Path | None = None  # a finished twin on disk (alkit.shared_runs.finished_twin): copied, not trained

    @property
    def copied(self) -> bool:
        """Copied from another run (of this call or on disk), not trained."""
        return self.same_as is not None or self.copy_from is not None

    @property
    def label(self) -> str:
        return f"{self.exp.name}/{self.arm}/seed{self.seed}"

    @property
    def finished(self) -> bool:
        return self.stopped or self.done >= self.total


@dataclass
class Summary:
    """What a call of :func:`run_tasks` did and left."""

    runs: int = 0
    finished_before: int = 0  # runs already complete on disk
    finished: int = 0  # runs complete now (those before included)
    failed: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)  # cycles given up mid-way: they could not end in the time box
    locked: list[str] = field(default_factory=list)  # runs skipped: another process holds them, unfinished at the end
    finished_elsewhere: list[str] = field(default_factory=list)  # runs skipped that the other process finished meanwhile
    copied: list[str] = field(default_factory=list)  # runs copied from a finished twin on disk (alkit.shared_runs)
    cycles_done: int = 0  # cycles trained by this call
    cycles_left: int = 0
    seconds_left: float | None = None  # estimated, at this call's concurrency; None: some run has no estimate
    seconds: float = 0.0
    workers: int = 1

    def lines(self) -> list[str]:
        unfinished = self.runs - self.finished - len(self.failed)
        elsewhere = f", {len(self.finished_elsewhere)} by another process meanwhile" if self.finished_elsewhere else ""
        out = [f"runs: {self.finished}/{self.runs} finished ({self.finished_before} before this call{elsewhere}), "
               f"{unfinished} unfinished, {len(self.failed)} failed"
               + (f", {len(self.locked)} skipped (another process trains them)" if self.locked else ""),
               f"cycles: {self.cycles_done} trained in {self.seconds:.0f} s, {self.cycles_left} left"]
        if self.cycles_left:
            est = "unknown (no cycle of some arm measured yet)" if self.seconds_left is None else \
                f"{self.seconds_left / 60:.1f} min at {self.workers} concurrent run(s)"
            out.append(f"estimated time left: {est}; run the same command again to continue")
        if self.abandoned:
            out.append(f"cycles given up before the time limit (kept nothing, freed the device): {len(self.abandoned)}")
        out += [f"finished by another process: {f}" for f in self.finished_elsewhere]
        out += [f"copied (same config, finished on disk): {f}" for f in self.copied]
        out += [f"skipped: {f}; not finished yet" for f in self.locked]
        if self.locked:
            out.append(f"skipped runs: another process holds {len(self.locked)} run(s) and has not finished them: "
                       "run the same command again once it ends, or add --wait (exit status 3 until every run is "
                       "finished)")
        out += [f"failed: {f}" for f in self.failed]
        return out


def check_selection(experiments: list[Experiment], arms: list[str] | None = None,
                    seeds: list[int] | None = None) -> None:
    """``--arms`` and ``--seeds`` name arms and seeds of the files, and the files' seeds are integers >= 0 (one
    :class:`ConfigError` naming the key, the value and what is allowed): what ``alkit run`` and ``alkit plan``
    select by."""
    names = ", ".join(f"{e.name}: {', '.join(e.arms)}" for e in experiments)
    if arms is not None:
        if not arms:
            raise ConfigError(f"--arms: no arm named; allowed: one or more arms of the parameter files ({names})")
        unknown = [a for a in arms if not any(a in e.arms for e in experiments)]
        if unknown:
            raise ConfigError(f"--arms: no arm {', '.join(map(repr, unknown))} in the parameter files; their arms: "
                              + "; ".join(f"{e.name}: {', '.join(e.arms)}" for e in experiments))
    for exp in experiments:
        negative = [s for s in exp.seeds if s < 0]
        if negative:
            raise ConfigError(f"{exp.name}: seeds: {exp.seeds}: {negative[0]} is negative; allowed: integers >= 0")
    file_seeds = "; ".join(f"{e.name}: {', '.join(map(str, e.seeds))}" for e in experiments)
    if seeds is not None:
        if not seeds:
            raise ConfigError(f"--seeds: no seed named; allowed: one or more seeds of the parameter files ({file_seeds})")
        negative = [s for s in seeds if s < 0]
        if negative:
            raise ConfigError(f"--seeds: {negative[0]} is negative; allowed: integers >= 0 listed in the parameter "
                              f"files ({file_seeds})")
        unknown = [s for s in seeds if not any(s in e.seeds for e in experiments)]
        if unknown:
            raise ConfigError(f"--seeds: {', '.join(map(str, unknown))} not in the parameter files; allowed: "
                              f"{file_seeds} (to run another seed, add it to the file's seeds: the notebook "
                              "reads exactly those)")


def plan(experiments: list[Experiment], arms: list[str] | None = None, seeds: list[int] | None = None,
         force: bool = False) -> list[Task]:
    """Every (arm, seed) of ``experiments`` (or of the named ones), with its cycles on disk.

    Checks what the files and the selection ask for before anything is written (each problem one
    :class:`ConfigError` naming the key, the value and what is allowed): ``arms`` and ``seeds`` name
    arms and seeds of the files (a seed that no file lists is refused: add it to the file, so that
    the notebook reading the results describes it), seeds are integers >= 0, ``initial.classes`` are
    classes of the dataset, and a run folder on disk holds a run of the same config (unless ``force``).
    """
    check_selection(experiments, arms, seeds)
    tasks, first_of = [], {}
    for exp in experiments:
        for arm in [a for a in exp.arms if arms is None or a in arms]:
            for seed in [s for s in exp.seeds_of(arm) if seeds is None or s in seeds]:
                cfg = exp.config(arm, seed)
                if cfg.dataset in DATASETS:
                    try:
                        cfg.initial.check_classes(len(DATASETS[cfg.dataset]["class_names"]), cfg.dataset)
                    except ConfigError as exc:
                        raise ConfigError(f"{exp.name}: arm {arm!r}: {exc}") from None
                if not force:
                    _check_same_config(exp, arm, seed, cfg)
                recs = read_records(exp.run_dir(arm, seed) / RECORDS_FILE)
                task = Task(exp, arm, seed, cfg.cycles + 1, len(recs), bool(recs and recs[-1].get("stopped")))
                config = to_dict(cfg)
                key = shared_runs.config_key(config)
                if key in first_of and not recs:
                    task.same_as = first_of[key]
                elif not recs and not force:
                    task.copy_from = shared_runs.finished_twin(exp.results_root, exp.profile, config,
                                                               exp.run_dir(arm, seed))
                first_of.setdefault(key, len(tasks))
                tasks.append(task)
    return tasks


def _check_same_config(exp: Experiment, arm: str, seed: int, cfg) -> None:
    """A run folder that holds another config (a changed parameter file) is refused before any run starts."""
    path = exp.run_dir(arm, seed) / results.CONFIG_FILE
    if not os.path.lexists(path):
        return
    saved, now = results.read_run_config(path.parent)["config"], to_dict(cfg)  # damaged: RunFolderError, with the fix
    diff = config_difference(saved, now)
    if diff:
        raise ConfigError(f"{path.parent} holds a run with a different config (keys {', '.join(diff)}); allowed: "
                          "the same config to resume it; use another --results-root, delete the folder, or pass "
                          "--force to start over")


def copy_run(src: Task | Path, dst: Task) -> None:
    """Copy ``src``'s finished run folder (a task's, or a finished twin's on disk) to ``dst``'s
    (:func:`alkit.shared_runs.copy_run`)."""
    a = src if isinstance(src, Path) else src.exp.run_dir(src.arm, src.seed)
    meta = {"experiment": dst.exp.name, "arm": dst.arm, "profile": dst.exp.profile}
    recs = shared_runs.copy_run(dst.exp.results_root, a, dst.exp.run_dir(dst.arm, dst.seed), meta)
    dst.done, dst.stopped = len(recs), bool(recs and recs[-1].get("stopped"))


class _Estimates:
    """Longest measured cycle per (experiment, arm): from records on disk and from this call's cycles."""

    def __init__(self, tasks: list[Task]):
        self.seconds: dict[tuple[str, str], float] = {}
        for t in tasks:
            self.add(t, timebox.cycle_seconds(read_records(t.exp.run_dir(t.arm, t.seed) / RECORDS_FILE)))

    def add(self, task: Task, seconds: float | None) -> None:
        if seconds is not None:
            key = (task.exp.name, task.arm)
            self.seconds[key] = max(seconds, self.seconds.get(key, 0.0))

    def of(self, task: Task) -> float | None:
        return self.seconds.get((task.exp.name, task.arm))

    def of_unit(self, tasks: list[Task], unit: list[int]) -> float | None:
        """A fused group's cycle takes as long as its slowest member's (None: no member measured yet)."""
        known = [e for e in (self.of(tasks[i]) for i in unit) if e is not None]
        return max(known) if known else None


#: ``--fuse`` values; runs per fused group at most (``--fuse-max``): 27 = the largest K the issue benchmarks
FUSE_MODES = ("auto", "on", "off")
FUSE_MAX = 27


def fusion_units(tasks: list[Task], todo: list[int], fuse_max: int = FUSE_MAX) -> list[list[int]]:
    """The runs ``todo`` grouped by :func:`alkit.loop.fusion_key` (learner family, parameters but the per-run
    weights, data settings, device) into groups of at most ``fuse_max``, across parameter files; in the
    order of each group's first run (so the GPU trains the files' first arms first). Runs that cannot fuse
    are groups of one."""
    groups: dict[str, list[int]] = {}
    units: list[list[int]] = []
    for i in todo:
        t = tasks[i]
        key = fusion_key(t.exp.config(t.arm, t.seed))
        if key is None:
            units.append([i])
            continue
        if key not in groups or len(groups[key]) >= fuse_max:
            groups[key] = []
            units.append(groups[key])
        groups[key].append(i)
    return units


def first_cycle_units(tasks: list[Task], todo: list[int]) -> list[list[int]]:
    """The runs ``todo`` as units of work when they train alone: the runs of experiments with ``share_first_cycle``
    that have no cycle on disk and train one first cycle (:func:`alkit.loop.first_cycle_key`: they differ only in
    their strategy) form one unit, trained one after another with that cycle trained once
    (:func:`alkit.experiment.run_shared_first`); in the order of each unit's first run. Every other run is a unit
    of one."""
    groups: dict[str, list[int]] = {}
    units: list[list[int]] = []
    for i in todo:
        t = tasks[i]
        if not t.exp.share_first_cycle or t.done:
            units.append([i])
            continue
        key = first_cycle_key(t.exp.config(t.arm, t.seed))
        if key not in groups:
            groups[key] = []
            units.append(groups[key])
        groups[key].append(i)
    return units


# ---------------------------------------------------------------------------------------------
# The scheduler
# ---------------------------------------------------------------------------------------------


def run_tasks(
    tasks: list[Task], *, jobs: int = 1, devices: list[str] | None = None, threads: int | None = None,
    time_limit: float | None = None, force: bool = False, imports: list[str] = (), progress: bool = True, log=print,
    ray=None, wait: bool = False, fuse: str = "off", fuse_max: int = FUSE_MAX,
) -> Summary:
    """Run ``tasks`` on ``jobs`` workers per device within ``time_limit`` seconds; see the module docstring.

    ``ray`` (a :class:`alkit.cluster.RayOptions`): each run a Ray task instead (:mod:`alkit.cluster`);
    ``devices`` then holds at most one device, for every run. A run another process trains (its lock is
    held) is skipped and listed (``wait``: waited for, then loaded or resumed). ``fuse`` ("auto": on when
    the runs go to a CUDA device, "on", "off"): the unit of work becomes a group of up to ``fuse_max`` runs
    that train as one stacked model (:func:`fusion_units`); off, every run trains alone, as before.
    """
    _check_options(jobs, fuse, fuse_max, time_limit)
    devices = check_devices(devices, cluster=ray is not None) if devices else [None]
    fused = fuse == "on" or (fuse == "auto" and on_cuda(tasks, devices))
    pending = sum((force or not t.finished) and not t.copied for t in tasks)
    if fused:
        pending = len(fusion_units(tasks, [i for i, t in enumerate(tasks) if (force or not t.finished)
                                           and not t.copied], fuse_max))
    slots = _slots(jobs, devices, ray, pending)
    if threads is None and len(slots) > 1 and ray is None:
        threads = max(1, (os.cpu_count() or 1) // len(slots))
    started = timebox.clock()
    deadline = started + time_limit if time_limit else None
    if ray is not None and pending:  # first: a cluster that cannot take the runs is an error before anything is written
        pool = RayPool(len(slots), slots[0], threads, list(imports), ray)
    else:
        pool = InlinePool(slots[0], threads) if len(slots) == 1 else ProcessPool(slots, threads, list(imports))
    summary = Summary(runs=len(tasks), workers=getattr(pool, "concurrency", len(slots)))
    if force:
        for t in tasks:
            t.done, t.stopped = 0, False
    summary.finished_before = sum(t.finished for t in tasks)
    shared = _share(tasks, summary)
    todo = [i for i, t in enumerate(tasks) if not t.finished and not t.copied]
    units = fusion_units(tasks, todo, fuse_max) if fused else first_cycle_units(tasks, todo)
    st = _State(tasks, summary, _Estimates(tasks), RunsDisplay(tasks, enabled=progress, log=log), shared, log)
    if isinstance(pool, InlinePool):
        pool.live = lambda kind, key, value: _on_message(st, kind, key, value)
    common = {"force": force, "wait": wait, "deadline": deadline, "time_limit": time_limit, "share_first": not fused}
    try:
        while units or st.running:
            msg = pool.get(timeout=5.0)
            if msg is None:
                if _reap_dead(pool, st, len(slots)):
                    break
                continue
            _on_message(st, *msg)
            units = _hand_out(pool, st, units, common)
    finally:
        pool.close()
        st.view.close()
    summary.seconds = timebox.clock() - started
    _leftover(st)
    return summary


def _check_options(jobs: int, fuse: str, fuse_max, time_limit: float | None) -> None:
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    if fuse not in FUSE_MODES:
        raise ConfigError(f"--fuse: {fuse!r} is not allowed; allowed: {', '.join(FUSE_MODES)}")
    if isinstance(fuse_max, bool) or not isinstance(fuse_max, int) or fuse_max < 1:
        raise ConfigError(f"--fuse-max: {fuse_max!r} is not allowed; allowed: an integer >= 1")
    if time_limit is not None and time_limit <= 0:
        raise ConfigError(f"--time-limit must be > 0 seconds, got {time_limit}")


def _slots(jobs: int, devices: list[str | None], ray, pending: int) -> list[str | None]:
    """The device of each worker slot (one per run handed out at once)."""
    if ray is not None:
        if jobs != 1 or len(devices) != 1:
            raise ConfigError("--jobs / --devices: not with --executor ray; allowed: --gpus-per-run / --cpus-per-run "
                              "(Ray places the runs)")
        return devices * max(1, pending)  # every run handed to Ray at once; Ray queues what does not fit
    return [d for _ in range(jobs) for d in devices][: max(1, pending)]  # round-robin: cuda:0, cuda:1, cuda:0, ...


def _share(tasks: list[Task], summary: Summary | None = None) -> dict[int, list[int]]:
    """Original task -> the unfinished tasks that copy it (copied at once where the original is finished); a task
    with a finished twin on disk is copied first."""
    for t in tasks:
        if t.copy_from is not None and not t.finished:
            copy_run(t.copy_from, t)
            if summary is not None:
                summary.copied.append(f"{t.copy_from} -> {t.label}")
    shared: dict[int, list[int]] = {}
    for i, t in enumerate(tasks):
        if t.same_as is not None and not t.finished:
            shared.setdefault(t.same_as, []).append(i)
            if tasks[t.same_as].finished:
                copy_run(tasks[t.same_as], t)
    return shared


@dataclass
class _State:
    """What the scheduler knows while runs are out: their tasks, the summary, estimates and display."""

    tasks: list[Task]
    summary: Summary
    estimates: _Estimates
    view: RunsDisplay
    shared: dict[int, list[int]]
    log: object
    running: dict[int, int] = field(default_factory=dict)  # task id -> worker
    locked: dict[int, str] = field(default_factory=dict)  # task id -> who holds it: skipped, another process trains it
    idle: list[int] = field(default_factory=list)


def _reap_dead(pool, st: _State, slots: int) -> bool:
    """Runs of worker processes that died are failed; True when every worker is dead."""
    for w in pool.dead():
        for tid, worker in list(st.running.items()):
            if worker == w:
                st.summary.failed.append(f"{st.tasks[tid].label}: worker process died (exit code "
                                         f"{pool.procs[w].exitcode}); finished cycles are kept")
                st.view.end(tid, "died")
                del st.running[tid]
    return bool(pool.dead()) and len(pool.dead()) == slots


def _on_message(st: _State, kind: str, key: int, value) -> None:
    """A worker's message (see :mod:`alkit.workers`): update the task, the summary, the estimates and the display."""
    tasks, summary, view = st.tasks, st.summary, st.view
    if kind == "ready":
        st.idle.append(key)
    elif kind == "cycle":
        t = tasks[key]
        t.done, t.stopped = value["cycle"] + 1, value["stopped"]
        summary.cycles_done += 1
        st.estimates.add(t, value["seconds"])
        view.cycle(key, value)
    elif kind == "abandoned":  # a cycle given up mid-way (alkit.engine.timebox): its length, at least, is known now
        st.estimates.add(tasks[key], value["seconds"])
        summary.abandoned.append(f"{tasks[key].label}: {value['why']}")
        view.line(f"gave up  {tasks[key].label} cycle {tasks[key].done}: {value['why']}")
    elif kind == "done":
        t = tasks[key]
        t.done, t.stopped = value["done"], value["stopped"]
        st.running.pop(key, None)
        view.end(key, "finished" if t.finished else "paused (time limit)")
        for j in st.shared.get(key, []) if t.finished else []:
            copy_run(t, tasks[j])
            view.line(f"copied   {t.label} -> {tasks[j].label} (same config)")
    elif kind == "locked":  # listed at the end: finished by the other process meanwhile, or still held (_leftover)
        st.running.pop(key, None)
        st.locked[key] = value
        view.end(key, "skipped (locked)")
    elif kind == "waiting":
        view.line(f"waiting  {tasks[key].label}: another process trains it ({value})")
    elif kind == "failed":
        st.running.pop(key, None)
        summary.failed.append(f"{tasks[key].label}: {value.splitlines()[0]}")
        view.end(key, "failed")
        if "\n" in value.strip():  # a traceback; a file that could not be written is one line (the summary's)
            st.log(f"{tasks[key].label} failed:\n{value}")


def _hand_out(pool, st: _State, units: list[list[int]], common: dict) -> list[list[int]]:
    """Hand idle workers the runs (or fused groups) whose next cycle fits the time box; the units left."""
    tasks, deadline = st.tasks, common["deadline"]
    while st.idle and units:
        nxt = next((u for u in units if deadline is None or timebox.cycle_fits(
            st.estimates.of_unit(tasks, u), deadline, common["time_limit"])), None)
        if nxt is None:
            return []  # nothing fits any more (estimates only grow)
        units.remove(nxt)
        worker = st.idle.pop(0)
        for i in nxt:
            st.running[i] = worker
            st.view.start(i, pool.devices[worker] if len(nxt) == 1 else
                          f"{pool.devices[worker] or 'its configured device'}, "
                          + (f"first cycle shared x{len(nxt)}" if common["share_first"] else f"fused x{len(nxt)}"))
        payload = dict(common, estimate=st.estimates.of_unit(tasks, nxt))
        if len(nxt) == 1:
            i = nxt[0]
            pool.submit(worker, {"id": i, "exp": tasks[i].exp, "arm": tasks[i].arm, "seed": tasks[i].seed, **payload})
        else:
            pool.submit(worker, {"id": nxt[0], "ids": list(nxt), **payload,
                                 "members": [(tasks[i].exp, tasks[i].arm, tasks[i].seed) for i in nxt]})
    return units


def _leftover(st: _State) -> None:
    """The summary's finished runs, cycles left and their estimated time. A run skipped because another process
    held it is read again from disk: finished by that process meanwhile (its shared copies are made now), or
    still unfinished (:attr:`Summary.locked`: ``alkit run`` exits 3, not 0)."""
    tasks, summary = st.tasks, st.summary
    for key, holder in st.locked.items():
        t = tasks[key]
        recs = read_records(t.exp.run_dir(t.arm, t.seed) / RECORDS_FILE)
        t.done, t.stopped = len(recs), bool(recs and recs[-1].get("stopped"))
        if t.finished:
            who = holder[holder.find("(") + 1: holder.rfind(")")] if "(" in holder else holder
            summary.finished_elsewhere.append(f"{t.label} ({who})")
            for j in st.shared.get(key, []):
                copy_run(t, tasks[j])
        else:
            summary.locked.append(f"{t.label}: {holder}")
    summary.finished = sum(t.finished for t in tasks)
    unfinished = [t for t in tasks if not t.finished]
    trained = [t for t in unfinished if not t.copied]  # shared runs are copied, not trained
    summary.cycles_left = sum(t.total - t.done for t in trained)
    per_run = [st.estimates.of(t) for t in trained]
    if all(e is not None for e in per_run):
        summary.seconds_left = sum(e * (t.total - t.done) for e, t in zip(per_run, trained)) / summary.workers
