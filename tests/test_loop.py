"""The active-learning loop: end to end, resume after a crash, no recomputation, clear errors."""
import json

import numpy as np
import pytest

import alkit.loop as loop
from alkit.config import ConfigError
from alkit.loop import RunConfig, run
from alkit.pool import BudgetError, InitialSet
from alkit.results import load_results, read_json


FAST = {"iterations": 4, "batch_size": 32, "val_every": 2}


def cfg(**kw) -> RunConfig:
    base = dict(initial=InitialSet("random", 30), budget=20, cycles=2, learner="classifier",
                learner_params=FAST, strategy="least_confidence", seed=4, device="cpu")
    base.update(kw)
    return RunConfig(**base)


def strip_timing(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_records_are_tidy_and_consistent(data, tmp_path):
    recs = run(cfg(), tmp_path / "run", data=data, progress=False)
    assert [r["cycle"] for r in recs] == [0, 1, 2]
    assert [r["n_labelled"] for r in recs] == [30, 50, 70]
    for r in recs[:-1]:
        assert len(r["selected"]) == 20 and sum(r["selected_class_counts"]) == 20
        assert {"train", "evaluate", "select"} <= set(r["seconds"])
    assert recs[-1]["selected"] is None
    assert all(0.0 <= r["test_acc"] <= 1.0 and np.array(r["test_confusion"]).sum() == 100 for r in recs)
    meta = read_json(tmp_path / "run" / "config.json")
    assert meta["config"]["strategy"] == "least_confidence" and meta["seed"] == 4 and meta["git_commit"]
    # selected points of cycle k are labelled at cycle k+1
    assert np.array(recs[1]["labelled_class_counts"]).sum() == 50
    rows = load_results(tmp_path)
    assert len(rows) == 3 and rows[0]["run"] == "run"


def test_resume_after_crash_gives_identical_records(data, tmp_path, monkeypatch):
    reference = run(cfg(), tmp_path / "ref", data=data, progress=False)

    real_acquire = loop.acquire
    calls = {"n": 0}

    def crash_on_second(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated crash during cycle 1")
        return real_acquire(*a, **kw)

    monkeypatch.setattr(loop, "acquire", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        run(cfg(), tmp_path / "crashed", data=data, progress=False)
    partial = [json.loads(line) for line in (tmp_path / "crashed" / "records.jsonl").read_text().splitlines()]
    assert [r["cycle"] for r in partial] == [0], "cycle 0 must survive the crash"

    first = read_json(tmp_path / "crashed" / "config.json")
    monkeypatch.setattr(loop, "acquire", real_acquire)
    monkeypatch.setattr(loop.results, "git_commit", lambda *a: "c0ffee")  # the resuming session's commit
    resumed = run(cfg(), tmp_path / "crashed", data=data, progress=False)
    assert strip_timing(resumed) == strip_timing(reference)
    # provenance: cycle 0's commit, machine and start are kept; the resuming session is added, not swapped in
    meta = read_json(tmp_path / "crashed" / "config.json")
    assert {k: meta[k] for k in first} == first and meta["git_commit"] != "c0ffee"
    assert [(r["from_cycle"], r["git_commit"]) for r in meta["resumed"]] == [(1, "c0ffee")]
    assert set(meta["resumed"][0]) == {"from_cycle", "git_commit", "environment", "device", "started"}


def test_finished_run_is_not_recomputed(data, tmp_path, monkeypatch):
    first = run(cfg(cycles=1), tmp_path / "r", data=data, progress=False)
    monkeypatch.setattr(loop, "make_learner", lambda *a, **k: pytest.fail("recomputed a finished run"))
    assert run(cfg(cycles=1), tmp_path / "r", data=data, progress=False) == first


def test_force_recomputes_and_changed_config_is_refused(data, tmp_path):
    run(cfg(cycles=1), tmp_path / "r", data=data, progress=False)
    with pytest.raises(ConfigError, match="different config \\(keys budget\\)"):
        run(cfg(cycles=1, budget=10), tmp_path / "r", data=data, progress=False)
    recs = run(cfg(cycles=1, budget=10), tmp_path / "r", data=data, progress=False, force=True)
    assert len(recs[0]["selected"]) == 10


def test_budget_larger_than_pool_is_a_clear_error(data):
    with pytest.raises(BudgetError, match="pool has only 200 points"):
        run(cfg(budget=100, cycles=2), data=data, progress=False)


def test_strategy_learner_mismatch_is_a_clear_error(data):
    with pytest.raises(Exception, match="unknown strategy 'nope'; known strategies"):
        run(cfg(strategy="nope"), data=data, progress=False)


def test_candidate_subsample_is_seeded(data):
    a = run(cfg(cycles=1, candidates=60, strategy="random"), data=data, progress=False)
    b = run(cfg(cycles=1, candidates=60, strategy="random"), data=data, progress=False)
    assert a[0]["selected"] == b[0]["selected"]


def test_same_seed_same_selection_different_seed_differs(data):
    a = run(cfg(cycles=1), data=data, progress=False)[0]
    b = run(cfg(cycles=1), data=data, progress=False)[0]
    c = run(cfg(cycles=1, seed=5), data=data, progress=False)[0]
    assert a["selected"] == b["selected"] and a["test_acc"] == b["test_acc"]
    assert a["selected"] != c["selected"]


def test_initial_seed_shares_the_labels_and_not_the_training(data, tmp_path):
    """``initial_seed``: seed 5 starting from seed 4's initial set (the cpu profile's training-noise check)."""
    a, b, c = cfg(cycles=0), cfg(cycles=0, seed=5, initial_seed=4), cfg(cycles=0, seed=5)
    pool = data.y_pool.cpu().numpy()
    first = [loop.initial_labelled(pool, x.initial, loop.initial_set_seed(x), data.num_classes) for x in (a, b, c)]
    assert np.array_equal(first[0], first[1]) and not np.array_equal(first[0], first[2])
    ra, rb = (run(x, data=data, progress=False)[0] for x in (a, b))
    assert ra["labelled_class_counts"] == rb["labelled_class_counts"] and ra["test_confusion"] != rb["test_confusion"]
    # a run folder written before the key existed resumes (its config lacks initial_seed; None is the default)
    run(cfg(cycles=1), tmp_path / "old", data=data, progress=False)
    meta = read_json(tmp_path / "old" / "config.json")
    del meta["config"]["initial_seed"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(meta))
    assert len(run(cfg(cycles=1), tmp_path / "old", data=data, progress=False)) == 2
    with pytest.raises(ConfigError, match="initial_seed"):  # another initial set is another run
        run(cfg(cycles=1, initial_seed=7), tmp_path / "old", data=data, progress=False)


def test_stopping_rule_stops_and_is_recorded(data, tmp_path):
    from alkit.learners import LEARNERS

    lp = dict(LEARNERS["vaal"].test_params)
    stop = cfg(learner="vaal", strategy="vaal", learner_params=lp, stop_disc_acc=1.0)  # any accuracy <= 1.0 stops
    recs = run(stop, tmp_path / "s", data=data, progress=False)
    assert len(recs) == 1 and recs[0]["stopped"] and "can no longer tell" in recs[0]["stop_reason"]
    assert recs[0]["selected"] is None and 0.0 <= recs[0]["disc_acc_heldout"] <= 1.0
    assert run(stop, tmp_path / "s", data=data, progress=False) == recs  # a stopped run counts as finished
    never = cfg(learner="vaal", strategy="vaal", learner_params=lp, stop_disc_acc=0.0, stop_disc_auc=0.0)
    recs = run(never, data=data, progress=False)
    assert len(recs) == 3 and not any(r["stopped"] for r in recs)
    by_auc = cfg(learner="vaal", strategy="vaal", learner_params=lp, stop_disc_auc=1.0)  # any AUC <= 1.0 stops
    recs = run(by_auc, data=data, progress=False)
    assert len(recs) == 1 and recs[0]["stopped"] and "ROC AUC" in recs[0]["stop_reason"]
    with pytest.raises(ValueError, match=r"stop_disc_auc=1.5: allowed a number in \[0, 1\]"):
        cfg(stop_disc_auc=1.5)


def test_two_cycle_end_to_end_on_real_fashion_mnist(fmnist_small, tmp_path):
    """Real images, real training: 2 cycles of least confidence from 100 random labels."""
    c = cfg(initial=InitialSet("random", 100), budget=100, cycles=2, learner_params={"iterations": 60, "batch_size": 32, "val_every": 20})
    recs = run(c, tmp_path / "real", data=fmnist_small, progress=False)
    assert [r["n_labelled"] for r in recs] == [100, 200, 300]
    assert all(np.isfinite(r["task_loss"]) for r in recs)
    assert recs[-1]["test_acc"] > 0.6, "a CNN on 300 Fashion-MNIST labels should beat 60 % (chance is 10 %)"
    assert recs[0]["diagnostics"]["misclassified_fraction"] > 1 - recs[0]["test_acc"], \
        "least confidence should pick points the model gets wrong more often than average"
    assert load_results(tmp_path)[-1]["test_acc"] == recs[-1]["test_acc"]


def test_small_candidate_strategy_needs_candidates_before_any_training():
    """network_norm (max_pool 64) on the whole pool fails at validation, not after a cycle of training."""
    from alkit.loop import validate

    with pytest.raises(ConfigError, match="max_pool=64.*candidates"):
        validate(cfg(strategy="network_norm", pool_size=200))
    validate(cfg(strategy="network_norm", pool_size=200, candidates=40))


def test_an_experiment_reads_only_its_own_arms_and_seeds(tmp_path, data):
    """A seed run from the command line (not in the parameters) must not leak into the notebook's numbers."""
    from alkit.experiment import Experiment, experiment_records

    base = {"initial": {"kind": "random", "n": 30}, "budget": 20, "cycles": 1, "device": "cpu", "learner_params": FAST}
    arms = {"random": {"learner": "classifier", "strategy": "random"}}
    wide = Experiment(name="e", seeds=[0, 1], base=base, arms=arms, results_root=str(tmp_path))
    for seed in (0, 1):
        run(wide.config("random", seed), wide.run_dir("random", seed), data=data, progress=False,
            meta={"experiment": "e", "arm": "random"})
    narrow = Experiment(name="e", seeds=[0], base=base, arms=arms, results_root=str(tmp_path))
    said = []
    rows = experiment_records(narrow, log=said.append)
    assert {r["seed"] for r in rows} == {0} and len(rows) == 2
    assert len(said) == 1 and "random/seed1" in said[0] and "left out" in said[0]
    assert {r["seed"] for r in experiment_records(wide, log=said.append)} == {0, 1} and len(said) == 1


def test_notebook_root_from_anywhere(tmp_path, monkeypatch):
    """papermill may run a notebook from outside the checkout: $ALKIT_ROOT, else the installed package's checkout."""
    from pathlib import Path

    from alkit.notebook import find_root

    repo = Path(__file__).resolve().parent.parent
    monkeypatch.delenv("ALKIT_ROOT", raising=False)
    assert find_root(tmp_path) == repo  # no checkout above /tmp: the package's own
    assert find_root(repo / "notebooks") == repo
    monkeypatch.setenv("ALKIT_ROOT", str(repo))
    assert find_root(tmp_path) == repo
    monkeypatch.setenv("ALKIT_ROOT", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="ALKIT_ROOT"):
        find_root(tmp_path)


def test_a_learner_whose_params_lack_iterations_per_cycle_is_refused_before_training(monkeypatch):
    """Every record stores ``iterations_per_cycle``: a plug-in learner without it fails in validate, not after a cycle."""
    from dataclasses import dataclass

    from alkit.learners.base import LEARNERS, Learner

    @dataclass
    class Bare:
        width: int = 4

    monkeypatch.setitem(LEARNERS, "bare", type("BareLearner", (Learner,), {"name": "bare", "Params": Bare}))
    with pytest.raises(ConfigError, match="bare.*no iterations_per_cycle.*ScheduleParams"):
        loop.validate(cfg(learner="bare", learner_params={}, strategy="random"))


def test_a_resume_that_trained_nothing_is_replaced_by_the_next_one(tmp_path):
    """A time-boxed session that opened a run but trained no cycle leaves no second entry for the same cycle."""
    c, path = cfg(), tmp_path / "config.json"
    loop.write_run_config(path, c, "cpu", {"arm": "x"})
    first = read_json(path)
    for _ in range(2):
        loop.write_run_config(path, c, "cpu", {"arm": "x"}, saved=read_json(path), from_cycle=3)
    loop.write_run_config(path, c, "cpu", {"arm": "x"}, saved=read_json(path), from_cycle=5)
    meta = read_json(path)
    assert [r["from_cycle"] for r in meta["resumed"]] == [3, 5] and meta["started"] == first["started"]
