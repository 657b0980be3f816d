"""tqdm progress bars that stay quiet when stderr is not a terminal (CI, papermill logs)."""
from __future__ import annotations

import os
import sys


def progress_bar(iterable, *, disable: bool = False, **kwargs):
    """``tqdm(iterable)``, disabled when asked, when not on a terminal, or when ``ALKIT_QUIET`` is set."""
    from tqdm import tqdm  # text bars: notebook widgets need ipywidgets, which alkit does not require

    quiet = disable or bool(os.environ.get("ALKIT_QUIET")) or not interactive()
    return tqdm(iterable, disable=quiet, **kwargs)


def interactive() -> bool:
    """True on a terminal (or a notebook run by hand), False in papermill, CI and log files."""
    if "ipykernel" in sys.modules:  # a notebook shows widgets; papermill runs have no terminal
        return not os.environ.get("PAPERMILL_EXECUTION")
    return sys.stderr.isatty()
