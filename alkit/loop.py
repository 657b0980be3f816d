"""The active-learning loop: train -> evaluate -> score -> select -> label, cycle after cycle.

One :class:`~alkit.pool.Pool` owns the labelled/unlabelled split; the loop is
the only code that labels. Every cycle appends one tidy record to
``records.jsonl`` (atomically), so a run that dies after cycle k resumes at
cycle k+1 and produces the same records: all randomness is derived from
``(seed, cycle, phase)``, never from how far a previous process got.
"""
from __future__ import annotations

import copy
import io
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import results
from .config import ConfigError, from_dict, to_dict
from .data import DATASETS
from .diagnostics import latent_coverage, selection_diagnostics
from .engine import drive_fused, timebox
from .learners import TrainData, make_learner
from .learners.base import LEARNERS
from .own_data import load_data
from .pool import BudgetError, InitialSet, Pool, initial_labelled
from .progress import progress_bar
from .strategies import Context, acquire, get_strategy
from .strategies.base import make_params
from .strategies.uncertainty import entropy_of
from .train import accuracy, confusion_matrix

#: config keys that may differ between the original and a resumed run
RESUMABLE_DIFFERENCES = ("device",)


@dataclass
class RunConfig:
    """One active-learning run: one learner, one strategy, one seed."""

    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    split_seed: int = 0  # fixes the 55k/5k pool/validation split (shared by all runs)
    val_size: int = 5000
    pool_size: int | None = None  # random subset of the pool (CPU smoke runs); None = all 55,000
    test_size: int | None = None  # random subset of the 10k test set; None = all
    initial: InitialSet = field(default_factory=InitialSet)
    budget: int = 1000  # points acquired per cycle
    cycles: int = 7  # acquisitions; the run trains and evaluates cycles + 1 times
    learner: str = "classifier"
    learner_params: dict = field(default_factory=dict)
    strategy: str = "random"
    strategy_params: dict = field(default_factory=dict)
    seed: int = 0  # initial set, model init, minibatch order, strategy randomness
    # draw the initial labelled set with this seed instead of `seed` (None: `seed`): runs of seeds 0 and 1 with
    # initial_seed 0 start from the same labels and differ in training randomness only (a default of None keeps
    # configs written before this key resumable)
    initial_seed: int | None = None
    device: str = "auto"  # "auto" = cuda when available, else cpu
    candidates: int | None = None  # score a seeded random subset of this many unlabelled points; None = all
    # stop acquiring once the discriminator's held-out ROC AUC <= this (the study's "stop when the discriminator is
    # unable to differentiate"); AUC, not accuracy at logit 0: logits all on one side read accuracy exactly 0.5
    stop_disc_auc: float | None = None
    stop_disc_acc: float | None = None  # the same on held-out balanced accuracy (second signal; either stops)
    latent_sample: int = 0  # save latent codes of this many pool points (+ labelled, selected) each cycle
    save_learner: bool = False  # save each cycle's fitted modules (state_dicts) to learners/cycleNN.pt (for figures)
    # record ProbCover's latent coverage at the delta whose balls are this pure (diagnostics.latent_coverage);
    # None = not recorded (a default of None keeps configs written before this key resumable)
    coverage_purity: float | None = None

    def __post_init__(self):
        if self.budget < 1 or self.cycles < 0:
            raise ValueError(f"budget must be >= 1 and cycles >= 0, got budget={self.budget}, cycles={self.cycles}")
        if isinstance(self.initial, dict):
            self.initial = from_dict(InitialSet, self.initial, "initial")
        for name in ("stop_disc_auc", "stop_disc_acc"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}={v}: allowed a number in [0, 1] or null")
        if self.initial_seed is not None and self.initial_seed < 0:
            raise ValueError(f"initial_seed={self.initial_seed}: allowed a non-negative integer or null")
        if self.candidates is not None and self.candidates < self.budget:
            raise ValueError(f"candidates={self.candidates} is smaller than budget={self.budget}")


def derive_seed(*parts) -> int:
    """A 62-bit seed from integers/strings; independent streams for (seed, cycle, phase)."""
    ints = [p if isinstance(p, int) else int.from_bytes(str(p).encode()[:8].ljust(8, b"\0"), "little") for p in parts]
    return int(np.random.SeedSequence(ints).generate_state(1, np.uint64)[0] >> np.uint64(2))


def initial_set_seed(cfg: RunConfig) -> int:
    """The seed the initial labelled set is drawn with: ``initial_seed``, else the run's ``seed``."""
    return derive_seed(cfg.seed if cfg.initial_seed is None else cfg.initial_seed, "initial")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def validate(cfg: RunConfig) -> None:
    """Fail before any training on names, parameters and capabilities that cannot work."""
    if not str(cfg.dataset).strip():  # '' would read as the current folder, an image folder of whatever is there
        raise ConfigError(f"dataset: {cfg.dataset!r} is empty; allowed: a built-in name "
                          f"({', '.join(sorted(DATASETS))}), a MedMNIST-style .npz file or a folder of class sub-folders")
    if cfg.data_dir is not None and not str(cfg.data_dir).strip():
        raise ConfigError(f"data_dir: {cfg.data_dir!r} is empty; allowed: a folder holding the dataset's files, or "
                          "null (the download cache)")
    spec = get_strategy(cfg.strategy)
    cls = _check_learner(cfg)
    sparams = make_params(spec, cfg.strategy_params)
    sizes = DATASETS[cfg.dataset]["sizes"] if cfg.dataset in DATASETS else None  # built-in: known before loading
    pool_size = cfg.pool_size if cfg.pool_size is not None else (sizes["train"] if sizes else 0) - cfg.val_size
    limit = getattr(sparams, "max_pool", None)  # strategies for small candidate sets (network_norm, kernel_norm_exact)
    if limit is not None and (cfg.candidates or pool_size) > limit:
        raise ConfigError(
            f"strategy {cfg.strategy!r} scores at most max_pool={limit} candidates, but candidates="
            f"{cfg.candidates if cfg.candidates is not None else f'None (the whole pool of {pool_size})'}; "
            f"set candidates: {limit} or lower (a seeded subsample each cycle), or raise strategy_params.max_pool"
        )
    if sizes:
        n_train = sizes["train"]  # the pool is this minus the validation split
        if cfg.val_size >= n_train:
            raise ConfigError(f"val_size: {cfg.val_size} leaves no pool of {cfg.dataset}'s {n_train:,} training "
                              f"images; allowed: 0 .. {n_train - 1}")
        if cfg.pool_size is not None and cfg.pool_size > n_train - cfg.val_size:
            raise ConfigError(f"pool_size: {cfg.pool_size} is larger than the {n_train - cfg.val_size:,} images "
                              f"left for the pool after val_size {cfg.val_size}; allowed: 1 .. {n_train - cfg.val_size}, "
                              "or null (all of them)")
        if cfg.test_size is not None and cfg.test_size > sizes["test"]:
            raise ConfigError(f"test_size: {cfg.test_size} is larger than {cfg.dataset}'s "
                              f"{sizes['test']:,} test images; allowed: 1 .. {sizes['test']}, or null")
    needed = cfg.initial.n + cfg.cycles * cfg.budget
    if sizes and needed > pool_size:
        raise BudgetError(
            f"initial {cfg.initial.n} + {cfg.cycles} cycles x budget {cfg.budget} = {needed} labels, "
            f"but the pool has only {pool_size} points"
        )
    if cfg.coverage_purity is not None:
        if isinstance(cfg.coverage_purity, bool) or not 0 < cfg.coverage_purity <= 1:
            raise ConfigError(f"coverage_purity: {cfg.coverage_purity!r}; allowed: a share in (0, 1], or null (not recorded)")
        if "embed" not in cls.capabilities():
            raise ConfigError(
                f"coverage_purity: {cfg.coverage_purity!r} needs a latent ('embed'), which learner {cfg.learner!r} lacks; "
                f"learners with one: {', '.join(sorted(n for n, c in LEARNERS.items() if 'embed' in c.capabilities()))}"
            )
    missing = set(spec.needs) - cls.capabilities()
    if missing:
        good = sorted(n for n, c in LEARNERS.items() if set(spec.needs) <= c.capabilities())
        raise ConfigError(
            f"strategy {cfg.strategy!r} needs {sorted(missing)}, which learner {cfg.learner!r} lacks; "
            f"learners that fit: {', '.join(good)}"
        )


def _check_learner(cfg: RunConfig):
    """The learner class of ``cfg``, its parameters checked; a :class:`ConfigError` naming what is wrong."""
    if cfg.learner not in LEARNERS:
        raise ConfigError(f"unknown learner {cfg.learner!r}; known learners: {', '.join(sorted(LEARNERS))}")
    cls = LEARNERS[cfg.learner]
    if cls.Params:
        from_dict(cls.Params, cfg.learner_params, where=f"learner_params[{cfg.learner}]")
    elif cfg.learner_params:
        raise ConfigError(f"learner {cfg.learner!r} takes no parameters")
    if not callable(getattr(cls.Params, "iterations_per_cycle", None)):  # evaluate() records it every cycle
        raise ConfigError(f"learner {cfg.learner!r}: its Params has no iterations_per_cycle(n_labelled, n_unlabelled), "
                          "which every record stores; allowed: a Params that subclasses "
                          "alkit.learners.schedule.ScheduleParams (or defines that method)")
    return cls


def check_simulated_data(cfg: RunConfig, data) -> None:
    """What a simulated run needs of its loaded data, checked before anything is written (``alkit run``
    checks it for every run before any training): a label for every pool image, and a pool large enough
    for the initial set and every cycle's budget. A :class:`BudgetError` naming the dataset and the numbers."""
    unknown = int((data.y_pool < 0).sum())
    if unknown:
        raise BudgetError(
            f"dataset: {cfg.dataset!r} has {unknown} pool images without a label; a simulated run reveals the "
            "labels of what it selects, so every pool image needs one. Label them yourself with the oracle "
            "session (notebooks/06_label_your_own.ipynb, alkit.oracle.LabelSession)"
        )
    needed = cfg.initial.n + cfg.cycles * cfg.budget
    if needed > len(data.y_pool):
        raise BudgetError(
            f"dataset: {cfg.dataset!r}: initial {cfg.initial.n} + {cfg.cycles} cycles x budget {cfg.budget} = "
            f"{needed} labels, but the pool has only {len(data.y_pool)} points; allowed: a smaller budget, "
            "fewer cycles or a smaller initial set"
        )


def write_run_config(path: Path, cfg: RunConfig, device, meta: dict | None = None, saved: dict | None = None,
                     from_cycle: int = 0) -> None:
    """A run's ``config.json``: its config, seed, git commit, machine, device and start time, plus ``meta``.

    A run resumed at ``from_cycle`` keeps ``saved`` (the ``config.json`` its first cycles were trained under:
    their commit, machine and start) and appends this session's to ``resumed``, so every cycle's commit and
    machine stay on record however many sessions a run takes."""
    session = {"git_commit": results.git_commit(), "environment": results.environment(), "device": str(device),
               "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if saved is not None and from_cycle > 0:  # a session that trained nothing is replaced by the next one
        earlier = [r for r in saved.get("resumed", []) if isinstance(r, dict) and r.get("from_cycle") != from_cycle]
        out = dict(saved, resumed=[*earlier, {"from_cycle": from_cycle, **session}])
    else:
        out = {"config": to_dict(cfg), "seed": cfg.seed, **session, **(meta or {})}
    results.write_json(path, out)


def config_difference(saved: dict, now: dict) -> list[str]:
    """The keys in which two run configs (``to_dict``) differ, but those a resumed run may change."""
    return sorted(k for k in set(saved) | set(now) if k not in RESUMABLE_DIFFERENCES and saved.get(k) != now.get(k))


def check_resumable(saved: dict, cfg_dict: dict, out_dir: Path) -> None:
    """A :class:`ConfigError` when ``out_dir``'s saved config is another run's (resuming it would mix two runs)."""
    diff = config_difference(saved, cfg_dict)
    if diff:
        raise ConfigError(
            f"{out_dir} holds a run with a different config (keys {', '.join(diff)}); "
            "use another results folder, delete it, or start over with --force (alkit run) / force=True (Python)"
        )


@dataclass
class _Run:
    """A run opened for training: its config, folder, data on its device, pool and finished records."""

    cfg: RunConfig
    out_dir: Path | None
    device: torch.device
    data: object
    pool: Pool
    records: list[dict]
    previous: dict | None = None  # the previous cycle's modules (warm starts: :func:`module_states`)
    label: str = ""
    made_dir: bool = False  # :func:`_open` made ``out_dir``: a run that ends with no record removes it again

    @property
    def finished(self) -> bool:
        return len(self.records) == self.cfg.cycles + 1 or bool(self.records and self.records[-1].get("stopped"))


def _open(cfg: RunConfig, out_dir, data, force: bool, meta: dict | None) -> "_Run | list[dict]":
    """Check, resume or start a run: its records when it is finished, else a :class:`_Run` at its next cycle
    (``config.json`` written, finished cycles replayed into the pool)."""
    validate(cfg)
    device = resolve_device(cfg.device)
    cfg_dict = to_dict(cfg)
    records: list[dict] = []
    saved = None  # the config.json of a run being resumed
    if out_dir is not None:
        out_dir = Path(out_dir)
        cfg_path, rec_path = results.config_path(out_dir), results.records_path(out_dir)
        if force:
            for p in (cfg_path, rec_path, results.warm_start_path(out_dir), results.warm_start_previous_path(out_dir)):
                p.unlink(missing_ok=True)  # (unlink removes a link itself, never what it points to)
        # never overwrite records of an unknown config
        if not os.path.lexists(cfg_path) and results.read_records(rec_path):
            raise ConfigError(f"{out_dir}: holds records but no {results.CONFIG_FILE}; allowed: alkit run <the "
                              "parameter file> --repair (alkit.experiment.repair_run) rewrites it, or force=True")
        if os.path.lexists(cfg_path):
            saved = results.read_run_config(out_dir)
            check_resumable(saved["config"], cfg_dict, out_dir)
            records = results.read_records(rec_path)
            if records and (len(records) == cfg.cycles + 1 or records[-1].get("stopped")):
                return records
    previous = None
    if records and _warm_start(cfg):  # before anything is written: a file that needs code to load is refused
        previous = load_warm_start_of(out_dir, records[-1]["cycle"])
    if data is None:  # before any file is written: missing, corrupt or unusable data leaves nothing behind
        data = load_data(cfg, device)
    check_simulated_data(cfg, data)
    data = data.to(device) if data.x_pool.device != device else data
    y_pool = data.y_pool.cpu().numpy()
    pool = Pool(len(y_pool), initial_labelled(y_pool, cfg.initial, initial_set_seed(cfg), data.num_classes))
    needed = pool.n_labelled + cfg.cycles * cfg.budget
    if needed > pool.size:
        raise BudgetError(
            f"initial {pool.n_labelled} + {cfg.cycles} cycles x budget {cfg.budget} = {needed} labels, "
            f"but the pool has only {pool.size} points"
        )
    made_dir = out_dir is not None and not os.path.lexists(out_dir)
    if out_dir is not None:
        write_run_config(cfg_path, cfg, device, meta, saved, len(records))

    for r in records:  # replay finished cycles
        if r["n_labelled"] != pool.n_labelled:
            raise ValueError(f"{out_dir}: record of cycle {r['cycle']} does not follow from the one before")
        if r.get("selected"):
            pool.label(r["selected"])

    label = "/".join(str(x) for x in ((meta or {}).get("experiment"), (meta or {}).get("arm", cfg.strategy)) if x)
    return _Run(cfg, out_dir, device, data, pool, records, previous, f"{label}/seed{cfg.seed}", made_dir)


def _unstarted_leaves_no_config(state: _Run) -> None:
    """A run that ends with no record (a failure, or the time box before its first cycle) leaves no
    ``config.json``, which would hold the folder for this config and refuse the corrected one ("holds a run
    with a different config") until --force, and no empty folder that :func:`_open` made for it."""
    if state.out_dir is not None and not state.records and \
            not results.read_records(results.records_path(state.out_dir)):
        try:
            results.config_path(state.out_dir).unlink(missing_ok=True)
            if state.made_dir:
                state.out_dir.rmdir()  # only if empty: anything else put there stays
        except OSError:  # a folder made read-only, or not empty: the error being raised says so, not this one
            pass


def module_states(learner, fmt: str, cycle: int) -> dict:
    """What a run keeps of a fitted learner: the state_dict of every torch module it holds, by attribute name
    (``vae``, ``disc``, ``model``, ``classifier``: what :func:`alkit.learners.adversarial.warm_load` reads), with
    plain metadata. Tensors and plain values only, so a saved copy loads with ``weights_only=True``
    (:func:`alkit.results.load_tensors`); ``classes`` names each module's class (:mod:`alkit.derive` rebuilds a
    VAE or M2 from it). The tensors are the learner's own (no copy): a fitted learner is never trained again."""
    modules = {name: m for name, m in vars(learner).items() if isinstance(m, torch.nn.Module)}
    return {"format": fmt, "learner": getattr(learner, "name", type(learner).__name__), "cycle": cycle,
            "num_classes": getattr(learner, "num_classes", None),
            "classes": {name: type(m).__name__ for name, m in modules.items()},
            "modules": {name: m.state_dict() for name, m in modules.items()}}


def load_warm_start(path: Path) -> dict:
    """The modules a warm-started run resumes from (``learner.pt``, written by :func:`_commit`), loaded with
    ``weights_only=True``: a file that needs code to load (planted, or pickled by alkit before issue 47) is a
    :class:`~alkit.results.RunFolderError` naming it, and nothing in it runs."""
    state = results.load_tensors(path, results.WARM_START_FORMAT, "a warm start")
    bad = [k for k, v in state["modules"].items()
           if not isinstance(v, dict) or not all(isinstance(t, torch.Tensor) for t in v.values())]
    if bad:
        raise results.RunFolderError(f"{path}: module {bad[0]!r} is not a state_dict of tensors; allowed: the file "
                                     "alkit writes; fix: --force trains the run again")
    return state


def load_warm_start_of(out_dir: Path, cycle: int) -> dict:
    """The saved modules of ``cycle`` (the run's last recorded cycle): ``learner.pt``, or ``learner.previous.pt``
    where the run was killed after saving the next cycle's modules and before writing its record."""
    for path in (results.warm_start_path(out_dir), results.warm_start_previous_path(out_dir)):
        if os.path.lexists(path):
            state = load_warm_start(path)
            if state.get("cycle") == cycle:
                return state
    raise results.RunFolderError(f"{out_dir}: no saved modules of cycle {cycle} to warm-start cycle {cycle + 1} from "
                                 f"({results.warm_start_path(out_dir).name} missing or of another cycle); allowed: the "
                                 "files alkit writes; fix: --force trains the run again")


def _commit(state: _Run, rec: dict, learner) -> None:
    """Append a finished cycle's record (and the modules a warm start needs) to the run and its folder."""
    state.records.append(rec)
    warm = _warm_start(state.cfg)
    state.previous = module_states(learner, results.WARM_START_FORMAT, rec["cycle"]) if warm else None
    if state.out_dir is not None:
        if state.previous is not None:
            path = results.warm_start_path(state.out_dir)
            if os.path.lexists(path):  # the last recorded cycle's, until this cycle's record is on disk
                os.replace(path, results.warm_start_previous_path(state.out_dir))
            results.save_tensors(path, state.previous)
        results.write_records(results.records_path(state.out_dir), state.records)


def run(
    cfg: RunConfig,
    out_dir: str | Path | None = None,
    *,
    data=None,
    force: bool = False,
    progress: bool = True,
    meta: dict | None = None,
    deadline: float | None = None,
    cycle_estimate: float | None = None,
    time_limit: float | None = None,
    on_cycle: Callable[[dict], None] | None = None,
    on_abandon: Callable[[timebox.CycleAbandoned], None] | None = None,
) -> list[dict]:
    """Run (or resume, or just load) one active-learning run; returns its per-cycle records.

    ``out_dir`` None keeps everything in memory. With a folder: a finished run
    is loaded, not recomputed (unless ``force``); an unfinished one resumes
    after its last recorded cycle. ``data`` may pass a preloaded
    :class:`~alkit.data.Data` (it must match the config's dataset settings).
    ``meta`` (e.g. experiment and arm names) is stored in ``config.json``.

    Time box: with ``deadline`` (a :func:`alkit.engine.timebox.clock` time), no cycle starts that
    :func:`alkit.engine.timebox.cycle_fits` says will not end by then; the records so far are returned
    (fewer than ``cycles + 1``: the run is unfinished and the same call resumes it).
    ``cycle_estimate`` (seconds) stands in for the run's own cycle times until it
    has one; with neither, a cycle starts only while half of ``time_limit`` is left. A cycle that its own
    pace says cannot end by ``deadline`` is given up (:mod:`alkit.engine.timebox`): nothing of it is written,
    ``on_abandon(error)`` is called, and the records so far are returned. ``on_cycle(record)`` is called
    after each cycle is written.
    """
    state = _open(cfg, out_dir, data, force, meta)
    if isinstance(state, list):  # finished: its records
        return state
    records, out_dir, data, pool, device = state.records, state.out_dir, state.data, state.pool, state.device
    desc = f"{(meta or {}).get('arm', cfg.strategy)}/seed{cfg.seed}"
    bar = progress_bar(range(len(records), cfg.cycles + 1), desc=desc, unit="cycle", disable=not progress)
    try:
        for cycle in bar:
            if deadline is not None and not timebox.cycle_fits(timebox.cycle_seconds(records) or cycle_estimate, deadline, time_limit):
                break
            try:
                with timebox.cycle_deadline(deadline):
                    # a warm start continues from state.previous: the modules a resumed run loads from learner.pt
                    rec, learner = _cycle(cfg, data, pool, cycle, device, state.previous, progress, out_dir)
            except timebox.CycleAbandoned as exc:
                if on_abandon is not None:
                    on_abandon(exc)
                break
            _commit(state, rec, learner)
            bar.set_postfix(n=rec["n_labelled"], test=f"{rec['test_acc']:.3f}")
            if on_cycle is not None:
                on_cycle(rec)
            if rec.get("stopped"):
                break
    finally:  # however it ends (an error, the time box before its first cycle): no record, no config or folder
        _unstarted_leaves_no_config(state)
    return records


def run_group(
    runs: list[tuple[RunConfig, Path | None, dict | None]],
    *,
    data: list | None = None,
    force: bool = False,
    progress: bool = False,
    deadline: float | None = None,
    cycle_estimate: float | None = None,
    time_limit: float | None = None,
    on_cycle: Callable[[int, dict], None] | None = None,
    on_abandon: Callable[[timebox.CycleAbandoned], None] | None = None,
    randomness: str = "different",
) -> list[list[dict] | Exception]:
    """Run ``runs`` (``(config, folder, meta)`` each, one learner family and shape) in lockstep: their next
    cycles' trainings as one stacked model (:func:`alkit.engine.drive_fused`), then each run evaluates,
    selects and writes its own record, as :func:`run` does. A run leaves the group when it finishes or its
    stopping rule ends it; a run that fails alone (a config that cannot start, non-finite losses) leaves
    it with its exception, the others go on. Returns each run's records, or its exception.

    Time box as :func:`run`: a round of cycles starts only if the slowest member's cycle fits, and a
    round given up mid-way writes nothing for any member. Noise: each round's dropout and sampling noise
    comes from one seed derived from the members and their cycles (:mod:`alkit.engine.fused`), so a
    group resumed after a kill trains every cycle exactly as the uninterrupted group does; a record says
    ``fused_k`` (runs trained together) and ``fused_group`` (who).
    """
    states: list = []
    for k, (cfg, out_dir, meta) in enumerate(runs):
        try:
            states.append(_open(cfg, out_dir, None if data is None else data[k], force, meta))
        except Exception as exc:  # noqa: BLE001  (reported for this run; the others go on)
            states.append(exc)
    out: list = [s if isinstance(s, (list, Exception)) else None for s in states]
    active = [k for k, s in enumerate(states) if isinstance(s, _Run)]
    try:
        while active:
            estimate = max((timebox.cycle_seconds(states[k].records) or cycle_estimate or 0.0) for k in active) or None
            if deadline is not None and not timebox.cycle_fits(estimate, deadline, time_limit):
                break
            members = []
            for k in active:
                st = states[k]
                cycle = len(st.records)
                lab, unl = st.pool.labelled_indices(), st.pool.unlabelled_indices()
                learner, train = new_learner(st.cfg, st.data, lab, unl, st.device, st.previous)
                members.append((k, cycle, lab, unl, learner, train))
            labels = [f"{states[k].label}@{cycle}" for k, cycle, *_ in members]
            t = time.perf_counter()
            try:
                with timebox.cycle_deadline(deadline):
                    fits = drive_fused([learner.fit_phases(train, fit_seed(states[k].cfg, cycle))
                                        for k, cycle, _, _, learner, train in members],
                                       progress, randomness, noise_seed=derive_seed("fused", *labels),
                                       probes=[final_probe(states[k].data) for k, *_ in members])
            except timebox.CycleAbandoned as exc:
                if on_abandon is not None:
                    on_abandon(exc)
                break
            train_seconds = time.perf_counter() - t
            group = ",".join(labels)
            for (k, cycle, lab, unl, learner, train), metrics in zip(members, fits):
                st = states[k]
                learner.previous = None
                try:
                    if isinstance(metrics, Exception):
                        raise metrics
                    seconds = {"train": train_seconds}
                    rec = evaluate(st.cfg, st.data, learner, lab, unl, cycle, metrics, seconds)
                    rec["fused_group"] = group
                    rec = _after_fit(st.cfg, st.data, st.pool, cycle, st.device, learner, train, lab, unl, rec, seconds,
                                     st.out_dir)
                    _commit(st, rec, learner)
                except Exception as exc:  # noqa: BLE001
                    exc.add_note(f"while running {st.label} cycle {cycle} in a fused group of {len(members)}")
                    out[k] = exc
                    active.remove(k)
                    _unstarted_leaves_no_config(st)
                    continue
                if on_cycle is not None:
                    on_cycle(k, rec)
                if st.finished:
                    active.remove(k)
    finally:  # however it ends (an error, the time box before a first cycle): no record, no config or folder
        for k in active:
            _unstarted_leaves_no_config(states[k])
    for k, st in enumerate(states):
        if out[k] is None:
            out[k] = st.records
    return out


#: learner parameters that may differ between the runs of one fused group (a weight or flag of the loss,
#: :attr:`alkit.engine.Phase.hp`); every other parameter must be equal
PER_RUN_PARAMS = ("adversary_weight", "beta", "detach_y_in_adversary")
#: learners whose runs fuse with another's: ``m2_disc`` is ``m2_vaal`` with the adversarial weight 0
FUSION_FAMILY = {"m2_vaal": "m2_disc"}


#: config keys that do not reach a run's first cycle before its selection: runs that differ only in these train
#: the same cycle 0 (same learner, parameters, data, initial set and seed) and may share it (:func:`share_first_cycle`)
FIRST_CYCLE_FREE = ("strategy", "strategy_params", "budget", "cycles", "candidates", "stop_disc_auc", "stop_disc_acc",
                    "latent_sample", "save_learner", "coverage_purity")


def first_cycle_key(cfg: RunConfig) -> str:
    """Runs with one key train an identical cycle 0: the config without :data:`FIRST_CYCLE_FREE`, the learner's
    parameters resolved (a default written out equals one left out), the seed included."""
    cls = LEARNERS[cfg.learner]
    values = {k: v for k, v in to_dict(cfg).items() if k not in FIRST_CYCLE_FREE}
    values["learner_params"] = to_dict(from_dict(cls.Params, cfg.learner_params,
                                                 where=f"learner_params[{cfg.learner}]")) if cls.Params else {}
    return results.dumps(values, sort_keys=True)


def _rng_states(device: torch.device) -> tuple:
    """Every global random state a cycle's evaluation and selection could read after training."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda, np.random.get_state(), random.getstate()


def _set_rng_states(states: tuple, device: torch.device) -> None:
    cpu, cuda, np_state, py_state = states
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda, device)
    np.random.set_state(np_state)
    random.setstate(py_state)


def share_first_cycle(
    runs: list[tuple[RunConfig, Path | None, dict | None]],
    *,
    data: list | None = None,
    force: bool = False,
    progress: bool = False,
    deadline: float | None = None,
    cycle_estimate: float | None = None,
    time_limit: float | None = None,
    on_cycle: Callable[[int, dict], None] | None = None,
    on_abandon: Callable[[timebox.CycleAbandoned], None] | None = None,
) -> list[Exception | None]:
    """Cycle 0 of ``runs`` (``(config, folder, meta)`` each, one :func:`first_cycle_key`) trained once: the
    learner is fitted for the first run that has no record yet, and every such run then evaluates, selects
    and writes its own cycle-0 record from a copy of it, with the global random states the fit left, exactly
    as it would alone (``tests/test_first_cycle.py``: records equal but timings, warm-start modules equal).
    Each record says ``first_cycle_shared`` (how many runs shared the training) and keeps the fit's seconds.
    Runs that are finished or have records are left as they are; :func:`run` continues every run after this.
    Returns, per run, None or the exception that stopped it (the others go on); nothing is written for a
    cycle the time box gives up."""
    out: list[Exception | None] = [None] * len(runs)
    fresh: list[tuple[int, _Run]] = []
    for k, (cfg, out_dir, meta) in enumerate(runs):
        try:
            state = _open(cfg, out_dir, None if data is None else data[k], force, meta)
        except Exception as exc:  # noqa: BLE001  (this run cannot start; the others go on)
            out[k] = exc
            continue
        if isinstance(state, _Run) and not state.records:
            fresh.append((k, state))
    if len({first_cycle_key(s.cfg) for _, s in fresh}) > 1:  # the caller's error: nothing is left behind
        for _, s in fresh:
            _unstarted_leaves_no_config(s)
        raise ValueError("share_first_cycle: the runs train different first cycles (alkit.loop.first_cycle_key)")
    first = fresh[0][1] if fresh else None
    if first is None or (deadline is not None and not timebox.cycle_fits(cycle_estimate, deadline, time_limit)):
        for _, s in fresh:
            _unstarted_leaves_no_config(s)
        return out
    try:
        _train_first_shared(fresh, out, progress, deadline, on_cycle, on_abandon)
    finally:  # however it ends (an error, the time box, an interrupt): a run with no record keeps no config.json
        for _, s in fresh:
            _unstarted_leaves_no_config(s)
    return out


def _train_first_shared(fresh: list[tuple[int, "_Run"]], out: list, progress: bool, deadline: float | None,
                        on_cycle, on_abandon) -> None:
    """:func:`share_first_cycle`'s work: one fit for ``fresh``'s first run, then each run's own cycle-0 record."""
    first = fresh[0][1]
    lab, unl = first.pool.labelled_indices(), first.pool.unlabelled_indices()
    try:
        with timebox.cycle_deadline(deadline):
            learner, train, metrics, fitted = fit(first.cfg, first.data, lab, unl, 0, first.device, progress=progress)
    except timebox.CycleAbandoned as exc:
        if on_abandon is not None:
            on_abandon(exc)
        return
    except Exception as exc:  # noqa: BLE001  (every run of the shared training fails with it)
        for k, _ in fresh:
            out[k] = exc
        return
    states = _rng_states(first.device)
    for n, (k, s) in enumerate(fresh):
        try:
            if not np.array_equal(s.pool.labelled_indices(), lab):  # one key, one initial set: a guard
                raise ValueError(f"{s.label}: its initial set differs from {first.label}'s")
            _set_rng_states(states, s.device)
            own = learner if n == len(fresh) - 1 else copy.deepcopy(learner)
            seconds = dict(fitted)
            rec = evaluate(s.cfg, s.data, own, lab, unl, 0, dict(metrics), seconds)
            rec = _after_fit(s.cfg, s.data, s.pool, 0, s.device, own, train, lab, unl, rec, seconds, s.out_dir)
            rec["first_cycle_shared"] = len(fresh)
            _commit(s, rec, own)
        except Exception as exc:  # noqa: BLE001  (this run's selection or files; the others go on)
            out[k] = exc
            continue
        if on_cycle is not None:
            on_cycle(k, rec)


def fusion_key(cfg: RunConfig) -> str | None:
    """Runs with one key can train as one stacked model (:func:`run_group`): the learner family, its
    resolved parameters but :data:`PER_RUN_PARAMS`, the data settings (pool, validation set) and the
    device. None: the learner cannot fuse (a plug-in that overrides ``fit``). The engine checks the
    actual shapes again at every cycle (a labelled set smaller than a batch trains apart)."""
    cls = LEARNERS[cfg.learner]
    if not cls.fusable():
        return None
    params = to_dict(from_dict(cls.Params, cfg.learner_params, where=f"learner_params[{cfg.learner}]")) \
        if cls.Params else {}
    shared = {k: v for k, v in params.items() if k not in PER_RUN_PARAMS}
    data = (cfg.dataset, cfg.data_dir, cfg.split_seed, cfg.val_size, cfg.pool_size, cfg.test_size, cfg.device)
    return results.dumps([FUSION_FAMILY.get(cfg.learner, cfg.learner), shared, data], sort_keys=True)


def _warm_start(cfg: RunConfig) -> bool:
    return bool(cfg.learner_params.get("warm_start", False))


def fit_and_evaluate(cfg: RunConfig, data, lab: np.ndarray, unl: np.ndarray, cycle: int, device, previous=None,
                     progress: bool = False):
    """Train a fresh learner of ``cfg`` on the labelled pool points ``lab`` (+ ``unl`` as unlabelled) and
    evaluate it on validation and test; returns ``(record, learner, train data, seconds)``.

    The record holds the cycle's accuracies, test confusion, labelled class counts and the learner's
    metrics. Shared by the simulated loop and the oracle session (:mod:`alkit.oracle`).
    """
    learner, train, metrics, seconds = fit(cfg, data, lab, unl, cycle, device, previous, progress)
    rec = evaluate(cfg, data, learner, lab, unl, cycle, metrics, seconds)
    return rec, learner, train, seconds


def fit(cfg: RunConfig, data, lab: np.ndarray, unl: np.ndarray, cycle: int, device, previous=None,
        progress: bool = False):
    """A fresh learner of ``cfg`` fitted on ``lab`` (+ ``unl``): ``(learner, train data, metrics, seconds)``."""
    learner, train = new_learner(cfg, data, lab, unl, device, previous)
    t = time.perf_counter()
    probe = {"probe": final_probe(data)} if type(learner).fusable() else {}  # a plug-in's own fit takes none
    metrics = learner.fit(train, seed=fit_seed(cfg, cycle), progress=progress, **probe)
    learner.previous = None
    return learner, train, metrics, {"train": time.perf_counter() - t}


def final_probe(data) -> Callable[[torch.nn.Module], dict]:
    """What the engine measures of a validated phase's final state before it restores the best validated
    one: the test accuracy there, ``test_acc_final`` (beside the record's best-validated ``test_acc``:
    a validation set far larger than the labelled set picks the checkpoint -- Oliver et al., 2018)."""
    def probe(model: torch.nn.Module) -> dict:
        return {"test_acc_final": accuracy(model, data.x_test, data.y_test)}

    return probe


def fit_seed(cfg: RunConfig, cycle: int) -> int:
    """The seed of cycle ``cycle``'s training (model init, minibatch order, noise)."""
    return derive_seed(cfg.seed, cycle, "fit")


def new_learner(cfg: RunConfig, data, lab: np.ndarray, unl: np.ndarray, device, previous=None):
    """A fresh learner of ``cfg`` and its :class:`TrainData` (labelled pool points ``lab``, unlabelled ``unl``)."""
    lab_t = torch.as_tensor(lab.copy(), device=device)
    unl_t = torch.as_tensor(unl.copy(), device=device)
    train = TrainData(
        x_labelled=data.x_pool[lab_t], y_labelled=data.y_pool[lab_t], x_unlabelled=data.x_pool[unl_t],
        x_val=data.x_val, y_val=data.y_val, num_classes=data.num_classes,
    )
    learner = make_learner(cfg.learner, cfg.learner_params, data.num_classes, device)
    learner.previous = previous if _warm_start(cfg) else None
    return learner, train


def evaluate(cfg: RunConfig, data, learner, lab: np.ndarray, unl: np.ndarray, cycle: int, metrics: dict,
             seconds: dict) -> dict:
    """The cycle record of a fitted learner: validation and test accuracy, test confusion, labelled class
    counts, the learner's ``metrics``; adds ``seconds["evaluate"]``."""
    t = time.perf_counter()
    lab_t = torch.as_tensor(lab.copy(), device=data.x_pool.device)
    test_pred = learner.predict_proba(data.x_test).argmax(1)
    val_pred = learner.predict_proba(data.x_val).argmax(1)
    rec = {
        "strategy": cfg.strategy, "learner": cfg.learner, "seed": cfg.seed, "cycle": cycle,
        "n_labelled": len(lab), "n_val": len(data.y_val),
        "val_acc": (val_pred == data.y_val).float().mean().item(),
        "test_acc": (test_pred == data.y_test).float().mean().item(),
        "test_confusion": confusion_matrix(test_pred, data.y_test, data.num_classes).tolist(),
        "labelled_class_counts": np.bincount(data.y_pool[lab_t].cpu().numpy(), minlength=data.num_classes).tolist(),
    }
    rec["iterations_per_cycle"] = learner.params.iterations_per_cycle(len(lab), len(unl))
    rec.update({k: v for k, v in metrics.items() if k not in rec})
    seconds["evaluate"] = time.perf_counter() - t
    return rec


def propose(cfg: RunConfig, data, learner, train, lab: np.ndarray, unl: np.ndarray, cycle: int, device):
    """The ``cfg.budget`` pool indices ``cfg.strategy`` picks among ``unl`` (a seeded subsample of
    ``cfg.candidates`` of them where set), and the strategy's :class:`Context`. Reveals no label."""
    cand = unl
    if cfg.candidates is not None and cfg.candidates < len(unl):
        rng = np.random.default_rng(derive_seed(cfg.seed, cycle, "candidates"))
        cand = np.sort(rng.choice(unl, size=cfg.candidates, replace=False))
    cand = np.array(cand, copy=True)
    cand.setflags(write=False)
    cand_t = torch.as_tensor(cand.copy(), device=device)
    ctx = Context(
        learner=learner, x_unlabelled=data.x_pool[cand_t], x_labelled=train.x_labelled,
        y_labelled=train.y_labelled, unlabelled_indices=cand, labelled_indices=lab,
        num_classes=data.num_classes, seed=derive_seed(cfg.seed, cycle, "strategy"),
        params=make_params(get_strategy(cfg.strategy), cfg.strategy_params),
    )
    return acquire(cfg.strategy, ctx, cfg.budget), ctx


def _cycle(cfg: RunConfig, data, pool: Pool, cycle: int, device, previous, progress: bool, out_dir: Path | None):
    lab, unl = pool.labelled_indices(), pool.unlabelled_indices()
    rec, learner, train, seconds = fit_and_evaluate(cfg, data, lab, unl, cycle, device, previous, progress)
    return _after_fit(cfg, data, pool, cycle, device, learner, train, lab, unl, rec, seconds, out_dir), learner


def _after_fit(cfg: RunConfig, data, pool: Pool, cycle: int, device, learner, train, lab, unl, rec: dict,
               seconds: dict, out_dir: Path | None) -> dict:
    """The rest of a cycle once its learner is fitted and evaluated: the stopping rule, selection (labels
    revealed only after it), diagnostics, the learner and latent files; labels the selection in ``pool``."""
    stop_reason = None
    if cfg.stop_disc_auc is not None and rec.get("disc_auc_heldout") is not None:
        if rec["disc_auc_heldout"] <= cfg.stop_disc_auc:
            stop_reason = (
                f"discriminator held-out ROC AUC {rec['disc_auc_heldout']:.3f} <= {cfg.stop_disc_auc}: "
                "it can no longer tell labelled from unlabelled"
            )
    if stop_reason is None and cfg.stop_disc_acc is not None and rec.get("disc_acc_heldout") is not None:
        if rec["disc_acc_heldout"] <= cfg.stop_disc_acc:
            stop_reason = (
                f"discriminator held-out accuracy {rec['disc_acc_heldout']:.3f} <= {cfg.stop_disc_acc}: "
                "it can no longer tell labelled from unlabelled"
            )
    rec["stopped"] = stop_reason is not None
    rec["stop_reason"] = stop_reason
    rec["selected"] = None
    if cycle < cfg.cycles and stop_reason is None:
        t = time.perf_counter()
        selected, ctx = propose(cfg, data, learner, train, lab, unl, cycle, device)
        seconds["select"] = time.perf_counter() - t
        # labels are revealed only now, after the strategy has chosen
        y_sel = data.y_pool[torch.as_tensor(selected, device=device)]
        rec["selected"] = selected.tolist()
        rec["selected_class_counts"] = np.bincount(y_sel.cpu().numpy(), minlength=data.num_classes).tolist()
        t = time.perf_counter()
        rec["diagnostics"] = _diagnostics(ctx, selected, y_sel)
        rec.update(_prediction_spread(ctx))
        if cfg.coverage_purity is not None:
            rec["coverage"] = latent_coverage(ctx, np.searchsorted(ctx.unlabelled_indices, selected), cfg.coverage_purity)
        seconds["diagnostics"] = time.perf_counter() - t
        pool.label(selected)
    if cfg.save_learner and out_dir is not None:
        results.save_tensors(results.learner_path(out_dir, cycle),
                             module_states(learner, results.LEARNER_FORMAT, cycle))
    if cfg.latent_sample and out_dir is not None:
        t = time.perf_counter()
        save_latent(cfg, data, learner, cycle, lab, rec["selected"], out_dir)
        seconds["latent"] = time.perf_counter() - t
    rec["seconds"] = seconds
    return rec


def save_latent(cfg: RunConfig, data, learner, cycle: int, labelled: np.ndarray, selected, out_dir: Path) -> None:
    """Save latent codes of a fixed pool sample plus every labelled and just-selected point.

    ``latent/cycleNN.npz`` (:func:`alkit.results.latent_path`) holds ``pool_index`` (N,), ``z`` (N, d) float16,
    ``y`` (N,) and ``status`` (N,): 0 unlabelled, 1 labelled when the model was
    trained, 2 selected at the end of this cycle. The sample is the same in
    every cycle (seeded by the run seed only) so UMAP plots are comparable.
    """
    n = len(data.y_pool)
    rng = np.random.default_rng(derive_seed(cfg.seed, "latent_sample"))
    sample = rng.choice(n, size=min(cfg.latent_sample, n), replace=False)
    status = np.zeros(n, dtype=np.int8)
    status[labelled] = 1
    if selected is not None:
        status[selected] = 2
    keep = np.union1d(sample, np.flatnonzero(status))
    keep_t = torch.as_tensor(keep, device=data.x_pool.device)
    z = learner.embed(data.x_pool[keep_t]).float().cpu().numpy().astype(np.float16)
    buf = io.BytesIO()
    np.savez_compressed(buf, pool_index=keep, z=z, y=data.y_pool[keep_t].cpu().numpy(), status=status[keep])
    results.atomic_write_bytes(results.latent_path(out_dir, cycle), buf.getvalue())


def _prediction_spread(ctx: Context) -> dict:
    """How spread the task model's predictions y' are on unlabelled vs labelled points.

    ``pred_entropy_*``: mean entropy (nats) of q(y|x); ``pred_class_share_unlabelled``:
    share of candidates predicted as each class. The study explains the
    discriminator-only result by the adversarial term equalising y'; these
    numbers let a notebook test that instead of restating it.
    """
    pu, pl = ctx.proba(), ctx.labelled_proba()
    share = torch.bincount(pu.argmax(1), minlength=ctx.num_classes).float() / max(len(pu), 1)
    return {
        "pred_entropy_unlabelled": entropy_of(pu).mean().item(),
        "pred_entropy_labelled": entropy_of(pl).mean().item(),
        "pred_class_share_unlabelled": share.cpu().tolist(),
    }


def _diagnostics(ctx: Context, selected: np.ndarray, y_sel: torch.Tensor) -> dict | None:
    pos = np.searchsorted(ctx.unlabelled_indices, selected)
    return selection_diagnostics(ctx, pos, y_sel)
