"""tqdm progress bars that stay quiet when stderr is not a terminal (CI, papermill logs)."""
from __future__ import annotations

import os
import sys


def progress_bar(iterable=None, *, disable: bool = False, **kwargs):
    """``tqdm(iterable)``, disabled when asked, when not on a terminal, or when ``ALKIT_QUIET`` is set
    (``python -m alkit.batch`` sets it: executed notebooks keep no bar in their stored outputs).

    In a notebook run by hand: widget bars (``tqdm.notebook``) where ipywidgets is installed, else text bars.
    """
    quiet = disable or bool(os.environ.get("ALKIT_QUIET")) or not interactive()
    return _tqdm_class()(iterable, disable=quiet, **kwargs)


def in_kernel() -> bool:
    """True inside a Jupyter kernel (not merely when ipykernel was imported, as ipywidgets does)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _tqdm_class():
    if in_kernel():
        try:
            import ipywidgets  # noqa: F401
            from tqdm.notebook import tqdm

            return tqdm
        except ImportError:
            pass
    from tqdm import tqdm

    return tqdm


def interactive() -> bool:
    """True on a terminal (or a notebook run by hand), False in papermill, CI and log files."""
    if in_kernel():  # a notebook shows widgets; papermill runs have no terminal
        return not os.environ.get("PAPERMILL_EXECUTION")
    return sys.stderr.isatty()
