"""A first cycle trained once for the runs that differ only in their strategy (``share_first_cycle: true``,
``alkit.loop.share_first_cycle``): the records and warm-start modules of runs trained alone, cycle 0 fitted once
per group, failures and the time box per run, and the cost plan that counts it once."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from alkit import costplan, jobs, loop
from alkit.config import ConfigError
from alkit.engine import timebox
from alkit.experiment import load_experiment
from alkit.results import load_tensors, WARM_START_FORMAT, warm_start_path
from helpers import records_without_timings

ROOT = Path(__file__).resolve().parent.parent
M2 = {"learner": "m2", "learner_params": {"classifier_size": "tiny", "width": 4, "latent_dim": 8, "hidden": 32,
                                          "vae_steps": 1, "warm_start": True, "gen_iterations": 6,
                                          "gen_iterations_warm": 3}}
VAAL = {"learner": "vaal", "learner_params": {"classifier_size": "tiny", "vae_width": 4, "latent_dim": 8,
                                              "disc_hidden": 32, "vae_steps": 1, "warm_start": True}}
ARMS = {
    "m2_random": {**M2, "strategy": "random"},
    "m2_alg1": {**M2, "strategy": "alg1"},
    "m2_bald": {**M2, "strategy": "bald"},
    "m2_entropy": {**M2, "strategy": "entropy", "budget": 10},  # another budget: the same first cycle
    "vaal": {**VAAL, "strategy": "vaal"},
    "vaal_random": {**VAAL, "strategy": "random"},
    "random": {"learner": "classifier", "strategy": "random", "learner_params": {"size": "tiny"}},
}
GROUPS = {"m2_random": 4, "m2_alg1": 4, "m2_bald": 4, "m2_entropy": 4, "vaal": 2, "vaal_random": 2, "random": None}


def write(path: Path, share: bool | str | None, **changes) -> Path:
    values = {"name": "shared", "profile": "micro", "seeds": [0],
              "base": {"pool_size": 300, "val_size": 200, "test_size": 200, "initial": {"kind": "random", "n": 40},
                       "budget": 20, "cycles": 2, "device": "cpu",
                       "learner_params": {"iterations": 4, "batch_size": 32, "val_every": 2}},
              "arms": ARMS, **changes}
    if share is not None:
        values["share_first_cycle"] = share
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def counted(monkeypatch) -> dict:
    """Counts the learners fitted (``loop.new_learner`` builds one per training)."""
    n = {"fits": 0}
    real = loop.new_learner

    def counting(*args, **kwargs):
        n["fits"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "new_learner", counting)
    return n


def train(path: Path, root: Path, **kwargs):
    exp = load_experiment(path, results_root=str(root))
    threads = torch.get_num_threads()
    try:
        return jobs.run_tasks(jobs.plan([exp]), threads=1, progress=False, **kwargs)
    finally:
        torch.set_num_threads(threads)


def without_marker(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "first_cycle_shared"} for r in rows]


@pytest.fixture(scope="module")
def alone(tmp_path_factory, fmnist_dir):
    """Every run trained alone (no ``share_first_cycle``): the records sharing must reproduce."""
    tmp = tmp_path_factory.mktemp("alone")
    summary = train(write(tmp / "p.yaml", None), tmp / "r")
    assert summary.finished == 7 and not summary.failed
    return tmp / "r"


def test_shared_first_cycle_gives_the_records_and_modules_of_runs_trained_alone(tmp_path, alone, monkeypatch):
    n = counted(monkeypatch)
    summary = train(write(tmp_path / "p.yaml", True), tmp_path / "r")
    assert summary.finished == 7 and not summary.failed
    shared = records_without_timings(tmp_path / "r")
    assert without_marker(shared) == records_without_timings(alone)
    # 7 runs x 3 trainings, less the first cycles shared: 3 of the m2 group's 4 and 1 of vaal's 2
    assert n["fits"] == 7 * 3 - (3 + 1)
    for r in shared:
        arm = r["run"].split("/")[-2]
        assert r.get("first_cycle_shared") == (GROUPS[arm] if r["cycle"] == 0 else None), (r["run"], r["cycle"])
    # the modules the next cycle warm-starts from: the last cycle's, equal tensor for tensor
    exp_alone = load_experiment(write(tmp_path / "a.yaml", None), results_root=str(alone))
    exp_shared = load_experiment(tmp_path / "p.yaml", results_root=str(tmp_path / "r"))
    for arm in ("m2_alg1", "vaal_random"):
        a = load_tensors(warm_start_path(exp_alone.run_dir(arm, 0)), WARM_START_FORMAT, "a warm start")
        b = load_tensors(warm_start_path(exp_shared.run_dir(arm, 0)), WARM_START_FORMAT, "a warm start")
        assert a["modules"].keys() == b["modules"].keys()
        for name in a["modules"]:
            for key, t in a["modules"][name].items():
                assert torch.equal(t, b["modules"][name][key]), (arm, name, key)


def test_first_cycle_key_ignores_what_comes_after_training():
    cfg = loop.RunConfig(learner="m2", learner_params={"width": 4}, strategy="random", seed=3)
    same = [loop.RunConfig(learner="m2", learner_params={"width": 4}, strategy="alg1", seed=3, budget=7, cycles=2,
                           candidates=50, stop_disc_auc=0.6, latent_sample=10, save_learner=True,
                           coverage_purity=0.9, strategy_params={}),
            loop.RunConfig(learner="m2", learner_params={"width": 4, "latent_dim": 32}, strategy="bald", seed=3)]
    other = [loop.RunConfig(learner="m2", learner_params={"width": 8}, seed=3),
             loop.RunConfig(learner="m2", learner_params={"width": 4}, seed=4),
             loop.RunConfig(learner="m2_vaal", learner_params={"width": 4}, seed=3),
             loop.RunConfig(learner="m2", learner_params={"width": 4}, seed=3, initial={"kind": "random", "n": 50}),
             loop.RunConfig(learner="m2", learner_params={"width": 4}, seed=3, pool_size=1000)]
    key = loop.first_cycle_key(cfg)
    assert all(loop.first_cycle_key(c) == key for c in same)  # latent_dim 32 is M2's default, written out
    assert all(loop.first_cycle_key(c) != key for c in other)


def test_units_group_only_unstarted_runs_of_files_that_ask(tmp_path, fmnist_dir):
    exp = load_experiment(write(tmp_path / "p.yaml", True), results_root=str(tmp_path / "r"))
    tasks = jobs.plan([exp], seeds=[0])
    names = lambda unit: [tasks[i].arm for i in unit]  # noqa: E731
    assert [names(u) for u in jobs.first_cycle_units(tasks, list(range(len(tasks))))] == [
        ["m2_random", "m2_alg1", "m2_bald", "m2_entropy"], ["vaal", "vaal_random"], ["random"]]
    tasks[1].done = 1  # m2_alg1 has a cycle on disk: it resumes alone
    assert [names(u) for u in jobs.first_cycle_units(tasks, list(range(len(tasks))))] == [
        ["m2_random", "m2_bald", "m2_entropy"], ["m2_alg1"], ["vaal", "vaal_random"], ["random"]]
    plain = load_experiment(write(tmp_path / "q.yaml", False), results_root=str(tmp_path / "r"))
    tasks = jobs.plan([plain], seeds=[0])
    assert all(len(u) == 1 for u in jobs.first_cycle_units(tasks, list(range(len(tasks)))))


def test_a_run_that_fails_in_the_shared_cycle_leaves_the_others_and_resumes(tmp_path, alone, monkeypatch):
    real = loop._after_fit

    def failing(cfg, *args, **kwargs):
        if cfg.strategy == "bald":
            raise RuntimeError("planted failure in bald's selection")
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(loop, "_after_fit", failing)
    path = write(tmp_path / "p.yaml", True)
    first = train(path, tmp_path / "r")
    assert first.finished == 6 and len(first.failed) == 1 and "m2_bald" in first.failed[0]
    exp = load_experiment(path, results_root=str(tmp_path / "r"))
    assert not (exp.run_dir("m2_bald", 0) / "config.json").exists()  # no record: no config left behind
    monkeypatch.undo()
    n = counted(monkeypatch)
    second = train(path, tmp_path / "r")
    assert second.finished == 7 and not second.failed and n["fits"] == 3  # m2_bald alone: its 3 trainings
    assert without_marker(records_without_timings(tmp_path / "r")) == records_without_timings(alone)


def test_time_box_gives_up_the_shared_cycle_and_starts_no_member_alone(tmp_path, monkeypatch, fmnist_dir):
    n = counted(monkeypatch)

    def abandoned(self, *args, **kwargs):
        raise timebox.CycleAbandoned("planted: cannot end in time", 99.0)

    from alkit.learners.m2 import M2Learner

    monkeypatch.setattr(M2Learner, "fit", abandoned)
    path = write(tmp_path / "p.yaml", True, arms={a: ARMS[a] for a in ("m2_random", "m2_alg1", "m2_bald")})
    summary = train(path, tmp_path / "r", time_limit=3600.0)
    assert n["fits"] == 1 and len(summary.abandoned) == 1 and summary.cycles_done == 0 and not summary.failed
    assert not list((tmp_path / "r").rglob("records.jsonl")) and not list((tmp_path / "r").rglob("config.json"))

    monkeypatch.undo()
    calls = iter([0.0])  # the start; then the box is closed before the group is handed out
    monkeypatch.setattr(timebox, "clock", lambda: next(calls, 1e9))
    summary = train(path, tmp_path / "r", time_limit=100.0)
    assert summary.cycles_done == 0 and not list((tmp_path / "r").rglob("config.json"))
    assert not list((tmp_path / "r").rglob("seed*/"))  # nor an empty run folder (they were left as litter)


def test_plan_counts_a_shared_first_cycle_once(tmp_path, fmnist_dir):
    costs = {(m, "fp32"): 10.0 for m in ("classifier", "classifier_large", "m2vaal4_s1", "vae4_s1")}
    shared = load_experiment(write(tmp_path / "p.yaml", True), results_root=str(tmp_path / "r"))
    alone_ = load_experiment(write(tmp_path / "q.yaml", None), results_root=str(tmp_path / "r"))
    rows_s = {(r.arm, r.seed): r for r in costplan.plan_costs([shared], costs)}
    rows_a = {(r.arm, r.seed): r for r in costplan.plan_costs([alone_], costs)}
    for seed in (0,):
        assert rows_s["m2_random", seed].projected_s == rows_a["m2_random", seed].projected_s  # trains it
        for arm in ("m2_alg1", "m2_bald", "m2_entropy", "vaal_random"):
            assert rows_s[arm, seed].projected_s[0] == costplan.CYCLE_OVERHEAD_S < rows_a[arm, seed].projected_s[0]
            assert rows_s[arm, seed].projected_s[1:] == rows_a[arm, seed].projected_s[1:]
    rec = {"cycle": 0, "seconds": {"train": 30.0, "evaluate": 2.0}, "first_cycle_shared": 3}
    assert costplan.run_cost(shared, "m2_alg1", 0, costs, recs=[rec]).measured_s == [12.0]


def test_plan_counts_a_shared_first_cycle_on_disk_as_its_records_do(tmp_path, fmnist_dir):
    """A finished group's cycle 0 was trained once: each run's projection carries 1/n of its training, as its
    measured seconds do, so the profile's projected total is not the training n times."""
    from alkit.results import records_path

    costs = {(m, "fp32"): 10.0 for m in ("classifier", "classifier_large", "m2vaal4_s1", "vae4_s1")}
    exp = load_experiment(write(tmp_path / "p.yaml", True), results_root=str(tmp_path / "r"))
    fresh = {(r.arm, r.seed): r for r in costplan.plan_costs([exp], costs)}
    group = [a for a, g in GROUPS.items() if g == 4]
    for arm in group:  # the four M2 arms' cycle 0 on disk, trained once for all four
        path = records_path(exp.run_dir(arm, 0))
        path.parent.mkdir(parents=True)
        path.write_text('{"cycle": 0, "seconds": {"train": 60.0, "evaluate": 3.0}, "first_cycle_shared": 4}\n')
    rows = {(r.arm, r.seed): r for r in costplan.plan_costs([exp], costs)}
    trained = fresh["m2_random", 0].projected_s[0] - costplan.CYCLE_OVERHEAD_S  # fresh: one run trains it
    for arm in group:
        assert rows[arm, 0].projected_s[0] == pytest.approx(3.0 + trained / 4)  # its arm's overhead + 1/4
        assert rows[arm, 0].measured_s == [pytest.approx(3.0 + 60.0 / 4)]
        later = [s - 3.0 for s in rows[arm, 0].projected_s[1:]]  # later cycles: priced at the measured overhead
        assert later == pytest.approx([s - costplan.CYCLE_OVERHEAD_S for s in fresh[arm, 0].projected_s[1:]])
    assert sum(rows[a, 0].projected_s[0] for a in group) == pytest.approx(4 * 3.0 + trained)
    unshared = '{"cycle": 0, "seconds": {"train": 60.0, "evaluate": 3.0}}\n'  # trained alone: pays it all
    records_path(exp.run_dir("m2_alg1", 0)).write_text(unshared)
    rows = {(r.arm, r.seed): r for r in costplan.plan_costs([exp], costs)}
    assert rows["m2_alg1", 0].projected_s[0] == pytest.approx(3.0 + trained)


def test_share_first_cycle_must_be_true_or_false(tmp_path):
    with pytest.raises(ConfigError, match=r"share_first_cycle: 'yes' is .*allowed"):
        load_experiment(write(tmp_path / "p.yaml", "yes"))


def test_two_workers_share_the_first_cycle_too(tmp_path, alone):
    path = write(tmp_path / "p.yaml", True)
    out = subprocess.run([sys.executable, "-m", "alkit", "run", str(path), "--results-root", str(tmp_path / "r"),
                          "--jobs", "2", "--threads", "1", "--quiet"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert without_marker(records_without_timings(tmp_path / "r")) == records_without_timings(alone)
