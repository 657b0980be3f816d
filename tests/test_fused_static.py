"""The fused engine's iteration as a function of static tensors (alkit.engine.fused, alkit.engine.graph).

``run_fused`` runs each iteration (all its steps) from preallocated index buffers, in-place loss sums and,
under ``fused_graphs``, a tensor learning rate, so that CUDA can capture it as one graph. Eagerly it must
compute exactly what the former per-step loop computed: ``former_run_fused`` below is that loop as it was
(commit 7535ae4, trimmed of nothing but its docstring), the reference of the first test. CPU only; the last
test needs CUDA and is skipped without it.
"""
from __future__ import annotations

import importlib
import math

import pytest
import torch
from torch import nn

from alkit.engine import drive_fused, run_fused
from alkit.engine import fused as fused_module
from alkit.engine.batches import IndexBlocks, generator
from alkit.engine.fused import (_accuracies, _Bundle, _load, _result, _scored, _stack_sets, draw_plan, signature)
from alkit.engine.means import RunningMeans, StaticSums
from alkit.engine.phase import LrDrops, Optim, Phase, Step, lr_value, make_optimizer
from alkit.engine.speed import OFF, Speed, SpeedParams, resolve_speed
from alkit.engine import speed as speed_module
from alkit.engine.timebox import Watch
from alkit.learners import LEARNERS, TrainData, make_learner
from helpers import synthetic_images

ALL = sorted(LEARNERS)
drive_module = importlib.import_module("alkit.engine.drive")  # the package's ``drive`` is the function


def former_run_fused(phases, progress=False, randomness="different", noise_seed=None, block=256):
    """The fused engine's loop before the static iteration: draws, modes, vmapped loss, zero_grad, backward,
    optimiser step and RunningMeans, step by step (the reference of the equivalence test)."""
    from torch.func import functional_call

    K, t = len(phases), phases[0]
    sig = signature(t)
    for ph in phases[1:]:
        assert signature(ph) == sig
    if noise_seed is not None:
        torch.manual_seed(int(noise_seed) % (2**63))
    device, speed = t.device, t.speed
    trainable = {m for o in t.optimizers.values() for m in o.modules}
    params, buffers = {}, {}
    for name, mod in t.modules.items():
        own_p = [dict(ph.modules[name].named_parameters()) for ph in phases]
        own_b = [dict(ph.modules[name].named_buffers()) for ph in phases]
        for key, _ in mod.named_parameters():
            params[f"{name}.{key}"] = torch.stack([p[key].detach() for p in own_p]).requires_grad_(name in trainable)
        for key, _ in mod.named_buffers():
            buffers[f"{name}.{key}"] = torch.stack([b[key] for b in own_b])
    opts = {k: make_optimizer(o, [params[f"{m}.{key}"] for m in o.modules for key, _ in t.modules[m].named_parameters()],
                              speed, foreach=True)
            for k, o in t.optimizers.items()}
    drops = [LrDrops(opts[k], o.lr_drop_every, t.iterations) for k, o in t.optimizers.items() if o.lr_drop_every]
    detached = {k: v.detach() for k, v in params.items()}
    step_params = {s.name: {k: (detached[k] if k.split(".", 1)[0] in s.frozen else v) for k, v in params.items()}
                   for s in t.steps}
    dtype = next((v.dtype for v in params.values() if v.is_floating_point()), torch.float32)
    hp = {k: torch.tensor([float(ph.hp[k]) for ph in phases], dtype=dtype, device=device) for k in t.hp}
    saved_static = dict(t.static)
    t.static.update({k: any(bool(ph.static[k]) for ph in phases) for k in t.static})
    xl_all, l_off = _stack_sets([ph.labelled[0] for ph in phases])
    yl_all, _ = _stack_sets([ph.labelled[1] for ph in phases])
    wl_all, _ = _stack_sets([ph.labelled[2] for ph in phases])
    lab = IndexBlocks([len(ph.labelled[0]) for ph in phases], t.batch_size,
                      [generator(ph.seed_labelled, device) for ph in phases], block)
    unl = None
    if t.unlabelled is not None:
        xu_all, u_off = _stack_sets([ph.unlabelled[0] for ph in phases])
        wu_all, _ = _stack_sets([ph.unlabelled[1] for ph in phases])
        unl = IndexBlocks([len(ph.unlabelled[0]) for ph in phases], t.batch_size,
                          [generator(ph.seed_unlabelled, device) for ph in phases], block)

    def draw(kind):
        il = lab.next() + l_off
        batch = {"xl": xl_all[il], "yl": yl_all[il], "wl": None if wl_all is None else wl_all[il]}
        if kind == "both":
            iu = unl.next() + u_off
            batch.update(xu=xu_all[iu], wu=None if wu_all is None else wu_all[iu])
        return batch

    bundle = _Bundle(t.modules)

    def vmapped(fn, it, batch):
        def one(p, b, h, bufs):
            return functional_call(bundle, (p, bufs), (b, h), {"fn": fn, "it": it})

        dims = {k: (None if v is None else 0) for k, v in batch.items()}
        return torch.vmap(one, in_dims=(0, dims, 0, 0), randomness=randomness)

    val = t.validation
    if val is not None:
        scored, prefix = _scored(t)
        shared_val = all(ph.x_val is t.x_val and ph.y_val is t.y_val for ph in phases)
        x_val = t.x_val if shared_val else torch.stack([ph.x_val for ph in phases])
        y_val = t.y_val if shared_val else torch.stack([ph.y_val for ph in phases])
        keep = [k for k in (*params, *buffers) if k.split(".", 1)[0] in val.keep]
    best_acc, best_it, since, checks = [-1.0] * K, [-1] * K, [0] * K, 0
    best = None
    stopped = {}
    active = [True] * K
    out = [None] * K
    lasts = [{} for _ in range(K)]
    means = RunningMeans()
    watch = Watch(t.iterations, f"{t.watch or t.name} (fused x{K})")
    batch, it = None, -1
    try:
        for it in range(t.iterations):
            for d in drops:
                d.before(it)
            for step in t.steps:
                for r in range(step.times):
                    if step.draw != "reuse" or r > 0:
                        batch = draw("both" if step.draw == "reuse" else step.draw)
                    for m in step.train:
                        t.modules[m].train()
                    for m in step.eval:
                        t.modules[m].eval()
                    with speed.autocast():
                        loss, terms = vmapped(step.loss, it, batch)(step_params[step.name], batch, hp, buffers)
                    opt = opts[step.optimizer]
                    opt.zero_grad(set_to_none=True)
                    loss.sum().backward()
                    opt.step()
                    means.add(**terms)
            if t.validates_at(it, t.iterations):
                checks += 1
                per_run = [means.per_run(k) for k in range(K)]
                means = RunningMeans()
                accs = _accuracies(scored, prefix, params, buffers, x_val, y_val, shared_val) if val else None
                improved = []
                for k in range(K):
                    if not active[k]:
                        continue
                    last, bad = per_run[k]
                    if bad:
                        out[k] = FloatingPointError(f"{phases[k].name} iteration {it}: non-finite {', '.join(bad)}")
                        active[k] = False
                        continue
                    lasts[k] = last
                    if val is None:
                        continue
                    if val.last_key:
                        last[val.last_key] = accs[k]
                    if accs[k] > best_acc[k]:
                        best_acc[k], best_it[k], since[k] = accs[k], it, 0
                        improved.append(k)
                    else:
                        since[k] += 1
                if improved:
                    src = {**params, **buffers}
                    if best is None:
                        best = {k: src[k].detach().clone() for k in keep}
                    else:
                        idx = torch.tensor(improved, device=device)
                        for k in keep:
                            best[k][idx] = src[k].detach()[idx]
                for k in range(K):
                    if active[k] and val is not None and val.patience is not None and since[k] >= val.patience:
                        out[k] = _result(lasts[k], it + 1, checks, best_acc[k], best_it[k], opts, K)
                        active[k] = False
                        if phases[k].probe is not None:
                            src = {**params, **buffers}
                            stopped[k] = {key: src[key].detach()[k].clone() for key in keep}
                if not any(active):
                    break
            watch.tick(it)
    finally:
        t.static.clear()
        t.static.update(saved_static)
    last_state = {**params, **buffers}
    final = last_state if best is None else {**last_state, **best}
    for k, ph in enumerate(phases):
        if out[k] is None:
            out[k] = _result(lasts[k], it + 1, checks, best_acc[k], best_it[k], opts, K)
        if val is not None and ph.probe is not None and not isinstance(out[k], Exception):
            _load(ph, last_state, k, stopped.get(k, {}))
            out[k].final = dict(ph.probe(_scored(ph)[0]))
        _load(ph, final, k)
    return out


def _data(k: int) -> TrainData:
    x, y = synthetic_images(80, seed=k)
    return TrainData(x_labelled=x[:24], y_labelled=y[:24], x_unlabelled=x[24:64], x_val=x[64:80], y_val=y[64:80],
                     num_classes=10)


def _state(learner) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v for name, m in sorted(vars(learner).items()) if isinstance(m, nn.Module)
            for k, v in m.state_dict().items()}


#: the largest difference between the static iteration and the former loop over every test below (the report)
MAX_DIFF: dict[str, float] = {}


@pytest.mark.parametrize("name", ALL)
def test_static_iteration_equals_the_former_loop(name, monkeypatch):
    """Every learner, float32, 2 runs with their own data and seeds, the production noise (randomness
    "different", one group seed), validation and early stopping: the static-buffer iteration trains to the
    very numbers of the former per-step loop -- every parameter and buffer bit for bit, every metric equal."""
    p = {**LEARNERS[name].test_params, "iterations": 4, "val_every": 1, "patience": 2, "batch_size": 8}

    def fit(engine):
        monkeypatch.setattr(drive_module, "run_fused", engine)
        learners = [make_learner(name, p, 10, "cpu") for _ in range(2)]
        got = drive_fused([lr.fit_phases(_data(k), seed=10 + k) for k, lr in enumerate(learners)], noise_seed=1234)
        return learners, got

    new_l, new = fit(run_fused)
    old_l, old = fit(former_run_fused)
    worst = 0.0
    for k in range(2):
        assert new[k] == old[k]  # every metric: losses, accuracies, iterations, lr, fused_k
        a, b = _state(old_l[k]), _state(new_l[k])
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
            if a[key].is_floating_point():
                worst = max(worst, (a[key] - b[key]).abs().max().item())
    MAX_DIFF[name] = worst
    assert worst == 0.0


def test_draw_plan_slots_follow_the_former_draw_order():
    """VAAL's layout (2 generative steps drawing both sets, a discriminator step reusing the last batch
    once, then drawing afresh): one labelled and one unlabelled slot per fresh draw, in order."""
    loss = lambda b, hp, it: None
    steps = [Step("gen", loss, "g", draw="both", times=2), Step("disc", loss, "d", draw="reuse", times=2),
             Step("task", loss, "t", draw="labelled")]
    plan, n_l, n_u = draw_plan(steps)
    assert plan == [[(0, 0), (1, 1)], [None, (2, 2)], [(3, None)]] and (n_l, n_u) == (4, 3)
    with pytest.raises(ValueError, match="no step draws one before it"):
        draw_plan([Step("disc", loss, "d", draw="reuse")])


def test_static_sums_equal_running_means():
    """StaticSums (in place, from -0.0, reset after each read) reads the very numbers RunningMeans reads over
    three intervals, signed zeros, infinities and NaN included, and reports the same non-finite terms."""
    g = torch.Generator().manual_seed(0)
    specials = torch.tensor([0.0, -0.0, 1e-45, float("inf"), float("nan")])
    static = StaticSums()
    for interval in range(3):
        ref = RunningMeans()
        for i in range(5):
            a = torch.randn(4, generator=g)
            b = specials[torch.randint(0, 5, (4,), generator=g)] if interval == 2 else -torch.zeros(4)  # -0.0 sums
            terms = {"loss": a, "zero": b} if i % 2 == 0 else {"loss": a}
            ref.add(**terms)
            static.add(**terms)
        got = static.read(4)
        for k in range(4):
            want, bad = ref.per_run(k)
            assert got[k][1] == bad and got[k][0].keys() == want.keys()
            for key, v in want.items():
                w = got[k][0][key]
                assert (math.isnan(v) and math.isnan(w)) or (v == w and math.copysign(1, v) == math.copysign(1, w)), key
    assert static.counts == {} and all(torch.equal(s, torch.full_like(s, -0.0)) for s in static.sums.values())


def test_static_sums_count_replayed_iterations():
    """A replayed iteration adds its captured counts (its Python adds ran once, at capture)."""
    s = StaticSums()
    s.add(a=torch.ones(2), b=torch.ones(2))
    s.add(a=torch.ones(2))
    s.repeat({"a": 2, "b": 1})
    assert s.counts == {"a": 4, "b": 2}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_tensor_lr_drops_follow_the_float_schedule(dtype):
    """LrDrops on a tensor lr (what a captured optimiser step reads) refills it in place with the float
    schedule, rounded to its dtype: float64 equals the float lr exactly at every iteration; float32 is the
    float lr rounded once (not ten divisions in float32); lr_value reports the float schedule itself. With
    a float64 tensor lr an SGD step trains bit for bit as the float lr does."""
    shapes = [(3, 4), (5,)]
    init = [torch.randn(s, generator=torch.Generator().manual_seed(i)) for i, s in enumerate(shapes)]
    floats = [t.clone().requires_grad_() for t in init]
    tensors = [t.clone().requires_grad_() for t in init]
    by_float = torch.optim.SGD(floats, lr=0.01, momentum=0.9, weight_decay=5e-4, foreach=False)
    by_tensor = torch.optim.SGD(tensors, lr=0.01, momentum=0.9, weight_decay=5e-4, foreach=False)
    lr = torch.tensor(0.01, dtype=dtype)
    by_tensor.param_groups[0].update(lr=lr, float_lr=0.01)
    drops_f, drops_t = LrDrops(by_float, 0.25, 20), LrDrops(by_tensor, 0.25, 20)
    for it in range(20):
        drops_f.before(it)
        drops_t.before(it)
        want = by_float.param_groups[0]["lr"]
        assert by_tensor.param_groups[0]["lr"] is lr  # the same tensor throughout: refilled, never replaced
        assert lr.item() == torch.tensor(want, dtype=dtype).item()
        assert lr_value(by_tensor.param_groups[0]) == want == lr_value(by_float.param_groups[0])
        for a, b in zip(floats, tensors):
            grad = torch.randn(a.shape, generator=torch.Generator().manual_seed(it))
            a.grad, b.grad = grad.clone(), grad.clone()
        by_float.step()
        by_tensor.step()
    assert by_float.param_groups[0]["lr"] == 0.01 / 10 / 10 / 10
    if dtype == torch.float64:
        assert all(torch.equal(a, b) for a, b in zip(floats, tensors))


def _tiny_phase(speed: Speed) -> Phase:
    model = nn.Linear(4, 3)
    x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))

    def loss(batch, hp, it):
        value = nn.functional.cross_entropy(model(batch["xl"]), batch["yl"])
        return value, {"task_loss": value}

    return Phase(name="tiny", modules={"model": model}, optimizers={"task": Optim("sgd", ("model",), {"lr": 0.1})},
                 steps=[Step("task", loss, "task", draw="labelled", train=("model",))], iterations=3, batch_size=8,
                 labelled=(x, y, None), seed_labelled=0, speed=speed)


def test_graph_option_is_refused_on_cpu():
    """fused_graphs: true needs CUDA: resolving it for a CPU run, training a learner with it on CPU, and the
    fused engine given such options on CPU all fail with the same clear error; a bad value is a config error."""
    with pytest.raises(ValueError, match="fused_graphs: true needs a CUDA device.*trains on cpu"):
        resolve_speed(SpeedParams(fused_graphs=True), "cpu")
    assert resolve_speed(SpeedParams(fused_graphs=True), "cuda").fused_graphs  # resolving touches no GPU
    assert not resolve_speed(SpeedParams(), "cpu").fused_graphs and not resolve_speed(SpeedParams(), "cuda").fused_graphs
    learner = make_learner("classifier", {**LEARNERS["classifier"].test_params, "fused_graphs": True}, 10, "cpu")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        learner.fit(_data(0), seed=0)
    graphs = Speed(fused_graphs=True)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        run_fused([_tiny_phase(graphs), _tiny_phase(graphs)])
    with pytest.raises(ValueError, match="fused_graphs must be true, false or None"):
        SpeedParams(fused_graphs="yes")


def test_speed_records_carry_the_graph_option():
    """Records keep their five speed_* fields (unfused records stay byte-identical); speed_fused_graphs joins
    them only where the option is asked for, and the engine sets it to what happened."""
    assert set(OFF.record()) == {"speed_compile", "speed_cuda_graphs", "speed_bf16", "speed_channels_last",
                                 "speed_fused_optim"}
    on = Speed(fused_graphs=True, device_type="cuda")
    assert on.record()["speed_fused_graphs"] is True and not on.record()["speed_cuda_graphs"]  # not compile's graphs
    assert not on.off and OFF.off
    assert drive_module._graphed({"speed_fused_graphs": True}, False) == {"speed_fused_graphs": False}
    assert drive_module._graphed({"a": 1}, True) == {"a": 1}  # not asked for: no field


class _EagerGraphs:
    """A CPU stand-in for IterationGraphs: runs the iteration eagerly and says it captured one graph."""

    captured = 1

    def __init__(self, iteration, sums):
        self.iteration = iteration

    def __call__(self, it, variant=None):
        self.iteration(it)


def test_drive_fused_reports_graphs_and_trains_a_group_of_one_fused(monkeypatch):
    """With fused_graphs (CUDA faked on CPU: the graph runs eagerly), every run's record says
    speed_fused_graphs true, a group of one trains in the fused engine (fused_k 1), and the same learner
    trained alone (learner.fit: the unfused engine) says false."""
    monkeypatch.setattr(speed_module, "require_cuda", lambda device: None)
    monkeypatch.setattr(fused_module, "require_cuda", lambda device: None)
    monkeypatch.setattr(fused_module, "IterationGraphs", _EagerGraphs)
    monkeypatch.setattr(fused_module, "graph_optimizer", lambda o, ts, speed: make_optimizer(o, ts, speed, foreach=True))
    calls = []
    monkeypatch.setattr(drive_module, "run_fused", lambda phases, *a, **kw: calls.append(len(phases))
                        or fused_module.run_fused(phases, *a, **kw))
    p = {**LEARNERS["classifier"].test_params, "iterations": 3, "fused_graphs": True}
    for K in (2, 1):
        got = drive_fused([make_learner("classifier", p, 10, "cpu").fit_phases(_data(k), seed=k) for k in range(K)])
        assert [m["speed_fused_graphs"] for m in got] == [True] * K and [m["fused_k"] for m in got] == [K] * K
    assert calls == [2, 1]
    assert make_learner("classifier", p, 10, "cpu").fit(_data(0), seed=0)["speed_fused_graphs"] is False


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")


@cuda
def test_iteration_graph_replays_on_cuda():
    """On CUDA: a fused classifier group (dropout 0: no noise) trained with its iteration captured as a CUDA
    graph ends close to the eager one (the graph's optimiser is fused SGD with a float32 tensor lr, so not bit
    for bit), with graphs captured, the lr drops applied and every loss mean finite."""
    from alkit.engine.graph import WARMUP

    p = {**LEARNERS["classifier"].test_params, "iterations": WARMUP + 8, "val_every": 4, "dropout": 0.0}
    datas = [TrainData(**{k: (v.cuda() if torch.is_tensor(v) else v) for k, v in vars(_data(k)).items()})
             for k in range(3)]

    def fit(graphs):
        learners = [make_learner("classifier", {**p, "fused_graphs": graphs}, 10, "cuda") for _ in range(3)]
        got = drive_fused([lr.fit_phases(datas[k], seed=k) for k, lr in enumerate(learners)], noise_seed=0)
        return learners, got

    (eager_l, eager), (graph_l, graph) = fit(False), fit(True)
    for k in range(3):
        assert graph[k]["speed_fused_graphs"] is True and "speed_fused_graphs" not in eager[k]
        assert graph[k]["lr_final"] == eager[k]["lr_final"] and math.isfinite(graph[k]["task_loss"])
        assert graph[k]["task_loss"] == pytest.approx(eager[k]["task_loss"], rel=1e-3)
        a, b = _state(eager_l[k]), _state(graph_l[k])
        for key in a:
            if a[key].is_floating_point():
                torch.testing.assert_close(b[key], a[key], rtol=1e-3, atol=1e-4, msg=key)


@cuda
def test_iteration_graphs_warm_up_capture_and_replay():
    """IterationGraphs on CUDA: WARMUP eager iterations, then one capture replayed at every later iteration;
    a second variant gets its own warm-up and graph; the sums count every iteration once."""
    from alkit.engine.graph import WARMUP, IterationGraphs

    x = torch.zeros(3, device="cuda")
    sums = StaticSums()

    def iteration(it):
        x.add_(1)
        sums.add(t=x * 2)

    run = IterationGraphs(iteration, sums)
    n = WARMUP + 3
    for it in range(n):
        run(it, "a")
    assert run.captured == 1 and x.tolist() == [float(n)] * 3
    assert sums.read(3)[0][0] == {"t": float(n + 1)}  # the mean of 2, 4, ..., 2n
    for it in range(WARMUP + 1):
        run(it, "b")
    assert run.captured == 2 and x.tolist() == [float(n + WARMUP + 1)] * 3
