"""The cpu profile's levers: generative iterations per cycle (E0 / E1), the task model's floor, per-arm seeds, M2's
top-k unlabelled bound, CPU_DEFAULTS against params/cpu, and ``alkit plan``'s cost table."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from alkit.cli import main
from alkit.config import ConfigError, from_dict, load_yaml
from alkit.engine.speed import CPU_DEFAULTS, resolve_speed
from alkit.experiment import Experiment, load_experiment
from alkit.learners import LEARNERS, TrainData, make_learner
from alkit.learners.adversarial import generative_iterations
from alkit.losses import m2_labelled_loss, m2_unlabelled_loss
from alkit.models import M2

from helpers import synthetic_images

ROOT = Path(__file__).resolve().parent.parent
CPU = sorted((ROOT / "params" / "cpu").glob("*.yaml"))


# ------------------------------------------------------------------ generative iterations and the task floor


def _vaal_params(**kw):
    return from_dict(LEARNERS["vaal"].Params, {"iterations": 7, **kw}, where="t")


def test_generative_iterations_cold_warm_and_default():
    p = _vaal_params(warm_start=True, gen_iterations=11, gen_iterations_warm=3)
    assert generative_iterations(p, 100, 900, warm=False) == 11
    assert generative_iterations(p, 100, 900, warm=True) == 3
    p = _vaal_params(gen_iterations=11)
    assert generative_iterations(p, 100, 900, warm=True) == 11  # no warm length: the cold one
    assert generative_iterations(_vaal_params(), 100, 900, warm=False) == 7  # the schedule's, as VAAL


@pytest.mark.parametrize("kw, words", [
    ({"gen_iterations_warm": 3}, "needs warm_start"),
    ({"gen_iterations": 0}, "gen_iterations must be an integer >= 1"),
    ({"warm_start": True, "gen_iterations_warm": 2.5}, "gen_iterations_warm"),
    ({"warm_start": True, "gen_iterations_warm": -1}, "gen_iterations_warm must be an integer >= 1"),
])
def test_generative_iterations_refuse_bad_values(kw, words):
    with pytest.raises((ConfigError, ValueError), match=words):
        _vaal_params(**kw)


def test_min_iterations_floors_the_epoch_count_only():
    cls = LEARNERS["classifier"].Params
    p = from_dict(cls, {"epochs": 40, "epoch_unit": "labelled", "min_iterations": 1000}, where="t")
    assert [p.iterations_per_cycle(n, 0) for n in (1000, 3000, 4000, 8000)] == [1000, 1000, 1280, 2520]
    p = from_dict(cls, {"iterations": 5, "min_iterations": 1000}, where="t")
    assert p.iterations_per_cycle(1000, 0) == 5  # an explicit count is what it says


def _tiny_train(n_l=40, n_u=120):
    x, y = synthetic_images(n_l + n_u + 60, seed=0)
    return TrainData(x_labelled=x[:n_l], y_labelled=y[:n_l], x_unlabelled=x[n_l:n_l + n_u],
                     x_val=x[-60:], y_val=y[-60:], num_classes=10)


@pytest.mark.parametrize("name", ["vaal", "m2_vaal"])
def test_a_warm_cycle_runs_its_own_generative_length(name):
    """Cycle 0 runs gen_iterations, a warm-started cycle gen_iterations_warm; VAAL's task model keeps its own count."""
    data = _tiny_train()
    params = {**LEARNERS[name].test_params, "iterations": 5, "warm_start": True, "gen_iterations": 6,
              "gen_iterations_warm": 2}
    first = make_learner(name, params, 10, "cpu")
    m0 = first.fit(data, seed=0)
    second = make_learner(name, params, 10, "cpu")
    second.previous = first
    m1 = second.fit(data, seed=1)
    assert (m0["iterations"], m0["warm_started"]) == (6, False)
    assert (m1["iterations"], m1["warm_started"]) == (2, True)
    if name == "vaal":
        assert m0["task_iterations"] == m1["task_iterations"] == 5


# ------------------------------------------------------------------ M2's top-k unlabelled bound


@pytest.fixture
def m2():
    torch.manual_seed(0)
    return M2(num_classes=4, latent_dim=2, width=2, hidden=4).eval()


def test_topk_of_every_class_is_the_exact_bound(m2):
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        exact = m2_unlabelled_loss(m2, x, sample=False, reduction="none")
        for k in (4, 9, None):
            torch.testing.assert_close(m2_unlabelled_loss(m2, x, sample=False, reduction="none", topk=k), exact)


def test_topk_is_the_renormalised_sum_over_the_top_classes(m2):
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        logits = m2.classify(x)
        q = logits.softmax(1)
        top = logits.topk(2, dim=1).indices  # (B, 2)
        expected = torch.zeros(5)
        for j in range(2):
            c = top[:, j]
            per = torch.stack([m2_labelled_loss(m2, x[i : i + 1], c[i : i + 1], sample=False, reduction="none")[0]
                               for i in range(5)])
            expected += q.gather(1, c[:, None])[:, 0] / q.gather(1, top).sum(1) * per
        entropy = -(q * q.log()).sum(1)
        got = m2_unlabelled_loss(m2, x, sample=False, reduction="none", topk=2)
    torch.testing.assert_close(got, expected - entropy, rtol=1e-5, atol=1e-3)
    # and it is not the exact bound (two classes of four dropped)
    assert not torch.allclose(got, m2_unlabelled_loss(m2, x, sample=False, reduction="none"))


def test_topk_backpropagates_into_the_classifier():
    torch.manual_seed(0)
    m = M2(num_classes=4, latent_dim=2, width=2, hidden=4).train()
    m2_unlabelled_loss(m, torch.rand(6, 1, 28, 28), topk=2).backward()
    grads = [p.grad for p in m.classifier.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_unlabelled_topk_is_checked():
    with pytest.raises((ConfigError, ValueError), match="unlabelled_topk"):
        from_dict(LEARNERS["m2"].Params, {"unlabelled_topk": 0}, where="t")


# ------------------------------------------------------------------ per-arm seeds


def _exp(**kw):
    return Experiment(name="e", profile="p", seeds=[0, 1, 2, 3, 4],
                      base={"initial": {"kind": "random", "n": 10}, "budget": 5, "cycles": 1},
                      arms={"a": {"learner": "classifier", "strategy": "random"},
                            "b": {"learner": "classifier", "strategy": "entropy"}}, **kw)


def test_arm_seeds_narrow_an_arm():
    e = _exp(arm_seeds={"b": [0, 1, 2]})
    assert e.seeds_of("a") == [0, 1, 2, 3, 4] and e.seeds_of("b") == [0, 1, 2]


@pytest.mark.parametrize("arm_seeds, words", [
    ({"c": [0]}, "arm_seeds: 'c' is not an arm"),
    ({"b": [7]}, "arm_seeds.b"),
    ({"b": []}, "arm_seeds.b"),
    ({"b": [0, 0]}, "arm_seeds.b"),
])
def test_arm_seeds_are_checked(arm_seeds, words):
    with pytest.raises(ConfigError, match=words):
        _exp(arm_seeds=arm_seeds)


def test_jobs_plan_and_records_follow_arm_seeds(tmp_path):
    from alkit.experiment import experiment_records
    from alkit.jobs import plan

    e = _exp(arm_seeds={"b": [0, 1, 2]}, results_root=str(tmp_path))
    tasks = plan([e])
    assert sorted((t.arm, t.seed) for t in tasks) == [("a", s) for s in range(5)] + [("b", s) for s in range(3)]
    for arm, seed in (("b", 3), ("b", 0)):  # a run the parameters do not name is left out of the records
        run = e.run_dir(arm, seed)
        run.mkdir(parents=True)
        (run / "records.jsonl").write_text(json.dumps({"arm": arm, "seed": seed, "cycle": 0}) + "\n")
    assert [(r["arm"], r["seed"]) for r in experiment_records(e, log=None)] == [("b", 0)]


# ------------------------------------------------------------------ the cpu profile's files


@pytest.mark.parametrize("path", CPU, ids=lambda p: p.stem)
def test_cpu_files_load_at_the_studys_budgets(path):
    e = load_experiment(path)
    assert e.profile == "cpu" and e.name == path.stem
    for arm in e.arms:
        cfg = e.config(arm, e.seeds[0])
        assert cfg.pool_size is None and cfg.device == "cpu"  # the full 55,000-image pool
        lp = cfg.learner_params
        assert {k: lp.get(k) for k in CPU_DEFAULTS[cfg.learner]} == CPU_DEFAULTS[cfg.learner], (arm, lp)


def test_cpu_budgets_are_the_studys():
    budgets = {p.stem[:2]: load_yaml(p)["base"] for p in CPU}
    assert (budgets["02"]["initial"]["n"], budgets["02"]["budget"], budgets["02"]["cycles"]) == (1000, 1000, 7)
    for nb in ("03", "04"):
        b = budgets[nb]
        assert (b["initial"], b["budget"], b["initial"]["n"] + b["budget"] * b["cycles"]) == (
            {"kind": "classes", "n": 500, "classes": [2, 4, 7]}, 64, 1396)
    assert (budgets["05"]["initial"]["n"], budgets["05"]["budget"], budgets["05"]["cycles"]) == (50, 50, 10)
    assert budgets["05"]["learner_params"]["classifier_size"] == "large"


def test_claim_pairs_run_five_seeds_and_the_rest_three():
    e = load_experiment(ROOT / "params" / "cpu" / "02_vaal_vs_random.yaml")
    assert {a: len(e.seeds_of(a)) for a in e.arms} == {"vaal": 5, "random": 5, "m2_vaal": 5, "m2_vaal_random": 5,
                                                       "tavaal": 3, "tavaal_random": 3, "m2_random": 3}


def test_cpu_defaults_are_not_applied_by_themselves():
    """Automatic stays off on CPU: smoke's records stay bit-identical; the cpu files name the options."""
    p = from_dict(LEARNERS["vaal"].Params, {}, where="t")
    assert resolve_speed(p, "cpu", "vaal").off
    assert all(v == {"bf16": True, "channels_last": True} for v in CPU_DEFAULTS.values())


# ------------------------------------------------------------------ alkit plan


def _costs(tmp_path) -> Path:
    rows = [{"model": m, "options": o, "ms_per_iteration": ms} for m, o, ms in (
        ("classifier", "bf16+cl", 20.0), ("classifier_large", "bf16+cl", 50.0), ("vae32_s2", "bf16+cl", 80.0),
        ("m2vaal32k3_s1", "bf16+cl", 100.0), ("classifier", "fp32", 30.0))]
    path = tmp_path / "costs.json"
    path.write_text(json.dumps({"rows": rows}))
    return path


def test_plan_projects_every_cpu_file(tmp_path, capsys):
    rc = main(["plan", *map(str, CPU), "--costs", str(_costs(tmp_path)), "--results-root", str(tmp_path / "r"),
               "--write", str(tmp_path / "runtimes.json")])
    out = capsys.readouterr().out
    assert rc == 0
    # 02 / random: 5 seeds x (1,000 x 3 + 1,280 + 1,600 + 1,880 + 2,200 + 2,520 iterations x 20 ms + 8 x 15 s)
    expected = 5 * ((3000 + 1280 + 1600 + 1880 + 2200 + 2520) * 0.020 + 8 * 15.0) / 3600
    line = next(line for line in out.splitlines() if line.startswith("02_vaal_vs_random / random "))
    assert f"{expected:.2f}" in line.split()
    # 04's m2_vaal, m2_vaal_random and m2_random are 03's configs: copied, not trained again
    assert "copied" in next(line for line in out.splitlines() if line.startswith("04_discriminator_only / m2_vaal "))
    rows = json.loads((tmp_path / "runtimes.json").read_text())
    assert {r["experiment"] for r in rows} >= {"02_vaal_vs_random", "05_latent_acquisition"}
    assert out.splitlines()[-1].startswith("total left")
    total = out.splitlines()[-1].split()  # left, all, measured, projected (same): nothing on disk yet
    every = sum(sum(r["projected_left_s"] for r in rows if r["experiment"] == e) for e in {r["experiment"] for r in rows})
    assert float(total[2]) == pytest.approx(every / 3600, abs=0.006) and total[3] == total[2]
    assert total[4:6] == ["0.00", "0.00"]


def test_plan_total_counts_a_copied_run_once():
    """A copy (04's m2_vaal is 03's run) shows its twin's measured hours on its own line, not twice in the total."""
    from alkit.costplan import RunCost, report

    run = RunCost("03", "m2_vaal", 0, 2, 2, projected_s=[1800.0, 1800.0], measured_s=[3600.0, 3600.0],
                  task_iterations=[0, 0], gen_iterations=[10, 10])
    copy = RunCost("04", "m2_vaal", 0, 2, 2, projected_s=[0.0, 0.0], measured_s=[3600.0, 3600.0],
                   task_iterations=[0, 0], gen_iterations=[10, 10], shared_with="03/m2_vaal/seed0")
    lines = report([run, copy])
    assert lines[-1].split()[2:] == ["0.00", "1.00", "2.00", "1.00", "h"]  # left, all, measured, projected
    assert next(line for line in lines if line.startswith("04 / m2_vaal")).split()[-2:] == ["2.00", "0.00"]


def test_plan_refuses_a_bad_costs_file(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text("[1, 2]")
    assert main(["plan", str(CPU[0]), "--costs", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --costs:") and err.count("\n") == 1


def test_plan_prices_the_arms_and_seeds_alkit_run_would_train(tmp_path, capsys):
    """``--arms`` / ``--seeds`` select as ``alkit run``'s do (one night of the claim arms is priced apart from the
    rest); a name no file has: alkit run's error line, exit 2, nothing written."""
    base = ["plan", *map(str, CPU), "--costs", str(_costs(tmp_path)), "--results-root", str(tmp_path / "r")]
    assert main(base + ["--write", str(tmp_path / "all.json")]) == 0
    every = json.loads((tmp_path / "all.json").read_text())
    capsys.readouterr()
    assert main(base + ["--arms", "alg1", "random", "--seeds", "0", "3", "--write", str(tmp_path / "some.json")]) == 0
    out = capsys.readouterr().out
    some = json.loads((tmp_path / "some.json").read_text())
    assert {(r["arm"], r["seed"]) for r in some} == {(a, s) for a in ("alg1", "random") for s in (0, 3)}
    assert {r["experiment"] for r in some} == {"02_vaal_vs_random", "03_three_class_start", "05_latent_acquisition"}
    assert [r for r in some if r["experiment"] != "05_latent_acquisition"] == [
        r for r in every if r["experiment"] != "05_latent_acquisition" and r["arm"] == "random" and r["seed"] in (0, 3)]
    assert not any(line.startswith(("05_latent_acquisition / entropy", "02_vaal_vs_random / vaal "))
                   for line in out.splitlines())
    for flags, message in ((["--arms", "nope"], "error: --arms: no arm 'nope' in the parameter files"),
                           (["--seeds", "9"], "error: --seeds: 9 not in the parameter files")):
        assert main(base + flags + ["--write", str(tmp_path / "bad.json")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "bad.json").exists() and not (tmp_path / "r").exists()


def _run(folder: Path, started: str, resumed: list[tuple[int, str]], overheads: list[float]) -> list[dict]:
    """A run folder whose config.json names its sessions; records of cycle k: 100 s training + overheads[k]."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"config": {}, "started": started, "resumed": [
        {"from_cycle": f, "started": s} for f, s in resumed]}))
    return [{"cycle": k, "seconds": {"train": 100.0, "select": o}} for k, o in enumerate(overheads)]


def test_an_arm_is_priced_at_its_newest_sessions_overhead(tmp_path):
    """Sessions before a faster selection landed do not price the cycles left; too few new records borrow the
    next-newest session's; a run without its config.json is one session."""
    from alkit import costplan

    old = _run(tmp_path / "s0", "2026-12-01T10:00:00+0000", [(3, "2026-12-06T16:00:00+0000")], [40, 40, 40, 16, 18])
    groups = costplan.sessions(tmp_path / "s0", old)
    assert [(s[:10], [r["cycle"] for r in recs]) for s, recs in groups] == [("2026-12-01", [0, 1, 2]),
                                                                            ("2026-12-06", [3, 4])]
    assert costplan.arm_overhead(groups) == pytest.approx((16 + 18 + 3 * 40) / 5)  # 2 new records: the old session too
    new = _run(tmp_path / "s1", "2026-12-06T17:00:00+0000", [], [17, 17])
    both = groups + costplan.sessions(tmp_path / "s1", new)
    assert costplan.arm_overhead(both) == pytest.approx((17 + 17 + 16 + 18) / 4)
    assert costplan.arm_overhead(costplan.sessions(tmp_path / "s2", new)) is None  # 2 < MIN_OVERHEAD_RECORDS
    assert costplan.measured_overhead(old + new) == pytest.approx((120 + 34 + 34) / 7)  # the experiment's mean


def test_the_plan_prices_each_arm_on_its_own_records(tmp_path):
    from alkit import costplan

    exp = load_experiment(ROOT / "params" / "cpu" / "05_latent_acquisition.yaml", results_root=str(tmp_path))
    for arm, o in (("random", 10.0), ("bald", 40.0)):
        run = exp.run_dir(arm, 0)
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"config": {}, "started": "2026-12-06T10:00:00+0000"}))
        (run / "records.jsonl").write_text("".join(json.dumps({"cycle": k, "seconds": {"train": 50.0, "select": o}})
                                                   + "\n" for k in range(3)))
    rows = {(r.arm, r.seed): r for r in costplan.plan_costs([exp], costplan.load_costs(_costs(tmp_path)))}
    left = {arm: rows[arm, 0].projected_s[-1] - rows["random", 0].projected_s[-1] for arm in ("bald", "entropy")}
    assert left == {"bald": pytest.approx(30.0), "entropy": pytest.approx(15.0)}  # entropy: the mean, 25 s
