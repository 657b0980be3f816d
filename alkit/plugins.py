"""Your own registrations: ``alkit run --import MODULE`` (a dotted module or a ``.py`` file) before any run.

A plug-in registers a strategy (:func:`alkit.strategies.register`) or a learner
(:func:`alkit.learners.register_learner`) when it is imported; every process that trains (the
``alkit run`` process, each spawned worker, each Ray task) imports the same list first, so a
parameter file may name what the plug-in registers.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path


def import_module(module: str) -> None:
    """Import ``module`` (dotted name) or execute a ``.py`` file as a module, for its registrations."""
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
