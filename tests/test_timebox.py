"""A cycle that cannot end inside the time box is given up mid-way (alkit.timebox): nothing of it is kept,
the device is freed, the arm's other seeds are not started in vain, and resuming gives the uninterrupted records."""
from pathlib import Path

import pytest
import torch

from alkit import jobs, loop
from alkit.engine import timebox
from alkit.experiment import load_experiment
from alkit.results import load_results, read_records

ROOT = Path(__file__).resolve().parent.parent
MICRO = ROOT / "tests" / "params" / "02_vaal_vs_random.yaml"  # 4 iterations per training, 2 trainings per run


class PacedClock:
    """The one clock of loop, jobs and timebox (``timebox.clock``): time passes only inside a cycle's time box
    (while it trains), ``pace`` s per reading; the scheduler's and the loop's readings between cycles see it still."""

    def __init__(self):
        self.now, self.pace, self.reads = 1000.0, 0.0, 0

    def read(self) -> float:
        self.reads += 1
        if timebox._deadline.get() is not None:
            self.now += self.pace
        return self.now


@pytest.fixture
def paced(monkeypatch):
    clock = PacedClock()
    monkeypatch.setattr(timebox, "clock", clock.read)
    monkeypatch.setattr(timebox, "MIN_ITERATIONS", 2)  # the micro trainings have 4 iterations
    monkeypatch.setattr(timebox, "CHECK_EVERY", 1)
    monkeypatch.setattr(timebox, "MIN_SECONDS", 0.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield clock
    torch.set_num_threads(threads)


def strip(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_without_a_deadline_a_watch_never_reads_the_clock(paced):
    watch = timebox.Watch(1000, "phase")
    paced.pace = 1e6
    for it in range(1000):
        watch.tick(it)
    assert paced.reads == 0


def test_a_watch_projects_its_phase_and_gives_up_only_when_it_cannot_end(paced):
    paced.pace = 10.0  # each check: 10 s later
    with timebox.cycle_deadline(paced.now + 1000):
        fits = timebox.Watch(20, "fits")  # ~10 s per iteration: ~200 s in all
        for it in range(20):
            fits.tick(it)
        slow = timebox.Watch(200, "vaal generative steps")  # ~2,000 s: more than is left
        with pytest.raises(timebox.CycleAbandoned) as err:
            for it in range(200):
                slow.tick(it)
    msg = str(err.value)
    assert msg.startswith("vaal generative steps: 2 of 200 iterations") and "cycle given up" in msg
    # a lower bound of the cycle: what it spent (both phases) + the projected rest of this phase
    assert err.value.seconds > 198 * 10 * timebox.MARGIN / 2
    assert timebox._deadline.get() is None  # the box ends with its block


def test_a_given_up_cycle_keeps_nothing_and_the_resumed_run_equals_the_uninterrupted_one(tmp_path, fmnist_dir, paced):
    exp = load_experiment(MICRO, results_root=str(tmp_path / "boxed"))
    cfg = exp.config("vaal", 0)
    reference = loop.run(cfg, tmp_path / "whole", progress=False)
    assert len(reference) == 2

    given_up = []
    slow_after_first = lambda rec: setattr(paced, "pace", 100.0)  # noqa: E731  (cycle 1 trains slowly)
    out = tmp_path / "boxed" / "run"
    first = loop.run(cfg, out, progress=False, deadline=paced.now + 300, on_cycle=slow_after_first,
                     on_abandon=given_up.append)
    assert len(first) == 1 and len(given_up) == 1 and "cycle given up" in str(given_up[0])
    assert strip(read_records(out / "records.jsonl")) == strip(reference[:1])  # nothing of cycle 1 on disk
    assert not list(out.glob("*.tmp*"))

    paced.pace = 0.0
    second = loop.run(cfg, out, progress=False)  # the same call without a box resumes with cycle 1
    assert strip(second) == strip(reference)


def test_a_given_up_cycle_stops_the_arm_s_other_seeds_from_starting(tmp_path, fmnist_dir, paced):
    """The first seed's cycle 0 is given up; its lower-bound length is the arm's estimate, which does not fit
    what is left, so seed 1 is never started, and the summary says what happened. Neither leaves a folder: a run
    with no record keeps no config.json and removes the folder it made."""
    exp = load_experiment(MICRO, results_root=str(tmp_path))
    paced.pace = 150.0  # the first check already projects past the deadline
    summary = jobs.run_tasks(jobs.plan([exp], arms=["random"]), threads=1, progress=False, time_limit=400.0,
                             log=lambda *_: None)
    assert summary.cycles_done == 0 and not summary.failed
    assert len(summary.abandoned) == 1 and summary.abandoned[0].startswith("02_vaal_vs_random/random/seed0: ")
    assert not (tmp_path / "micro/02_vaal_vs_random/random/seed0").exists()
    assert not (tmp_path / "micro/02_vaal_vs_random/random/seed1").exists()
    assert not load_results(tmp_path)
    assert any("given up" in line for line in summary.lines())
