"""Issue 47: no code runs from a results folder, nothing is written through a link, and the last bad inputs fail
cleanly.

Security: each attack is planted as the issue found it (a pickle whose loading writes a marker file; links to a
file or folder outside the results root), and the test checks first that the plant is live (the old call runs it,
the link does point outside), then that alkit runs nothing, writes nothing through the link, deletes nothing at
its target, and says so in one ``error:`` line.

Bad inputs: each is one defect in an otherwise good micro parameter file (or flag, or run folder, or data file);
the answer is planted: exit 2, exactly one line on stderr, starting with ``error:`` and naming the key or file,
the value and what is allowed, and nothing written or changed anywhere under the test's folder (file contents
and links compared, not only names).
"""
import errno
import json
import os
import struct
import tempfile
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from alkit import derive, experiment, jobs, loop, results
from alkit.cli import EXIT_HELD, main
from alkit.config import ConfigError, from_dict, load_yaml, show
from alkit.experiment import load_experiment, run_one
from alkit.learners.adversarial import warm_load
from alkit.learners.base import LEARNERS
from alkit.models import M2, VAE, Discriminator
from alkit.pool import InitialSet
from alkit.results import RunFolderError, run_lock
from helpers import BASE, OWN, assert_one_error_and_nothing_written, experiment_values, snapshot

ROOT = Path(__file__).resolve().parent.parent
VAAL_WARM = {"vaal": {"learner": "vaal", "strategy": "random",
                      "learner_params": {**LEARNERS["vaal"].test_params, "warm_start": True}}}


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A folder to run from (parameter files are written there; the results root is ``R`` in it)."""
    d = tmp_path / "work"
    d.mkdir()
    monkeypatch.chdir(d)
    return d


def write(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


class Planted:
    """Unpickling it writes ``marker``: what a hostile ``learner.pt`` could do (here harmless, in a tmp folder)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def plant_pickle(path: Path, marker: Path, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": fmt, "modules": {"vae": Planted(marker)}}, path)


def test_the_planted_pickle_is_live(tmp_path):
    """The plant of S1/S2 runs its code under the loading of the landed code (torch.load(weights_only=False)):
    the refusals below are not vacuous."""
    marker = tmp_path / "marker"
    plant_pickle(tmp_path / "learner.pt", marker, results.WARM_START_FORMAT)
    assert not marker.exists()
    torch.load(tmp_path / "learner.pt", weights_only=False)
    assert marker.read_text() == "ran"


# ------------------------------------------------------------------------------------------- S1. learner.pt


def _warm_run_folder(work: Path, n_records: int = 1):
    """A warm-started vaal run with ``n_records`` cycles on disk (unfinished: cycles = 1 -> 2 trainings), as a
    resumed ``alkit run`` finds it; its parameter file, experiment and run folder."""
    p = write(work / "p.yaml", experiment_values(arms=VAAL_WARM))
    exp = load_experiment(p, results_root="R")
    run_dir = exp.run_dir("vaal", 0)
    cfg = exp.config("vaal", 0)
    loop.write_run_config(results.config_path(run_dir), cfg, "cpu",
                          {"experiment": exp.name, "arm": "vaal", "profile": exp.profile})
    recs = [{"cycle": c, "n_labelled": 40 + 20 * c, "strategy": "random", "learner": "vaal", "seed": 0,
             "selected": list(range(100 + 20 * c, 120 + 20 * c)), "test_acc": 0.5} for c in range(n_records)]
    results.write_records(results.records_path(run_dir), recs)
    return p, exp, run_dir, cfg


def test_s1_alkit_run_refuses_a_planted_learner_pt_and_runs_nothing(work, capsys):
    """Before: `alkit run` resumed the warm start with torch.load(weights_only=False): the plant ran, and the run
    reported success. Now: exit 2 before any training, one line naming the file; the marker is never written."""
    p, exp, run_dir, _ = _warm_run_folder(work)
    marker = work.parent / "marker"
    plant_pickle(results.warm_start_path(run_dir), marker, results.WARM_START_FORMAT)
    err = assert_one_error_and_nothing_written(work.parent, capsys, [p.name, "--results-root", "R"], [
        f"{results.warm_start_path(run_dir)}: refused: loading it needs more than tensors and plain values",
        "Unsupported global", "weights_only=True", "--force"])
    assert not marker.exists()
    print("S1:", err.strip())


def test_s1_the_loop_refuses_it_too_before_writing_anything(work, data, capsys):
    """The Python path (`alkit.loop.run`, as a notebook resumes a run): the same refusal, before config.json is
    rewritten or any data is used."""
    _, exp, run_dir, cfg = _warm_run_folder(work)
    marker = work.parent / "marker"
    plant_pickle(results.warm_start_path(run_dir), marker, results.WARM_START_FORMAT)
    before = snapshot(work.parent)
    with pytest.raises(RunFolderError, match="refused: loading it needs more than tensors"):
        loop.run(cfg, run_dir, data=data, progress=False)
    assert not marker.exists() and snapshot(work.parent) == before


def test_s1_a_learner_pt_of_the_old_format_is_refused_as_one_line(work, capsys):
    """alkit before issue 47 pickled the whole learner: such a file is refused too (it names a class of alkit, a
    global weights_only does not load), with the fix (--force), never unpickled."""
    p, exp, run_dir, _ = _warm_run_folder(work)
    learner = loop.make_learner("vaal", VAAL_WARM["vaal"]["learner_params"], 10, "cpu")
    torch.save(learner, results.warm_start_path(run_dir))
    assert_one_error_and_nothing_written(work.parent, capsys, [p.name, "--results-root", "R"], [
        "learner.pt: refused: loading it needs more than tensors", "Unsupported global", "--force"])
    (run_dir / "learner.pt").write_bytes(b"not a torch file")
    assert_one_error_and_nothing_written(work.parent, capsys, [p.name, "--results-root", "R"], [
        "learner.pt: refused: torch cannot read it"])


class _Fitted:
    """A learner's modules as the loop finds them after fit (a stand-in: building modules needs no training)."""

    name, num_classes, previous = "vaal", 3, None

    def __init__(self, **modules):
        vars(self).update(modules)


def test_s1_state_dicts_round_trip_and_warm_load_reads_them(tmp_path):
    """What the loop keeps and saves of a learner (module_states) loads with weights_only=True and warm-starts a
    fresh module with the very weights; a changed shape or a module the file lacks starts cold."""
    fitted = _Fitted(vae=VAE(4, 4), disc=Discriminator(4, 16))
    path = tmp_path / "learner.pt"
    results.save_tensors(path, loop.module_states(fitted, results.WARM_START_FORMAT, 0))
    plain = torch.load(path, weights_only=True)  # tensors and plain values only
    assert plain["format"] == results.WARM_START_FORMAT and set(plain["modules"]) == {"vae", "disc"}
    state = loop.load_warm_start(path)
    fresh = VAE(4, 4)
    assert not all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), fitted.vae.state_dict().values()))
    assert warm_load(fresh, state, "vae") is True
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), fitted.vae.state_dict().values()))
    assert warm_load(VAE(8, 4), state, "vae") is False  # another latent size: cold
    assert warm_load(VAE(4, 4), state, "model") is False  # no such module in the file: cold
    assert warm_load(VAE(4, 4), fitted, "vae") is True  # a fitted learner itself still works (tests, oracle)
    assert warm_load(VAE(4, 4), None, "vae") is False


@pytest.mark.slow
def test_s1_a_warm_started_run_resumed_from_state_dicts_gives_the_uninterrupted_records(data, tmp_path, monkeypatch):
    """End to end: a vaal run with warm starts, killed after cycle 0 and resumed from its learner.pt (state_dicts,
    loaded with weights_only=True), gives the records of the uninterrupted run, warm starts included; its
    save_learner files are state_dicts that alkit.derive rebuilds a VAE from."""
    def cfg(**kw):
        return loop.RunConfig(initial=InitialSet("random", 30), budget=20, cycles=2, learner="vaal",
                              learner_params={**LEARNERS["vaal"].test_params, "warm_start": True}, strategy="random",
                              seed=4, device="cpu", **kw)

    def strip(recs):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in recs]

    reference = loop.run(cfg(save_learner=True), tmp_path / "ref", data=data, progress=False)
    assert [r["warm_started"] for r in reference] == [False, True, True]
    saved = torch.load(results.learner_path(tmp_path / "ref", 1), weights_only=True)
    assert saved["format"] == results.LEARNER_FORMAT and saved["classes"]["vae"] == "VAE"
    rebuilt = derive.load_learner(results.learner_path(tmp_path / "ref", 1))
    assert derive.reconstruct(rebuilt, data.x_test[:3]).shape == (3, 28, 28)

    real, calls = loop.acquire, {"n": 0}

    def crash_on_second(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated crash during cycle 1")
        return real(*a, **kw)

    monkeypatch.setattr(loop, "acquire", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        loop.run(cfg(save_learner=True), tmp_path / "crashed", data=data, progress=False)
    monkeypatch.setattr(loop, "acquire", real)
    assert torch.load(results.warm_start_path(tmp_path / "crashed"), weights_only=True)["cycle"] == 0
    resumed = loop.run(cfg(save_learner=True), tmp_path / "crashed", data=data, progress=False)
    assert strip(resumed) == strip(reference)

    # killed between saving cycle 2's modules and writing cycle 2's record: learner.pt is cycle 2's, the record
    # ends at cycle 1; the resume warm-starts from learner.previous.pt (cycle 1's) and gives the same records
    late = tmp_path / "late"
    loop.run(cfg(), late, data=data, progress=False)
    rec_path = results.records_path(late)
    rec_path.write_text("".join(rec_path.read_text().splitlines(keepends=True)[:2]))
    assert torch.load(results.warm_start_path(late), weights_only=True)["cycle"] == 2
    assert torch.load(results.warm_start_previous_path(late), weights_only=True)["cycle"] == 1
    assert strip(loop.run(cfg(), late, data=data, progress=False)) == strip(reference)
    # with neither file of cycle 1 left, one clear refusal, nothing trained
    rec_path.write_text("".join(rec_path.read_text().splitlines(keepends=True)[:2]))
    results.warm_start_previous_path(late).unlink()
    with pytest.raises(results.RunFolderError, match="no saved modules of cycle 1"):
        loop.run(cfg(), late, data=data, progress=False)


# ------------------------------------------------------------------------------------------- S2. learners/cycleNN.pt


def test_s2_derive_refuses_a_planted_saved_learner_and_loads_no_data(work, monkeypatch):
    """Before: the notebooks' generative views loaded learners/cycleNN.pt with weights_only=False. Now the file is
    refused before the data is even loaded, no view is cached, the marker is never written."""
    p = write(work / "p.yaml", experiment_values(arms=VAAL_WARM))
    exp = load_experiment(p, results_root="R")
    run_dir = exp.run_dir("vaal", 0)
    marker = work.parent / "marker"
    plant_pickle(results.learner_path(run_dir, 0), marker, results.LEARNER_FORMAT)
    monkeypatch.setattr(derive, "load_data", lambda *a, **k: pytest.fail("loaded data for a refused file"))
    before = snapshot(work.parent)
    with pytest.raises(RunFolderError, match="cycle00.pt: refused: loading it needs more than tensors"):
        derive.generative_views(exp, "vaal", 0, 0)
    assert not marker.exists() and snapshot(work.parent) == before


def test_s2_saved_learners_are_rebuilt_from_state_dicts_with_the_same_outputs(tmp_path):
    """A VAE (vaal) and an M2 (the m2 family) saved as state_dicts come back with the shapes of their weights and
    reconstruct exactly as the fitted modules do; a file of the other kind (a warm start) is refused."""
    x = torch.rand(5, 1, 28, 28)
    for fitted in (_Fitted(vae=VAE(4, 4).eval(), disc=Discriminator(4, 16)),
                   _Fitted(model=M2(3, 4, 4, 8, "tiny", 0.3, 1).eval())):
        path = tmp_path / "learners" / "cycle00.pt"
        results.save_tensors(path, loop.module_states(fitted, results.LEARNER_FORMAT, 0))
        np.testing.assert_array_equal(derive.reconstruct(derive.load_learner(path), x), derive.reconstruct(fitted, x))
    results.save_tensors(path, loop.module_states(fitted, results.WARM_START_FORMAT, 0))
    with pytest.raises(RunFolderError, match="not a saved learner of alkit"):
        derive.load_learner(path)


# ------------------------------------------------------------------------------------------- S3. the run lock


@pytest.fixture
def victim(tmp_path):
    """A file outside the results root that a planted link points to."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("precious\n")
    return outside / "victim.txt"


def test_s3_a_lock_file_linked_outside_the_root_is_refused_and_the_target_kept(work, victim, capsys):
    """Before: `.seedN.lock` was opened following links, then truncated and written: a planted link overwrote a file
    outside the results root. Now: refused (O_NOFOLLOW) with one line; the target keeps its bytes."""
    p = write(work / "p.yaml", experiment_values())
    lock = results.lock_path(load_experiment(p, results_root="R").run_dir("random", 0))
    lock.parent.mkdir(parents=True)
    os.symlink(victim, lock)
    assert lock.resolve() == victim  # the plant points outside
    assert_one_error_and_nothing_written(work.parent, capsys, [p.name, "--results-root", "R"], [
        "R/micro/x/random/.seed0.lock: is a symbolic link", str(victim)])
    with pytest.raises(RunFolderError, match=r"\.seed0\.lock: is a symbolic link .*, the lock file of a run"):
        with run_lock(lock.parent / "seed0"):  # the lock itself, without the walk of alkit run before it
            pytest.fail("took a lock through a link")
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize("kind", ["hard link", "FIFO"])
def test_s3_a_lock_file_that_is_a_hard_link_or_a_fifo_is_refused(tmp_path, victim, kind):
    run_dir = tmp_path / "R" / "micro" / "x" / "random" / "seed0"
    run_dir.parent.mkdir(parents=True)
    lock = results.lock_path(run_dir)
    os.link(victim, lock) if kind == "hard link" else os.mkfifo(lock)
    t = time.monotonic()
    with pytest.raises(RunFolderError, match="the lock file of a run is (a hard link|not a file)"):
        with run_lock(run_dir):
            pytest.fail("took the lock")
    assert time.monotonic() - t < 5  # a FIFO does not make the open wait
    assert victim.read_text() == "precious\n"


def test_s3_records_and_configs_are_never_read_or_written_through_a_link(tmp_path, victim):
    """A records.jsonl or config.json that is a link: reading it is refused (it could show any file), and the
    atomic write replaces the link itself, never its target."""
    run_dir = tmp_path / "R" / "run"
    run_dir.mkdir(parents=True)
    rec = results.records_path(run_dir)
    os.symlink(victim, rec)
    with pytest.raises(RunFolderError, match="records.jsonl: is a symbolic link"):
        results.read_records(rec)
    results.write_records(rec, [{"cycle": 0}])
    assert not rec.is_symlink() and results.read_records(rec) == [{"cycle": 0}]
    assert victim.read_text() == "precious\n"


# ------------------------------------------------------------------------------------------- S4. links in the root


@pytest.fixture
def outside_run(tmp_path):
    """A folder outside the results root holding a run's files: what a planted folder link points to."""
    o = tmp_path / "outside_run"
    o.mkdir()
    (o / "config.json").write_text('{"config": {}}\n')
    (o / "records.jsonl").write_text('{"cycle": 0}\n')
    (o / "keep.txt").write_text("mine\n")
    return o


@pytest.mark.parametrize("where", ["profile", "run", "latent", "force"])
def test_s4_a_folder_link_below_the_root_is_refused_before_anything_is_written_or_deleted(work, outside_run, capsys,
                                                                                           where):
    """Before: a symlinked folder in the results root was followed (a run wrote outside the root; --force deleted
    at its target). Now: one line naming the link, before anything is written or deleted; the target unchanged."""
    p = write(work / "p.yaml", experiment_values())
    run_dir = work / load_experiment(p, results_root="R").run_dir("random", 0)
    link = {"profile": work / "R" / "micro", "latent": run_dir / "latent"}.get(where, run_dir)
    link.parent.mkdir(parents=True, exist_ok=True)
    if where == "latent":
        run_dir.mkdir(parents=True, exist_ok=True)
    os.symlink(outside_run, link)
    before = snapshot(outside_run)
    argv = [p.name, "--results-root", "R"] + (["--force"] if where == "force" else [])
    assert_one_error_and_nothing_written(work.parent, capsys, argv, [f"{link.relative_to(work)}: is a symbolic link",
                                                                     str(outside_run), "allowed: plain folders"])
    assert snapshot(outside_run) == before


def test_s4_run_one_refuses_a_link_in_its_run_folder_too(work, outside_run, victim, data, monkeypatch):
    """The Python path (a notebook's run_experiment -> run_one): the same refusal for a folder link and for a
    planted lock link, before the lock is taken or anything written."""
    exp = load_experiment(write(work / "p.yaml", experiment_values()), results_root="R")
    monkeypatch.setattr(experiment, "_cached_data", lambda cfg, cache: data)  # no data files needed
    run_dir = exp.run_dir("random", 0)
    run_dir.mkdir(parents=True)
    os.symlink(outside_run, run_dir / "learners")
    before = snapshot(work.parent)
    with pytest.raises(RunFolderError, match="seed0/learners: is a symbolic link"):
        run_one(exp, "random", 0)
    assert snapshot(work.parent) == before
    (run_dir / "learners").unlink()
    os.symlink(victim, results.lock_path(run_dir))
    with pytest.raises(RunFolderError, match=r"\.seed0\.lock: is a symbolic link"):
        run_one(exp, "random", 0)
    assert victim.read_text() == "precious\n" and not results.config_path(run_dir).exists()


def test_s4_copy_run_refuses_a_linked_destination_and_deletes_nothing_at_its_target(work, outside_run):
    """A shared run is copied into place by replacing the destination folder (rmtree): a destination that is a
    link would have been deleted at its target. Now refused, the target untouched."""
    src_exp = load_experiment(write(work / "a.yaml", experiment_values()), results_root="R")
    dst_exp = load_experiment(write(work / "b.yaml", experiment_values(name="y")), results_root="R")
    a, b = src_exp.run_dir("random", 0), dst_exp.run_dir("random", 0)
    a.mkdir(parents=True)
    results.write_json(results.config_path(a), {"config": {}})
    results.write_records(results.records_path(a), [{"cycle": 0}, {"cycle": 1}])
    b.parent.mkdir(parents=True)
    os.symlink(outside_run, b)
    before = snapshot(outside_run)
    with pytest.raises(RunFolderError, match="y/random/seed0: is a symbolic link"):
        jobs.copy_run(jobs.Task(src_exp, "random", 0, 2, 2), jobs.Task(dst_exp, "random", 0, 2))
    assert snapshot(outside_run) == before
    assert not results.lock_path(b).exists()


# ------------------------------------------------------------------------------------------- bad inputs


def _npz(path: Path, n=120, **change) -> Path:
    rng = np.random.default_rng(0)
    arrays = {f"{s}_images": rng.integers(0, 256, (m, 28, 28), dtype=np.uint8) for s, m in (("train", n), ("val", 30),
                                                                                           ("test", 30))}
    arrays.update({f"{s}_labels": np.arange(m) % 2 for s, m in (("train", n), ("val", 30), ("test", 30))})
    arrays.update(change)
    np.savez(path, **arrays)
    return path


def png(path: Path, width: int, height: int, rows: int | None = None) -> Path:
    """A grey 8-bit PNG of ``width`` x ``height`` black pixels, written by hand: ``rows`` rows of compressed data
    (None: all of them, a genuine decompression bomb: a few kB that decode to width x height bytes)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    comp, row = zlib.compressobj(9), b"\0" * (width + 1)  # filter byte 0, then the row
    idat = b"".join(comp.compress(row) for _ in range(height if rows is None else rows)) + comp.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def _bomb_folder(root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(15):
            Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(root / c / f"{i}.png")
    bomb = png(root / "a" / "bomb.png", 5000, 5000)
    assert bomb.stat().st_size < 100_000  # 25 MB of pixels in a few kB
    return root


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


LAUGHS = ("a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
          + "".join(f"{n}: &{n} [{', '.join([f'*{m}'] * 9)}]\n" for m, n in zip("abcdefgh", "bcdefghi")))
DEEP = "[" * 10000 + "]" * 10000


def _text(values: dict, extra: str = "") -> str:
    return yaml.safe_dump(values) + extra


# (the parameter file's text, built in the work folder d; words of the error line)
BAD_FILES = {
    "yaml-nested-10000-deep": (lambda d: DEEP, ["p.yaml: line 1: nested deeper than 50 levels; allowed: at most 50"]),
    "yaml-nested-10000-deep-as-budget": (
        lambda d: _text(experiment_values()).replace("budget: 20", "budget: " + DEEP),
        ["p.yaml: line", "nested deeper than 50 levels"]),
    "yaml-billion-laughs-as-budget": (
        lambda d: LAUGHS + _text(experiment_values()).replace("budget: 20", "budget: *i"),
        ["p.yaml: more than 10,000 values once its aliases (*name) are expanded; allowed: at most 10,000"]),
    "yaml-recursive-alias": (lambda d: "name: &n [*n]\n", ["p.yaml: line 1: an alias refers to a list or mapping "
                                                           "that holds it (a recursive alias)"]),
    "yaml-duplicate-arm": (
        lambda d: _text(experiment_values(arms={"random": {"learner": "classifier", "strategy": "random"},
                                                "zz": {"learner": "classifier", "strategy": "entropy"}})).replace(
            "  zz:", "  random:"),
        ["p.yaml: line", "key 'random' is given twice in one mapping (first on line", "allowed: each key once"]),
    "yaml-duplicate-base": (lambda d: _text(experiment_values(), "base: {budget: 5}\n"),
                            ["key 'base' is given twice in one mapping", "allowed: each key once"]),
    "dataset-empty": (lambda d: _text(experiment_values(base={**BASE, "dataset": ""})),
                      ["p.yaml: dataset: '' is empty; allowed: a built-in name (fashion_mnist, mnist)"]),
    "dataset-dev-zero": (lambda d: _text(experiment_values(base={**OWN, "dataset": "/dev/zero"})),
                         ["dataset: '/dev/zero' is a device, FIFO or socket, not a file or folder; allowed:"]),
    "dataset-fifo": (lambda d: _text(experiment_values(base={**OWN, "dataset": str(_fifo(d / "pipe.npz"))})),
                     ["pipe.npz' is a device, FIFO or socket, not a file or folder"]),
    "npz-label-1e9": (lambda d: _text(experiment_values(base={**OWN, "dataset": str(_npz(
        d / "m.npz", train_labels=np.where(np.arange(120) == 7, 10**9, np.arange(120) % 2)))})),
        ["m: label 1000000000 would make 1,000,000,001 classes, but only 180 images are labelled",
         "allowed: labels 0 .. K-1"]),
    "png-decompression-bomb": (lambda d: _text(experiment_values(base={**OWN, "dataset": str(_bomb_folder(d / "i"))})),
                               ["bomb.png: 5,000 x 5,000 pixels; allowed: at most 16,777,216 pixels"]),
    "results-root-in-the-file-empty": (lambda d: _text(experiment_values(results_root="")),
                                       ["p.yaml: results_root: '' is empty; allowed: a folder path"]),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_parameter_file_is_one_error_line_before_anything_is_written(work, capsys, case):
    build, words = BAD_FILES[case]
    (work / "p.yaml").write_text(build(work))
    argv = ["p.yaml"] + ([] if case.startswith("results-root") else ["--results-root", "R"])
    err = assert_one_error_and_nothing_written(work.parent, capsys, argv, words)
    assert len(err) < 600, err  # a value is shown cut, never whole (the billion laughs printed forever)


@pytest.mark.parametrize("flags, words", [
    (["--results-root", ""], ["--results-root: '' is empty; allowed: a folder path (default: results)"]),
    (["--results-root", "r" * 300], ["--results-root: 'rrr", "is 300 bytes long; allowed: folder names of at most 255"]),
    (["--results-root", "R", "--import", "nosuch_module"], [
        "--import: no module 'nosuch_module' here; allowed: a module importable from here", "path of a .py file"]),
    (["--results-root", "R", "--import", "nosuch.py"], ["--import: 'nosuch.py': no such file; allowed:"]),
    (["--results-root", "R", "--import", "../x"], ["--import: '../x' is not a module name; allowed:"]),
], ids=["results-root-empty", "results-root-300-chars", "import-nosuch-module", "import-nosuch-file",
        "import-not-a-name"])
def test_bad_flags_are_one_error_line(work, capsys, flags, words):
    write(work / "p.yaml", experiment_values())
    assert_one_error_and_nothing_written(work.parent, capsys, ["p.yaml", *flags], words)


@pytest.mark.parametrize("argv, first", [
    (["run", "p.yaml", "--time-limit", "abc"], "error: alkit run: argument --time-limit: invalid float value: 'abc'"),
    (["run"], "error: alkit run: the following arguments are required: params"),
    (["run", "p.yaml", "--jobs", "x" * 5000], "error: alkit run: argument --jobs: invalid int value: 'xxx"),
], ids=["time-limit-abc", "no-file", "long-value"])
def test_argparse_errors_start_with_error_then_the_usage(work, capsys, argv, first):
    write(work / "p.yaml", experiment_values())
    before = snapshot(work.parent)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    lines = err.splitlines()
    assert lines[0].startswith(first) and len(lines[0]) < 400, err
    assert lines[1].startswith("usage: alkit run"), err
    assert snapshot(work.parent) == before


# -------------------------------------------------------------------------- a results folder alkit cannot use


def _finished_random_run(work: Path):
    """The micro random/seed0 run, finished on disk (written by hand: 2 records, config.json): nothing to train."""
    p = write(work / "p.yaml", experiment_values())
    exp = load_experiment(p, results_root="R")
    run_dir = exp.run_dir("random", 0)
    loop.write_run_config(results.config_path(run_dir), exp.config("random", 0), "cpu",
                          {"experiment": "x", "arm": "random", "profile": "micro"})
    results.write_records(results.records_path(run_dir), [
        {"cycle": 0, "n_labelled": 40, "strategy": "random", "learner": "classifier", "seed": 0,
         "selected": list(range(20)), "test_acc": 0.5},
        {"cycle": 1, "n_labelled": 60, "strategy": "random", "learner": "classifier", "seed": 0, "selected": None,
         "test_acc": 0.6}])
    return p, run_dir


@pytest.mark.parametrize("case, content, words", [
    ("garbage", b"\x00\xffgarbage", ["config.json: not JSON"]),
    ("list", b"[1, 2]\n", ["config.json: a JSON list, not an object"]),
    ("no-config", b'{"seed": 0}\n', ['config.json: has no "config" object']),
    ("link", None, ["config.json: is a symbolic link", "allowed: plain folders and files"]),
])
def test_a_damaged_config_json_is_one_error_line_and_repair_rewrites_it(work, capsys, fmnist_dir, case, content, words):
    """Before: tracebacks (JSONDecodeError, AttributeError), which --repair did not fix either. Now one line with the
    fix; --repair rewrites a damaged file from the parameter file (the records are its runs). A link is refused
    even with --repair (it is replaced by hand, or deleted: then --repair rewrites it), its target untouched."""
    p, run_dir = _finished_random_run(work)
    cfg = results.config_path(run_dir)
    good = cfg.read_bytes()
    if content is None:
        (work / "elsewhere.json").write_bytes(good)
        cfg.unlink()
        os.symlink(work / "elsewhere.json", cfg)
    else:
        cfg.write_bytes(content)
    argv = [p.name, "--results-root", "R"]
    assert_one_error_and_nothing_written(work.parent, capsys, argv, words + (
        [] if content is None else ["--repair rewrites it"]))
    if content is None:
        assert_one_error_and_nothing_written(work.parent, capsys, argv + ["--repair"], words)
        assert (work / "elsewhere.json").read_bytes() == good
        return
    threads = torch.get_num_threads()
    try:
        rc = main(["run", *argv, "--repair", "--quiet", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert f"repaired {cfg}: rewritten from the parameter file (2 records kept; it was damaged:" in out.err
    assert "runs: 1/1 finished (1 before this call)" in out.out and "cycles: 0 trained" in out.out
    assert results.read_run_config(run_dir)["config"] == json.loads(good)["config"]


@pytest.mark.parametrize("where", ["is-a-file", "file-above"])
def test_a_results_root_that_is_a_file_is_one_error_line(work, capsys, where):
    write(work / "p.yaml", experiment_values())
    (work / "F").write_text("a file\n")
    root = "F" if where == "is-a-file" else "F/results"
    assert_one_error_and_nothing_written(work.parent, capsys, ["p.yaml", "--results-root", root],
                                         [f"--results-root: '{root}': F is a file, not a folder; allowed: a folder"])


@pytest.mark.parametrize("where", ["root-exists", "root-below-a-read-only-folder"])
def test_a_read_only_results_root_is_one_error_line_naming_the_folder(work, capsys, monkeypatch, where):
    """The results root on a read-only folder, existing or to be made below one (the issue's read-only mount: 2
    cases). As root, whom permissions do not stop, a read-only file system is simulated (os.access / os.statvfs
    say so for that folder, as they do on a read-only mount); otherwise the folder is really chmod 0555."""
    write(work / "p.yaml", experiment_values())
    ro = work / "ro"
    ro.mkdir()
    root = ro if where == "root-exists" else ro / "results"
    if os.geteuid() == 0:
        real_access, real_statvfs = os.access, os.statvfs

        def access(path, mode, **kw):
            return False if Path(path) == ro and mode & os.W_OK else real_access(path, mode, **kw)

        def statvfs(path):
            st = real_statvfs(path)
            return SimpleNamespace(f_flag=st.f_flag | os.ST_RDONLY) if Path(path) == ro else st

        monkeypatch.setattr(os, "access", access)
        monkeypatch.setattr(os, "statvfs", statvfs)
        why = "it is on a read-only file system"
    else:
        why = "permission denied"
    ro.chmod(0o555)
    try:
        assert_one_error_and_nothing_written(work.parent, capsys, ["p.yaml", "--results-root", str(root)], [
            f"--results-root: '{root}': {ro} is not writable ({why}); allowed: a results root you can write to"])
    finally:
        ro.chmod(0o755)


def _run_in_process(argv) -> int:
    threads = torch.get_num_threads()
    try:
        return main(["run", *argv, "--quiet", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize("code", [errno.EACCES, errno.ENOSPC], ids=["made-read-only", "disk-full"])
def test_a_write_that_fails_mid_run_is_one_line_naming_the_file_and_loses_nothing(work, capsys, monkeypatch,
                                                                                   fmnist_dir, code):
    """The run folder made read-only (or the disk full) after cycle 0 is written: cycle 1's records cannot be
    written. Before: exit 1 with a traceback on stdout. Now: exit 1 and one line naming records.jsonl; cycle 0 is
    kept, no temp file is left, and the same command resumes once the folder is writable again. (The failing
    write is simulated where the OS would fail it, at the temp file's creation: as root, chmod stops nothing.)"""
    p = write(work / "p.yaml", experiment_values())
    run_dir = load_experiment(p, results_root="R").run_dir("random", 0)
    real = tempfile.mkstemp

    def mkstemp(*args, **kw):
        folder = Path(kw.get("dir") or ".")
        if kw.get("prefix") == ".records.jsonl." and (folder / "records.jsonl").exists():
            raise OSError(code, os.strerror(code), str(folder / ".records.jsonl.abc123.tmp"))
        return real(*args, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    rc = _run_in_process([p.name, "--results-root", "R"])
    out = capsys.readouterr()
    assert rc == 1, out.err
    said = out.out + out.err
    assert "Traceback" not in said, said
    rec = results.records_path(run_dir)
    lines = [line for line in said.splitlines() if "cannot write" in line]
    assert lines == [f"failed: x/random/seed0: cannot write {rec}: {os.strerror(code)}; nothing written before is "
                     f"lost (finished cycles are kept): "
                     f"{'free some space' if code == errno.ENOSPC else 'make it writable'}, then run the same command "
                     "again"], said
    assert [r["cycle"] for r in results.read_records(rec)] == [0]
    assert not list(run_dir.glob("*.tmp")) and not list(run_dir.glob(".*.tmp"))
    monkeypatch.setattr(tempfile, "mkstemp", real)
    assert _run_in_process([p.name, "--results-root", "R"]) == 0
    assert [r["cycle"] for r in results.read_records(rec)] == [0, 1]


# -------------------------------------------------------------------------- two alkit run on one results root


def test_a_run_another_process_holds_unfinished_is_named_and_the_exit_is_3(work, capsys, fmnist_dir):
    """This test holds the run's lock, as another `alkit run` training it would. Before: exit 0 and "1 unfinished,
    run again" as if nothing else were going on. Now: the run is named with its holder, and the exit status is 3
    (not 0) because no process has finished it."""
    p = write(work / "p.yaml", experiment_values())
    run_dir = load_experiment(p, results_root="R").run_dir("random", 0)
    with run_lock(run_dir):
        rc = _run_in_process([p.name, "--results-root", "R"])
    out = capsys.readouterr().out
    assert rc == EXIT_HELD == 3, out
    assert "runs: 0/1 finished (0 before this call), 1 unfinished, 0 failed, 1 skipped (another process trains " \
           "them)" in out
    assert f"skipped: x/random/seed0: another process trains it (pid {os.getpid()} on" in out
    assert "not finished yet" in out and "exit status 3 until every run is finished" in out
    assert not results.records_path(run_dir).exists()


def test_a_run_the_other_process_finished_meanwhile_counts_as_finished_and_the_exit_is_0(work, capsys, monkeypatch,
                                                                                        fmnist_dir):
    """Before: both processes exited 0 saying "unfinished, run again" although the other had finished the runs. Now
    a skipped run is read again at the end: finished by the other process meanwhile, it counts (and is named)."""
    p = write(work / "p.yaml", experiment_values())
    exp = load_experiment(p, results_root="R")
    run_dir = exp.run_dir("random", 0)
    real = jobs._leftover

    def other_process_finishes_first(st):  # the holder writes its last record while this call trains other runs
        loop.write_run_config(results.config_path(run_dir), exp.config("random", 0), "cpu",
                              {"experiment": "x", "arm": "random", "profile": "micro"})
        results.write_records(results.records_path(run_dir), [
            {"cycle": c, "n_labelled": 40 + 20 * c, "seed": 0, "test_acc": 0.5} for c in (0, 1)])
        real(st)

    monkeypatch.setattr(jobs, "_leftover", other_process_finishes_first)
    with run_lock(run_dir):
        rc = _run_in_process([p.name, "--results-root", "R"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "runs: 1/1 finished (0 before this call, 1 by another process meanwhile), 0 unfinished, 0 failed" in out
    assert f"finished by another process: x/random/seed0 (pid {os.getpid()} on" in out
    assert "skipped:" not in out and "run the same command again" not in out


# ------------------------------------------------------------------------------------------- the pieces


def test_show_cuts_any_value_without_expanding_it():
    """The message of the billion laughs printed 10^9 ones; show() stops at its limit whatever the value."""
    bomb = [1] * 9
    for _ in range(9):
        bomb = [bomb] * 9  # 9^10 ones, sharing one list per level
    t = time.perf_counter()
    text = show(bomb)
    assert len(text) <= 80 and text.startswith("[[[") and time.perf_counter() - t < 1
    assert show({"a": [1, (2,)], "b": "x"}) == repr({"a": [1, (2,)], "b": "x"})  # small values read as repr
    with pytest.raises(ConfigError) as exc:
        from_dict(InitialSet, {"n": bomb})
    assert len(str(exc.value)) < 200 and "is a list; allowed: an integer" in str(exc.value)


def test_every_parameter_file_of_the_repository_loads_as_before():
    """The stricter loader (duplicate keys, depth, alias expansion) reads every committed parameter file as
    yaml.safe_load does."""
    files = sorted((ROOT / "params").glob("*/*.yaml")) + sorted((ROOT / "tests" / "params").glob("*.yaml"))
    assert files
    for f in files:
        assert load_yaml(f) == yaml.safe_load(f.read_text()), f


def test_a_pillow_size_bomb_is_refused_from_its_header(tmp_path):
    """A PNG whose header claims 50,000 x 50,000 pixels (2.5 GB to decode) is refused before any pixel is read."""
    from alkit.data import DataError
    from alkit.own_data import read_image

    bomb = png(tmp_path / "bomb.png", 50_000, 50_000, rows=2)
    assert bomb.stat().st_size < 10_000
    with pytest.raises(DataError, match="bomb.png: .*allowed: at most 16,777,216 pixels"):
        read_image(bomb)
