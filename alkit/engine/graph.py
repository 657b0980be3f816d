"""The fused engine's whole iteration as one CUDA graph: captured once, replayed every iteration (``fused_graphs``).

28x28 models are launch-bound on a GPU (:mod:`.fused`): stacking K runs into one model cuts the kernels
per model-iteration K-fold, but every fused iteration still launches each of its kernels from Python.
With :attr:`Speed.fused_graphs <.speed.Speed.fused_graphs>` the fused engine captures the iteration --
every step's batch gathers, mode settings, vmapped forward and loss, ``zero_grad``, backward, optimiser
step and loss sums -- as one ``torch.cuda.CUDAGraph`` and replays it: one launch per iteration.

The recipe is PyTorch's "whole network capture" (CUDA semantics, CUDA Graphs): :data:`WARMUP` eager
iterations on a side stream (lazy initialisation: cuBLAS and cuDNN handles, optimiser state, momentum
buffers, the loss sums' tensors), then one capture on that stream, replayed on the current one. The
iteration is a function of static device tensors only (:func:`~.fused.run_fused` builds it so):

* its inputs live at fixed addresses: the batches' indices are copied device to device into preallocated
  (slots, K, rows) buffers before each iteration; the stacked parameters, buffers (BatchNorm statistics,
  updated in place) and per-run numbers are the same tensors throughout; the loss terms are summed in place
  into preallocated tensors (:class:`~.means.StaticSums`), read and reset between iterations;
* nothing inside waits for the host: no ``.item()``, no boolean masks, no CPU-built indices, no
  ``requires_grad_`` toggles (frozen modules see detached parameters);
* its optimisers read the learning rate from a device tensor and sync nothing (:func:`graph_optimizer`):
  SGD ``fused=True`` (torch's foreach SGD turns a tensor lr into a host number, ``alpha=-lr``), Adam
  ``capturable=True`` (step counters on the device; ``fused=True`` with ``fused_optim``); the lr tensor is
  float32 (what the fused kernels read) and :class:`~.phase.LrDrops` refills it in place, outside;
* its noise (dropout, the VAE's reparameterisation, ``vmap(randomness="different")``) comes from the
  default CUDA generator, which a capture registers: each replay advances its philox offset by the whole
  graph's draws (torch's Note [CUDA Graph-safe RNG states]), so every replay draws fresh noise. The
  runs' index generators are used outside the graph only;
* bf16 autocast without its cache of cast weights (``cache_enabled=False``: a cache filled at capture
  would be stale at replay).

What Python decides is fixed at capture: the modules' train/eval mode per step (the same every
iteration) and what a loss reads of the iteration (:attr:`Step.phase_of <.phase.Step.phase_of>`, e.g.
TA-VAAL's taps detached from ``detach_from`` on). Each distinct ``phase_of`` tuple is a *variant* with
its own warm-up and graph. The numbers are those of the eager iteration but for the optimisers' kernels
(fused SGD, capturable Adam) and the float32 lr: equal in distribution, not bit for bit.
"""
from __future__ import annotations

import warnings
from typing import Callable, Hashable

import torch

from .means import StaticSums
from .phase import Optim, make_optimizer
from .speed import Speed

#: eager iterations of each variant before its capture (PyTorch's whole-network example uses 3)
WARMUP = 3


def graph_optimizer(spec: Optim, params, speed: Speed) -> torch.optim.Optimizer:
    """``spec``'s optimiser in a capturable form (module docstring): its step reads ``group["lr"]``, a float32
    tensor on the parameters' device; ``group["float_lr"]`` keeps the float schedule (:class:`~.phase.LrDrops`)."""
    extra = {"fused": True} if spec.kind == "sgd" else {"capturable": True}
    opt = make_optimizer(Optim(spec.kind, spec.modules, {**spec.kwargs, **extra}, spec.lr_drop_every), params, speed,
                         foreach=True)
    for group in opt.param_groups:
        group["float_lr"] = float(group["lr"])
        group["lr"] = torch.tensor(group["float_lr"], dtype=torch.float32, device=group["params"][0].device)
    return opt


class IterationGraphs:
    """Runs ``iteration(it)`` (a function of static tensors that adds its loss terms to ``sums``) for each
    iteration: per variant, :data:`WARMUP` eager iterations on a side stream, then a capture, replayed at
    that iteration and every later one of the variant. :attr:`captured`: graphs captured so far."""

    def __init__(self, iteration: Callable[[int], None], sums: StaticSums, warmup: int = WARMUP):
        self.iteration, self.sums, self.warmup = iteration, sums, warmup
        self.stream = torch.cuda.Stream()  # warm-up and capture on one stream (cuBLAS handles are per stream)
        self.graphs: dict[Hashable, tuple[torch.cuda.CUDAGraph, dict[str, int]]] = {}
        self.eager: dict[Hashable, int] = {}

    @property
    def captured(self) -> int:
        return len(self.graphs)

    def __call__(self, it: int, variant: Hashable = None) -> None:
        if variant in self.graphs:
            graph, counts = self.graphs[variant]
            graph.replay()
            self.sums.repeat(counts)
            return
        current = torch.cuda.current_stream()
        self.stream.wait_stream(current)  # the indices and lr written on the current stream come first
        if self.eager.get(variant, 0) < self.warmup:
            with torch.cuda.stream(self.stream), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*capturable=True.*")  # Adam's note on an eager step
                self.iteration(it)
            current.wait_stream(self.stream)
            self.eager[variant] = self.eager.get(variant, 0) + 1
            return
        counts, keys = dict(self.sums.counts), set(self.sums.sums)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.stream):
            self.iteration(it)  # recorded, not run
        if set(self.sums.sums) != keys:
            raise RuntimeError("a loss term first appeared during CUDA-graph capture (its sum would be reset at "
                               "every replay); the warm-up iterations must add every term")
        per_iteration = {k: n - counts.get(k, 0) for k, n in self.sums.counts.items() if n != counts.get(k, 0)}
        self.sums.counts = counts  # the capture ran nothing: the replay below counts
        self.graphs[variant] = (graph, per_iteration)
        graph.replay()
        self.sums.repeat(per_iteration)
