"""The engine for one run: the iterations of a :class:`~.phase.Phase`, as VAAL's solver runs them."""
from __future__ import annotations

import copy
import functools

import torch

from ..progress import progress_bar
from ..train import accuracy
from .batches import generator, tensor_batches
from .means import RunningMeans
from .phase import LrDrops, Phase, PhaseResult, make_optimizer
from .timebox import Watch


def _scored(phase: Phase) -> torch.nn.Module:
    v = phase.validation
    m = phase.modules[v.module]
    return getattr(m, v.attr) if v.attr else m


def run_phase(phase: Phase, progress: bool = False) -> PhaseResult:
    """Train ``phase`` in place; its modules end in eval mode, in their best validated state where the
    phase validates (else their final state). Steps run through :meth:`Speed.step` (autocast, compilation)."""
    mods, speed = phase.modules, phase.speed
    opts = {k: make_optimizer(o, [p for m in o.modules for p in mods[m].parameters()], speed)
            for k, o in phase.optimizers.items()}
    drops = [LrDrops(opts[k], o.lr_drop_every, phase.iterations) for k, o in phase.optimizers.items()
             if o.lr_drop_every]
    source = phase.batch_source or tensor_batches
    xl_all, yl_all, wl_all = phase.labelled
    lab = source(xl_all, yl_all, phase.batch_size, generator(phase.seed_labelled, phase.device))
    unl = wu_all = None
    if phase.unlabelled is not None:
        xu_all, wu_all = phase.unlabelled
        unl = source(xu_all, None, phase.batch_size, generator(phase.seed_unlabelled, phase.device))
    compiled = speed.compile != "off"
    plain = {s.name: speed.step(s.loss) for s in phase.steps} if not compiled else {}
    graphs: dict = {}

    def call(step, batch, it):
        if not compiled:
            return plain[step.name](batch, phase.hp, it)
        key = (step.name, step.phase_of(it) if step.phase_of else None)  # one compiled step per phase of the loss
        if key not in graphs:
            graphs[key] = speed.step(functools.partial(step.loss, hp=phase.hp, iteration=it))
        return graphs[key](batch)

    def draw(kind):
        il, xl, yl = next(lab)
        batch = {"xl": xl, "yl": yl, "wl": None if wl_all is None else wl_all[il]}
        if kind == "both":
            iu, xu, _ = next(unl)
            batch.update(xu=xu, wu=None if wu_all is None else wu_all[iu])
        return batch

    val = phase.validation
    best_acc, best_state, best_it, since, checks = -1.0, None, -1, 0, 0
    means, last = RunningMeans(), {}
    bar = progress_bar(range(phase.iterations), desc=phase.name, leave=False, disable=not progress, mininterval=1.0)
    watch = Watch(phase.iterations, phase.watch or phase.name)  # gives the cycle up when it cannot end in the time box
    batch, it = None, -1
    for it in bar:
        for d in drops:
            d.before(it)
        for step in phase.steps:
            for r in range(step.times):
                if step.draw != "reuse" or r > 0:
                    batch = draw("both" if step.draw == "reuse" else step.draw)
                for m in step.train:
                    mods[m].train()
                for m in step.eval:
                    mods[m].eval()
                for m in step.frozen:
                    mods[m].requires_grad_(False)
                loss, terms = call(step, batch, it)
                opt = opts[step.optimizer]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                for m in step.frozen:
                    mods[m].requires_grad_(True)
                means.add(**terms)
        if phase.validates_at(it, phase.iterations):
            checks += 1
            last = means.means(f"{phase.name} iteration {it}")
            means = RunningMeans()
            if val is not None:
                acc = accuracy(_scored(phase), phase.x_val, phase.y_val)
                if val.last_key:
                    last[val.last_key] = acc
                if acc > best_acc:
                    best_acc, best_it, since = acc, it, 0
                    best_state = [copy.deepcopy(mods[m].state_dict()) for m in val.keep]
                else:
                    since += 1
                bar.set_postfix(val=f"{acc:.3f}")
                if val.patience is not None and since >= val.patience:
                    break
        watch.tick(it)
    for m in mods.values():  # eval mode for the probe and after (load_state_dict keeps the mode)
        m.eval()
    final = dict(phase.probe(_scored(phase))) if val is not None and phase.probe is not None else {}
    if best_state is not None:
        for m, state in zip(val.keep, best_state):
            mods[m].load_state_dict(state)
    return PhaseResult(last=last, iterations=it + 1, val_checks=checks, best_acc=best_acc, best_iteration=best_it,
                       lr={k: o.param_groups[0]["lr"] for k, o in opts.items()}, final=final)
