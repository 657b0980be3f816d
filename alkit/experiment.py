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

from .config import ConfigError, from_dict, load_yaml
from .loop import RunConfig, run, validate
from .results import load_results

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

    def __post_init__(self):
        if self.oracle not in (None, "simulated", "human"):
            raise ConfigError(f"experiment {self.name!r}: oracle: {self.oracle!r} is not allowed; "
                              "allowed: simulated (the dataset's labels), human (you, in notebook 06's grid), or none")
        if not self.arms:
            raise ConfigError(f"experiment {self.name!r} has no arms")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"experiment {self.name!r}: seeds must be a non-empty list of distinct ints")
        for arm in self.arms:  # build every config now: a bad key fails before any training
            validate(self.config(arm, self.seeds[0]))

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
        return Path(self.results_root) / self.profile / self.name

    def run_dir(self, arm: str, seed: int) -> Path:
        return self.folder / arm / f"seed{seed}"

    def session_dir(self, arm: str, seed: int) -> Path:
        """The folder of an oracle session (:mod:`alkit.oracle`) of ``arm`` and ``seed``."""
        return self.run_dir(arm, seed) / "oracle"


def load_experiment(path: str | Path, **overrides) -> Experiment:
    """Read an experiment YAML; ``overrides`` replace top-level keys (e.g. ``results_root``)."""
    values = load_yaml(path)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(Experiment, values, where=str(path))


#: ``$ALKIT_DRAW_ONLY`` set to 1 (``python -m alkit.batch --draw-only``, ``make figures DRAW_ONLY=1``): notebooks
#: draw what is on disk, train nothing. Defined in alkit.batch, which sets it and imports no torch.
from .batch import DRAW_ONLY_ENV  # noqa: E402


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
    from .progress import progress_bar

    if train is None:
        train = not draw_only()
    if not train:
        rows = experiment_records(exp, log=log)
        for line in incomplete_lines(exp, rows) if log else ():
            log(line)
        return rows
    data_cache = {}
    runs = [(arm, seed) for arm in arms or list(exp.arms) for seed in seeds or exp.seeds]
    todo = force or not is_finished(exp, runs)
    overall = progress_bar(runs, desc=f"{exp.name}: runs", disable=not (progress and todo), position=0)
    for arm, seed in overall:  # one bar over the runs; each run shows its cycles (and iterations) below it
        overall.set_postfix_str(f"{arm}/seed{seed}")
        t = time.perf_counter()
        recs = run_one(exp, arm, seed, data_cache, force=force, progress=progress)
        if log:
            log(f"{exp.name}/{arm}/seed{seed}: {len(recs)} cycles, final test acc "
                f"{recs[-1]['test_acc']:.4f} ({time.perf_counter() - t:.1f} s)")
    return experiment_records(exp, log=log)


def run_one(exp: Experiment, arm: str, seed: int, data_cache: dict | None = None, *, device: str | None = None,
            force: bool = False, progress: bool = False, **run_kwargs) -> list[dict]:
    """Run (resume, or load) one (arm, seed) of ``exp`` into its run folder; returns its records.

    ``data_cache`` (a dict) shares loaded data between the runs of one process; ``device``
    overrides the config's (the config stored with the run keeps its own, see
    :data:`~alkit.loop.RESUMABLE_DIFFERENCES`); ``run_kwargs`` go to :func:`alkit.loop.run`
    (``deadline``, ``cycle_estimate``, ``on_cycle``).
    """
    cfg = exp.config(arm, seed)
    if device is not None:
        cfg.device = device
    data = _cached_data(cfg, data_cache if data_cache is not None else {})
    try:
        return run(cfg, exp.run_dir(arm, seed), data=data, force=force, progress=progress,
                   meta={"experiment": exp.name, "arm": arm, "profile": exp.profile}, **run_kwargs)
    except Exception as exc:  # keep the type (the CLI reports user errors by type); say which run
        exc.add_note(f"while running {exp.name}: arm {arm!r}, seed {seed} (finished runs and cycles are kept)")
        raise


def _cached_data(cfg, cache: dict):
    """The data of ``cfg`` on its device, loaded once per distinct dataset setting in ``cache``."""
    from .loop import _load_data, resolve_device

    dev = resolve_device(cfg.device)
    key = (cfg.dataset, cfg.data_dir, cfg.split_seed, cfg.val_size, cfg.pool_size, cfg.test_size, str(dev))
    if key not in cache:
        cache[key] = _load_data(cfg, dev)
    return cache[key]


def run_group(runs: list[tuple[Experiment, str, int]], data_cache: dict | None = None, *, device: str | None = None,
              force: bool = False, progress: bool = False, **group_kwargs) -> list[list[dict] | Exception]:
    """Run the (experiment, arm, seed) ``runs`` of one fusion group in lockstep (:func:`alkit.loop.run_group`):
    each in its own run folder, exactly as :func:`run_one` lays it out; returns each run's records or exception."""
    from .loop import run_group as loop_group

    cache = data_cache if data_cache is not None else {}
    configs, datas = [], []
    for exp, arm, seed in runs:
        cfg = exp.config(arm, seed)
        if device is not None:
            cfg.device = device
        datas.append(_cached_data(cfg, cache))
        configs.append((cfg, exp.run_dir(arm, seed), {"experiment": exp.name, "arm": arm, "profile": exp.profile}))
    return loop_group(configs, data=datas, force=force, progress=progress, **group_kwargs)


def experiment_records(exp: Experiment, log=print) -> list[dict]:
    """Every record of ``exp``'s arms and seeds, and nothing else from its folder.

    Runs in the folder that the parameters do not name (another seed started from the command line,
    an arm since removed) are left out, and ``log`` says which, so a notebook never averages in runs
    its text does not describe.
    """
    rows = load_results(exp.folder)
    keep = [r for r in rows if r.get("arm") in exp.arms and r.get("seed") in exp.seeds]
    others = sorted({(str(r.get("arm")), r.get("seed")) for r in rows} - {(str(r.get("arm")), r.get("seed")) for r in keep},
                    key=str)
    if others and log:
        log(f"{exp.folder} also holds {len(others)} run(s) outside these parameters, left out: "
            + ", ".join(f"{a}/seed{s}" for a, s in others))
    return keep


def is_finished(exp: Experiment, runs: list[tuple[str, int]] | None = None) -> bool:
    """True when every (arm, seed) of ``exp`` (or of ``runs``) has all its cycles on disk (no training needed)."""
    from .results import read_records, RECORDS_FILE

    for arm, seed in runs or [(a, s) for a in exp.arms for s in exp.seeds]:
        cfg = exp.config(arm, seed)
        recs = read_records(exp.run_dir(arm, seed) / RECORDS_FILE)
        if not recs or not (len(recs) == cfg.cycles + 1 or recs[-1].get("stopped")):
            return False
    return True


def coverage(exp: Experiment, rows: list[dict]) -> dict:
    """How much of ``exp`` the records ``rows`` hold: per run and in total.

    ``runs``: one dict per (arm, seed) of the parameters, in arm then seed order: ``arm, seed,
    cycles`` (sorted cycle numbers present), ``n_labelled`` (their label counts), ``expected``
    (``cycles + 1`` of its config), ``stopped`` (the stopping rule ended it) and ``finished``
    (every cycle present, or stopped). Totals: ``runs_total, runs_started, runs_finished,
    cycles_on_disk, cycles_expected`` (a stopped run expects the cycles it has) and ``partial``
    (some run is not finished).
    """
    present: dict = {}
    for r in rows:
        if r.get("cycle") is not None:
            present.setdefault((r.get("arm"), r.get("seed")), {})[r["cycle"]] = r
    runs = []
    for arm in exp.arms:
        expected = exp.config(arm, exp.seeds[0]).cycles + 1
        for seed in exp.seeds:
            recs = present.get((arm, seed), {})
            cycles = sorted(recs)
            stopped = bool(cycles) and bool(recs[cycles[-1]].get("stopped"))
            runs.append({"arm": arm, "seed": seed, "cycles": cycles, "expected": expected, "stopped": stopped,
                         "n_labelled": [recs[c].get("n_labelled") for c in cycles],
                         "finished": stopped or len(cycles) >= expected})
    out = {"runs": runs, "runs_total": len(runs), "runs_started": sum(1 for r in runs if r["cycles"]),
           "runs_finished": sum(1 for r in runs if r["finished"]),
           "cycles_on_disk": sum(len(r["cycles"]) for r in runs),
           "cycles_expected": sum(len(r["cycles"]) if r["stopped"] else r["expected"] for r in runs)}
    out["partial"] = out["runs_finished"] < out["runs_total"]
    return out


def cycle_span(cycles: list[int]) -> str:
    """``[0, 1, 2]`` -> "0-2"; gaps as in "0-2, 5"; one cycle -> "3"."""
    parts, start = [], None
    for i, c in enumerate(cycles):
        if start is None:
            start = c
        if i + 1 == len(cycles) or cycles[i + 1] != c + 1:
            parts.append(str(start) if start == c else f"{start}-{c}")
            start = None
    return ", ".join(parts)


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
