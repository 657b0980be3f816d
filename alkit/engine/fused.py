"""The engine for K runs at once: their models stacked into one, trained in lockstep (horizontal fusion).

28x28 models are launch-bound on a GPU: one VAAL iteration is ~115 small kernels whatever the batch,
so one run uses a sliver of the device and processes stop helping at 4 (H200,
``benchmarks/results/bench_gpu_h200.json``). HFTA (Wang et al., MLSys 2021) trains many models of one
shape as one: here every parameter and buffer of the K runs' modules is stacked along a new first
dimension, and each step is ``torch.vmap`` over that dimension of ``functional_call`` on the first
run's modules (the *template*, whose step closures are the learner's own): one kernel per op for all
K runs. Chosen over hand-grouped ops (``groups=K`` convs, ``BatchNorm2d(K*c)``): it fuses every
learner's model as it is written, and measured within a few ops per iteration of grouped ops
(``benchmarks/bench_gpu.py``, ops per model-iteration).

What each run keeps of its own:

* its batches: each run's indices come from its own generators, in the order its unfused phase draws
  them (:class:`~.batches.IndexBlocks`), gathered for all runs with one index per tensor;
* its numbers: :attr:`Phase.hp` (``adversary_weight``, ``beta``, ``alpha``, ``detach_y``) as (K,)
  tensors, so runs that differ only in a weight share a group (``m2_disc`` is ``m2_vaal`` with
  ``adversary_weight`` 0);
* its BatchNorm statistics (stacked buffers, updated in place under ``vmap``), its optimiser state
  (one optimiser over stacked tensors: element-wise updates, the same numbers as K optimisers),
  its validation accuracy, best state (kept on the device, copied per improving run), early stop
  (a stopped or diverged run is frozen in its best state and reported at its stop) and loss means.

What it does not keep: the noise. Dropout masks and the VAE's reparameterisation noise are drawn for
all K runs at once from torch's global generator (``vmap(randomness="different")``, seeded per group),
so a fused run's noise depends on the group it trained in, and a fused run equals its unfused twin in
distribution, not bit for bit. (``randomness="same"`` draws one mask for all runs, which is how the
tests check a fused step against K unfused ones exactly.) Records say ``fused_k`` and ``fused_group``.

Per iteration no host sync and no Python per run: the host reads the clock (time box) and, at the
schedule's validation points, one (K,) vector of accuracies and the loss means. The iteration itself (all
its steps) is one function of static device tensors: before it, the host copies each draw's (K, rows)
indices into preallocated index buffers (device to device) and applies the lr schedule; inside it, the
steps gather their batches from those buffers, train, and add their loss terms in place into
preallocated sums (:class:`~.means.StaticSums`), read and reset at validation points. Run eagerly it
computes exactly what the former per-step loop computed (``tests/test_fused_static.py``); with
``fused_graphs`` (CUDA) it is captured once as a CUDA graph and replayed (:mod:`.graph`).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from ..progress import progress_bar
from ..train import inference_chunk
from .batches import IndexBlocks, generator
from .graph import IterationGraphs, graph_optimizer
from .means import StaticSums
from .phase import LrDrops, Phase, PhaseResult, Step, lr_value, make_optimizer
from .speed import require_cuda
from .timebox import Watch


class _Bundle(nn.Module):
    """The template's modules under one root, so one ``functional_call`` swaps all their tensors."""

    def __init__(self, modules: dict[str, nn.Module]):
        super().__init__()
        for k, m in modules.items():
            self.add_module(k, m)

    def forward(self, batch, hp, fn, it):
        return fn(batch, hp, it)


def signature(phase: Phase) -> tuple:
    """What K phases must share to be fused: module tensors' names and shapes, steps, optimisers,
    iterations, batch rows, validation points, speed options, the per-run number names."""
    mods = tuple((n, tuple((k, tuple(v.shape), v.dtype) for k, v in _tensors(m).items()))
                 for n, m in phase.modules.items())
    steps = tuple((s.name, s.optimizer, s.draw, s.times, s.train, s.eval, s.frozen) for s in phase.steps)
    opts = tuple((k, o.kind, o.modules, tuple(sorted(o.kwargs.items())), o.lr_drop_every)
                 for k, o in phase.optimizers.items())
    rows = (min(len(phase.labelled[0]), phase.batch_size),
            None if phase.unlabelled is None else min(len(phase.unlabelled[0]), phase.batch_size))
    v = phase.validation
    val = None if v is None else (v.module, v.attr, v.keep, v.patience, v.last_key, tuple(phase.x_val.shape))
    checks = tuple(i for i in range(phase.iterations) if phase.validates_at(i, phase.iterations))
    return (mods, steps, opts, phase.iterations, phase.batch_size, rows, val, checks, phase.speed,
            tuple(sorted(phase.hp)), tuple(sorted(phase.static)), phase.device.type,
            phase.labelled[2] is None, phase.unlabelled is None or phase.unlabelled[1] is None)


def _tensors(m: nn.Module) -> dict[str, torch.Tensor]:
    return {**dict(m.named_parameters()), **dict(m.named_buffers())}


def _scored(phase: Phase) -> tuple[nn.Module, str]:
    v = phase.validation
    m = phase.modules[v.module]
    return (getattr(m, v.attr) if v.attr else m), v.module + "." + (v.attr + "." if v.attr else "")


def draw_plan(steps: list[Step]) -> tuple[list[list[tuple[int, int | None] | None]], int, int]:
    """Where each step's repeats take their batch within one iteration: per step, per repeat, ``(labelled slot,
    unlabelled slot or None)`` of a fresh draw, in the order the steps draw, or None (the last batch again:
    ``draw="reuse"``); and the labelled and unlabelled draws per iteration. The first repeat of an iteration
    cannot reuse (no batch precedes it: the former loop failed there at iteration 0)."""
    plan, n_l, n_u = [], 0, 0
    for step in steps:
        slots = []
        for r in range(step.times):
            if step.draw == "reuse" and r == 0:
                if n_l == 0:
                    raise ValueError(f"step {step.name!r} reuses the last batch, but no step draws one before it")
                slots.append(None)
                continue
            both = step.draw in ("both", "reuse")
            slots.append((n_l, n_u if both else None))
            n_l, n_u = n_l + 1, n_u + both
        plan.append(slots)
    return plan, n_l, n_u


def _stack_sets(parts: list[torch.Tensor | None]):
    """Concatenate K runs' sets; returns (all, (K, 1) offsets)."""
    if parts[0] is None:
        return None, None
    sizes = torch.tensor([0] + [len(p) for p in parts[:-1]], device=parts[0].device).cumsum(0)
    return torch.cat(parts), sizes.view(-1, 1)


def run_fused(phases: list[Phase], progress: bool = False, randomness: str = "different",
              noise_seed: int | None = None, block: int = 256) -> list[PhaseResult | Exception]:
    """Train the K ``phases`` (one per run, same :func:`signature`) as one stacked model, then write each
    run's trained state back into its own modules (eval mode, best validated state where the phase
    validates), exactly where :func:`~.single.run_phase` leaves them. Returns each run's
    :class:`PhaseResult`, or the exception that stopped that run alone (non-finite losses).
    ``noise_seed`` seeds torch's global generator first (the group's dropout and sampling noise)."""
    K, t = len(phases), phases[0]
    sig = signature(t)
    for ph in phases[1:]:
        if signature(ph) != sig:
            raise ValueError(f"{ph.name}: a phase of another shape, schedule or step layout cannot join this fused group")
    if noise_seed is not None:
        torch.manual_seed(int(noise_seed) % (2**63))
    device, speed = t.device, t.speed
    graphs = speed.fused_graphs
    if graphs:
        require_cuda(device)
    trainable = {m for o in t.optimizers.values() for m in o.modules}
    params, buffers = {}, {}
    for name, mod in t.modules.items():
        own_p = [dict(ph.modules[name].named_parameters()) for ph in phases]  # each run's tensors, named once
        own_b = [dict(ph.modules[name].named_buffers()) for ph in phases]
        for key, _ in mod.named_parameters():
            params[f"{name}.{key}"] = torch.stack([p[key].detach() for p in own_p]).requires_grad_(name in trainable)
        for key, _ in mod.named_buffers():
            buffers[f"{name}.{key}"] = torch.stack([b[key] for b in own_b])
    # multi-tensor (foreach) optimisers: one kernel per update op for all tensors (same arithmetic per element);
    # under CUDA graphs capturable ones with a tensor lr (graph.graph_optimizer)
    def optimizer(o, tensors):
        return graph_optimizer(o, tensors, speed) if graphs else make_optimizer(o, tensors, speed, foreach=True)

    opt_params = {k: [params[f"{m}.{key}"] for m in o.modules for key, _ in t.modules[m].named_parameters()]
                  for k, o in t.optimizers.items()}
    opts = {k: optimizer(o, opt_params[k]) for k, o in t.optimizers.items()}
    ones: dict[torch.dtype, torch.Tensor] = {}  # (K,) ones: the gradient of the runs' summed loss, made once per dtype
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

    plan, n_lab, n_unl = draw_plan(t.steps)
    # the iteration's indices, (draws, K, rows): written before each iteration, read by its gathers
    lab_idx = torch.empty((n_lab, K, lab.rows), dtype=torch.long, device=device)
    unl_idx = None if unl is None else torch.empty((n_unl, K, unl.rows), dtype=torch.long, device=device)

    def load_indices() -> None:
        """Each draw's (K, rows) indices of the coming iteration, in the order the steps draw (device to device)."""
        for j in range(n_lab):
            lab_idx[j].copy_(lab.next())
        for j in range(n_unl):
            unl_idx[j].copy_(unl.next())

    def gather(j, u):
        il = lab_idx[j] + l_off  # (K, rows) rows of the concatenated sets
        batch = {"xl": xl_all[il], "yl": yl_all[il], "wl": None if wl_all is None else wl_all[il]}
        if u is not None:
            iu = unl_idx[u] + u_off
            batch.update(xu=xu_all[iu], wu=None if wu_all is None else wu_all[iu])
        return batch

    bundle = _Bundle(t.modules)

    def vmapped(fn, it, batch):
        def one(p, b, h, bufs):
            return functional_call(bundle, (p, bufs), (b, h), {"fn": fn, "it": it})

        dims = {k: (None if v is None else 0) for k, v in batch.items()}  # absent weights stay None
        return torch.vmap(one, in_dims=(0, dims, 0, 0), randomness=randomness)

    val = t.validation
    if val is not None:
        scored, prefix = _scored(t)
        shared_val = all(ph.x_val is t.x_val and ph.y_val is t.y_val for ph in phases)
        x_val = t.x_val if shared_val else torch.stack([ph.x_val for ph in phases])
        y_val = t.y_val if shared_val else torch.stack([ph.y_val for ph in phases])
        keep = [k for k in (*params, *buffers) if k.split(".", 1)[0] in val.keep]
    best_acc, best_it, since, checks = [-1.0] * K, [-1] * K, [0] * K, 0
    best: dict[str, torch.Tensor] | None = None
    stopped: dict[int, dict[str, torch.Tensor]] = {}  # an early-stopped run's kept tensors at its stop (its final state)
    active = [True] * K
    out: list[PhaseResult | Exception | None] = [None] * K
    lasts: list[dict] = [{} for _ in range(K)]
    sums = StaticSums()

    def iteration(it: int) -> None:
        """Every step of iteration ``it``, from the static tensors only (no host sync: a CUDA graph can capture it)."""
        batch = None
        for step, slots in zip(t.steps, plan):
            for slot in slots:
                if slot is not None:
                    batch = gather(*slot)
                for m in step.train:
                    t.modules[m].train()
                for m in step.eval:
                    t.modules[m].eval()
                with speed.autocast(cache=not graphs):
                    loss, terms = vmapped(step.loss, it, batch)(step_params[step.name], batch, hp, buffers)  # (K,), {term: (K,)}
                # runs are independent: each slice gets its own run's gradient. autograd.grad of the optimiser's
                # own tensors, not backward(): no AccumulateGrad per tensor (detach, layout copies) and no
                # gradients of other optimisers' tensors, which their own steps would discard (zero_grad first)
                own = opt_params[step.optimizer]
                if loss.dtype not in ones:  # in the first (eager) iteration, never inside a graph capture
                    ones[loss.dtype] = torch.ones_like(loss)
                for p, g in zip(own, torch.autograd.grad(loss, own, ones[loss.dtype], allow_unused=True)):
                    p.grad = g
                opts[step.optimizer].step()
                sums.add(**terms)

    def variant(it: int) -> tuple:
        """What the steps' losses read of iteration ``it`` (Step.phase_of): one CUDA graph per distinct value."""
        return tuple(s.phase_of(it) if s.phase_of else None for s in t.steps)

    run = IterationGraphs(iteration, sums) if graphs else None
    bar = progress_bar(range(t.iterations), desc=f"{t.name} x{K}", leave=False, disable=not progress, mininterval=1.0)
    watch = Watch(t.iterations, f"{t.watch or t.name} (fused x{K})")
    it = -1
    try:
        for it in bar:
            for d in drops:
                d.before(it)
            load_indices()
            if run is None:
                iteration(it)
            else:
                run(it, variant(it))
            if t.validates_at(it, t.iterations):
                checks += 1
                per_run = sums.read(K)
                accs = _accuracies(scored, prefix, params, buffers, x_val, y_val, shared_val) if val else None
                improved = []
                for k in range(K):
                    if not active[k]:
                        continue
                    last, bad = per_run[k]
                    if bad:
                        out[k] = FloatingPointError(f"{phases[k].name} iteration {it}: non-finite {', '.join(bad)} "
                                                    f"({last}); lower the learning rates")
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
    captured = 0 if run is None else run.captured
    for k, ph in enumerate(phases):
        if out[k] is None:
            out[k] = _result(lasts[k], it + 1, checks, best_acc[k], best_it[k], opts, K)
        if isinstance(out[k], PhaseResult):
            out[k].graphs = captured
        if val is not None and ph.probe is not None and isinstance(out[k], PhaseResult):
            _load(ph, last_state, k, stopped.get(k, {}))  # the run's final state: its last iteration or its stop
            out[k].final = dict(ph.probe(_scored(ph)[0]))
        _load(ph, final, k)
    return out


def _load(ph: Phase, state: dict[str, torch.Tensor], k: int, own: dict[str, torch.Tensor] | None = None) -> None:
    """Run ``k``'s slice of the stacked ``state`` (``own``: tensors of that run alone, taken first) into
    ``ph``'s modules, which end in eval mode."""
    own = own or {}
    with torch.no_grad():
        for name, mod in ph.modules.items():
            for key, t in (*mod.named_parameters(), *mod.named_buffers()):
                full = f"{name}.{key}"
                t.copy_(own[full] if full in own else state[full][k])
    for m in ph.modules.values():
        m.eval()


def _result(last, iterations, checks, best_acc, best_it, opts, K) -> PhaseResult:
    return PhaseResult(last=dict(last), iterations=iterations, val_checks=checks, best_acc=best_acc,
                       best_iteration=best_it, lr={k: lr_value(o.param_groups[0]) for k, o in opts.items()}, fused=K)


@torch.no_grad()
def _accuracies(module, prefix, params, buffers, x_val, y_val, shared) -> list[float]:
    """Validation accuracy of every run's ``module`` (eval mode), as :func:`alkit.train.accuracy` computes it."""
    state = {k[len(prefix):]: v.detach() for k, v in {**params, **buffers}.items() if k.startswith(prefix)}
    modes = [m.training for m in module.modules()]
    module.eval()
    n = x_val.shape[0] if shared else x_val.shape[1]
    chunk = inference_chunk(x_val)
    correct = None
    fn = torch.vmap(lambda s, x: functional_call(module, s, (x,)), in_dims=(0, None if shared else 0))
    for i in range(0, n, chunk):
        xb = x_val[i : i + chunk] if shared else x_val[:, i : i + chunk]
        yb = y_val[i : i + chunk] if shared else y_val[:, i : i + chunk]
        hits = (fn(state, xb).argmax(-1) == yb).sum(-1)  # (K,)
        correct = hits if correct is None else correct + hits
    for m, was in zip(module.modules(), modes):
        m.train(was)
    return [c / max(n, 1) for c in correct.tolist()]
