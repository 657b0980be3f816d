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


ALLOWED = ("allowed: a module importable from here (a dotted name on sys.path, e.g. mypackage.strategies) or the "
           "path of a .py file (e.g. my_strategies.py)")


class PluginError(ImportError):
    """``--import MODULE`` names nothing importable, or importing it failed; the message names ``--import``, the
    value and what is allowed."""


def _cut(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def import_module(module: str) -> None:
    """Import ``module`` (dotted name) or execute a ``.py`` file as a module, for its registrations; a
    :class:`PluginError` (or ``FileNotFoundError`` for a missing ``.py`` file) names ``--import`` and what is allowed."""
    shown = _cut(repr(module))
    if module.endswith(".py"):
        path = Path(module)
        if not path.is_file():
            raise FileNotFoundError(f"--import: {shown}: no such file; {ALLOWED}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = mod
        try:
            spec.loader.exec_module(mod)
        except ModuleNotFoundError as exc:
            raise PluginError(f"--import: {shown} imports {exc.name!r}, which is not installed here; allowed: a "
                              "plug-in whose imports are installed (pip install it)") from exc
        except SyntaxError as exc:
            raise PluginError(f"--import: {shown}: line {exc.lineno}: {exc.msg}; allowed: a Python file") from exc
        return
    if not module or not all(part.isidentifier() for part in module.split(".")):
        raise PluginError(f"--import: {shown} is not a module name; {ALLOWED}")
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module == exc.name or module.startswith(exc.name + ".")):
            raise PluginError(f"--import: no module {shown} here; {ALLOWED}") from exc
        raise PluginError(f"--import: {shown} imports {exc.name!r}, which is not installed here; allowed: a "
                          "plug-in whose imports are installed (pip install it)") from exc
    except SyntaxError as exc:
        raise PluginError(f"--import: {shown}: {exc.filename}, line {exc.lineno}: {exc.msg}; allowed: a module "
                          "of valid Python") from exc
