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
    p_run.add_argument("--device", help="override the device of every run (cpu, cuda, auto)")
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
            _import(module)
        for path in args.params:
            exp = load_experiment(path, results_root=args.results_root)
            if args.device:
                exp.base["device"] = args.device
            run_experiment(exp, arms=args.arms, seeds=args.seeds, force=args.force, progress=not args.quiet)
    except user_errors as exc:  # a problem with the input: its message, no traceback
        message = exc.args[0] if exc.args else repr(exc)  # (KeyError's str() would add quotes)
        print("\n".join([f"error: {message}", *getattr(exc, "__notes__", [])]), file=sys.stderr)
        return 2
    return 0


def _import(module: str) -> None:
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
