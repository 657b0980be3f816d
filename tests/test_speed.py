"""Speed options of the training steps (alkit.engine.speed): resolution, validation, each option alone,
no host sync per step. (Bit-identity of the all-off default with the former code was checked by rerunning
tests/params/02 before and after; see the commit message.)"""
from __future__ import annotations

import math
import os
import sys
import time

import pytest
import torch

from alkit.config import ConfigError
from alkit.learners import LEARNERS, TrainData, make_learner
from alkit.engine import speed as speed_module
from alkit.engine.speed import OFF, Speed, resolve_speed

ALL = sorted(LEARNERS)
RECORD_KEYS = {"speed_compile", "speed_cuda_graphs", "speed_bf16", "speed_channels_last", "speed_fused_optim"}


@pytest.fixture(scope="module")
def tiny(fmnist_small) -> TrainData:
    """40 labelled, 120 unlabelled, 30 validation Fashion-MNIST images (real pixels, 10 classes)."""
    d = fmnist_small
    return TrainData(x_labelled=d.x_pool[:40], y_labelled=d.y_pool[:40], x_unlabelled=d.x_pool[40:160],
                     x_val=d.x_val[:30], y_val=d.y_val[:30], num_classes=10)


def params(name: str, **extra) -> dict:
    return {**LEARNERS[name].test_params, "iterations": 2, "val_every": 1000, **extra}


def test_automatic_is_off_on_cpu_and_reads_the_gpu_table_on_cuda(monkeypatch):
    for name in ALL:
        p = make_learner(name, None, 10, "cpu").params
        assert (p.compile, p.bf16, p.channels_last, p.fused_optim) == (None, None, None, None)
        assert resolve_speed(p, "cpu", name) == OFF
        assert resolve_speed(p, "cuda", name) == Speed(device_type="cuda")  # table empty until a GPU run fills it
    monkeypatch.setitem(speed_module.GPU_DEFAULTS, "vaal", {"bf16": True, "compile": "reduce-overhead"})
    auto = make_learner("vaal", None, 10, "cpu").params
    assert resolve_speed(auto, "cuda", "vaal") == Speed("reduce-overhead", True, device_type="cuda")
    assert resolve_speed(auto, "cpu", "vaal") == OFF  # the table is for GPUs only
    given = make_learner("vaal", {"bf16": False, "compile": "off"}, 10, "cpu").params
    assert resolve_speed(given, "cuda", "vaal") == Speed(device_type="cuda")  # explicit values win
    assert resolve_speed(auto, "cuda", "m2") == Speed(device_type="cuda")  # per learner
    assert Speed("reduce-overhead", device_type="cuda").record()["speed_cuda_graphs"]
    assert not Speed("reduce-overhead").record()["speed_cuda_graphs"]  # no CUDA graphs on CPU


@pytest.mark.parametrize("key, value, allowed", [
    ("compile", "fast", "reduce-overhead"), ("compile", True, "reduce-overhead"),
    ("bf16", "yes", "true, false"), ("channels_last", 1, "true, false"), ("fused_optim", "on", "true, false"),
])
def test_bad_values_are_rejected_naming_key_value_and_choices(key, value, allowed):
    with pytest.raises(ConfigError) as err:
        make_learner("m2_vaal", {key: value}, 10, "cpu")
    msg = str(err.value)
    assert key in msg and repr(value) in msg and allowed in msg and "learner_params[m2_vaal]" in msg


def test_yaml_off_means_compile_off():
    assert make_learner("classifier", {"compile": False}, 10, "cpu").params.compile == "off"  # `compile: off`


class Spy:
    """What training did: dtypes of conv outputs in training steps, conv weight layouts, optimisers' fused flag."""

    def __init__(self, monkeypatch):
        self.conv_dtypes, self.fused = set(), []

        def hook(module, args, out):
            if isinstance(module, torch.nn.Conv2d) and module.training and torch.is_grad_enabled():
                self.conv_dtypes.add(out.dtype)

        self.handle = torch.nn.modules.module.register_module_forward_hook(hook)
        for cls in (torch.optim.Adam, torch.optim.SGD):
            init = cls.__init__

            def spy_init(opt, *a, _init=init, **kw):
                self.fused.append(bool(kw.get("fused")))
                _init(opt, *a, **kw)

            monkeypatch.setattr(cls, "__init__", spy_init)


def conv_weights(learner) -> list[torch.Tensor]:
    mods = [getattr(learner, a) for a in ("model", "classifier", "vae", "disc", "ranker") if hasattr(learner, a)]
    return [m.weight for mod in mods for m in mod.modules() if isinstance(m, torch.nn.Conv2d)]


@pytest.mark.parametrize("option", ["bf16", "channels_last", "fused_optim"])
@pytest.mark.parametrize("name", ALL)
def test_each_option_alone_trains_every_learner(name, option, tiny, monkeypatch):
    spy = Spy(monkeypatch)
    learner = make_learner(name, params(name, **{option: True}), 10, "cpu")
    try:
        metrics = learner.fit(tiny, seed=0)
    finally:
        spy.handle.remove()
    for k, v in metrics.items():
        assert not (isinstance(v, float) and not math.isfinite(v)), (k, v)
    assert {k: metrics[k] for k in RECORD_KEYS} == {k: k == f"speed_{option}" for k in RECORD_KEYS}
    assert (spy.conv_dtypes == {torch.bfloat16}) == (option == "bf16"), spy.conv_dtypes
    weights = [w for w in conv_weights(learner) if w.shape[1] > 1]  # 1 input channel: both layouts alike
    assert weights and all(w.is_contiguous(memory_format=torch.channels_last) == (option == "channels_last")
                           for w in weights)
    assert spy.fused and all(f == (option == "fused_optim") for f in spy.fused)
    proba = learner.predict_proba(tiny.x_val)  # evaluation reads float32 outputs whatever the option
    assert proba.dtype == torch.float32 and torch.isfinite(proba).all()


def _count_host_reads(monkeypatch) -> dict:
    """Count the Tensor methods that make the host wait for the device (item, bool, float, tolist, cpu, ...),
    called from outside torch.optim: a non-fused Adam reads its step counter with ``.item()`` every step,
    but that counter is a CPU tensor even when the model is on a GPU (no device sync)."""
    counts = {"n": 0}
    for meth in ("item", "__bool__", "__float__", "__int__", "tolist", "cpu", "numpy"):
        original = getattr(torch.Tensor, meth)

        def counting(self, *a, _orig=original, **kw):
            if not sys._getframe(1).f_globals.get("__name__", "").startswith("torch.optim"):
                counts["n"] += 1
            return _orig(self, *a, **kw)

        monkeypatch.setattr(torch.Tensor, meth, counting)
    return counts


@pytest.mark.parametrize("name", ["classifier", "vaal", "tavaal", "m2_vaal"])
def test_no_host_sync_per_training_step(name, tiny, monkeypatch):
    """Host reads of tensors do not grow with the number of iterations: they happen at validation
    points (here the first and the last) and after training only."""
    counts = _count_host_reads(monkeypatch)
    reads = []
    for iterations in (3, 9):
        counts["n"] = 0
        make_learner(name, params(name, iterations=iterations), 10, "cpu").fit(tiny, seed=0)
        reads.append(counts["n"])
    assert reads[0] == reads[1] and reads[0] > 0, reads


@pytest.mark.skipif(not os.environ.get("ALKIT_TEST_COMPILE"),
                    reason="torch.compile of even a tiny classifier takes 27-40 s cold on 2 CPU cores (3 s with "
                           "inductor's cache warm); set ALKIT_TEST_COMPILE=1 to run it")
def test_compiled_classifier_trains(tiny):
    t = time.perf_counter()
    learner = make_learner("classifier", params("classifier", iterations=4, compile="default"), 10, "cpu")
    metrics = learner.fit(tiny, seed=0)
    assert metrics["speed_compile"] and not metrics["speed_cuda_graphs"]
    assert math.isfinite(metrics["task_loss"]) and metrics["iterations"] == 4
    print(f"compiled classifier fit: {time.perf_counter() - t:.1f} s")
