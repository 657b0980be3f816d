"""Experiments: named arms (learner + strategy) x seeds over one shared base config.

A notebook's parameter file (``params/<profile>/<notebook>.yaml``) is an
:class:`Experiment`::

    name: 02_vaal_vs_random
    profile: smoke
    seeds: [0, 1]
    base: {pool_size: 3000, initial: {kind: random, n: 100}, budget: 100, cycles: 3}
    arms:
      random: {learner: classifier, strategy: random}
      vaal:   {learner: vaal, strategy: vaal}
    options: {}             # drawing options read by the notebook only

Run ``arm`` with ``seed`` = ``RunConfig(**(base | arms[arm]), seed=seed)``
(``learner_params`` and ``strategy_params`` are merged key by key). Results go
to ``<root>/<profile>/<name>/<arm>/seed<seed>/``.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import results, shared_runs
from .analysis.tables import coverage, cycle_span
from .config import (DRAW_ONLY_ENV, ConfigError, check_keys, check_results_root, from_dict, load_yaml, safe_component,
                     to_dict)
from .loop import (RunConfig, check_simulated_data, load_warm_start, resolve_device, run, share_first_cycle, validate,
                   write_run_config)
from .loop import run_group as loop_group  # this module's run_group runs experiments' (arm, seed) pairs
from .own_data import load_data
from .progress import progress_bar
from .results import (CONFIG_FILE, RECORDS_FILE, RunFolderError, check_no_links, config_path, load_results,
                      read_records, read_run_config, records_path, repair_records, run_lock, run_locks, warm_start_path)

MERGED_KEYS = ("learner_params", "strategy_params", "initial")


@dataclass
class Experiment:
    name: str
    profile: str = "smoke"
    seeds: list[int] = field(default_factory=lambda: [0])
    base: dict = field(default_factory=dict)
    arms: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)  # notebook drawing options; not used by training
    results_root: str = "results"
    #: None: a study that ``alkit run`` trains. "simulated" / "human": an oracle session (notebook 06,
    #: :mod:`alkit.oracle`) whose labels come from an oracle; ``alkit run`` leaves it to the notebook
    oracle: str | None = None
    #: arm -> the seeds it runs, where fewer than ``seeds`` (a subset of them): the cpu profile's claim pairs run
    #: every seed of ``seeds``, its other arms the first three
    arm_seeds: dict = field(default_factory=dict)
    #: ``alkit run`` trains the first cycle of runs that differ only in their strategy once and shares it
    #: (:func:`run_shared_first`): the records are those of the runs trained alone (the cpu profile's 03-05)
    share_first_cycle: bool = False

    def seeds_of(self, arm: str) -> list[int]:
        """The seeds ``arm`` runs: its ``arm_seeds`` entry, else the experiment's ``seeds``."""
        return list(self.arm_seeds.get(arm, self.seeds))

    def __post_init__(self):
        if self.oracle not in (None, "simulated", "human"):
            raise ConfigError(f"experiment {self.name!r}: oracle: {self.oracle!r} is not allowed; "
                              "allowed: simulated (the dataset's labels), human (you, in notebook 06's grid), or none")
        # each becomes a folder below the results root: one that is not a plain name could leave it
        safe_component(self.name, "name")
        safe_component(self.profile, "profile")
        check_results_root(self.results_root, "results_root")  # '' would be the current folder
        if not self.arms:
            raise ConfigError(f"experiment {self.name!r} has no arms")
        for arm in self.arms:
            safe_component(arm, "arms")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"experiment {self.name!r}: seeds must be a non-empty list of distinct ints")
        for arm, seeds in self.arm_seeds.items():
            if arm not in self.arms:
                raise ConfigError(f"experiment {self.name!r}: arm_seeds: {str(arm)[:60]!r} is not an arm; "
                                  f"allowed: {', '.join(self.arms)}")
            if (not isinstance(seeds, list) or not seeds or len(set(map(repr, seeds))) != len(seeds)
                    or not all(isinstance(s, int) and not isinstance(s, bool) and s in self.seeds for s in seeds)):
                raise ConfigError(f"experiment {self.name!r}: arm_seeds.{arm}: {str(seeds)[:80]}; allowed: a non-empty "
                                  f"list of distinct seeds of seeds ({', '.join(map(str, self.seeds))})")
        # a bad key or value is named where it is written (base, or the arm), before the merged configs
        check_keys(RunConfig, self.base, "base")
        for arm, values in self.arms.items():
            check_keys(RunConfig, values, f"arms.{arm}")
        for arm in self.arms:  # build every config now: a bad key fails before any training
            try:
                validate(self.config(arm, self.seeds[0]))
            except ConfigError as exc:  # a learner's or strategy's parameter: say which arm it reaches
                if str(exc).startswith(("learner_params", "strategy_params")):
                    raise ConfigError(f"arm {arm!r}: {exc}") from None
                raise

    def config(self, arm: str, seed: int) -> RunConfig:
        if arm not in self.arms:
            raise ConfigError(f"experiment {self.name!r} has no arm {arm!r}; arms: {', '.join(self.arms)}")
        merged = dict(self.base)
        for k, v in (self.arms[arm] or {}).items():
            merged[k] = {**merged.get(k, {}), **v} if k in MERGED_KEYS and isinstance(v, dict) else v
        merged["seed"] = seed
        return from_dict(RunConfig, merged, where=f"{self.name}.arms.{arm}")

    @property
    def folder(self) -> Path:
        return results.experiment_dir(self.results_root, self.profile, self.name)

    def run_dir(self, arm: str, seed: int) -> Path:
        return results.run_dir(self.folder, arm, seed)

    def session_dir(self, arm: str, seed: int) -> Path:
        """The folder of an oracle session (:mod:`alkit.oracle`) of ``arm`` and ``seed``."""
        return results.session_dir(self.run_dir(arm, seed))


def load_experiment(path: str | Path, **overrides) -> Experiment:
    """Read an experiment YAML; ``overrides`` replace top-level keys (e.g. ``results_root``)."""
    values = load_yaml(path)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(Experiment, values, where=str(path))


def draw_only() -> bool:
    """True when ``$ALKIT_DRAW_ONLY`` is set to anything but "", "0", "false" or "no"."""
    return os.environ.get(DRAW_ONLY_ENV, "").strip().lower() not in ("", "0", "false", "no")


def run_experiment(
    exp: Experiment, *, arms: list[str] | None = None, seeds: list[int] | None = None,
    force: bool = False, progress: bool = True, log=print, train: bool | None = None,
) -> list[dict]:
    """Run every (arm, seed) not yet finished, one after another; return all records of the experiment folder.

    Finished runs are loaded, not recomputed (unless ``force``); a crashed run
    resumes after its last finished cycle. Data is loaded once per distinct
    dataset setting and shared by the runs. (``alkit run --jobs N`` runs them
    concurrently: :mod:`alkit.jobs`.)

    ``train=False`` (default: False when ``$ALKIT_DRAW_ONLY`` is set, else True) trains nothing:
    the records on disk are returned as they are, unfinished runs included, and ``log`` gets one
    line per run that is not finished (:func:`incomplete_lines`), so a notebook can draw a
    GPU-scale profile's partial results on a laptop.
    """
    if train is None:
        train = not draw_only()
    if not train:
        rows = experiment_records(exp, log=log)
        for line in incomplete_lines(exp, rows) if log else ():
            log(line)
        return rows
    data_cache = {}
    runs = [(arm, seed) for arm in arms or list(exp.arms) for seed in exp.seeds_of(arm) if not seeds or seed in seeds]
    todo = force or not is_finished(exp, runs)
    overall = progress_bar(runs, desc=f"{exp.name}: runs", disable=not (progress and todo), position=0)
    for arm, seed in overall:  # one bar over the runs; each run shows its cycles (and iterations) below it
        overall.set_postfix_str(f"{arm}/seed{seed}")
        t, trains = time.perf_counter(), force or not is_finished(exp, [(arm, seed)])
        recs = run_one(exp, arm, seed, data_cache, force=force, progress=progress, wait=True,
                       on_wait=lambda holder, a=arm, s=seed: log and log(
                           f"{exp.name}/{a}/seed{s}: waiting for another process that trains it ({holder})"))
        if log and trains:  # a run loaded from disk gets no line: a redraw logs what a draw-only run logs
            log(f"{exp.name}/{arm}/seed{seed}: {len(recs)} cycles, final test acc {recs[-1]['test_acc']:.4f} "
                f"({time.perf_counter() - t:.1f} s)")
    return experiment_records(exp, log=log)


def run_one(exp: Experiment, arm: str, seed: int, data_cache: dict | None = None, *, device: str | None = None,
            force: bool = False, progress: bool = False, wait: bool = False, on_wait=None, **run_kwargs) -> list[dict]:
    """Run (resume, or load) one (arm, seed) of ``exp`` into its run folder; returns its records.

    ``data_cache`` (a dict) shares loaded data between the runs of one process; ``device``
    overrides the config's (the config stored with the run keeps its own, see
    :data:`~alkit.loop.RESUMABLE_DIFFERENCES`); ``run_kwargs`` go to :func:`alkit.loop.run`
    (``deadline``, ``cycle_estimate``, ``on_cycle``).

    The run's lock (:func:`alkit.results.run_lock`) is held from reading its folder to the last record
    written: a run another process is training raises :class:`~alkit.results.RunLocked` (``wait=False``)
    or is waited for (``wait=True``: ``on_wait(holder)`` first), then found finished or resumed.
    """
    cfg = exp.config(arm, seed)
    if device is not None:
        cfg.device = device
    data = _cached_data(cfg, data_cache if data_cache is not None else {})
    check_simulated_data(cfg, data)  # before the lock, which makes the run's folders
    meta = {"experiment": exp.name, "arm": arm, "profile": exp.profile}
    try:
        # before anything is read, written or deleted there: no link below the results root (issue 47)
        check_no_links(exp.results_root, exp.run_dir(arm, seed))
        if not force and is_finished(exp, [(arm, seed)]) and results.config_path(exp.run_dir(arm, seed)).exists():
            # finished: only read (nothing writes a finished run but --force), so no lock and no lock file
            return run(cfg, exp.run_dir(arm, seed), data=data, progress=progress, meta=meta, **run_kwargs)
        with run_lock(exp.run_dir(arm, seed), wait=wait, on_wait=on_wait):
            twin = None if force or read_records(records_path(exp.run_dir(arm, seed))) else \
                shared_runs.finished_twin(exp.results_root, exp.profile, to_dict(cfg), exp.run_dir(arm, seed))
            if twin is not None:  # a finished run of the same config (another experiment's): copied, not trained
                shared_runs.copy_locked(exp.results_root, twin, exp.run_dir(arm, seed), meta)
            return run(cfg, exp.run_dir(arm, seed), data=data, force=force, progress=progress, meta=meta,
                       **run_kwargs)
    except Exception as exc:  # keep the type (the CLI reports user errors by type); say which run
        exc.add_note(f"while running {exp.name}: arm {arm!r}, seed {seed} (finished runs and cycles are kept)")
        raise


def _cached_data(cfg, cache: dict):
    """The data of ``cfg`` on its device, loaded once per distinct dataset setting in ``cache``."""
    dev = resolve_device(cfg.device)
    key = (cfg.dataset, cfg.data_dir, cfg.split_seed, cfg.val_size, cfg.pool_size, cfg.test_size, str(dev))
    if key not in cache:
        cache[key] = load_data(cfg, dev)
    return cache[key]


def _prepare(runs: list[tuple[Experiment, str, int]], cache: dict, device: str | None) -> tuple[list, list, list, list]:
    """The runs of a group (fused, or sharing a first cycle) made ready to train together: ``(configs, datas, where,
    out)``, with ``configs[j]`` = (config, run folder, meta) and ``datas[j]`` of run ``where[j]``; a run that cannot
    start (its config, data or a link below the results root) gets its exception in ``out`` and the others go on."""
    configs, datas, where, out = [], [], [], [None] * len(runs)
    for k, (exp, arm, seed) in enumerate(runs):
        try:
            cfg = exp.config(arm, seed)
            if device is not None:
                cfg.device = device
            data = _cached_data(cfg, cache)
            check_simulated_data(cfg, data)
            check_no_links(exp.results_root, exp.run_dir(arm, seed))  # issue 47: no link below the results root
        except Exception as exc:  # noqa: BLE001  (this run cannot start; the others go on)
            exc.add_note(f"while running {exp.name}: arm {arm!r}, seed {seed}")
            out[k] = exc
            continue
        datas.append(data)
        where.append(k)
        configs.append((cfg, exp.run_dir(arm, seed), {"experiment": exp.name, "arm": arm, "profile": exp.profile}))
    return configs, datas, where, out


def run_group(runs: list[tuple[Experiment, str, int]], data_cache: dict | None = None, *, device: str | None = None,
              force: bool = False, progress: bool = False, wait: bool = False, on_wait=None,
              **group_kwargs) -> list[list[dict] | Exception]:
    """Run the (experiment, arm, seed) ``runs`` of one fusion group in lockstep (:func:`alkit.loop.run_group`):
    each in its own run folder, exactly as :func:`run_one` lays it out; returns each run's records or exception.
    The locks of all the group's runs are held while it trains (:func:`alkit.results.run_locks`: all or none)."""
    cache = data_cache if data_cache is not None else {}
    configs, datas, where, out = _prepare(runs, cache, device)
    with run_locks([c[1] for c in configs], wait=wait, on_wait=on_wait):
        for k, recs in zip(where, loop_group(configs, data=datas, force=force, progress=progress, **group_kwargs)):
            out[k] = recs
    return out


def run_shared_first(runs: list[tuple[Experiment, str, int]], data_cache: dict | None = None, *,
                     device: str | None = None, force: bool = False, progress: bool = False, wait: bool = False,
                     on_wait=None, on_cycle=None, on_done=None, on_abandon=None,
                     **run_kwargs) -> list[list[dict] | Exception]:
    """Run the (experiment, arm, seed) ``runs``, which train one first cycle (:func:`alkit.loop.first_cycle_key`:
    the same learner, parameters, data, initial set and seed; strategies differ), one after another, with that
    cycle trained once (:func:`alkit.loop.share_first_cycle`, under the locks of them all), then each run's later
    cycles as :func:`run_one` trains them. ``on_cycle(k, record)`` after each cycle written, ``on_abandon(k, error)``
    for a cycle the time box gives up (the shared one: ``k`` of the first run), ``on_done(k, records or exception)``
    as each run ends; returns each run's records or exception (one failing leaves the others)."""
    cache = data_cache if data_cache is not None else {}
    configs, datas, where, out = _prepare(runs, cache, device)
    box = {key: run_kwargs[key] for key in ("deadline", "cycle_estimate", "time_limit") if key in run_kwargs}
    with run_locks([c[1] for c in configs], wait=wait, on_wait=on_wait):
        firsts = share_first_cycle(configs, data=datas, force=force, progress=progress, **box,
                                   on_cycle=None if on_cycle is None else lambda j, r: on_cycle(where[j], r),
                                   on_abandon=None if on_abandon is None or not where else
                                   lambda e: on_abandon(where[0], e))
    for j, exc in enumerate(firsts):
        if exc is not None:
            exp, arm, seed = runs[where[j]]
            exc.add_note(f"while running {exp.name}: arm {arm!r}, seed {seed} (finished runs and cycles are kept)")
            out[where[j]] = exc
    for k, (exp, arm, seed) in enumerate(runs):
        if out[k] is None and not read_records(records_path(exp.run_dir(arm, seed))):
            out[k] = []  # its first cycle was not trained (the time box): it starts in a later call, shared again
        elif out[k] is None:
            try:
                out[k] = run_one(exp, arm, seed, cache, device=device, progress=progress, wait=wait, on_wait=on_wait,
                                 on_cycle=None if on_cycle is None else lambda r, k=k: on_cycle(k, r),
                                 on_abandon=None if on_abandon is None else lambda e, k=k: on_abandon(k, e), **run_kwargs)
            except Exception as exc:  # noqa: BLE001  (RunLocked included: the caller reports it per run)
                out[k] = exc
        if on_done is not None:
            on_done(k, out[k])
    return out


def experiment_records(exp: Experiment, log=print) -> list[dict]:
    """Every record of ``exp``'s arms and seeds, and nothing else from its folder.

    Runs in the folder that the parameters do not name (another seed started from the command line,
    an arm since removed) are left out, and ``log`` says which, so a notebook never averages in runs
    its text does not describe.
    """
    rows = load_results(exp.folder)
    keep = [r for r in rows if r.get("arm") in exp.arms and r.get("seed") in exp.seeds_of(r.get("arm"))]
    missing = sorted({r["run"] for r in keep if r.get("config_missing")})
    if missing and log:
        log(f"{exp.folder}: {len(missing)} run(s) without config.json, kept by their folder names: {', '.join(missing)} "
            "(alkit run <the parameter file> --repair rewrites it)")
    others = sorted({(str(r.get("arm")), r.get("seed")) for r in rows} - {(str(r.get("arm")), r.get("seed")) for r in keep},
                    key=str)
    if others and log:
        log(f"{exp.folder} also holds {len(others)} run(s) outside these parameters, left out: "
            + ", ".join(f"{a}/seed{s}" for a, s in others))
    return keep


def is_finished(exp: Experiment, runs: list[tuple[str, int]] | None = None) -> bool:
    """True when every (arm, seed) of ``exp`` (or of ``runs``) has all its cycles on disk (no training needed)."""
    for arm, seed in runs or [(a, s) for a in exp.arms for s in exp.seeds_of(a)]:
        cfg = exp.config(arm, seed)
        recs = read_records(records_path(exp.run_dir(arm, seed)))
        if not recs or not (len(recs) == cfg.cycles + 1 or recs[-1].get("stopped")):
            return False
    return True


def incomplete_lines(exp: Experiment, rows: list[dict]) -> list[str]:
    """One line per unfinished run of ``exp``: "02_vaal_vs_random/vaal/seed0: no cycle on disk",
    "02_vaal_vs_random/random/seed0: cycles 0-2 of 0-7"; none when every run is finished."""
    out = []
    for r in coverage(exp, rows)["runs"]:
        if r["finished"]:
            continue
        head = f"{exp.name}/{r['arm']}/seed{r['seed']}"
        out.append(f"{head}: no cycle on disk" if not r["cycles"] else
                   f"{head}: cycles {cycle_span(r['cycles'])} of {cycle_span(list(range(r['expected'])))}")
    return out


def repair_run(exp: Experiment, arm: str, seed: int) -> list[str]:
    """``alkit run --repair`` for one run folder; returns one line per repair made (none: nothing to repair).

    Drops an incomplete or corrupt last line of ``records.jsonl`` (that cycle is trained again), and
    rewrites a deleted or damaged (not JSON, not an object, no ``config``: removed where the folder holds no
    records) ``config.json`` from the parameter file when the records are this config's runs
    (same strategy, learner, seed and label counts); its ``repaired`` field says so, and its git commit
    and environment are those of the repair, not of the training.
    """
    run_dir, out = exp.run_dir(arm, seed), []
    line = repair_records(records_path(run_dir))
    if line is not None:
        out.append(f"repaired {records_path(run_dir)}: dropped its incomplete last line {line}")
    recs = read_records(records_path(run_dir))
    damaged = None  # a config.json that is not alkit's (not JSON, not an object, no "config"): treated as deleted
    if os.path.lexists(config_path(run_dir)):
        try:
            read_run_config(run_dir)
        except RunFolderError as exc:
            damaged = str(exc).split("; allowed")[0]
    if damaged and not recs:  # no run to keep: the damaged file only blocks the folder
        config_path(run_dir).unlink()
        out.append(f"repaired: removed {damaged} (the folder holds no records)")
    elif recs and (damaged or not os.path.lexists(config_path(run_dir))):
        cfg = exp.config(arm, seed)
        expected_n = [cfg.initial.n + i * cfg.budget for i in range(len(recs))]
        wrong = [k for k, v in (("strategy", cfg.strategy), ("learner", cfg.learner), ("seed", cfg.seed))
                 if any(r.get(k) != v for r in recs)]
        if wrong or [r.get("n_labelled") for r in recs] != expected_n:
            raise ConfigError(f"{run_dir}: its records are not runs of this parameter file's config "
                              f"({', '.join(wrong) or 'n_labelled'} differ); not repaired: delete the folder or pass "
                              "--force to train it again")
        write_run_config(config_path(run_dir), cfg, resolve_device(cfg.device), {
            "experiment": exp.name, "arm": arm, "profile": exp.profile,
            "repaired": "config.json rewritten from the parameter file by alkit run --repair; git_commit, "
                        "environment and started are the repair's, not the training's"})
        out.append(f"repaired {config_path(run_dir)}: rewritten from the parameter file ({len(recs)} records kept"
                   + (f"; it was damaged: {damaged.split(': ', 1)[-1]})" if damaged else ")"))
    return out


def check_run_folder(exp: Experiment, arm: str, seed: int) -> None:
    """A run folder alkit cannot resume as it is: one :class:`ConfigError` / :class:`~alkit.results.RecordsError` /
    :class:`~alkit.results.RunFolderError` with the fix, before any training (a corrupt records line; records
    without their ``config.json``; a ``config.json`` that is not alkit's; a warm start's ``learner.pt`` that
    needs more than tensors to load)."""
    run_dir = exp.run_dir(arm, seed)
    recs = read_records(records_path(run_dir))
    if recs and not os.path.lexists(config_path(run_dir)):
        raise ConfigError(f"{run_dir}: holds {len(recs)} records but no {CONFIG_FILE}; allowed: alkit run <the "
                          "parameter file> --repair rewrites it from the parameter file (if the records are its runs), "
                          "or --force trains the run again")
    if os.path.lexists(config_path(run_dir)):
        read_run_config(run_dir)  # garbage, a list, no "config", a link: RunFolderError with the fix (--repair)
    cfg = exp.config(arm, seed)
    unfinished = recs and not (len(recs) == cfg.cycles + 1 or recs[-1].get("stopped"))
    if unfinished and cfg.learner_params.get("warm_start", False):
        load_warm_start(warm_start_path(run_dir))  # weights_only: a file that needs code to load is refused

