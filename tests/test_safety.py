"""Issue 28: nothing written outside the results root, every bad input caught before training, one writer per run,
damaged run folders, and a real two-node Ray cluster.

Each bad input is one defect in an otherwise good micro parameter file (or flag, or data file); the answer is
planted: exit 2, exactly one line on stderr starting with ``error:`` that names the key or file, and no file
anywhere under the test's folder that was not there before (the results root included).
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from alkit import loop, results
from alkit.cli import main
from alkit.config import ConfigError, safe_component, to_dict
from alkit.experiment import load_experiment, run_one
from alkit.results import RecordsError, load_results, read_records, run_lock
from helpers import BASE, MICRO, MICRO_ARMS, OWN, RANDOM, assert_one_error_and_nothing_written, records_without_timings
from helpers import experiment_values as experiment

ROOT = Path(__file__).resolve().parent.parent


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def alkit(*args, cwd=ROOT, timeout=600):
    return subprocess.run([sys.executable, "-m", "alkit", "run", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


# ------------------------------------------------------------------------------------------- 1. paths


@pytest.mark.parametrize("value", ["../elsewhere", "../../../elsewhere", "/abs/elsewhere", "a/b", "a\\b", "..", ".",
                                   "", ".hidden", "x\ny", "x\x00y", "tab\there", "-flag", "x" * 101, 7])
def test_unsafe_path_components_are_refused(value):
    with pytest.raises(ConfigError, match="not allowed; allowed: a plain folder name"):
        safe_component(value, "arms")


@pytest.mark.parametrize("value", ["02_vaal_vs_random", "m2_vaal_detached", "paper", "kernel_norm_approx", "a.b",
                                   "v1+bf16", "Größe"])
def test_plain_names_pass(value):
    assert safe_component(value, "name") == value


@pytest.mark.parametrize("key, value", [
    ("arms", "../../../elsewhere"), ("profile", "../elsewhere"), ("name", "../elsewhere"), ("name", "ABSOLUTE"),
    ("arms", "a/b"), ("arms", "a\\b"), ("profile", "x\ny"), ("arms", ".."), ("profile", ""), ("name", "."),
])
def test_a_name_that_is_not_one_folder_writes_nothing_anywhere(tmp_path, capsys, monkeypatch, key, value):
    """Before issue 28 ``arms: {../../../elsewhere: ...}`` and ``profile: ../elsewhere`` wrote records outside
    the results root, and an absolute name wrote where it pointed."""
    work = tmp_path / "a" / "b" / "c"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    value = str(tmp_path / "abs") if value == "ABSOLUTE" else value
    values = experiment(arms={value: RANDOM["random"]}) if key == "arms" else experiment(**{key: value})
    (work / "p.yaml").write_text(yaml.safe_dump(values))
    assert_one_error_and_nothing_written(tmp_path, capsys, ["p.yaml", "--results-root", "R"],
                                         [f"p.yaml: {key}: {value!r} is not allowed"])


def test_a_run_creates_no_file_outside_its_results_root(tmp_path, fmnist_dir):
    """A real run from another folder: every new file of the test's folder is below the results root."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "p.yaml").write_text(yaml.safe_dump(experiment()))
    before = tree(tmp_path)
    out = alkit("p.yaml", "--results-root", str(tmp_path / "R"), "--quiet", cwd=work)
    assert out.returncode == 0, out.stderr[-2000:]
    new = tree(tmp_path) - before
    assert new and all(p == "R" or p.startswith("R/") for p in new), sorted(new)
    assert {"R/micro/x/random/seed0/records.jsonl", "R/micro/x/random/seed0/config.json"} <= new


# ------------------------------------------------------------------------------------------- 2. bad input


def _npz(path: Path, n=120, **change) -> Path:
    rng = np.random.default_rng(0)
    arrays = {f"{s}_images": rng.integers(0, 256, (m, 28, 28), dtype=np.uint8) for s, m in (("train", n), ("val", 30),
                                                                                           ("test", 30))}
    arrays.update({f"{s}_labels": np.arange(m) % 2 for s, m in (("train", n), ("val", 30), ("test", 30))})
    arrays.update(change)
    np.savez(path, **arrays)
    return path


def _folder(root: Path, unlabelled: bool) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b") + (("unlabelled",) if unlabelled else ()):
        (root / c).mkdir(parents=True)
        for i in range(15):
            Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def _nan_npz(path: Path) -> Path:
    x = np.random.default_rng(0).random((120, 28, 28)).astype(np.float32)
    x[3, 4, 5] = np.nan
    zeros = np.zeros((30, 28, 28), np.float32)
    return _npz(path, train_images=x, val_images=zeros, test_images=zeros)


def _lp(**kw):
    return {**BASE, "learner_params": {**BASE["learner_params"], **kw}}


# (parameter-file values built in tmp folder d, words of the error line); the case numbers of issue 28's table
BAD_FILES = {
    "01-lr-inf": (lambda d: experiment(base=_lp(lr=float("inf"))),
                  ["arm 'random': learner_params[classifier].lr: inf is not a finite number", "allowed: a number > 0"]),
    "02-dropout-nan": (lambda d: experiment(base=_lp(dropout=float("nan"))),
                       ["learner_params[classifier].dropout: nan is not a finite number", "[0, 1)"]),
    "02b-dropout-1": (lambda d: experiment(base=_lp(dropout=1.0)), ["dropout: 1.0 is out of range", "[0, 1)"]),
    "02c-lr-0": (lambda d: experiment(base=_lp(lr=0)), ["lr: 0 is out of range; allowed: a number > 0"]),
    "03-stop-nan": (lambda d: experiment(base={**BASE, "stop_disc_acc": float("nan")}),
                    ["base.stop_disc_acc: nan is not a finite number", "[0, 1]"]),
    "03b-stop-2": (lambda d: experiment(base={**BASE, "stop_disc_acc": 2}), ["stop_disc_acc: 2 is out of range"]),
    "04-val-60000": (lambda d: experiment(base={**BASE, "val_size": 60000, "pool_size": 1000}),
                     ["val_size: 60000 leaves no pool", "allowed: 0 .. 59999"]),
    "04b-pool-too-big": (lambda d: experiment(base={**BASE, "val_size": 5000, "pool_size": 55001}),
                         ["pool_size: 55001 is larger than the 55,000 images", "allowed: 1 .. 55000"]),
    "05-pool-negative": (lambda d: experiment(base={**BASE, "pool_size": -5}),
                         ["base.pool_size: -5 is out of range; allowed: an integer >= 1"]),
    "06-own-budget": (lambda d: experiment(base={**OWN, "dataset": str(_folder(d / "imgs", False)), "budget": 100}),
                      ["arm 'random'", "initial 20 + 1 cycles x budget 100 = 120 labels", "only 24 points"]),
    "07-own-unlabelled-npz": (lambda d: experiment(base={**OWN, "dataset": str(_npz(
        d / "m.npz", train_labels=np.where(np.arange(120) < 5, -1, np.arange(120) % 2)))}),
        ["has 5 pool images without a label", "oracle session"]),
    "08-own-unlabelled-folder": (lambda d: experiment(base={**OWN, "dataset": str(_folder(d / "imgs", True))}),
                                 ["has 15 pool images without a label", "notebooks/06_label_your_own.ipynb"]),
    "09-own-object-labels": (lambda d: experiment(base={**OWN, "dataset": str(_npz(
        d / "m.npz", train_labels=np.array([str(i % 2) for i in range(120)], dtype=object)))}),
        ["train_labels is stored as Python objects (dtype object)", "allowed: a numeric array (integer labels)"]),
    "10-own-text-npz": (lambda d: experiment(base={**OWN, "dataset": str((d / "m.npz", (d / "m.npz").write_text(
        "not an npz\n"))[0])}), ["m.npz: not an .npz file: it starts with b'not '"]),
    "11-own-nan-pixel": (lambda d: experiment(base={**OWN, "dataset": str(_nan_npz(d / "m.npz"))}),
                         ["pool images: 1 pixel(s) are NaN or infinite (the first at index (3, 0, 4, 5))"]),
    "12-own-pool-size": (lambda d: experiment(base={**OWN, "dataset": str(_npz(d / "m.npz")), "pool_size": 1000}),
                         ["pool_size: 1000 is larger than the 120 pool images of m", "allowed: 1 .. 120"]),
    "18-misspelled-base-key": (lambda d: experiment(base={**BASE, "budgt": 20}),
                               ["p.yaml: base: unknown key(s) 'budgt' (did you mean 'budget'?)"]),
    "18b-misspelled-arm-key": (lambda d: experiment(arms={"random": {"learner": "classifier", "stratgy": "random"}}),
                               ["p.yaml: arms.random: unknown key(s) 'stratgy' (did you mean 'strategy'?)"]),
    "18c-wrong-kind-in-base": (lambda d: experiment(base={**BASE, "budget": "20"}),
                               ["p.yaml: base.budget: '20' is a string; allowed: an integer"]),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_parameter_file_is_one_error_line_before_anything_is_written(tmp_path, capsys, monkeypatch, case):
    build, words = BAD_FILES[case]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "p.yaml").write_text(yaml.safe_dump(build(work)))
    assert_one_error_and_nothing_written(tmp_path, capsys, ["p.yaml", "--results-root", "R"], words)


@pytest.mark.parametrize("case, make, words", [
    ("15-folder", lambda p: p.mkdir(), ["p.yaml: is a folder, not a parameter file", "*.yaml"]),
    ("16-empty", lambda p: p.write_text(""), ["p.yaml: the file is empty", "name and arms"]),
    ("16b-comments-only", lambda p: p.write_text("# nothing yet\n"), ["p.yaml: the file is empty"]),
    ("16c-no-name", lambda p: p.write_text("arms: {a: {}}\n"), ["p.yaml: missing key(s) 'name'"]),
    ("17-binary", lambda p: p.write_bytes(bytes(range(256)) * 4), ["p.yaml: not a text (YAML) file: byte 0x80"]),
    ("17b-bad-yaml", lambda p: p.write_text("name: [x\n"), ["p.yaml: not valid YAML"]),
], ids=lambda v: v if isinstance(v, str) else "")
def test_a_file_that_is_not_a_parameter_file_is_one_error_line(tmp_path, capsys, monkeypatch, case, make, words):
    monkeypatch.chdir(tmp_path)
    make(tmp_path / "p.yaml")
    assert_one_error_and_nothing_written(tmp_path, capsys, ["p.yaml", "--results-root", "R"], words)


@pytest.mark.parametrize("flags, words", [
    (["--threads", "-1"], ["--threads: -1; allowed: an integer >= 1"]),
    (["--threads", "0"], ["--threads: 0; allowed: an integer >= 1"]),
    (["--time-limit", "nan"], ["--time-limit: nan; allowed: a finite number of seconds > 0"]),
    (["--time-limit", "inf"], ["--time-limit: inf"]),
], ids=["threads-negative", "threads-0", "time-limit-nan", "time-limit-inf"])
def test_bad_numeric_flags_are_one_error_line(tmp_path, capsys, flags, words):
    assert_one_error_and_nothing_written(tmp_path, capsys, [str(MICRO), "--results-root", str(tmp_path / "R"), *flags],
                                         words)


def test_a_run_that_fails_in_training_leaves_no_config_that_blocks_the_corrected_one(tmp_path, monkeypatch, fmnist_dir):
    """Not a config error (those never start): a failure in the first cycle leaves no config.json, so the same
    folder takes a changed config without --force; a failure after a finished cycle keeps both files."""
    exp = load_experiment(MICRO, results_root=str(tmp_path))

    def boom(*args, **kwargs):
        raise RuntimeError("simulated failure in training")

    monkeypatch.setattr(loop, "_cycle", boom)
    with pytest.raises(RuntimeError, match="simulated failure"):
        run_one(exp, "random", 0)
    run_dir = exp.run_dir("random", 0)
    assert not run_dir.exists()  # no config.json, no records, and not the empty folder it made
    monkeypatch.undo()
    changed = load_experiment(MICRO, results_root=str(tmp_path))
    changed.base["budget"] = 10  # the "corrected" config: a plain rerun, no --force
    assert len(run_one(changed, "random", 0)) == 2
    assert json.loads((run_dir / "config.json").read_text())["config"]["budget"] == 10

    calls = {"n": 0}
    real = loop._cycle

    def second_fails(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated failure in cycle 1")
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "_cycle", second_fails)
    with pytest.raises(RuntimeError):
        run_one(exp, "random", 1)
    assert len(read_records(exp.run_dir("random", 1) / "records.jsonl")) == 1
    assert (exp.run_dir("random", 1) / "config.json").exists()  # it holds a finished cycle: resumable, kept


# ------------------------------------------------------------------------------------------- 3. one writer


def test_a_locked_run_is_skipped_and_said_so_and_wait_waits_for_it(tmp_path, fmnist_dir):
    """This test process holds seed 0's lock (as another alkit run would): `alkit run` trains seed 1 only and
    lists seed 0 as skipped; with --wait it waits, then trains seed 0 once the lock is free."""
    exp = load_experiment(MICRO, results_root=str(tmp_path))
    args = [str(MICRO), "--results-root", str(tmp_path), "--arms", "random", "--threads", "1"]
    with run_lock(exp.run_dir("random", 0)):
        out = alkit(*args)
        assert out.returncode == 3, out.stderr[-2000:]  # issue 47: 0 only when every run is finished by someone
        assert "runs: 1/2 finished (0 before this call), 1 unfinished, 0 failed, 1 skipped (another process trains them)" \
            in out.stdout, out.stdout
        assert f"skipped: 02_vaal_vs_random/random/seed0: another process trains it (pid {os.getpid()} on" in out.stdout
        assert "cycles: 2 trained" in out.stdout and "--wait" in out.stdout
        assert not (exp.run_dir("random", 0) / "records.jsonl").exists()
        err = (tmp_path / "wait.err").open("w")
        waiting = subprocess.Popen([sys.executable, "-m", "alkit", "run", *args, "--wait"], cwd=ROOT, text=True,
                                   stdout=subprocess.PIPE, stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        lines, said_waiting = [], threading.Event()

        def read():
            for line in waiting.stdout:
                lines.append(line)
                if line.startswith("waiting"):
                    said_waiting.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert said_waiting.wait(timeout=120), "".join(lines)[-2000:]  # it found the lock held and said so
        time.sleep(1)
        assert waiting.poll() is None  # still waiting for the lock this process holds
        assert not (exp.run_dir("random", 0) / "records.jsonl").exists()
    waiting.wait(timeout=300)
    reader.join(timeout=30)
    err.close()
    stdout = "".join(lines)
    assert waiting.returncode == 0, (tmp_path / "wait.err").read_text()[-2000:]
    assert f"waiting  02_vaal_vs_random/random/seed0: another process trains it (pid {os.getpid()}" in stdout
    assert "runs: 2/2 finished (1 before this call)" in stdout and "cycles: 2 trained" in stdout


def test_two_alkit_runs_at_once_train_every_run_once_and_no_records_file_shrinks(tmp_path, micro_reference):
    """Two `alkit run` on the same file and results root, started together: together they train exactly the
    cycles needed (before the lock each trained every run), the records equal one process's, and no
    records.jsonl ever has fewer lines than it had (watched every 20 ms while they run)."""
    arms = list(MICRO_ARMS)
    shared = tmp_path / "shared"
    lines_seen: dict[Path, list[int]] = {}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            for p in shared.rglob("records.jsonl"):
                try:
                    n = p.read_bytes().count(b"\n")
                except FileNotFoundError:
                    continue
                lines_seen.setdefault(p, []).append(n)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    cmd = [sys.executable, "-m", "alkit", "run", str(MICRO), "--results-root", str(shared), "--arms", *arms,
           "--threads", "1", "--quiet"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    stop.set()
    watcher.join()
    # issue 47: a process that ends while the other still trains a run it skipped exits 3 and names that run
    assert all(p.returncode == 0 or p.returncode == 3 and "skipped: " in o[0] for p, o in zip(procs, outs)), \
        [(p.returncode, o[0][-1000:], o[1][-2000:]) for p, o in zip(procs, outs)]
    trained = [int(o[0].split("cycles: ")[1].split(" trained")[0]) for o in outs]
    assert sum(trained) == 12, outs  # 6 runs x 2 cycles, each trained by one of the two
    assert records_without_timings(shared) == micro_reference
    assert len(lines_seen) == 6
    for p, counts in lines_seen.items():
        assert counts == sorted(counts), (p, counts)  # never fewer lines than before
    print("two processes:", [o[0].strip().splitlines()[0] for o in outs], "cycles trained:", trained)


def test_run_locks_take_all_or_none(tmp_path):
    from alkit.results import RunLocked, run_locks

    dirs = [tmp_path / "e" / arm / "seed0" for arm in ("a", "b", "c")]
    script = ("import sys, time; from alkit.results import run_lock\n"
              f"with run_lock({str(dirs[1])!r}):\n    print('held', flush=True); time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match="b/seed0: being trained by another process"):
            with run_locks(dirs):
                pass
        with run_lock(dirs[0]):  # the first lock was released when the second failed
            pass
    finally:
        holder.kill()
        holder.wait()
    with run_locks(dirs):  # a killed holder leaves no stale lock
        pass


# ------------------------------------------------------------------------------------------- 4. damaged folders


@pytest.fixture
def finished(tmp_path, fmnist_dir, capsys):
    """The micro random/seed0 run, finished, in tmp_path/R (trained in this process: alkit.cli.main; the torch
    thread count it sets is put back after the test)."""
    import torch

    threads = torch.get_num_threads()
    rc = main(["run", str(MICRO), "--results-root", str(tmp_path / "R"), "--arms", "random", "--seeds", "0", "--quiet",
               "--threads", "1"])
    assert rc == 0, capsys.readouterr().err[-2000:]
    capsys.readouterr()
    exp = load_experiment(MICRO, results_root=str(tmp_path / "R"))
    yield exp, exp.run_dir("random", 0)
    torch.set_num_threads(threads)


def test_a_cut_off_last_records_line_is_one_error_line_and_repair_drops_it(finished, capsys):
    exp, run_dir = finished
    rec = run_dir / "records.jsonl"
    good = read_records(rec)
    rec.write_bytes(rec.read_bytes()[:-40])  # the last record cut off mid-line
    argv = [str(MICRO), "--results-root", str(exp.results_root), "--arms", "random", "--seeds", "0", "--threads", "1"]
    err = assert_one_error_and_nothing_written(rec.parent, capsys, argv, [
        f"{rec}: line 2 (the last) is incomplete or corrupt", "the 1 records before it are intact",
        "alkit run <the parameter file> --repair drops that line"])
    print("truncated:", err.strip())
    with pytest.raises(RecordsError):
        load_results(exp.folder)
    rc = main(["run", *argv, "--quiet", "--repair"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert f"repaired {rec}: dropped its incomplete last line 2" in out.err
    assert "runs: 1/1 finished (0 before this call)" in out.out and "cycles: 1 trained" in out.out
    again = read_records(rec)
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in again] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in good]  # the dropped cycle trained again, the same
    print("repair:", out.err.strip(), "|", out.out.strip().splitlines()[0])


def test_a_corrupt_line_before_good_ones_is_not_repaired_by_dropping(tmp_path):
    rec = tmp_path / "records.jsonl"
    rec.write_text('{"cycle": 0}\n{"cycle": 1\n{"cycle": 2}\n')
    with pytest.raises(RecordsError, match="line 2 of 3 is corrupt .* not repairable by dropping a last line"):
        read_records(rec)
    with pytest.raises(RecordsError):
        results.repair_records(rec)
    assert rec.read_text() == '{"cycle": 0}\n{"cycle": 1\n{"cycle": 2}\n'  # left as it was


def test_a_finished_run_without_its_config_is_refused_then_repaired_and_never_dropped(finished, capsys):
    exp, run_dir = finished
    (run_dir / "config.json").unlink()
    # the notebook side: the run keeps its place (by its folder names) and the log says what is missing
    from alkit.experiment import experiment_records

    said = []
    rows = experiment_records(exp, log=said.append)
    assert [(r["arm"], r["seed"]) for r in rows] == [("random", 0), ("random", 0)]
    assert any("1 run(s) without config.json, kept by their folder names: random/seed0" in s for s in said), said
    argv = [str(MICRO), "--results-root", str(exp.results_root), "--arms", "random", "--seeds", "0", "--threads", "1"]
    err = assert_one_error_and_nothing_written(run_dir, capsys, argv, [
        f"{run_dir}: holds 2 records but no config.json", "--repair rewrites it", "--force"])
    print("config deleted:", err.strip())
    with pytest.raises(ConfigError, match="holds records but no config.json"):  # the Python path never retrains over them
        run_one(exp, "random", 0)
    rc = main(["run", *argv, "--quiet", "--repair"])
    out = capsys.readouterr()
    assert rc == 0 and f"repaired {run_dir / 'config.json'}: rewritten from the parameter file (2 records kept)" in out.err
    assert "runs: 1/1 finished (1 before this call)" in out.out and "cycles: 0 trained" in out.out
    meta = json.loads((run_dir / "config.json").read_text())
    assert meta["arm"] == "random" and "--repair" in meta["repaired"]
    assert meta["config"] == json.loads(results.dumps(to_dict(exp.config("random", 0))))
    print("repair:", out.err.strip())


def test_repair_refuses_records_of_another_config(finished, capsys):
    exp, run_dir = finished
    (run_dir / "config.json").unlink()
    values = yaml.safe_load(MICRO.read_text())
    values["arms"]["random"]["strategy"] = "entropy"
    other = run_dir.parents[4] / "other.yaml"
    other.write_text(yaml.safe_dump(values))
    rc = main(["run", str(other), "--results-root", str(exp.results_root), "--arms", "random", "--seeds", "0",
               "--quiet", "--repair"])
    err = capsys.readouterr().err
    assert rc == 2 and "its records are not runs of this parameter file's config (strategy differ)" in err, err
    assert not (run_dir / "config.json").exists()


# ------------------------------------------------------------------------------------------- 5. two-node Ray


def _free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    for sock in socks:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in socks]
    for sock in socks:
        sock.close()
    return ports


def _ray(*args, env=None, timeout=180):
    exe = Path(sys.executable).with_name("ray")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, env=env)


def _pids_of(ray_tmp: Path, name: bytes = b"") -> list[int]:
    """Pids of the processes whose command line points into ``ray_tmp`` (this test's cluster, nobody else's),
    of those whose program ends in ``name`` when given."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(str(ray_tmp).encode() in a for a in cmdline) and (not name or cmdline[0].endswith(name)):
            pids.append(int(proc.name))
    return sorted(pids)


def _run_trained_by_children_of(root: Path, raylet: int) -> str | None:
    """The run folder (relative to ``root``) whose lock is held right now by a worker process of ``raylet``."""
    import fcntl

    for lock in root.rglob(".seed*.lock"):
        try:
            pid = int(lock.read_text().split()[1])
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid != raylet:
            continue
        with lock.open("rb") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # held: the run is training there now
                return str(lock.relative_to(root))
    return None


def _kill(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.slow
@pytest.mark.ray
def test_two_node_ray_cluster_gives_the_local_records_and_resumes_after_a_node_dies(tmp_path, micro_reference):
    """`ray start --head` and `ray start --address` (two raylets on loopback, 1 CPU each), then `alkit run
    --executor ray --ray-address auto`; the second node's raylet is killed (SIGKILL) while one of its workers
    holds a run's lock (trains it). The command still ends with its summary: Ray retries the lost task on the
    head, where the run finds its lock free (the dead worker's flock went with it) and resumes from its folder;
    a run Ray gave up on would be reported failed and resumed by the same command again. The second call
    finds every run finished, and the records equal the local executor's. (Before issue 28 the driver died
    with ActorUnavailableError when its message queue actor had been placed on the lost node.)
    Only this test's Ray processes are stopped: found by the temp folder in their command lines."""
    pytest.importorskip("ray")
    arms = list(MICRO_ARMS)
    ray_tmp = Path("/tmp") / f"alkit-ray-{os.getpid()}"  # short: Ray's socket paths must stay under 108 bytes
    ray_tmp.mkdir()
    gcs, *node_ports = _free_ports(9)
    # a busy CI machine (load 15 on 2 cores here) can take longer than Ray's default 10 s to register a raylet
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": f"127.0.0.1:{gcs}",
           "RAY_raylet_start_wait_time_s": "120",
           # hermetic: no ~/.ray/auth_token of another cluster on this machine (Ray reads it and fails to connect)
           "HOME": str(tmp_path / "home"), "RAY_AUTH_MODE": "disabled"}
    (tmp_path / "home").mkdir()
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--object-store-memory", str(80 * 1024**2),
              "--disable-usage-stats"]

    def ports(i):
        a, b, c, d = node_ports[4 * i: 4 * i + 4]
        return ["--dashboard-agent-listen-port", str(a), "--dashboard-agent-grpc-port", str(b),
                "--metrics-export-port", str(c), "--runtime-env-agent-port", str(d)]

    try:
        head = _ray("start", "--head", "--port", str(gcs),
                    "--include-dashboard", "false", "--temp-dir", str(ray_tmp), *common, *ports(0), env=env)
        assert head.returncode == 0, head.stdout[-2000:] + head.stderr[-2000:]
        head_raylets = _pids_of(ray_tmp, b"raylet")
        worker = _ray("start", "--address", f"127.0.0.1:{gcs}", *common, *ports(1), env=env)
        assert worker.returncode == 0, worker.stdout[-2000:] + worker.stderr[-2000:]
        second = sorted(set(_pids_of(ray_tmp, b"raylet")) - set(head_raylets))
        assert len(head_raylets) == 1 and len(second) == 1, (head_raylets, second)  # two raylets, two nodes
        nodes = subprocess.run([sys.executable, "-c", "import ray; ray.init(address='auto', log_to_driver=False); "
                                "print(sum(n['Alive'] for n in ray.nodes()))"], capture_output=True, text=True,
                               env=env, timeout=120)
        assert nodes.stdout.strip().splitlines()[-1] == "2", nodes.stderr[-2000:]
        shared = tmp_path / "shared"
        cmd = [sys.executable, "-m", "alkit", "run", str(MICRO), "--results-root", str(shared), "--arms", *arms,
               "--executor", "ray", "--ray-address", "auto", "--threads", "1"]
        run = subprocess.Popen(cmd, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        victim_run = None
        while time.time() < deadline and victim_run is None and run.poll() is None:
            victim_run = _run_trained_by_children_of(shared, second[0])
            time.sleep(0.05)
        assert victim_run is not None, "no run trained on the second node"
        _kill(second)  # the second node dies while it trains victim_run
        first_out, _ = run.communicate(timeout=600)
        print(f"killed the second node's raylet while it trained {victim_run}")
        print("first call (second node killed):\n" + "\n".join(first_out.strip().splitlines()[-10:]))
        assert "runs:" in first_out, first_out[-3000:]
        again = subprocess.run(cmd + ["--quiet"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        print("second call (resume):\n" + again.stdout.strip())
        assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
        assert "runs: 6/6 finished" in again.stdout
        assert records_without_timings(shared) == micro_reference
    finally:
        _kill(_pids_of(ray_tmp))
        import shutil

        shutil.rmtree(ray_tmp, ignore_errors=True)
