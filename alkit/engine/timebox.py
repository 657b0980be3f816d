"""The time box: start no cycle that will not end in time, and give a cycle up early when its own pace says it cannot.

One :func:`clock` for every deadline (the scheduler's, the loop's, the training loops'). Between cycles,
:func:`cycle_fits` decides from measured cycles (:func:`cycle_seconds`) whether the next one fits. The first cycle of an arm in a chunk has no measurement, and a cycle that is started and then
killed at the chunk's end is lost whole: on the first lent GPU (H200, 15 runs at once, a 420 s box)
12 of 15 runs trained for 458 s and kept nothing, while holding the GPU that the 3 runs whose cycles
did fit were waiting for. So each training loop reports its progress here; once it has run
:data:`MIN_ITERATIONS` iterations and :data:`MIN_SECONDS` seconds, every :data:`CHECK_EVERY`
iterations it projects the end of its own phase (iterations left x seconds per iteration so far x
:data:`MARGIN`), and if that end lies past the deadline it raises :class:`CycleAbandoned`. The loop
then keeps every finished cycle, writes nothing of this one, and frees the device for runs that can
still finish; the same command later resumes with this cycle, whose records are the uninterrupted
run's (nothing of the abandoned attempt is kept, and every cycle starts from its own seeds).

The projection covers the phase that is running, not the phases after it (VAAL's task model, then
its VAE): a cycle whose first phase fits and second does not is given up at the start of the second.
The abandoned cycle's time so far plus the projected rest is a lower bound of its length, which
:mod:`alkit.jobs` uses as the arm's estimate, so that the arm's other seeds are not started in vain.

Without a deadline (a notebook, ``alkit run`` without ``--time-limit``) :meth:`Watch.tick` returns at once.
"""
from __future__ import annotations

import contextlib
import contextvars
import time

#: a check needs at least this many iterations and seconds of the phase behind it (warm-up, compile)
MIN_ITERATIONS = 50
MIN_SECONDS = 5.0
#: iterations between checks (a check reads the clock: cheap, no device sync)
CHECK_EVERY = 25
#: the projection is stretched by this factor (the pace of later iterations, the cycle's evaluation and selection)
MARGIN = 1.1

_deadline: contextvars.ContextVar[tuple[float, float] | None] = contextvars.ContextVar("alkit_cycle_deadline",
                                                                                       default=None)


class CycleAbandoned(RuntimeError):
    """A cycle given up because it could not end before the deadline; ``seconds``: its length, at least."""

    def __init__(self, message: str, seconds: float):
        super().__init__(message)
        self.seconds = seconds


def clock() -> float:
    """Wall-clock seconds (``time.time``) for deadlines; :mod:`alkit.loop` and :mod:`alkit.jobs` read it here
    (``timebox.clock()``), so a test replaces this one name."""
    return time.time()


@contextlib.contextmanager
def cycle_deadline(deadline: float | None):
    """Within the block, training loops give their cycle up when it cannot end before ``deadline``
    (a :func:`clock` time; None: no box). The cycle's start is taken now."""
    token = _deadline.set(None if deadline is None else (float(deadline), clock()))
    try:
        yield
    finally:
        _deadline.reset(token)


class Watch:
    """One training phase of ``iterations`` iterations (``where`` names it in the message)."""

    def __init__(self, iterations: int, where: str):
        box = _deadline.get()
        self.iterations, self.where = iterations, where
        self.deadline, self.cycle_start = box if box is not None else (None, None)
        self.start = clock() if box is not None else None

    def tick(self, it: int) -> None:
        """Called after iteration ``it`` (0-based) of the phase; raises :class:`CycleAbandoned` (see the module)."""
        if self.deadline is None:
            return
        done = it + 1
        if done < MIN_ITERATIONS or done % CHECK_EVERY or done >= self.iterations:
            return
        now = clock()
        spent = now - self.start
        if spent < MIN_SECONDS:
            return
        rest = (self.iterations - done) * spent / done * MARGIN
        if now + rest > self.deadline:
            length = now - self.cycle_start + rest
            raise CycleAbandoned(
                f"{self.where}: {done} of {self.iterations} iterations in {spent:.0f} s; the other "
                f"{self.iterations - done} would need ~{rest:.0f} s, {max(self.deadline - now, 0):.0f} s are left "
                f"before the time limit: cycle given up (at least {length:.0f} s)", seconds=length)


#: a cycle is started only if its estimate times this still ends before the deadline
CYCLE_MARGIN = 1.15
#: with no estimate at all, a cycle is started only if this share of the time box is left
UNKNOWN_START_SHARE = 0.5


def cycle_seconds(records: list[dict]) -> float | None:
    """The longest measured cycle among ``records`` (train + evaluate + select + ...), None if none."""
    times = [sum(r["seconds"].values()) for r in records if r.get("seconds")]
    return max(times) if times else None


def cycle_fits(estimate: float | None, deadline: float, time_limit: float | None = None) -> bool:
    """True when a cycle estimated to take ``estimate`` seconds, started now, ends before ``deadline``
    (with :data:`CYCLE_MARGIN`). With no estimate: True while at least :data:`UNKNOWN_START_SHARE` of
    ``time_limit`` is left (or, without ``time_limit``, while the deadline has not passed)."""
    left = deadline - clock()
    if estimate is None:
        return left > (UNKNOWN_START_SHARE * time_limit if time_limit else 0.0)
    return estimate * CYCLE_MARGIN <= left
