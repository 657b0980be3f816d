"""tqdm progress bars that stay quiet when stderr is not a terminal (CI, papermill logs); the display of ``alkit run``."""
from __future__ import annotations

import os
import sys

from tqdm import tqdm


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
        try:  # optional (the notebooks extra): imported only inside a kernel
            import ipywidgets  # noqa: F401
            from tqdm.notebook import tqdm as notebook_tqdm

            return notebook_tqdm
        except ImportError:
            pass
    return tqdm


def interactive() -> bool:
    """True on a terminal (or a notebook run by hand), False in papermill, CI and log files."""
    if in_kernel():  # a notebook shows widgets; papermill runs have no terminal
        return not os.environ.get("PAPERMILL_EXECUTION")
    return sys.stderr.isatty()


class RunsDisplay:
    """:func:`alkit.jobs.run_tasks`'s display: an overall bar (cycles) and one bar per running run on a terminal,
    plain log lines otherwise. ``tasks``: :class:`alkit.jobs.Task` (``label``, ``total``, ``done``, ``finished``,
    ``same_as``)."""

    def __init__(self, tasks: list, enabled: bool, log=print):
        self.tasks, self.log = tasks, log or (lambda *_: None)
        self.bars = enabled and interactive()
        self.quiet = not enabled
        self.total_runs = sum(not t.finished and not t.copied for t in tasks)
        self.ended = 0
        self.per_run: dict[int, object] = {}
        self.free_positions: list[int] = []
        self.overall = None
        if self.bars:
            left = sum(t.total - t.done for t in tasks if not t.finished and not t.copied)
            self.overall = tqdm(total=left, desc=f"runs 0/{self.total_runs}", unit="cycle", position=0, dynamic_ncols=True)

    def line(self, text: str) -> None:
        if self.bars:
            tqdm.write(text)
        elif not self.quiet:
            self.log(text)

    def start(self, tid: int, device) -> None:
        t = self.tasks[tid]
        if self.bars:
            pos = self.free_positions.pop(0) if self.free_positions else len(self.per_run) + 1
            self.per_run[tid] = tqdm(total=t.total, initial=t.done, desc=t.label, unit="cycle", position=pos,
                                     leave=False, dynamic_ncols=True)
        else:
            self.line(f"start  {t.label} on {device or 'its configured device'} (cycle {t.done}/{t.total})")

    def cycle(self, tid: int, value: dict) -> None:
        t = self.tasks[tid]
        if self.bars:
            self.per_run[tid].update(1)
            self.per_run[tid].set_postfix(test=f"{value['test_acc']:.3f}")
            self.overall.update(1)
        else:
            self.line(f"cycle  {t.label} {value['cycle'] + 1}/{t.total}: test acc {value['test_acc']:.4f} "
                       f"({value['seconds']:.1f} s)")

    def end(self, tid: int, how: str) -> None:
        t = self.tasks[tid]
        self.ended += 1
        bar = self.per_run.pop(tid, None)
        if bar is not None:
            self.free_positions.append(bar.pos if hasattr(bar, "pos") else 1)
            bar.close()
        if self.overall is not None:
            self.overall.set_description(f"runs {self.ended}/{self.total_runs}")
        self.line(f"{how:<8} {t.label}: {t.done}/{t.total} cycles  [{self.ended}/{self.total_runs} runs]")

    def close(self) -> None:
        for bar in self.per_run.values():
            bar.close()
        if self.overall is not None:
            self.overall.close()
