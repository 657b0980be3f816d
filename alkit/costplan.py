"""What a profile costs before it runs, and what it cost after: ``alkit plan params/cpu/*.yaml``.

For every (experiment, arm, seed) run: the trainings (cycles) left, the iterations each takes and the hours
they will take on this machine, projected from measured per-iteration costs; beside it, for the cycles on
disk, the seconds each one measured (the records' ``seconds``) and what the plan projected for them.

Cost of one cycle = task iterations x the task model's ms per iteration (the ``classifier`` rows of the
benchmark) + generative iterations x the generative model's ms per iteration (``vae<W>_s<k>`` / ``m2vaal<W>_s<k>``
rows; M2 is the task model too, so an M2 cycle has generative iterations only) + a fixed cost per cycle
(evaluation, scoring the pool, diagnostics): what the arm's newest sessions measured (:func:`arm_overhead`: its
strategy's selection and the code as it is now, not a mean over sessions whose selection was slower), else the
mean over the experiment's records on disk, else :data:`CYCLE_OVERHEAD_S`.
The per-iteration costs come from ``benchmarks/bench_cpu.py``'s JSON (``--costs``): each row's
``ms_per_iteration`` for the option set the run asks for (``bf16+cl``, ``bf16``, ``channels_last`` or ``fp32``;
a table without that set: its ``fp32`` rows), the nearest width measured where the run's width was not. Costs depend on the kind of CPU
(:mod:`alkit.cpu`: bf16 steps ran x1.6-2.4 the fp32 speed with AVX-512-BF16 and x0.1 with AVX2 only), so
``--costs auto`` takes the table of this CPU's kind among ``benchmarks/results/bench_cpu*.json`` and
:func:`machine_warnings` says when the table is another kind's, or when runs ask for bf16 on a CPU without it.

Iterations per cycle follow the learners' own rules (``iterations_per_cycle`` at that cycle's labels;
``gen_iterations`` / ``gen_iterations_warm`` for the generative phase, :mod:`alkit.learners.adversarial`).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError, from_dict
from .cpu import bf16_warning, cpu_kind
from .devices import is_cuda
from .experiment import Experiment
from .results import RunFolderError, read_records, read_run_config, records_path

#: seconds of a cycle outside training where nothing is measured yet (evaluate + score 55k + diagnostics)
CYCLE_OVERHEAD_S = 15.0
#: the fewest records an arm's own overhead is the mean of (its newest sessions' first), else the experiment's
MIN_OVERHEAD_RECORDS = 3
GENERATIVE = {"vaal": "vae", "tavaal": "vae", "m2": "m2vaal", "m2_disc": "m2vaal", "m2_vaal": "m2vaal"}


@dataclass
class RunCost:
    exp: str
    arm: str
    seed: int
    cycles: int  # trainings in the run (cycles + 1)
    done: int  # trainings on disk
    projected_s: list[float] = field(default_factory=list)  # per training, all of them
    measured_s: list[float] = field(default_factory=list)  # per training on disk
    task_iterations: list[int] = field(default_factory=list)
    gen_iterations: list[int] = field(default_factory=list)
    shared_with: str | None = None  # an earlier run of the same config: trained once, copied (costs nothing here)

    @property
    def left_s(self) -> float:
        return sum(self.projected_s[self.done:])


def load_costs(path: str | Path) -> dict[tuple[str, str], float]:
    """(model, option set) -> ms per iteration from a ``bench_cpu.py`` JSON."""
    try:
        rows = json.loads(Path(path).read_text())["rows"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--costs: {str(path)[:200]!r} is not a bench_cpu.py JSON ({type(exc).__name__}); "
                          "allowed: the --out file of benchmarks/bench_cpu.py") from None
    return {(r["model"], r["options"]): float(r["ms_per_iteration"]) for r in rows}


#: where ``--costs auto`` looks for the cost tables, one per kind of CPU (``bench_cpu.json`` first)
COSTS_DIR = Path("benchmarks") / "results"


def costs_kind(path: str | Path) -> str:
    """The kind of CPU (:func:`alkit.cpu.cpu_kind`) a ``bench_cpu.py`` JSON was measured on; ``"unknown"`` where it
    does not say (its ``machine``'s ``kind``, else its ``flags_used``)."""
    try:
        machine = json.loads(Path(path).read_text()).get("machine") or {}
    except (OSError, ValueError, AttributeError):
        return "unknown"
    return machine.get("kind") or cpu_kind(machine.get("flags_used") or [])


def default_costs(directory: str | Path = COSTS_DIR, kind: str | None = None) -> Path:
    """The cost table of this CPU's kind (or ``kind``) in ``directory``: ``bench_cpu.json`` if it is that kind's,
    else the first ``bench_cpu*.json`` that is; ``bench_cpu.json`` where none is (:func:`machine_warnings` says so)."""
    directory, kind = Path(directory), kind or cpu_kind()
    first = directory / "bench_cpu.json"
    for path in [first, *sorted(p for p in directory.glob("bench_cpu*.json") if p != first)]:
        if path.is_file() and costs_kind(path) == kind:
            return path
    return first


def _asks_bf16(exp: Experiment, arm: str, seed: int) -> bool:
    cfg = exp.config(arm, seed)
    return bool(cfg.learner_params.get("bf16")) and not is_cuda(cfg.device)


def machine_warnings(experiments: list[Experiment], rows: list[RunCost], costs_path: str | Path,
                     kind: str | None = None) -> list[str]:
    """``warning:`` lines for a plan on this CPU (or one of ``kind``): the cost table is another kind's; runs left to
    train ask for bf16 autocast on a CPU without a bf16 unit (:func:`alkit.cpu.native_bf16`)."""
    kind = kind or cpu_kind()
    out = []
    measured = costs_kind(costs_path)
    if "unknown" not in (kind, measured) and measured != kind:
        out.append(f"warning: --costs {str(costs_path)[:200]} was measured on a CPU whose fastest unit is {measured}, "
                   f"this one's is {kind}: its projections do not hold here; measure this CPU with "
                   f"benchmarks/bench_cpu.py --out {COSTS_DIR / f'bench_cpu_{kind}.json'} (about 15 minutes), "
                   "which alkit plan then takes")
    exps = {e.name: e for e in experiments}
    bf16 = bf16_warning(sum(1 for r in rows if r.left_s > 0 and _asks_bf16(exps[r.exp], r.arm, r.seed)), kind)
    return out + ([bf16] if bf16 else [])


def _option_set(params) -> str:
    """The benchmark's option set of a run's speed options (a table without it: its fp32 rows, :func:`_ms`)."""
    bf16, cl = bool(getattr(params, "bf16", None)), bool(getattr(params, "channels_last", None))
    return "bf16+cl" if bf16 and cl else "bf16" if bf16 else "channels_last" if cl else "fp32"


def _ms(costs, prefix: str, width: int | None, steps: int | None, options: str, topk: int | None = None) -> float:
    """The cost row nearest to (width, steps) among ``prefix`` rows; steps scale the generative part linearly."""
    cands = []
    for (model, opt), ms in costs.items():
        if opt != options or not model.startswith(prefix):
            continue
        if prefix.startswith("classifier"):
            if model == prefix:
                return ms
            continue
        m = re.fullmatch(r"(\d+)(?:k(\d+))?_s(\d+)", model[len(prefix):])
        if not m or (int(m.group(2)) if m.group(2) else None) != topk:
            continue
        w, s = m.group(1), m.group(3)
        cands.append((abs(int(w) - (width or 64)) + 100 * abs(int(s) - (steps or 2)), int(s), ms))
    if not cands:
        if options != "fp32":
            return _ms(costs, prefix, width, steps, "fp32", topk)
        raise ConfigError(f"--costs: no measured row for {prefix} ({options}); run benchmarks/bench_cpu.py")
    _, s, ms = min(cands)
    return ms * (steps or 2) / s if steps and steps != s else ms


def run_cost(exp: Experiment, arm: str, seed: int, costs, overhead: float = CYCLE_OVERHEAD_S,
             recs: list[dict] | None = None) -> RunCost:
    """One run's cost per training; ``recs``: its records on disk (read here where not given)."""
    from .learners import LEARNERS

    cfg = exp.config(arm, seed)
    cls = LEARNERS[cfg.learner]
    params = from_dict(cls.Params, dict(cfg.learner_params), where=f"{exp.name}.arms.{arm}.learner_params")
    recs = read_records(records_path(exp.run_dir(arm, seed))) if recs is None else recs
    options = _option_set(params)
    size = getattr(params, "size", None) or getattr(params, "classifier_size", "small")
    task_ms = _ms(costs, "classifier_large" if size == "large" else "classifier", None, None, options)
    gen = GENERATIVE.get(cfg.learner)
    width = getattr(params, "vae_width", None) or getattr(params, "width", None)
    steps, topk = getattr(params, "vae_steps", None), getattr(params, "unlabelled_topk", None)
    gen_ms = _ms(costs, gen, width, steps, options, topk) if gen else 0.0
    if gen == "m2vaal" and size == "large":  # M2 with the large CNN: its own rows, else M2's + the larger CNN's step
        try:
            gen_ms = _ms(costs, "m2large", width, steps, options, topk)
        except ConfigError:  # a table without such rows (benchmarks/results/bench_cpu.json)
            gen_ms += _ms(costs, "classifier_large", None, None, options) - task_ms
    pool = (cfg.pool_size or 55_000)
    n0 = cfg.initial.n
    out = RunCost(exp.name, arm, seed, cfg.cycles + 1, len(recs))
    warm = bool(getattr(params, "warm_start", False))
    for cycle in range(cfg.cycles + 1):
        n_l = n0 + cycle * cfg.budget
        n_u = pool - n_l
        it = params.iterations_per_cycle(n_l, n_u)
        g = 0
        if gen:
            g = (params.gen_iterations_warm if warm and cycle > 0 and params.gen_iterations_warm is not None
                 else params.gen_iterations if params.gen_iterations is not None else it)
        task = 0 if cfg.learner.startswith("m2") else it
        out.task_iterations.append(task)
        out.gen_iterations.append(g)
        out.projected_s.append((task * task_ms + g * gen_ms) / 1000 + overhead)
    for r in recs:
        sec = r.get("seconds") or {}
        total = float(sum(v for v in sec.values() if isinstance(v, (int, float))))
        if r.get("first_cycle_shared"):  # trained once for n runs: each carries the training's seconds, costs 1/n
            train = float(sec.get("train") or 0.0)
            total -= train - train / int(r["first_cycle_shared"])
        out.measured_s.append(total)
    return out


def measured_overhead(records: list[dict]) -> float:
    """Mean seconds of a cycle outside training (evaluation, selection, diagnostics) over ``records`` (an
    experiment's on disk); :data:`CYCLE_OVERHEAD_S` where there are none."""
    extra = [sum(v for k, v in (r.get("seconds") or {}).items() if k != "train" and isinstance(v, (int, float)))
             for r in records]
    return sum(extra) / len(extra) if extra else CYCLE_OVERHEAD_S


def sessions(run: str | Path, recs: list[dict]) -> list[tuple[str, list[dict]]]:
    """A run's records grouped by the session that trained them, as (the session's start, its records): a cycle
    belongs to the last session that began at or before it (``config.json``: ``started`` from cycle 0, then each
    of ``resumed`` from its ``from_cycle``). A run without a readable ``config.json``: one session, start ""."""
    try:
        meta = read_run_config(run)
    except (RunFolderError, OSError):
        meta = {}
    starts = sorted([(0, str(meta.get("started", "")))] + [
        (r["from_cycle"], str(r.get("started", ""))) for r in meta.get("resumed") or []
        if isinstance(r, dict) and isinstance(r.get("from_cycle"), int)])
    out: dict[str, list[dict]] = {}
    for r in recs:
        cycle = r.get("cycle") if isinstance(r.get("cycle"), int) else 0
        start = [s for f, s in starts if f <= cycle][-1]
        out.setdefault(start, []).append(r)
    return list(out.items())


def arm_overhead(groups: list[tuple[str, list[dict]]]) -> float | None:
    """Mean overhead (:func:`measured_overhead`) of an arm's newest sessions (``groups`` of :func:`sessions`, over
    its runs): whole sessions, newest first, until they hold :data:`MIN_OVERHEAD_RECORDS` records; None where the
    arm has fewer in all."""
    picked: list[dict] = []
    for _, recs in sorted(groups, key=lambda g: g[0], reverse=True):
        picked += recs
        if len(picked) >= MIN_OVERHEAD_RECORDS:
            return measured_overhead(picked)
    return None


def _shared_by(recs: list[dict]) -> int:
    """How many runs shared the training of the cycle 0 on disk (its record's ``first_cycle_shared``), else 1."""
    first = next((r for r in recs if r.get("cycle") == 0), {})
    n = first.get("first_cycle_shared")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1


def plan_costs(experiments: list[Experiment], costs, arms: list[str] | None = None,
               seeds: list[int] | None = None) -> list[RunCost]:
    """Every run's cost (or the runs of ``arms`` and ``seeds``, as ``alkit run --arms --seeds`` selects them); a run whose config equals an earlier one's (04's ``m2_vaal`` is 03's) costs nothing: alkit
    run trains it once and copies it (:mod:`alkit.jobs`' shared runs). In an experiment with ``share_first_cycle``,
    a first cycle that an earlier run trains too (:func:`alkit.loop.first_cycle_key`) costs only its evaluation
    and selection (the overhead): ``alkit run`` trains it once for the runs it is given together."""
    from .config import to_dict
    from .loop import first_cycle_key
    from .shared_runs import config_key, finished_twin

    rows, seen, firsts = [], {}, set()
    for exp in experiments:
        runs = {(arm, seed): read_records(records_path(exp.run_dir(arm, seed)))
                for arm in exp.arms for seed in exp.seeds_of(arm)}
        overhead = measured_overhead([r for recs in runs.values() for r in recs])
        own = {arm: arm_overhead([g for (a, seed), recs in runs.items() if a == arm
                                  for g in sessions(exp.run_dir(arm, seed), recs)]) for arm in exp.arms}
        by_arm = {arm: overhead if o is None else o for arm, o in own.items()}
        for (arm, seed), recs in runs.items():
            if (arms is not None and arm not in arms) or (seeds is not None and seed not in seeds):
                continue
            row = run_cost(exp, arm, seed, costs, by_arm[arm], recs)
            config = to_dict(exp.config(arm, seed))
            key = config_key(config)
            twin = None if key in seen or recs else finished_twin(exp.results_root, exp.profile, config,
                                                                    exp.run_dir(arm, seed))
            if key in seen or twin is not None:  # copied from this plan's earlier run, or from a finished one on disk
                row.shared_with = seen.get(key) or str(twin)
                row.projected_s = [0.0] * len(row.projected_s)
            elif exp.share_first_cycle and not recs:  # shared among the runs that have not started
                first = first_cycle_key(exp.config(arm, seed))
                if first in firsts:
                    row.projected_s[0] = by_arm[arm]
                firsts.add(first)
            elif exp.share_first_cycle and (n := _shared_by(recs)) > 1:  # on disk, trained once for n runs
                row.projected_s[0] = by_arm[arm] + (row.projected_s[0] - by_arm[arm]) / n  # as measured_s counts it
            seen.setdefault(key, f"{exp.name}/{arm}/seed{seed}")
            rows.append(row)
    return rows


def report(rows: list[RunCost]) -> list[str]:
    """Per experiment and arm: runs, trainings done / all, projected hours left, and for what is on disk the
    measured against the projected hours of the same cycles."""
    lines, total_left, total = [], 0.0, [0.0, 0.0, 0.0]  # total: all, measured, projected (same)
    by = {}
    for r in rows:
        by.setdefault(r.exp, {}).setdefault(r.arm, []).append(r)
    header = (f"{'experiment / arm':44s} {'seeds':>5s} {'cycles done/all':>15s} {'iter/cycle (task+gen)':>22s} "
              f"{'h left':>7s} {'h all':>6s} {'measured h':>10s} {'projected h (same)':>18s}")
    lines.append(header)
    for exp, arms in by.items():
        exp_left, exp_total = 0.0, [0.0, 0.0, 0.0]
        for arm, runs in arms.items():
            done = sum(r.done for r in runs)
            allc = sum(r.cycles for r in runs)
            left = sum(r.left_s for r in runs) / 3600
            every = sum(sum(r.projected_s) for r in runs) / 3600
            meas = sum(sum(r.measured_s) for r in runs) / 3600
            proj_same = sum(sum(r.projected_s[: r.done]) for r in runs) / 3600
            r0 = runs[0]
            iters = "copied" if all(r.shared_with for r in runs) else f"{r0.task_iterations[0]}+{r0.gen_iterations[0]}"
            if iters != "copied" and len(set(zip(r0.task_iterations, r0.gen_iterations))) > 1:
                iters += f" .. {r0.task_iterations[-1]}+{r0.gen_iterations[-1]}"
            lines.append(f"{exp + ' / ' + arm:44s} {len(runs):5d} {f'{done}/{allc}':>15s} {iters:>22s} {left:7.2f} "
                         f"{every:6.2f} {meas if done else float('nan'):10.2f} {proj_same if done else float('nan'):18.2f}")
            exp_left += left
            copies = sum(sum(r.measured_s) for r in runs if r.shared_with) / 3600  # a copy's seconds are its twin's
            exp_total = [exp_total[0] + every, exp_total[1] + meas - copies, exp_total[2] + proj_same]
        lines.append(f"{exp + ': left':44s} {'':5s} {'':15s} {'':22s} {exp_left:7.2f} {exp_total[0]:6.2f} "
                     f"{exp_total[1]:10.2f} {exp_total[2]:18.2f}")
        total_left += exp_left
        total = [t + e for t, e in zip(total, exp_total)]
    lines.append(f"{'total left':44s} {'':5s} {'':15s} {'':22s} {total_left:7.2f} {total[0]:6.2f} {total[1]:10.2f} "
                 f"{total[2]:18.2f} h")
    return lines


def runtimes(rows: list[RunCost]) -> list[dict]:
    """``runtimes.json``'s rows: per run, projected and measured seconds per cycle on disk, and what is left."""
    return [{"experiment": r.exp, "arm": r.arm, "seed": r.seed, "cycles_done": r.done, "cycles": r.cycles,
             "measured_s": [round(s, 1) for s in r.measured_s],
             "projected_s": [round(s, 1) for s in r.projected_s[: r.done]],
             "projected_left_s": round(r.left_s, 1)} for r in rows]
