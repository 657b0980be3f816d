"""``python -m alkit``: run experiments without Jupyter, list strategies and learners."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run the experiments of one or more parameter files")
    p_run.add_argument("params", nargs="+", help="params/<profile>/<notebook>.yaml")
    p_run.add_argument("--arms", nargs="*", help="only these arms")
    p_run.add_argument("--seeds", nargs="*", type=int, help="only these seeds")
    p_run.add_argument("--results-root", help="results folder root (default: results)")
    p_run.add_argument("--device", help="override the device of every run (cpu, cuda, cuda:1, auto)")
    p_run.add_argument("--jobs", type=int, default=1, metavar="N",
                       help="runs at once per device, each in its own worker process (default 1: in this process)")
    p_run.add_argument("--devices", metavar="LIST",
                       help="comma-separated devices for the workers, taken round-robin (e.g. cuda:0,cuda:1); "
                            "default: each run's configured device (or --device)")
    p_run.add_argument("--threads", type=int, metavar="T",
                       help="torch CPU threads per run (default: CPU cores / workers when --jobs > 1). On CPU, "
                            "records are identical across --jobs only at equal --threads")
    p_run.add_argument("--time-limit", type=float, metavar="SECONDS",
                       help="start no cycle that measured cycle times say will not end within SECONDS of the start; "
                            "exit 0 with what is left; the same command later resumes")
    p_run.add_argument("--force", action="store_true", help="recompute finished runs")
    p_run.add_argument("--quiet", action="store_true", help="no progress bars")
    p_run.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                       help="import a module or a .py file first, e.g. one that registers your own strategy "
                            "(repeatable)")
    sub.add_parser("strategies", help="list registered strategies")
    sub.add_parser("learners", help="list registered learners and their capabilities")
    args = parser.parse_args(argv)

    from .config import ConfigError
    from . import strategies, learners  # noqa: F401  (registries)

    if args.command == "strategies":
        for row in strategies.describe():
            kind = "batch" if row["batch"] else "score"
            print(f"{row['name']:<18} {kind:<6} needs={','.join(row['needs']) or '-':<14} {row['doc']}")
        return 0
    if args.command == "learners":
        for name, cls in sorted(learners.LEARNERS.items()):
            print(f"{name:<12} {', '.join(sorted(cls.capabilities()))}")
        return 0

    from .data import DataError
    from .experiment import load_experiment, run_experiment
    from .learners.base import CapabilityError
    from .pool import BudgetError
    from .strategies.base import UnknownStrategyError
    from .strategies.norm import PoolTooLargeError

    user_errors = (ConfigError, BudgetError, UnknownStrategyError, CapabilityError, DataError, PoolTooLargeError,
                   FileNotFoundError, ModuleNotFoundError)
    try:
        for module in args.imports:
            import_module(module)
        if args.device and args.devices:
            raise ConfigError("give either --device or --devices, not both")
        from .jobs import check_devices, plan, run_tasks

        devices = check_devices(args.devices.split(",") if args.devices else [args.device] if args.device else [])
        experiments = [load_experiment(path, results_root=args.results_root) for path in args.params]
        _check_data(experiments)
        tasks = plan(experiments, arms=args.arms, seeds=args.seeds)
        summary = run_tasks(tasks, jobs=args.jobs, devices=devices or None, threads=args.threads,
                            time_limit=args.time_limit, force=args.force, imports=args.imports,
                            progress=not args.quiet)
    except user_errors as exc:  # a problem with the input: its message, no traceback
        message = exc.args[0] if exc.args else repr(exc)  # (KeyError's str() would add quotes)
        print("\n".join([f"error: {message}", *getattr(exc, "__notes__", [])]), file=sys.stderr)
        return 2
    print("\n".join(summary.lines()))
    return 1 if summary.failed else 0


def _check_data(experiments) -> None:
    """Find and verify the data of every run before any training (a missing or corrupt file: DataError)."""
    from .data import locate_files

    seen = set()
    for exp in experiments:
        for arm in exp.arms:
            cfg = exp.config(arm, exp.seeds[0])
            if (cfg.dataset, cfg.data_dir) not in seen:
                seen.add((cfg.dataset, cfg.data_dir))
                locate_files(cfg.dataset, data_dir=cfg.data_dir)


def import_module(module: str) -> None:
    """Import ``module`` (dotted name) or execute a ``.py`` file as a module, for its registrations."""
    import importlib
    import importlib.util
    from pathlib import Path

    if module.endswith(".py"):
        path = Path(module)
        if not path.exists():
            raise FileNotFoundError(f"--import: no file {path}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = mod
        spec.loader.exec_module(mod)
    else:
        importlib.import_module(module)
