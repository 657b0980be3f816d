"""`alkit run --jobs N --time-limit S`: concurrent runs and time-boxed chunks give the records of one uninterrupted run."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alkit import jobs, loop
from alkit.engine import timebox
from alkit.experiment import load_experiment
from alkit.results import load_results
from helpers import MICRO, MICRO_ARMS, records_without_timings, run_micro

ROOT = Path(__file__).resolve().parent.parent
ARMS = list(MICRO_ARMS)


def alkit(*args):
    return subprocess.run([sys.executable, "-m", "alkit", "run", str(MICRO), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_two_workers_give_the_records_of_one(tmp_path, micro_reference):
    out = alkit("--results-root", str(tmp_path), "--arms", *ARMS, "--jobs", "2", "--threads", "1")
    assert out.returncode == 0, out.stderr[-3000:]
    assert records_without_timings(tmp_path) == micro_reference
    text = out.stdout
    assert text.count("finished 02_vaal_vs_random/") == 6 and "[6/6 runs]" in text  # one line per run + count
    assert "runs: 6/6 finished" in text and "0 left" in text


def test_time_box_then_resume_gives_the_uninterrupted_records(tmp_path, micro_reference, monkeypatch):
    """A clock that jumps past the deadline after 3 cycles: the chunk stops between cycles (mid-run), exit is
    clean, and the same call without a limit finishes with the records of an uninterrupted run."""
    trained = {"n": 0}
    real_cycle = loop._cycle

    def counting_cycle(*args, **kwargs):
        out = real_cycle(*args, **kwargs)
        trained["n"] += 1
        return out

    def fake_clock():
        return 0.0 if trained["n"] < 3 else 1e9

    threads = torch.get_num_threads()
    try:
        monkeypatch.setattr(loop, "_cycle", counting_cycle)
        monkeypatch.setattr(timebox, "clock", fake_clock)  # the one clock of the scheduler, the loop and the box
        first = run_micro(tmp_path, time_limit=100.0)
        assert (first.cycles_done, first.cycles_left, first.finished) == (3, 9, 1)
        assert first.seconds_left is None and not first.failed  # vaal and m2_vaal have no measured cycle yet
        lines = "\n".join(first.lines())
        assert "9 left" in lines and "unknown" in lines and "run the same command again" in lines
        monkeypatch.undo()
        second = run_micro(tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert (second.cycles_done, second.cycles_left, second.finished_before) == (9, 0, 1)
    assert records_without_timings(tmp_path) == micro_reference


def test_one_process_reports_each_cycle_while_the_run_trains(tmp_path, fmnist_dir):
    """``--jobs 1`` trains in this process (InlinePool): a cycle's line is logged when that cycle ends, while
    the run still trains its next cycle (one record on disk then), not in one burst after the run."""
    exp = load_experiment(MICRO, results_root=str(tmp_path))
    run = exp.run_dir("random", 0)
    seen = []

    def log(line: str) -> None:
        if line.startswith("cycle  "):
            seen.append((line.split(":")[0], (run / "records.jsonl").read_text().count("\n")))

    threads = torch.get_num_threads()
    try:
        jobs.run_tasks(jobs.plan([exp], arms=["random"], seeds=[0]), threads=1, log=log)  # not a terminal: lines
    finally:
        torch.set_num_threads(threads)
    assert seen == [("cycle  02_vaal_vs_random/random/seed0 1/2", 1), ("cycle  02_vaal_vs_random/random/seed0 2/2", 2)]


def test_a_time_limit_shorter_than_any_cycle_trains_nothing_and_exits_0(tmp_path, fmnist_dir):
    out = alkit("--results-root", str(tmp_path), "--arms", "random", "--time-limit", "0.05", "--quiet")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "runs: 0/2 finished" in out.stdout and "4 left" in out.stdout
    assert not list(tmp_path.rglob("records.jsonl"))


@pytest.mark.parametrize("args, words", [
    (["--devices", "cuda:0"], ["--devices", "'cuda:0'", "no CUDA GPU", "allowed on this machine: cpu, auto"]),
    (["--devices", "tpu"], ["--devices", "unknown device 'tpu'"]),
    (["--jobs", "0"], ["--jobs must be >= 1, got 0"]),
    (["--time-limit", "-5"], ["--time-limit: -5.0; allowed: a finite number of seconds > 0"]),
    (["--arms", "nope"], ["--arms", "'nope'", "random, vaal"]),
], ids=["cuda-on-cpu", "unknown-device", "jobs-0", "negative-time", "unknown-arm"])
def test_bad_run_options_are_one_error_line_before_anything_is_written(tmp_path, args, words, capsys):
    """In this process (alkit.cli.main, what ``python -m alkit`` calls): these end before any training."""
    from alkit.cli import main

    if "cuda:0" in args and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    capsys.readouterr()
    rc = main(["run", str(MICRO), "--results-root", str(tmp_path / "r"), *args])
    out = capsys.readouterr()
    assert rc == 2 and out.err.startswith("error: ") and out.err.count("\n") == 1, out.err
    for w in words:
        assert w in out.err
    assert not (tmp_path / "r").exists()


def test_cycle_fits_uses_the_margin_and_the_half_box_rule(monkeypatch):
    monkeypatch.setattr(timebox, "clock", lambda: 100.0)
    assert timebox.cycle_fits(10.0, deadline=100.0 + 10 * timebox.CYCLE_MARGIN)
    assert not timebox.cycle_fits(10.0, deadline=100.0 + 10 * timebox.CYCLE_MARGIN - 0.01)
    assert timebox.cycle_fits(None, deadline=160.0, time_limit=100.0)  # 60 % of the box left
    assert not timebox.cycle_fits(None, deadline=140.0, time_limit=100.0)  # 40 % left: no blind start
    assert timebox.cycle_seconds([{"seconds": {"train": 2.0, "select": 1.0}}, {"seconds": {"train": 2.5}}]) == 3.0
    assert timebox.cycle_seconds([{}]) is None


def test_a_run_two_experiments_share_is_trained_once_and_copied(tmp_path, fmnist_dir):
    """paper 04's m2_vaal and m2_random arms are 03's: same config and seed, so trained once."""
    import json

    import yaml

    base = yaml.safe_load(MICRO.read_text())
    paths = []
    for name, arms in (("a", ["random"]), ("b", ["random", "vaal"])):
        values = dict(base, name=name, arms={k: base["arms"][k] for k in arms}, seeds=[0])
        paths.append(tmp_path / f"{name}.yaml")
        paths[-1].write_text(yaml.safe_dump(values))
    exps = [load_experiment(p, results_root=str(tmp_path / "r")) for p in paths]
    tasks = jobs.plan(exps)
    assert [t.same_as for t in tasks] == [None, 0, None]
    threads = torch.get_num_threads()
    try:
        summary = jobs.run_tasks(tasks, threads=1, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert summary.finished == 3 and summary.cycles_done == 4  # a/random and b/vaal trained, b/random copied
    a, b = exps[0].run_dir("random", 0), exps[1].run_dir("random", 0)
    assert (a / "records.jsonl").read_bytes() == (b / "records.jsonl").read_bytes()
    meta = json.loads((b / "config.json").read_text())
    assert meta["experiment"] == "b" and meta["copied_from"] == str(a)
    assert [r["arm"] for r in load_results(exps[1].folder)].count("random") == 2


@pytest.mark.ray
def test_ray_executor_gives_the_records_of_the_local_one_and_resumes_like_it(tmp_path, micro_reference):
    """Each run a Ray task on a local Ray (this machine's CPUs, 1 CPU and 1 torch thread per run): the same
    records as the runs one after another in one process; the same command again finds them finished
    (and starts no Ray). CI installs Ray (alkit[cluster]); elsewhere the test is skipped without it."""
    import os

    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("Ray not installed: pip install 'alkit[cluster]'")
    out = alkit("--results-root", str(tmp_path), "--arms", *ARMS, "--executor", "ray", "--threads", "1", "--quiet")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "runs: 6/6 finished (0 before this call)" in out.stdout and "cycles: 12 trained" in out.stdout
    assert records_without_timings(tmp_path) == micro_reference
    again = alkit("--results-root", str(tmp_path), "--arms", *ARMS, "--executor", "ray", "--quiet")
    assert again.returncode == 0 and "runs: 6/6 finished (6 before this call)" in again.stdout
    assert "Ray" not in again.stderr  # nothing to run: no Ray started
