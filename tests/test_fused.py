"""Fused training (alkit.engine.fused): K runs stacked into one model train exactly as K separate runs.

Exactness is checked where it can hold: with ``vmap(randomness="same")`` every run draws the dropout and
sampling noise an unfused run draws from the same generator state, so a fused phase and K unfused phases
see the same batches, noise and numbers, and differ only by float rounding (float64 here). In production
the noise is ``"different"`` per run (independent runs), so a fused run equals its unfused twin in
distribution: the loop test below checks exact agreement where a learner draws no noise (the task
classifier with dropout 0) and the benchmark checks accuracy over seeds.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from alkit import loop
from alkit.engine import drive_fused, run_phase
from alkit.engine import fused as fused_module
from alkit.engine import phase as phase_module
from alkit.engine import single as single_module
from alkit.engine.batches import IndexBlocks, endless_batches, generator
from alkit.learners import LEARNERS, TrainData, make_learner
from alkit.loop import RunConfig
from helpers import synthetic_data, synthetic_images

ALL = sorted(LEARNERS)


def test_index_blocks_draw_each_runs_own_stream():
    """Three runs (sets of 70, 45, 32 points, batches of 16; and 10 < 16) get exactly the batches
    endless_batches draws from each run's own generator, in order, across block boundaries."""
    for sizes, bs in (([70, 45, 32], 16), ([10, 10, 10], 16)):
        blocks = IndexBlocks(sizes, bs, [generator(100 + k) for k in range(3)], block=7)
        alone = [endless_batches(n, bs, generator(100 + k)) for k, n in enumerate(sizes)]
        for _ in range(40):
            got = blocks.next()
            for k in range(3):
                assert torch.equal(got[k], next(alone[k]))
    with pytest.raises(ValueError, match="one size"):
        IndexBlocks([40, 10], 16, [generator(0), generator(1)])


def _data64(k: int) -> TrainData:
    x, y = synthetic_images(100, seed=k)
    x = x.double()
    return TrainData(x_labelled=x[:24], y_labelled=y[:24], x_unlabelled=x[24:72], x_val=x[72:92],
                     y_val=y[72:92], num_classes=10)


def _state(learner) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v for name, m in sorted(vars(learner).items()) if isinstance(m, torch.nn.Module)
            for k, v in m.state_dict().items()}


def _seeded(gen, base: int) -> dict:
    """An unfused fit whose r-th phase starts from torch's global generator seeded as drive_fused seeds it."""
    r, phase = 0, next(gen)
    try:
        while True:
            torch.manual_seed(base + 7919 * r)
            phase = gen.send(run_phase(phase))
            r += 1
    except StopIteration as stop:
        return stop.value


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def adam_eps(monkeypatch):
    """Adam with eps 1e-3 in both engines. With Adam's 1e-8, a gradient that is exactly zero in exact
    arithmetic (a conv bias followed by BatchNorm, as in the task classifier inside M2) is float
    rounding noise (~1e-17), which Adam normalises into a +-lr step: both engines then move such a
    bias by the sign of their own rounding, and the drift spreads (1e-6 after 20 steps). With eps
    1e-3 that noise stays at rounding level. One Adam over stacked tensors is K Adams bit for bit
    (test below), so this changes nothing but the amplification."""
    real = phase_module.make_optimizer

    def make(spec, params, speed=phase_module.OFF, foreach=None):
        if spec.kind == "adam":
            spec = phase_module.Optim(spec.kind, spec.modules, {**spec.kwargs, "eps": 1e-3}, spec.lr_drop_every)
        return real(spec, params, speed, foreach)

    monkeypatch.setattr(single_module, "make_optimizer", make)
    monkeypatch.setattr(fused_module, "make_optimizer", make)


@pytest.mark.parametrize("iterations", [1, 20])
@pytest.mark.parametrize("name", ALL)
def test_fused_phases_equal_separate_runs(name, iterations, float64, adam_eps):
    """Every learner: 3 runs (own data, own seeds) fused vs alone, float64, same batches and noise:
    every parameter and BatchNorm statistic after 1 and 20 iterations within 1e-10, every metric equal
    (validation accuracy, best iteration, loss means to 1e-10), validation and best state included."""
    p = {**LEARNERS[name].test_params, "iterations": iterations, "val_every": 5, "batch_size": 8}
    datas = [_data64(k) for k in range(3)]
    alone = [make_learner(name, p, 10, "cpu") for _ in range(3)]
    together = [make_learner(name, p, 10, "cpu") for _ in range(3)]
    expected = [_seeded(alone[k].fit_phases(datas[k], seed=10 + k), 1234) for k in range(3)]
    got = drive_fused([together[k].fit_phases(datas[k], seed=10 + k) for k in range(3)], randomness="same",
                      noise_seed=1234)
    for k in range(3):
        assert got[k].pop("fused_k") == 3
        assert set(got[k]) == set(expected[k])
        for key, value in expected[k].items():
            if isinstance(value, float):
                assert got[k][key] == pytest.approx(value, rel=1e-10, abs=1e-12), key
            else:
                assert got[k][key] == value, key
        a, b = _state(alone[k]), _state(together[k])
        assert a.keys() == b.keys()
        for key in a:
            if a[key].is_floating_point():
                torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-10, msg=key)
            else:
                assert torch.equal(a[key], b[key]), key  # BatchNorm's num_batches_tracked
        for m in vars(together[k]).values():
            if isinstance(m, torch.nn.Module):
                assert not m.training  # left in eval mode, as the unfused engine leaves them


@pytest.mark.parametrize("make", [
    lambda ps: torch.optim.Adam(ps, lr=1e-3, weight_decay=1e-4),
    lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=False),
    lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9, weight_decay=5e-4),
])
def test_one_optimizer_over_stacked_tensors_is_k_optimizers_bit_for_bit(make):
    g = torch.Generator().manual_seed(0)
    shapes = [(5, 3), (7,)]
    init = [[torch.randn(s, generator=g) for s in shapes] for _ in range(4)]  # 4 runs
    grads = [[[torch.randn(s, generator=g) for s in shapes] for _ in range(4)] for _ in range(6)]  # 6 steps
    alone = [[t.clone().requires_grad_() for t in run] for run in init]
    opts = [make(run) for run in alone]
    stacked = [torch.stack([run[i] for run in init]).requires_grad_() for i in range(len(shapes))]
    opt = make(stacked)
    for step in grads:
        for run, o, gs in zip(alone, opts, step):
            for t, gr in zip(run, gs):
                t.grad = gr.clone()
            o.step()
        for i, t in enumerate(stacked):
            t.grad = torch.stack([gs[i] for gs in step])
        opt.step()
    for k, run in enumerate(alone):
        for i, t in enumerate(run):
            assert torch.equal(stacked[i][k], t)


def _cfg(seed: int, **kw) -> RunConfig:
    base = dict(dataset="synthetic", pool_size=None, initial={"kind": "random", "n": 40}, budget=20, cycles=2,
                learner="classifier", strategy="entropy", seed=seed, device="cpu",
                learner_params={"iterations": 12, "batch_size": 16, "val_every": 4, "dropout": 0.0, "size": "tiny"})
    base.update(kw)
    return loop.from_dict(RunConfig, base, "test")


def _strip(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k not in ("seconds", "fused_k", "fused_group")}


@pytest.mark.parametrize("learner", ["classifier", "vaal"])
def test_fused_group_of_three_runs_matches_the_unfused_runs(learner, float64, tmp_path, monkeypatch):
    """3 runs through loop.run_group vs loop.run, float64. The task classifier without dropout draws no
    noise, so the fused runs' validation accuracy, best iteration, test accuracy and entropy selections
    equal the unfused ones exactly (classifier: every record field). VAAL's VAE draws sampling noise from
    the group's generator, so its VAE, discriminator and loss means differ from the unfused run's (they
    agree in distribution: benchmarks/bench_gpu.py's accuracy check); its task model (trained before the
    VAE, from the run's own seeds) still matches exactly."""
    monkeypatch.setattr(loop, "validate", lambda cfg: None)  # the synthetic dataset is not a registered name
    data = synthetic_data(pool=200, val=60, test=60)
    data.x_pool, data.x_val, data.x_test = data.x_pool.double(), data.x_val.double(), data.x_test.double()
    extra = {} if learner == "classifier" else {"learner": "vaal", "strategy": "entropy", "learner_params": {
        **LEARNERS["vaal"].test_params, "iterations": 12, "batch_size": 16, "val_every": 4, "dropout": 0.0}}
    cfgs = [_cfg(s, **extra) for s in (0, 1, 2)]
    alone = [loop.run(c, tmp_path / "alone" / str(c.seed), data=data, progress=False) for c in cfgs]
    together = loop.run_group([(c, tmp_path / "fused" / str(c.seed), {"arm": "a"}) for c in cfgs],
                              data=[data] * 3)
    for a, b in zip(alone, together):
        assert len(a) == len(b) == 3
        for ra, rb in zip(a, b):
            assert rb["fused_k"] == 3 and "a/seed0@" in rb["fused_group"]
            assert rb["test_acc_final"] == ra["test_acc_final"] and rb["n_val"] == ra["n_val"] == 60
            for key in ("val_acc", "test_acc", "best_iteration", "selected", "n_labelled", "task_iterations",
                        "labelled_class_counts"):
                if key in ra:
                    assert rb[key] == ra[key], key
            if learner == "classifier":
                assert _strip(rb).keys() == _strip(ra).keys()
                for key, value in _strip(ra).items():
                    if key == "diagnostics":
                        continue  # nested floats of the selection's diagnostics: rounding only
                    assert rb[key] == (pytest.approx(value, rel=1e-9) if isinstance(value, float) else value), key


def test_killed_fused_group_resumes_to_the_uninterrupted_records(tmp_path, monkeypatch):
    """A fused group of 3 VAAL runs killed in the middle of its second cycle's training (nothing of that
    cycle written) resumes to the records of the uninterrupted fused group: same members, same noise."""
    monkeypatch.setattr(loop, "validate", lambda cfg: None)
    data = synthetic_data(pool=200, val=60, test=60)
    lp = {**LEARNERS["vaal"].test_params, "iterations": 12, "batch_size": 16, "val_every": 4}
    cfgs = [_cfg(s, learner="vaal", strategy="vaal", learner_params=lp) for s in (0, 1, 2)]

    def runs(root):
        return [(c, root / str(c.seed), {"arm": "vaal"}) for c in cfgs]

    whole = loop.run_group(runs(tmp_path / "whole"), data=[data] * 3)
    ticks = {"n": 0}
    real = fused_module.Watch

    class Killed(real):
        def tick(self, it):
            ticks["n"] += 1
            if ticks["n"] == 12 * 2 + 12 + 6:  # cycle 1: task phase done, VAE phase half-way
                raise KeyboardInterrupt("kill -9")
            super().tick(it)

    monkeypatch.setattr(fused_module, "Watch", Killed)
    with pytest.raises(KeyboardInterrupt):
        loop.run_group(runs(tmp_path / "killed"), data=[data] * 3)
    for c in cfgs:
        lines = (tmp_path / "killed" / str(c.seed) / "records.jsonl").read_text().splitlines()
        assert len(lines) == 1  # cycle 0 kept, nothing of cycle 1
    monkeypatch.setattr(fused_module, "Watch", real)
    resumed = loop.run_group(runs(tmp_path / "killed"), data=[data] * 3)
    for a, b in zip(whole, resumed):
        assert [_strip(r) for r in a] == [_strip(r) for r in b]
        assert [r["fused_group"] for r in a] == [r["fused_group"] for r in b]


def test_fusion_units_group_across_files_by_family_and_shape():
    """m2_disc joins m2_vaal (only the adversarial weight differs); a different width or pool does not;
    groups are capped at fuse_max; a plug-in learner that overrides fit trains alone."""
    from alkit.experiment import Experiment
    from alkit.jobs import Task, fusion_units

    m2 = {"width": 4, "latent_dim": 8, "hidden": 16, "disc_hidden": 16, "iterations": 4}
    a = Experiment(name="a", seeds=[0, 1], base={"pool_size": 300, "cycles": 1, "budget": 10,
                                                  "initial": {"kind": "random", "n": 20}},
                   arms={"m2_vaal": {"learner": "m2_vaal", "strategy": "vaal", "learner_params": m2},
                         "m2_disc": {"learner": "m2_disc", "strategy": "vaal", "learner_params": m2},
                         "wide": {"learner": "m2_vaal", "strategy": "vaal", "learner_params": {**m2, "width": 8}},
                         "random": {"learner": "classifier", "strategy": "random"}})
    b = Experiment(name="b", seeds=[0], base=dict(a.base), arms={"m2_vaal": dict(a.arms["m2_vaal"])})
    tasks = [Task(e, arm, s, 2) for e in (a, b) for arm in e.arms for s in e.seeds]
    label = [t.label for t in tasks]
    units = fusion_units(tasks, list(range(len(tasks))), fuse_max=4)
    named = [[label[i] for i in u] for u in units]
    assert named[0] == ["a/m2_vaal/seed0", "a/m2_vaal/seed1", "a/m2_disc/seed0", "a/m2_disc/seed1"]
    assert ["a/wide/seed0", "a/wide/seed1"] in named and ["a/random/seed0", "a/random/seed1"] in named
    assert ["b/m2_vaal/seed0"] in named  # the fifth of the family: a new group (fuse_max 4)


def test_fused_record_fields_only_when_fused(tmp_path, monkeypatch):
    """An unfused run's records carry no fused_* field (they stay byte-identical to before fusion)."""
    monkeypatch.setattr(loop, "validate", lambda cfg: None)
    data = synthetic_data(pool=200, val=60, test=60)
    recs = loop.run(_cfg(0, cycles=0), tmp_path / "r", data=data, progress=False)
    assert not any(k.startswith("fused") for k in recs[0])
    on_disk = json.loads((tmp_path / "r" / "records.jsonl").read_text().splitlines()[0])
    assert not any(k.startswith("fused") for k in on_disk)
    assert np.isfinite(recs[0]["test_acc"])


def _mapped(gen, change):
    """``gen`` with ``change(phase)`` applied to each phase it hands out."""
    phase = next(gen)
    try:
        while True:
            change(phase)
            phase = gen.send((yield phase))
    except StopIteration as stop:
        return stop.value


def _keep_nothing(phase):
    if phase.validation is not None:
        phase.validation = dataclasses.replace(phase.validation, keep=())


@pytest.mark.parametrize("name", ["classifier", "m2_vaal"])
def test_probe_reads_each_runs_final_state_alone_and_fused(name, float64, adam_eps):
    """Phase.probe sees the validated module in the run's final state (its last iteration, or its early
    stop), not the best validated one that is restored after it: the state a probe reads equals, to float
    rounding, the end state of the same run whose validation keeps nothing (so nothing is restored), and
    the probe's numbers join the metrics. Alone (drive) and fused (drive_fused, runs stopping at different
    iterations). Not vacuous: some run's best iteration is not its last."""
    p = {**LEARNERS[name].test_params, "iterations": 24, "val_every": 2, "patience": 3, "batch_size": 8}
    datas = [_data64(k) for k in range(3)]
    seen: list[dict] = [{} for _ in range(3)]

    def probe_of(k):
        def probe(module):
            seen[k] = {key: v.clone() for key, v in module.state_dict().items()}
            return {"probe_sum": float(sum(v.double().sum() for v in module.state_dict().values()))}
        return probe

    scored = (lambda lr: lr.model) if name == "classifier" else (lambda lr: lr.model.classifier)
    ends, stops, bests = [], [], []
    for k in range(3):  # the reference: nothing restored, so the run ends in its final state
        ref = make_learner(name, p, 10, "cpu")
        metrics = _seeded(_mapped(ref.fit_phases(datas[k], seed=10 + k), _keep_nothing), 1234)
        ends.append({key: v.clone() for key, v in scored(ref).state_dict().items()})
        stops.append(metrics.get("iterations", metrics.get("task_iterations")))
        bests.append(metrics.get("best_iteration"))
    assert any(b < s - 1 for b, s in zip(bests, stops)), (bests, stops)
    assert min(stops) < p["iterations"] and len(set(stops)) > 1, stops  # early stops, at different iterations

    def check(k, learner, metrics):
        assert set(seen[k]) == set(ends[k])
        for key in ends[k]:
            if ends[k][key].is_floating_point():
                torch.testing.assert_close(seen[k][key], ends[k][key], rtol=0, atol=1e-10, msg=key)
        assert metrics["probe_sum"] == pytest.approx(float(sum(v.double().sum() for v in ends[k].values())))
        restored = scored(learner).state_dict()
        if bests[k] < stops[k] - 1:  # the learner itself is left in its best validated state
            assert any(not torch.allclose(restored[key], ends[k][key]) for key in ends[k]
                       if ends[k][key].is_floating_point())

    for k in range(3):
        alone = make_learner(name, p, 10, "cpu")
        gen = alone.fit_phases(datas[k], seed=10 + k)
        r, phase = 0, next(gen)
        try:
            while True:
                torch.manual_seed(1234 + 7919 * r)
                phase.probe = probe_of(k) if phase.validation is not None else None
                result = run_phase(phase)
                phase, r = gen.send(result), r + 1
        except StopIteration as stop:
            metrics = {**stop.value, **result.final}
        check(k, alone, metrics)
    seen[:] = [{} for _ in range(3)]
    together = [make_learner(name, p, 10, "cpu") for _ in range(3)]
    got = drive_fused([together[k].fit_phases(datas[k], seed=10 + k) for k in range(3)], randomness="same",
                      noise_seed=1234, probes=[probe_of(k) for k in range(3)])
    for k in range(3):
        check(k, together[k], got[k])
