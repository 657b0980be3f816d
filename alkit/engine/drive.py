"""A learner's ``fit`` as a sequence of phases, driven alone or in lockstep with K other runs.

A learner writes ``fit_phases(data, seed)`` as a generator: it builds its modules (seeded exactly as
before), ``result = yield phase`` hands a :class:`~.phase.Phase` to the engine and gets its
:class:`~.phase.PhaseResult` back, and it ``return``\\ s the cycle's metrics. :func:`drive` runs the
phases one by one (:func:`~.single.run_phase`); :func:`drive_fused` advances K such generators
together and trains each round of phases as one stacked model (:func:`~.fused.run_fused`): the code
between phases (seeding, building the next model, held-out scores) runs per run, unchanged.

A run that asked for ``fused_graphs`` (its metrics carry ``speed_fused_graphs``) is told what happened:
true where some phase of it replayed CUDA graphs (:attr:`~.phase.PhaseResult.graphs`), false otherwise
(:func:`drive`'s unfused engine never captures; see :mod:`.speed`).
"""
from __future__ import annotations

from typing import Callable, Generator

from .fused import run_fused, signature
from .phase import Phase, PhaseResult
from .single import run_phase

FitPhases = Generator[Phase, PhaseResult, dict]


def drive(gen: FitPhases, progress: bool = False, probe: Callable | None = None) -> dict:
    """Run every phase of ``gen`` alone; returns its metrics. ``probe``: see :attr:`Phase.probe`; what it
    says of a validated phase's final state joins the metrics (the last validated phase's, where several)."""
    final: dict = {}
    try:
        phase = next(gen)
        while True:
            _arm(phase, probe)
            result = run_phase(phase, progress)
            final.update(result.final)
            phase = gen.send(result)
    except StopIteration as stop:
        return _graphed({**stop.value, **final}, False)


def _graphed(metrics: dict, replayed: bool) -> dict:
    """``metrics`` with ``speed_fused_graphs`` (present only where the option was asked for) set to what happened."""
    if "speed_fused_graphs" in metrics:
        metrics["speed_fused_graphs"] = replayed
    return metrics


def _arm(phase: Phase, probe: Callable | None) -> None:
    if probe is not None and phase.validation is not None:
        phase.probe = probe


def drive_fused(gens: list[FitPhases], progress: bool = False, randomness: str = "different",
                noise_seed: int | None = None, probes: list[Callable | None] | None = None) -> list[dict | Exception]:
    """Run K fit generators in lockstep; each round's phases of one :func:`~.fused.signature` train as one
    stacked model (phases of another shape, e.g. a run whose labelled set is smaller than a batch, train
    in their own group). Returns each run's metrics (with ``fused_k``: the runs its phases trained with,
    the largest over its phases; and what its ``probes[k]`` said of its final states, as :func:`drive`), or the
    exception that ended that run alone; a
    :class:`~.timebox.CycleAbandoned` ends them all (the caller writes nothing of the cycle). A group of one
    trains with :func:`~.single.run_phase`, or with :func:`~.fused.run_fused` (K = 1) where its phase asks for
    ``fused_graphs`` (the whole-iteration CUDA graph is the fused engine's)."""
    K = len(gens)
    out: list[dict | Exception | None] = [None] * K
    current: dict[int, Phase] = {}
    fused_k = [1] * K
    graphed = [False] * K
    final: list[dict] = [{} for _ in range(K)]

    def advance(k: int, value=None, error: Exception | None = None) -> None:
        try:
            current[k] = gens[k].throw(error) if error is not None else (
                next(gens[k]) if value is None else gens[k].send(value))
            _arm(current[k], None if probes is None else probes[k])
        except StopIteration as stop:
            current.pop(k, None)
            out[k] = _graphed({**stop.value, **final[k], "fused_k": fused_k[k]}, graphed[k])
        except Exception as exc:  # noqa: BLE001  (this run's own failure; the others go on)
            current.pop(k, None)
            out[k] = exc

    for k in range(K):
        advance(k)
    round_ = 0
    while current:
        groups: dict[tuple, list[int]] = {}
        for k, ph in current.items():
            groups.setdefault(signature(ph), []).append(k)
        for members in groups.values():
            seed = None if noise_seed is None else noise_seed + 7919 * round_ + members[0]
            alone = len(members) == 1 and not current[members[0]].speed.fused_graphs
            results = [run_phase(current[members[0]], progress)] if alone \
                else run_fused([current[k] for k in members], progress, randomness, seed)
            for k, res in zip(members, results):
                fused_k[k] = max(fused_k[k], len(members))
                if isinstance(res, PhaseResult):
                    graphed[k] = graphed[k] or res.graphs > 0
                if isinstance(res, Exception):
                    advance(k, error=res)
                else:
                    final[k].update(res.final)
                    advance(k, value=res)
        round_ += 1
    return out
