"""alkit: run active-learning experiments without Jupyter, list strategies and learners.

  alkit run params/smoke/02_vaal_vs_random.yaml      train every (arm, seed) run of a parameter file
  alkit strategies                                   list registered strategies
  alkit learners                                     list registered learners
  alkit plan params/cpu/*.yaml                       what the runs left will cost on this machine (trains nothing)

Also available as python -m alkit.
"""
from __future__ import annotations

# Each command imports what it needs when it runs (the training stack, torch, Ray), inside its function:
# `alkit --help` and a mistyped option answer at once.
import argparse
import math
import sys

from .config import ConfigError, check_results_root  # light (no torch): every command's error type
from .plugins import import_module


#: ``alkit run``'s exit status when every other run is done but another process holds runs it has not finished
EXIT_HELD = 3


class _Parser(argparse.ArgumentParser):
    """argparse, its errors as alkit's: the first line starts with ``error:`` (then the usage hint), and a
    value in the message is cut to a readable length."""

    def error(self, message: str):
        message = " ".join(message.split())
        if len(message) > 300:
            message = message[:297] + "..."
        self.exit(2, f"error: {self.prog}: {message}\n{self.format_usage()}")


def main(argv: list[str] | None = None) -> int:
    """The ``alkit`` command; returns the exit status (0 done, 1 a run failed, 2 bad input, 3 runs left to another
    process that holds them and has not finished them)."""
    args = _parser().parse_args(argv)
    from . import learners, strategies  # registries (torch): only for a command, not for --help

    if args.command == "strategies":
        for row in strategies.describe():
            kind = "batch" if row["batch"] else "score"
            print(f"{row['name']:<18} {kind:<6} needs={','.join(row['needs']) or '-':<14} {row['doc']}")
        return 0
    if args.command == "plan":
        return _plan(args)
    if args.command == "learners":
        for name, cls in sorted(learners.LEARNERS.items()):
            print(f"{name:<12} {', '.join(sorted(cls.capabilities()))}")
        return 0

    return _run(args)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="alkit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run the experiments of one or more parameter files",
                           description="Train every (arm, seed) run of the parameter files that is not finished yet "
                                       "(finished runs are loaded, unfinished ones resume after their last cycle).")
    _add_run_options(p_run)
    p_plan = sub.add_parser("plan", help="trainings, iterations and projected hours of the runs left (trains nothing)",
                            description="Per parameter file and arm: the trainings left, their iterations and the hours "
                                        "they will take here (from benchmarks/bench_cpu.py's measured costs), and for "
                                        "the cycles on disk the measured beside the projected hours.")
    p_plan.add_argument("params", nargs="+", help="params/<profile>/<notebook>.yaml")
    p_plan.add_argument("--costs", default="auto", metavar="JSON",
                        help="benchmarks/bench_cpu.py --out file of this machine (default: auto, the table of this "
                             "CPU's kind among benchmarks/results/bench_cpu*.json; alkit.cpu)")
    p_plan.add_argument("--arms", nargs="*", metavar="ARM", help="only these arms (as alkit run --arms)")
    p_plan.add_argument("--seeds", nargs="*", type=int, metavar="SEED", help="only these seeds (as alkit run --seeds)")
    p_plan.add_argument("--results-root", help="results folder root (default: results)")
    p_plan.add_argument("--write", metavar="JSON", help="also write the projected and measured seconds per run "
                                                        "(runtimes.json) to this file")
    sub.add_parser("strategies", help="list registered strategies")
    sub.add_parser("learners", help="list registered learners and their capabilities")
    return parser


def _add_run_options(p_run: argparse.ArgumentParser) -> None:
    p_run.add_argument("params", nargs="+", help="params/<profile>/<notebook>.yaml")
    p_run.add_argument("--arms", nargs="*", metavar="ARM", help="only these arms")
    p_run.add_argument("--seeds", nargs="*", type=int, metavar="SEED",
                       help="only these seeds (seeds of the parameter files; add a new seed to the file)")
    p_run.add_argument("--results-root", help="results folder root (default: results)")
    p_run.add_argument("--device", help="override the device of every run (cpu, cuda, cuda:1, auto)")
    p_run.add_argument("--jobs", type=int, default=1, metavar="N",
                       help="runs at once per device, each in its own worker process (default 1: in this process)")
    p_run.add_argument("--devices", metavar="LIST",
                       help="comma-separated devices for the workers, taken round-robin (e.g. cuda:0,cuda:1); "
                            "default: each run's configured device (or --device)")
    p_run.add_argument("--threads", type=int, metavar="T",
                       help="torch CPU threads per run (default: CPU cores / workers when --jobs > 1; "
                            "--cpus-per-run with Ray). On CPU, records are identical across --jobs and executors "
                            "only at equal --threads")
    p_run.add_argument("--time-limit", type=float, metavar="SECONDS",
                       help="start no cycle that measured cycle times say will not end within SECONDS of the start; "
                            "exit 0 with what is left; the same command later resumes")
    p_run.add_argument("--executor", choices=("local", "ray"), default="local",
                       help="local: this machine (--jobs workers); ray: each run a Ray task on a Ray cluster "
                            "(pip install 'alkit[cluster]')")
    p_run.add_argument("--ray-address", metavar="ADDRESS",
                       help="with --executor ray: auto joins the cluster started by 'ray start --head', ray://host:10001 a "
                            "remote one; default: a local Ray started for this command")
    p_run.add_argument("--gpus-per-run", type=float, default=0.0, metavar="G",
                       help="with --executor ray: GPUs per run, a fraction shares one (0.25: four runs per GPU); "
                            "default 0: CPU runs")
    p_run.add_argument("--cpus-per-run", type=float, default=1.0, metavar="C",
                       help="with --executor ray: CPUs per run (default 1)")
    p_run.add_argument("--fuse", choices=("auto", "on", "off"), default="auto",
                       help="train the runs of one learner and shape (across parameter files) as one stacked model, "
                            "cycle by cycle in lockstep (auto: on when the runs go to a CUDA GPU; off: every run "
                            "alone). Fused records equal unfused ones in distribution, not bit for bit (README)")
    p_run.add_argument("--fuse-max", type=int, default=27, metavar="K",
                       help="runs per fused group at most (default 27)")
    p_run.add_argument("--force", action="store_true", help="recompute finished runs")
    p_run.add_argument("--wait", action="store_true",
                       help="a run another alkit process is training: wait for it (then load or resume it); "
                            "default: skip it and say so")
    p_run.add_argument("--repair", action="store_true",
                       help="repair damaged run folders first: drop an incomplete last line of records.jsonl, "
                            "rewrite a deleted config.json from the parameter file")
    p_run.add_argument("--quiet", action="store_true", help="no progress bars")
    p_run.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                       help="import a module or a .py file first, e.g. one that registers your own strategy "
                            "(repeatable)")


def _run(args) -> int:
    """``alkit run``: check everything the files ask for, then train what is not finished (:mod:`alkit.jobs`)."""
    from .data import DataError
    from .experiment import load_experiment
    from .learners.base import CapabilityError
    from .pool import BudgetError
    from .strategies.base import UnknownStrategyError
    from .strategies.norm import PoolTooLargeError

    from .plugins import PluginError
    from .results import RecordsError, RunFolderError, check_no_links, check_writable, write_failure

    user_errors = (ConfigError, BudgetError, UnknownStrategyError, CapabilityError, DataError, PoolTooLargeError,
                   FileNotFoundError, ModuleNotFoundError, RecordsError, RunFolderError, PluginError)
    try:
        if args.results_root is not None:
            check_results_root(args.results_root, "--results-root")  # '' would be the current folder
        for module in args.imports:
            import_module(module)
        if args.device and args.devices:
            raise ConfigError("give either --device or --devices, not both")
        _check_numbers(args)
        from .devices import check_config_devices, check_devices
        from .jobs import plan, run_tasks

        ray = _ray_options(args)
        cluster = ray is not None
        devices = (check_devices(args.devices.split(","), "--devices", cluster) if args.devices else
                   check_devices([args.device], "--device", cluster) if args.device else [])
        experiments = [load_experiment(path, results_root=args.results_root) for path in args.params]
        for exp in [e for e in experiments if e.oracle]:  # notebook 06: its labels come from an oracle, not from a run
            print(f"{exp.name}: left out: oracle: {exp.oracle} makes it an oracle session, run by "
                  f"notebooks/{exp.name}.ipynb (alkit.oracle), not by alkit run", file=sys.stderr)
        experiments = [e for e in experiments if not e.oracle]
        if not experiments:
            return 0
        root_flag = "--results-root" if args.results_root is not None else "results_root"
        for exp in experiments:  # issue 47: no link below the results root, before anything is written or deleted
            check_no_links(exp.results_root, exp.folder)
        if not args.force:
            _check_run_folders(experiments, args.arms, args.seeds, repair=args.repair, root_flag=root_flag)
        tasks = plan(experiments, arms=args.arms, seeds=args.seeds, force=args.force)
        for t in tasks:  # what will be written can be: one line naming the path now, not a traceback in training
            if args.force or not t.finished:
                check_writable(t.exp.results_root, t.exp.run_dir(t.arm, t.seed), root_flag)
        if not devices:
            check_config_devices(tasks, cluster=cluster)
        if cluster and not ray.gpus_per_run:
            _check_cpu_runs(tasks, devices)
        _check_data(experiments)
        _warn_bf16(tasks, devices, args.force)
        summary = run_tasks(tasks, jobs=args.jobs, devices=devices or None, threads=args.threads,
                            time_limit=args.time_limit, force=args.force, imports=args.imports,
                            progress=not args.quiet, ray=ray, wait=args.wait, fuse=args.fuse,
                            fuse_max=args.fuse_max)
    except user_errors as exc:  # a problem with the input: its message, no traceback
        message = exc.args[0] if exc.args else repr(exc)  # (KeyError's str() would add quotes)
        print("\n".join([f"error: {message}", *getattr(exc, "__notes__", [])]), file=sys.stderr)
        return 2
    except OSError as exc:  # a path that cannot be written outside any run (a shared run's copy): one line
        if write_failure(exc) is None:
            raise
        print(f"error: {write_failure(exc)}", file=sys.stderr)
        return 1
    print("\n".join(summary.lines()))
    return 1 if summary.failed else EXIT_HELD if summary.locked else 0


def _plan(args) -> int:
    """``alkit plan``: the cost table of :mod:`alkit.costplan`; bad input as ``alkit run``'s (exit 2, one line)."""
    import json
    from pathlib import Path

    from .costplan import default_costs, load_costs, machine_warnings, plan_costs, report, runtimes
    from .experiment import load_experiment

    try:
        path = default_costs() if args.costs == "auto" else args.costs
        costs = load_costs(path)
        experiments = [e for e in (load_experiment(p, results_root=args.results_root) for p in args.params)
                       if not e.oracle]
        from .jobs import check_selection
        check_selection(experiments, args.arms, args.seeds)  # the names, as alkit run checks them
        rows = plan_costs(experiments, costs, arms=args.arms, seeds=args.seeds)
    except (ConfigError, FileNotFoundError) as exc:
        message = exc.args[0] if exc.args else repr(exc)  # (KeyError's str() would add quotes)
        print(f"error: {message}", file=sys.stderr)
        return 2
    print(f"costs: {path}")
    print("\n".join(report(rows)))
    for line in machine_warnings(experiments, rows, path):
        print(line, file=sys.stderr)
    if args.write:
        Path(args.write).write_text(json.dumps(runtimes(rows), indent=1) + "\n")
    return 0


def _warn_bf16(tasks, devices: list[str], force: bool) -> None:
    """One ``warning:`` line (stderr; the runs go on) when runs left to train on this CPU ask for bf16 autocast and
    it has no bf16 unit (:func:`alkit.cpu.bf16_warning`)."""
    from .cpu import bf16_warning
    from .devices import on_cuda

    n = sum(1 for t in tasks if (force or not (t.finished or t.copied)) and not on_cuda([t], devices)
            and t.exp.config(t.arm, t.seed).learner_params.get("bf16"))
    line = bf16_warning(n)
    if line:
        print(line, file=sys.stderr)


def _ray_options(args):
    """:class:`alkit.cluster.RayOptions` for ``--executor ray`` (Ray importable), None for the local executor."""
    from .cluster import RayOptions, import_ray
    if args.executor != "ray":
        given = [f for f, v in (("--ray-address", args.ray_address), ("--gpus-per-run", args.gpus_per_run),
                                ("--cpus-per-run", args.cpus_per_run != 1.0)) if v]
        if given:
            raise ConfigError(f"{given[0]}: only with --executor ray; allowed: add --executor ray, or drop {given[0]}")
        return None
    if args.jobs != 1 or args.devices:
        raise ConfigError(f"{'--jobs' if args.jobs != 1 else '--devices'}: not with --executor ray (Ray places the "
                          "runs); allowed: --gpus-per-run, --cpus-per-run")
    import_ray()
    return RayOptions(address=args.ray_address, gpus_per_run=args.gpus_per_run, cpus_per_run=args.cpus_per_run)


def _check_numbers(args) -> None:
    """Numeric options in range before anything else (``--jobs`` is checked where it is used)."""
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads: {args.threads}; allowed: an integer >= 1 (torch CPU threads per run), or leave "
                          "it out (CPU cores / workers)")
    if args.time_limit is not None and not (math.isfinite(args.time_limit) and args.time_limit > 0):
        raise ConfigError(f"--time-limit: {args.time_limit}; allowed: a finite number of seconds > 0")
    for flag, value in (("--gpus-per-run", args.gpus_per_run), ("--cpus-per-run", args.cpus_per_run)):
        if not math.isfinite(value):
            raise ConfigError(f"{flag}: {value}; allowed: a finite number")


def _check_run_folders(experiments, arms, seeds, repair: bool, root_flag: str = "--results-root") -> None:
    """Every selected run folder readable as it is (or repaired first, with ``--repair``), before any training."""
    from .experiment import check_run_folder, repair_run
    from .results import check_writable

    for exp in experiments:
        for arm in [a for a in exp.arms if arms is None or a in arms]:
            for seed in [s for s in exp.seeds_of(arm) if seeds is None or s in seeds]:
                if not exp.run_dir(arm, seed).exists():
                    continue
                if repair:
                    check_writable(exp.results_root, exp.run_dir(arm, seed), root_flag)
                    for line in repair_run(exp, arm, seed):
                        print(line, file=sys.stderr)
                check_run_folder(exp, arm, seed)


def _check_cpu_runs(tasks, devices) -> None:
    """With Ray and no GPU per run, a run configured for cuda would find none."""
    for t in tasks:
        device = devices[0] if devices else t.exp.config(t.arm, t.seed).device
        if device.startswith("cuda"):
            where = "--device" if devices else f"{t.exp.name}: arm {t.arm!r}: device"
            raise ConfigError(f"{where}: {device!r} with --gpus-per-run 0 (Ray gives each run CPUs only); "
                              "allowed: --gpus-per-run > 0 (e.g. 0.25), or device cpu / auto")


def _check_data(experiments) -> None:
    """Find and verify the data of every run before any training (a missing or corrupt file: DataError);
    your own ``.npz`` or image folder is loaded as each arm configures it (:mod:`alkit.own_data`) and
    checked for what a simulated run needs (:func:`alkit.loop.check_simulated_data`: every pool image
    labelled, a pool large enough for the budget)."""
    import torch

    from .data import locate_files
    from .loop import check_simulated_data
    from .pool import BudgetError
    from .own_data import is_own_dataset, load_data

    seen, loaded = set(), {}
    for exp in experiments:
        for arm in exp.arms:
            cfg = exp.config(arm, exp.seeds[0])
            if is_own_dataset(cfg.dataset):
                key = (cfg.dataset, cfg.split_seed, cfg.val_size, cfg.pool_size, cfg.test_size)
                try:
                    if key not in loaded:
                        loaded[key] = load_data(cfg, torch.device("cpu"))
                    check_simulated_data(cfg, loaded[key])
                except BudgetError as exc:  # a budget is an arm's: say which, on the same line
                    exc.args = (f"{exp.name}: arm {arm!r}: {exc.args[0]}", *exc.args[1:])
                    raise
            elif (cfg.dataset, cfg.data_dir) not in seen:
                seen.add((cfg.dataset, cfg.data_dir))
                locate_files(cfg.dataset, data_dir=cfg.data_dir)
