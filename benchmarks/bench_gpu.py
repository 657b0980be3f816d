"""Milliseconds per training iteration of every learner, three ways, alone and N at a time; what the paper profile costs.

    .venv/bin/python benchmarks/bench_gpu.py --device cuda --out bench_gpu_h100.json
    .venv/bin/python benchmarks/bench_gpu.py --device cpu --tiny --out /tmp/bench_gpu_cpu.json   # test sizes
    (tests/test_benchmarks.py runs test sizes with --task-size tiny and a reduced fused grid: BENCH_ARGS there)

An *iteration* is one of the ``iterations_per_cycle`` (8,593 in the paper profile) of a learner's
cycle: ``classifier`` one task-model SGD step; ``vaal`` one task step + 2 VAE steps + 1
discriminator step; ``tavaal`` one task(+loss-predictor) step + 1 VAE step + 1 discriminator step;
``m2`` 2 M2 steps; ``m2_vaal`` 2 M2 steps (with the adversarial term) + 1 discriminator step;
``m2_large`` is ``m2`` with the ~3M-parameter classifier that notebook 05 uses. Batches of 128
labelled + 128 unlabelled images (28x28), 1,000 labelled points, the 55,000-image pool.

Everything timed is alkit's own code: each measurement is ``learner.fit`` of a fresh learner (as
every cycle builds one) with ``iterations`` set. Pipelines:

- ``reference``: the learner's loops fed the way the official VAAL code feeds data (sinhasam/vaal
  ``main.py``, ``solver.py``, ``custom_datasets.py``): a ``Dataset`` whose ``__getitem__`` turns
  one uint8 image into a float tensor (torchvision ``ToTensor``) and returns ``(image, label, index)``,
  a ``DataLoader`` with a random sampler, batch 128, ``drop_last=True`` for labelled and ``False``
  for unlabelled batches, ``num_workers=0`` (the default the official code keeps), re-iterated
  forever, each batch moved to the device (``.cuda()``). The speed options are off. (alkit's
  loops draw the task model's labelled batches separately, one labelled batch per iteration more
  than VAAL's solver, which reuses its first; the reference pays that batch too.)
- ``default``: alkit's on-device tensor batches, every speed option off (today's records).
- ``fast``: alkit's batches with the speed options of ``--fast`` (on a GPU by default
  ``compile=reduce-overhead`` (CUDA graphs), ``bf16``, ``channels_last``, ``fused_optim``;
  on CPU the same without compilation, which takes tens of seconds per graph there).
- with ``--ablate`` also each option alone (``compile``, ``bf16``, ``channels_last``, ``fused_optim``),
  which is what :data:`alkit.engine.speed.GPU_DEFAULTS` should be filled from.

Timing (``torch.cuda.synchronize`` around every fit): fit 1 of ``W`` iterations (cold: compilation,
cuDNN and allocator warm-up), fit 2 of ``W`` (warm), fit 3 of ``W + N``; ms per iteration =
(t3 - t2) / N, so fixed costs (model building, the validations at the first and last iteration,
held-out scores) are excluded; they are reported as ``fixed_s`` (t2 - W x per-iteration), and the
cold start as ``first_fit_extra_s`` (t1 - t2, mostly compilation). Where noise swamps t3 - t2 (``--tiny``
runs of a few iterations) the rate is t3 / (W + N), fixed costs included (``fixed_excluded: false``, a ``*``). ``graphs_fresh_fit`` counts
graphs compiled again for fit 2's fresh learner (each cycle builds one). ``val_acc`` of fit 3
(same seed everywhere) is a glance at the options' accuracy; ``--accuracy-iters K`` trains every
learner K iterations per pipeline and seed (``--accuracy-seeds``) and compares the best validation
accuracies: the short accuracy check to pass before an option goes into ``GPU_DEFAULTS``.

Concurrency: N = 1, 2, 4, 8, 12 spawned processes, each loading the data and training the same
learner: a warm-up fit, a barrier, a timed fit of ``--concurrent-iters`` iterations; aggregate
iterations/s = N x iterations / (last end - first start). Projection: for each experiment of
``params/paper/*.yaml``, arms x seeds x (cycles + 1) trainings of ``iterations_per_cycle``
iterations with the learner of the arm, at the best aggregate rate measured for that learner
(single-process rate where no concurrency was measured); ``m2_disc`` is costed at ``m2_vaal``'s
rate (same models and steps, without the adversarial term). Training only: evaluation, selection
and figures are not counted. Printed for every run and for distinct configurations only (04's
``m2_vaal`` and ``m2_random`` arms repeat 03's, which ``alkit run`` trains once).

Fused runs (issue 25; ``--fuse-learners``, default ``classifier, vaal, tavaal, m2_vaal, m2_large``):

- *rates*: K fresh learners (seeds 0..K-1) on the bench's data, their ``fit_phases`` generators driven
  by :func:`alkit.engine.drive_fused` (one stacked model per phase), timed as above (three fits, t3 - t2);
  aggregate iterations/s = K / (seconds per fused iteration), for K in ``--fuse-k`` (1, 3, 9, 27) and each
  of ``--fuse-options``: ``off``, ``bf16``, ``fused_optim``, ``graphs`` (``fused_graphs``: each fused
  iteration captured once as one CUDA graph and replayed, ``alkit/engine/graph.py``; CUDA only), ``all``
  (every option; on CUDA with ``graphs``) and ``all_eager`` (``all`` without ``graphs``; CUDA only, the
  same as ``all`` elsewhere). Off CUDA ``graphs`` and ``all_eager`` are reported as not applicable
  (``fuse_options_not_applicable``), not measured. ``compile`` is not one: the fused engine never
  compiles; ``channels_last`` is no layout of its own, in ``all`` only; K = 1 is ``drive_fused``'s group
  of one, i.e. ``run_phase``, but with ``graphs`` the fused engine at K = 1. With ``graphs`` the warm-up
  fits run at least ``graph.WARMUP + 1`` iterations, so that t3 - t2 times replayed iterations only.
  Compared with *today's best*: the default pipeline
  with 4 processes (``--jobs 4``) where measured (here or in ``--baseline``), else the best N, else 1 process.
- *FLOPs* of one unfused model-iteration (``torch.utils.flop_counter.FlopCounterMode``, forward + backward
  of every step: matmuls and convolutions only), counted in one fit of 2 + ``--ops-iters`` iterations
  between the end of its iteration 0 and of its iteration ``--ops-iters`` (``Watch.tick``), where it only
  trains: building, validations, best-state copies and held-out scores fall outside; never on the fused
  model (it over-counts batched weight gradients). Achieved TFLOP/s = FLOPs x aggregate it/s, and its
  share of the device's dense bf16 peak (:data:`PEAK_BF16_TFLOPS`; null where unknown, e.g. a CPU).
- *dispatched ops* per model-iteration under a ``TorchDispatchMode``, counted the same way: every op (views
  and ``detach`` included) and the non-view aten ops (what can launch a kernel), unfused vs fused at each
  ``--ops-k`` divided by K, for the fused learners and ``--ops-learners``. Hardware-independent but for
  the optimisers: on CPU torch's SGD / Adam loop over parameters, on CUDA they default to ``foreach`` kernels.
- *accuracy* (with ``--accuracy-iters``): the best validation accuracy of the seeds trained unfused and
  as one fused group, paired by seed; the mean difference against its 95 % half-width (the smallest
  difference these seeds can detect).
- *projection* ``best``: the paper profile at the best measured rate per learner, fused (K no larger than
  the profile's distinct runs of that learner) or not.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alkit.config import from_dict, to_dict  # noqa: E402
from alkit.data import load_dataset  # noqa: E402
from alkit.learners import LEARNERS, TrainData  # noqa: E402
from alkit.engine.speed import FLAGS  # noqa: E402
from alkit.engine.timebox import Watch  # noqa: E402
from alkit.jobs import FUSE_MAX  # noqa: E402  (alkit run --fuse-max's default: runs per fused group at most)

#: benchmark name -> (learner, parameter overrides of the paper profile's defaults)
BENCH = {
    "classifier": ("classifier", {}),
    "vaal": ("vaal", {}),
    "tavaal": ("tavaal", {}),
    "m2": ("m2", {}),
    "m2_vaal": ("m2_vaal", {}),
    "m2_large": ("m2", {"classifier_size": "large"}),
}
OPTIONS_OFF = {"compile": "off", **{f: False for f in FLAGS}}
POOL = 55_000


def bench_params(key: str, tiny: bool | str) -> dict:
    """Learner parameters of benchmark ``key``: the paper profile's (the learners' defaults) or, tiny, test-sized.

    ``tiny`` is False (paper sizes) or the task CNN's size at test sizes (``--task-size``): by default the study's
    small CNN, so the committed tiny numbers time the study's model; the tests pass "tiny" (the test_params' own
    CNN, the same layers narrower: the same ops per iteration, a fraction of the CPU time)."""
    learner, extra = BENCH[key]
    size = {"size" if learner == "classifier" else "classifier_size": tiny if isinstance(tiny, str) else "small"}
    base = {**LEARNERS[learner].test_params, "val_every": 1000, **size} if tiny else {}
    return {**base, **extra}


# ------------------------------------------------------------------------------------ data


class RawImages(Dataset):
    """The official code's dataset shape: ``(ToTensor(image), label, index)`` per item from uint8 arrays."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels  # (N, 28, 28) uint8, (N,) int64

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        img = torch.from_numpy(np.array(self.images[i], dtype=np.uint8, copy=True))  # (28, 28) uint8
        return img.unsqueeze(0).float().div(255), int(self.labels[i]), i  # torchvision ToTensor: (1, 28, 28)


def loader_batches(x: torch.Tensor, y: torch.Tensor | None, batch_size: int, gen: torch.Generator):
    """A :func:`alkit.train.tensor_batches` stand-in fed like the official VAAL code (module docstring).

    The uint8 images are recovered once from ``x`` (= uint8 / 255 exactly); the sampler is seeded from
    ``gen``. Yields ``(idx, x_batch, y_batch)`` on ``x``'s device.
    """
    images = (x.squeeze(1) * 255).round().to(torch.uint8).cpu().numpy()
    labels = y.cpu().numpy() if y is not None else np.zeros(len(images), np.int64)
    seed = int(torch.randint(2**62, (1,), generator=gen, device=gen.device))
    ds = RawImages(images, labels)
    workers = int(os.environ.get("BENCH_REF_WORKERS", "0"))
    loader = DataLoader(ds, batch_size=batch_size, sampler=RandomSampler(ds, generator=torch.Generator().manual_seed(seed)),
                        drop_last=y is not None, num_workers=workers, persistent_workers=workers > 0)
    dev = x.device
    while True:  # VAAL's read_data: re-iterate forever
        for img, lab, idx in loader:
            yield idx.to(dev), img.to(dev), (lab.to(dev) if y is not None else None)


def make_data(device: torch.device, tiny: bool, labelled: int) -> TrainData:
    if tiny:
        d = load_dataset(device=device, pool_size=300, val_size=100, test_size=10)
        labelled = min(labelled, 40)
    else:
        d = load_dataset(device=device)
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(d.x_pool))).to(device)
    lab, unl = perm[:labelled], perm[labelled:]
    return TrainData(x_labelled=d.x_pool[lab], y_labelled=d.y_pool[lab], x_unlabelled=d.x_pool[unl],
                     x_val=d.x_val, y_val=d.y_val, num_classes=10)


# ------------------------------------------------------------------------------------ timing


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(key: str, pipeline: str, options: dict, tiny: bool, iterations: int, device: torch.device):
    """A fresh learner of benchmark ``key`` for ``pipeline`` (the reference swaps its batch source)."""
    learner, _ = BENCH[key]
    cls = LEARNERS[learner]
    p = from_dict(cls.Params, {**bench_params(key, tiny), **options, "iterations": iterations}, where=key)
    if pipeline == "reference":
        cls = type(f"Reference{cls.__name__}", (cls,), {"batch_source": staticmethod(loader_batches)})
    return cls(p, 10, device)


def timed_fit(key, pipeline, options, tiny, iterations, data, device, seed=0) -> tuple[float, dict]:
    learner = build(key, pipeline, options, tiny, iterations, device)
    sync(device)
    t = time.perf_counter()
    metrics = learner.fit(data, seed=seed)
    sync(device)
    return time.perf_counter() - t, metrics


def graphs_compiled() -> int:
    try:
        from torch._dynamo.utils import counters
        return int(counters["stats"]["unique_graphs"])
    except Exception:  # noqa: BLE001 (dynamo unavailable: nothing compiled)
        return 0


def measure(key, pipeline, options, tiny, warmup, iters, data, device) -> dict:
    g0 = graphs_compiled()
    t1, _ = timed_fit(key, pipeline, options, tiny, warmup, data, device)
    g1 = graphs_compiled()
    t2, _ = timed_fit(key, pipeline, options, tiny, warmup, data, device)
    g2 = graphs_compiled()
    t3, m = timed_fit(key, pipeline, options, tiny, warmup + iters, data, device)
    per, fixed_excluded = (t3 - t2) / iters, True
    if per <= 0.1 * t3 / (warmup + iters):  # noise swamped the difference (tiny runs): count fixed costs in
        per, fixed_excluded = t3 / (warmup + iters), False
    return {"ms_per_iteration": 1000 * per, "it_per_s": 1 / per, "fixed_excluded": fixed_excluded,
            "fixed_s": t2 - warmup * per,
            "first_fit_extra_s": t1 - t2, "graphs_first_fit": g1 - g0, "graphs_fresh_fit": g2 - g1,
            "val_acc": m.get("val_acc"), "iterations_timed": iters, "warmup_iterations": warmup,
            "speed": {k: v for k, v in m.items() if k.startswith("speed_")}}


# ------------------------------------------------------------------------------------ concurrency


def _worker(rank, keys, pipelines, fast, tiny, labelled, warmup, iters, device_name, threads, barrier, queue):
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    data = make_data(device, tiny, labelled)
    for pipeline in pipelines:
        options = fast if pipeline == "fast" else OPTIONS_OFF
        for key in keys:
            timed_fit(key, pipeline, options, tiny, warmup, data, device)  # compile, warm caches
            barrier.wait()
            start = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process of the machine
            timed_fit(key, pipeline, options, tiny, iters, data, device, seed=rank)
            queue.put((pipeline, key, rank, start, time.monotonic()))
            barrier.wait()  # nobody starts the next learner while another still times this one


def concurrency(ns, keys, pipelines, fast, args, device, log, out: dict | None = None, save=None) -> dict:
    """{pipeline: {key: {N: {...}}}} aggregate iterations/s of N processes training the same learner.

    Fills ``out`` and calls ``save()`` after each N: a call stopped at the device's time limit keeps the
    process counts it finished (the first H200 run lost N=1 and N=8 that way)."""
    ctx = mp.get_context("spawn")
    out = out if out is not None else {}
    for p in pipelines:
        out.setdefault(p, {k: {} for k in keys})
    for n in ns:
        threads = max(1, (os.cpu_count() or 1) // n)
        barrier, queue = ctx.Barrier(n), ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(r, keys, pipelines, fast, args.tiny, args.labelled, args.warmup,
                                                   args.concurrent_iters, str(device), threads, barrier, queue))
                 for r in range(n)]
        t = time.perf_counter()
        for p in procs:
            p.start()
        rows = []
        try:
            for _ in range(n * len(keys) * len(pipelines)):
                rows.append(queue.get(timeout=args.worker_timeout))
        finally:
            for p in procs:
                p.join(timeout=30)
                if p.is_alive():
                    p.kill()
        for pipeline in pipelines:
            for key in keys:
                mine = [r for r in rows if r[0] == pipeline and r[1] == key]
                wall = max(r[4] for r in mine) - min(r[3] for r in mine)
                per_proc = [args.concurrent_iters / (r[4] - r[3]) for r in mine]
                out[pipeline][key][str(n)] = {
                    "aggregate_it_s": n * args.concurrent_iters / wall, "wall_s": wall,
                    "per_process_it_s": float(np.mean(per_proc)), "threads_per_process": threads,
                }
        log(f"concurrency N={n}: {time.perf_counter() - t:.0f} s")
        if save is not None:
            save()
    return out


# ------------------------------------------------------------------------------------ fused runs

#: learners the fused part measures (issue 25); ``m2`` trains like ``m2_large`` with the small classifier
FUSE_KEYS = ("classifier", "vaal", "tavaal", "m2_vaal", "m2_large")
#: fused speed options: name -> options. ``compile`` is not among them: :func:`alkit.engine.run_fused` never
#: calls ``Speed.step``, so a fused run with ``compile`` set trains eagerly (the option is ignored there);
#: ``channels_last`` is not the fused engine's either: each run's learner puts its weights in NHWC
#: (``Speed.prepare``) and ``torch.stack`` keeps those strides, but the stacked images stay NCHW and vmap's
#: conv rule reshapes both; kept in ``all`` so that ``all`` is the fast pipeline's set without compilation.
#: ``graphs`` (``fused_graphs``: the whole fused iteration as one CUDA graph, alkit/engine/graph.py) is CUDA
#: only: on CUDA ``all`` includes it and ``all_eager`` is ``all`` without it; on another device both
#: ``graphs`` and ``all_eager`` are not applicable (reported, not measured) and ``all`` is ``all_eager``.
FUSE_OPTIONS = {
    "off": {},
    "bf16": {"bf16": True},
    "fused_optim": {"fused_optim": True},
    "graphs": {"fused_graphs": True},
    "all": {"bf16": True, "channels_last": True, "fused_optim": True, "fused_graphs": True},
    "all_eager": {"bf16": True, "channels_last": True, "fused_optim": True},
}
CUDA_ONLY = {"graphs": "CUDA graphs need a CUDA device (fused_graphs is refused elsewhere)",
             "all_eager": "'all' without CUDA graphs: the same as 'all' on a device without them"}
FUSE_NOTES = {
    "compile": "not measured fused: alkit.engine.run_fused never calls Speed.step, so compile is ignored there",
    "channels_last": "no layout of the fused engine's own (the runs' NHWC weights are stacked as they are, "
                     "the images stay NCHW); part of 'all' only",
    "K=1": "drive_fused trains a group of one with run_phase (the unfused engine in this process), but with "
           "fused_graphs (graphs, all on CUDA) with run_fused at K=1, whose iteration the CUDA graph captures",
    "graphs": "fused_graphs: each fused iteration captured once as a CUDA graph and replayed (after "
              "alkit.engine.graph.WARMUP eager iterations per phase; the warm-up fits are made long enough to "
              "capture, so t3 - t2 times replays); its optimisers are fused SGD and capturable Adam",
}


def fuse_options(names: list[str], gpu: bool) -> tuple[dict[str, dict], dict[str, str]]:
    """The ``--fuse-options`` to measure on this device (name -> speed options) and those not applicable here
    (name -> why): :data:`CUDA_ONLY` ones off CUDA, where ``all`` drops ``fused_graphs``."""
    if gpu:
        return {o: FUSE_OPTIONS[o] for o in names}, {}
    run = {o: {k: v for k, v in FUSE_OPTIONS[o].items() if k != "fused_graphs"} for o in names if o not in CUDA_ONLY}
    return run, {o: CUDA_ONLY[o] for o in names if o in CUDA_ONLY}
#: dense bf16 tensor-core peak, TFLOP/s, by a piece of torch.cuda.get_device_name (first match wins);
#: H100 PCIe / NVL (756 / 835) are not H100 SXM: unknown here rather than a wrong 989
PEAK_BF16_TFLOPS = (("H200", 989.0), ("H100 PCIe", None), ("H100 NVL", None), ("H100", 989.0), ("A100", 312.0),
                    ("L4", 121.0))


def peak_bf16_tflops(device_name: str | None) -> float | None:
    for piece, peak in PEAK_BF16_TFLOPS:
        if device_name and piece in device_name:
            return peak
    return None


def fused_fit(key, K, options, tiny, iterations, data, device, noise_seed=0, seeds=None):
    """K fresh learners of ``key`` (seeds 0..K-1 or ``seeds``) trained by :func:`alkit.engine.drive_fused`;
    returns (seconds, [metrics])."""
    from alkit.engine import drive_fused

    seeds = list(range(K)) if seeds is None else list(seeds)
    learners = [build(key, "default", {**OPTIONS_OFF, **options}, tiny, iterations, device) for _ in seeds]
    sync(device)
    t = time.perf_counter()
    out = drive_fused([lr.fit_phases(data, s) for lr, s in zip(learners, seeds)], randomness="different",
                      noise_seed=noise_seed)
    sync(device)
    dt = time.perf_counter() - t
    for o in out:
        if isinstance(o, Exception):
            raise o
    return dt, out


def measure_fused(key, K, options, tiny, warmup, iters, data, device) -> dict:
    """Aggregate iterations/s of K fused runs, timed as :func:`measure` times one run (t3 - t2 method). With
    ``fused_graphs`` the warm-up fits run at least ``graph.WARMUP + 1`` iterations, so that fits 2 and 3 both
    capture their graphs and t3 - t2 is ``iters`` replayed iterations."""
    if options.get("fused_graphs"):
        from alkit.engine.graph import WARMUP

        warmup = max(warmup, WARMUP + 1)
    t1, _ = fused_fit(key, K, options, tiny, warmup, data, device)
    t2, _ = fused_fit(key, K, options, tiny, warmup, data, device)
    t3, ms = fused_fit(key, K, options, tiny, warmup + iters, data, device)
    per, fixed_excluded = (t3 - t2) / iters, True  # seconds per fused iteration (K model-iterations)
    if per <= 0.1 * t3 / (warmup + iters):
        per, fixed_excluded = t3 / (warmup + iters), False
    return {"aggregate_it_s": K / per, "ms_per_fused_iteration": 1000 * per, "fixed_excluded": fixed_excluded,
            "fixed_s": t2 - warmup * per, "first_fit_extra_s": t1 - t2, "fused_k": max(m["fused_k"] for m in ms),
            "val_acc_mean": float(np.mean([m["val_acc"] for m in ms])), "iterations_timed": iters,
            "warmup_iterations": warmup, "options": options}


class OpCounter(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the ops dispatched under it: ``n`` every one (views, ``detach``, profiler marks included),
    ``kernels`` the aten ops that are not views (metadata-only ops launch no kernel on a GPU)."""

    METADATA = {"_unsafe_view", "_reshape_alias"}  # views the schema does not mark as such

    def __init__(self):
        super().__init__()
        self.n = self.kernels = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        if func.namespace == "aten" and not func.is_view and func.__name__.split(".")[0] not in self.METADATA:
            self.kernels += 1
        return func(*args, **(kwargs or {}))


def per_iteration(key, K, tiny, data, device, mode_factory, read, extra: int):
    """``read(mode)`` of one steady model-iteration, from one fit of ``2 + extra`` iterations under ``mode``:
    its count at the end of iteration ``extra`` minus that at the end of iteration 0 (the engine's
    ``Watch.tick``, called once per iteration by both engines), summed over the fit's phases, over ``extra``
    and K. Between those two points the fit neither builds, validates, copies a best state nor scores (it
    validates at iterations 0 and its last): only ``extra`` training iterations. (The former difference of two fits was not that: a fit
    whose last validation improves copies its best state and one whose last does not copies nothing, e.g.
    m2_large unfused, tiny: 377, 1433, 905, 905 ops for fits of 3, 4, 5, 6 iterations.) ``K`` 0: one unfused
    ``learner.fit``; else :func:`alkit.engine.drive_fused` of K runs (the K=1 group is run_phase's)."""
    # Watch -> counts; a Watch per phase (vaal: task model, then VAE + disc). Keyed by the object, which the dict
    # keeps alive: keyed by id(), a finished phase's freed Watch could lend its id to the next phase's, merging
    # the two phases' marks (tavaal unfused under FlopCounterMode: 6 marks for one "phase" of a 3-iteration fit)
    mode, marks = mode_factory(), {}
    tick = Watch.tick

    def marked(self, it):
        marks.setdefault(self, []).append(np.asarray(read(mode), dtype=float))
        tick(self, it)

    Watch.tick = marked
    try:
        with mode:
            if K == 0:
                timed_fit(key, "default", OPTIONS_OFF, tiny, 2 + extra, data, device)
            else:
                fused_fit(key, K, {}, tiny, 2 + extra, data, device)
    finally:
        Watch.tick = tick
    if not marks or any(len(m) != 2 + extra for m in marks.values()):
        raise RuntimeError(f"{key} K={K}: iteration marks per phase {[len(m) for m in marks.values()]} for a fit "
                           f"of {2 + extra} iterations")
    return sum(m[extra] - m[0] for m in marks.values()) / extra / max(K, 1)


def ops_per_iteration(key, ks, tiny, data, device, extra) -> dict:
    """Dispatched ops per model-iteration, unfused and fused at each K, and the ratio fused / unfused; the
    same for the non-view aten ops (``kernels_*``). One count of each fit gives both (:func:`per_iteration`)."""
    def count(K):
        return per_iteration(key, K, tiny, data, device, OpCounter, lambda m: (m.n, m.kernels), extra)

    u = count(0)
    f = {str(k): count(k) for k in ks}
    return {"unfused": float(u[0]), "fused": {k: float(v[0]) for k, v in f.items()},
            "ratio": {k: float(v[0] / u[0]) for k, v in f.items()},
            "kernels_unfused": float(u[1]), "kernels_fused": {k: float(v[1]) for k, v in f.items()},
            "kernels_ratio": {k: float(v[1] / u[1]) for k, v in f.items()}, "iterations_counted": extra}


def flops_per_iteration(key, tiny, data, device, extra=1) -> float:
    """FLOPs of one unfused model-iteration (forward + backward of every step; FlopCounterMode, which counts
    matmuls and convolutions: optimiser steps and element-wise ops are not counted). Not on the fused model:
    flop_counter over-counts batched (grouped) weight gradients."""
    from torch.utils.flop_counter import FlopCounterMode

    return float(per_iteration(key, 0, tiny, data, device, lambda: FlopCounterMode(display=False),
                               lambda m: m.get_total_flops(), extra))


# t_{0.975, df}: the 95 % two-sided quantile of Student's t (no scipy on the device image)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
        20: 2.086, 25: 2.060, 30: 2.042}


def t975(df: int) -> float:
    return T975.get(df) or T975[max(d for d in T975 if d <= df)] if df <= 30 else 1.96


def accuracy_fused(key, seeds, iters, tiny, data, device, unfused=None) -> dict:
    """Best validation accuracy after ``iters`` iterations, unfused (one fit per seed, or ``unfused``
    measured already) vs fused (the seeds' runs as one group of K = len(seeds)), same seeds.

    Paired by seed: mean difference fused - unfused and its 95 % half-width t * sd / sqrt(n) (the
    smallest difference these seeds could detect); within noise when |mean| <= half-width. The
    validation set's resolution (1 / its size) is the floor of any difference."""
    if unfused is None:
        unfused = [timed_fit(key, "default", OPTIONS_OFF, tiny, iters, data, device, seed=s)[1]["val_acc"]
                    for s in seeds]
    _, ms = fused_fit(key, len(seeds), {}, tiny, iters, data, device, noise_seed=12345, seeds=seeds)
    fused = [m["val_acc"] for m in ms]
    d = np.array(fused) - np.array(unfused)
    n = len(seeds)
    half = t975(n - 1) * float(d.std(ddof=1)) / math.sqrt(n) if n > 1 else None
    sd = lambda v: float(np.std(v, ddof=1)) if n > 1 else None
    return {"seeds": list(seeds), "iterations": iters, "unfused": unfused, "fused": fused,
            "unfused_mean": float(np.mean(unfused)), "unfused_sd": sd(unfused),
            "fused_mean": float(np.mean(fused)), "fused_sd": sd(fused),
            "difference_mean": float(d.mean()), "difference_sd": sd(d), "detectable_95": half,
            "val_resolution": 1 / len(data.x_val),
            "within_noise": None if half is None else bool(abs(d.mean()) <= max(half, 1 / len(data.x_val)))}


def today_best(result: dict, key: str) -> tuple[float | None, str]:
    """Today's best unfused rate: the default pipeline with 4 processes (``--jobs 4``) where measured, else
    the best process count measured, else one process."""
    for where, conc in (("", result["concurrency"]),
                        (f"{result['baseline']['file']}: " if "baseline" in result else "",
                         result.get("baseline", {}).get("concurrency", {}))):
        by_n = conc.get("default", {}).get(key, {})
        if "4" in by_n:
            return by_n["4"]["aggregate_it_s"], f"{where}default, 4 processes"
        if by_n:
            n = max(by_n, key=lambda n: by_n[n]["aggregate_it_s"])
            return by_n[n]["aggregate_it_s"], f"{where}default, {n} processes"
    s = result["single"].get(key, {}).get("default")
    return (s["it_per_s"], "default, 1 process") if s else (None, "not measured")


def fusable_runs(rows: list[dict]) -> dict[str, int]:
    """Distinct runs per benchmark key in the profile: the most runs one fused group of that key can hold."""
    runs: dict[str, set] = {}
    for r in rows:
        runs.setdefault(r["key"], set()).add(r["config"])
    return {k: len(v) for k, v in runs.items()}


def best_rates(result: dict, keys, max_runs: dict[str, int]) -> tuple[dict, dict]:
    """The best measured aggregate rate per key, unfused (any pipeline, any process count) or fused (any
    option, K no larger than the profile's runs of that key)."""
    rates, source = {}, {}
    for k in keys:
        cands = [(m["it_per_s"], f"{p}, 1 process") for p, m in result["single"].get(k, {}).items()]
        for p, by_key in result["concurrency"].items():
            cands += [(m["aggregate_it_s"], f"{p}, {n} processes") for n, m in by_key.get(k, {}).items()]
        if "baseline" in result:  # an earlier run's process counts on this device
            for p, by_key in result["baseline"]["concurrency"].items():
                cands += [(m["aggregate_it_s"], f"{result['baseline']['file']}: {p}, {n} processes")
                          for n, m in by_key.get(k, {}).items()]
        for K, by_opt in result["fused"].get(k, {}).items():
            if int(K) <= max_runs.get(k, 0):
                cands += [(m["aggregate_it_s"], f"fused K={K}, {o}") for o, m in by_opt.items()]
        if cands:
            rates[k], source[k] = max(cands)
    return rates, source


# ------------------------------------------------------------------------------------ projection


def bench_key(learner: str, params: dict) -> str:
    if learner == "m2" and params.get("classifier_size") == "large":
        return "m2_large"
    return {"m2_disc": "m2_vaal"}.get(learner, learner)


def paper_trainings(paper_dir: Path) -> list[dict]:
    """One row per training of the paper profile: experiment, arm, seed, cycle, benchmark key, iterations, config.

    Oracle sessions (notebook 06: ``oracle:`` set) are left out: ``alkit run`` and the device kit do not train them."""
    from alkit.experiment import load_experiment

    rows = []
    for path in sorted(paper_dir.glob("*.yaml")):
        exp = load_experiment(path)
        if exp.oracle is not None:
            continue
        for arm in exp.arms:
            for seed in exp.seeds:
                cfg = exp.config(arm, seed)
                cls = LEARNERS[cfg.learner]
                p = from_dict(cls.Params, cfg.learner_params)
                pool = cfg.pool_size or POOL
                config = json.dumps({k: v for k, v in to_dict(cfg).items()}, sort_keys=True)
                for cycle in range(cfg.cycles + 1):
                    n = cfg.initial.n + cycle * cfg.budget
                    rows.append({"experiment": exp.name, "arm": arm, "seed": seed, "cycle": cycle, "config": config,
                                 "key": bench_key(cfg.learner, cfg.learner_params),
                                 "iterations": p.iterations_per_cycle(n, pool - n)})
    return rows


def project(rows: list[dict], rates: dict[str, float]) -> dict:
    """GPU minutes of ``rows`` at ``rates`` (iterations/s per benchmark key), per experiment and in total."""
    def minutes(rs):
        missing = sorted({r["key"] for r in rs if r["key"] not in rates})
        if missing:
            return None, missing
        return sum(r["iterations"] / rates[r["key"]] for r in rs) / 60, []

    distinct, seen = [], set()
    for r in rows:
        if (r["config"], r["cycle"]) not in seen:
            seen.add((r["config"], r["cycle"]))
            distinct.append(r)
    out = {"per_experiment": {}, "rates_it_s": rates}
    for name in sorted({r["experiment"] for r in rows}):
        mine = [r for r in rows if r["experiment"] == name]
        mine_d = [r for r in distinct if r["experiment"] == name]
        m, missing = minutes(mine)
        md, _ = minutes(mine_d)
        out["per_experiment"][name] = {"trainings": len(mine), "iterations": sum(r["iterations"] for r in mine),
                                       "minutes": m, "trainings_distinct": len(mine_d), "minutes_distinct": md,
                                       "learners": sorted({r["key"] for r in mine}), "unmeasured": missing}
    total, missing = minutes(rows)
    total_d, _ = minutes(distinct)
    out.update(trainings=len(rows), trainings_distinct=len(distinct), iterations=sum(r["iterations"] for r in rows),
               minutes=total, minutes_distinct=total_d, unmeasured=missing)
    return out


# ------------------------------------------------------------------------------------ main


def update_projection(result: dict, rows: list[dict], keys, pipelines, max_runs: dict[str, int]) -> None:
    """The projection per pipeline (1 process or the best process count) and at the best measured rate per
    learner, fused or not (``best``), and the throughput table (today's best, fused best, TFLOP/s); from
    whatever is measured so far, so that a run stopped at the device's time limit keeps its projection."""
    for pipeline in pipelines:
        rates = {k: result["single"][k][pipeline]["it_per_s"] for k in keys if pipeline in result["single"].get(k, {})}
        source = {k: "1 process" for k in rates}
        for k, by_n in result["concurrency"].get(pipeline, {}).items():
            if not by_n or k not in rates:
                continue
            best_n = max(by_n, key=lambda n: by_n[n]["aggregate_it_s"])
            if by_n[best_n]["aggregate_it_s"] > rates[k]:
                rates[k], source[k] = by_n[best_n]["aggregate_it_s"], f"{best_n} processes"
        result["projection"][pipeline] = {**project(rows, rates), "rate_source": source}
    rates, source = best_rates(result, keys, max_runs)
    if "m2" not in rates and "m2_large" in rates:  # plain M2 = m2_large with a smaller classifier: an upper bound
        rates["m2"], source["m2"] = rates["m2_large"], f"m2_large's ({source['m2_large']}): m2 not measured"
    result["projection"]["best"] = {**project(rows, rates), "rate_source": source, "fusable_runs": max_runs}
    peak = result["peak_bf16_tflops"]
    for k in result["fused"]:
        today, today_src = today_best(result, k)
        fused = [(m["aggregate_it_s"], K, o) for K, by_o in result["fused"][k].items() for o, m in by_o.items()]
        flops = result["flops_per_iteration"].get(k)
        row = {"today_it_s": today, "today_source": today_src, "flops_per_iteration": flops}
        if fused:
            rate, K, o = max(fused)
            row.update(fused_best_it_s=rate, fused_best=f"K={K}, {o}",
                       speedup_vs_today=rate / today if today else None)
        for name in ("today", "fused_best"):
            r = row.get(f"{name}_it_s")
            tf = flops * r / 1e12 if flops and r else None
            row[f"{name}_tflop_s"] = tf
            row[f"{name}_peak_share"] = tf / peak if tf is not None and peak else None
        result["throughput"][k] = row


def parse_options(text: str) -> dict:
    """``compile=reduce-overhead,bf16=1,...`` -> speed options (every one not named is off)."""
    out = dict(OPTIONS_OFF)
    for item in filter(None, (s.strip() for s in text.split(","))):
        k, _, v = item.partition("=")
        if k not in out:
            raise SystemExit(f"--fast: unknown option {k!r}; options: {', '.join(out)}")
        out[k] = v if k == "compile" else v.lower() in ("1", "true", "yes", "on")
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="cuda, cpu or auto")
    ap.add_argument("--tiny", action="store_true", help="test sizes: 300-image pool, the learners' test_params")
    ap.add_argument("--task-size", default="small", choices=["small", "tiny"],
                    help="with --tiny: the task CNN's size (default the study's small one; the tests' tiny one)")
    ap.add_argument("--iters", type=int, default=None, help="timed iterations per measurement (default 200; tiny 2)")
    ap.add_argument("--warmup", type=int, default=None, help="iterations of the warm-up fits (default 20; tiny 1)")
    ap.add_argument("--concurrency", default=None, help="process counts, e.g. 1,2,4,8,12 (tiny: 1,2); empty: skip")
    ap.add_argument("--concurrent-iters", type=int, default=None, help="timed iterations per process (default 300; tiny 2)")
    ap.add_argument("--concurrency-pipelines", default=None, help="default: default,fast on a GPU, default on CPU")
    ap.add_argument("--learners", default=",".join(BENCH), help=f"of {', '.join(BENCH)}")
    ap.add_argument("--pipelines", default="reference,default,fast")
    ap.add_argument("--fast", default=None, help="options of the fast pipeline (default on a GPU: "
                    "compile=reduce-overhead,bf16=1,channels_last=1,fused_optim=1; on CPU without compile)")
    ap.add_argument("--ablate", action="store_true", help="also time each fast option alone")
    ap.add_argument("--accuracy-iters", type=int, default=0, help="also train every learner this many iterations "
                    "per pipeline except the reference and compare val_acc (a short accuracy check; 0: skip)")
    ap.add_argument("--accuracy-seeds", default="0,1")
    ap.add_argument("--fuse-k", default="1,3,9,27", help="fused group sizes K to time; 'profile': the paper "
                    "profile's distinct runs of each learner (at most 27), the group alkit run can form (empty: skip)")
    ap.add_argument("--fuse-options", default=",".join(FUSE_OPTIONS), help=f"of {', '.join(FUSE_OPTIONS)}")
    ap.add_argument("--fuse-learners", default=",".join(FUSE_KEYS),
                    help="learners of the fused part: its timings, ops, FLOPs and fused accuracy check")
    ap.add_argument("--ops-k", default="9", help="K at which dispatched ops are counted (empty: skip ops)")
    ap.add_argument("--ops-iters", type=int, default=4, help="iterations the ops and FLOP counts average over")
    ap.add_argument("--ops-learners", default="", help="learners whose ops and FLOPs are counted besides "
                    "--fuse-learners (counts only: no fused timings)")
    ap.add_argument("--baseline", default=None, help="an earlier bench_gpu JSON of this device whose concurrency "
                    "rates stand for today's best where this run measures none (saves spawning 4 processes)")
    ap.add_argument("--labelled", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=None, help="torch threads of the main process")
    ap.add_argument("--paper-dir", default=str(ROOT / "params" / "paper"))
    ap.add_argument("--worker-timeout", type=float, default=900, help="seconds to wait for a concurrent result")
    ap.add_argument("--out", default=None, help="JSON file (default bench_gpu_<device>.json here)")
    args = ap.parse_args(argv)
    if args.task_size != "small" and not args.tiny:
        ap.error(f"--task-size {args.task_size} needs --tiny (paper sizes time the study's models)")
    args.tiny = args.tiny and args.task_size  # False, or the task CNN's size at test sizes (bench_params)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    gpu = device.type == "cuda"
    args.iters = args.iters or (2 if args.tiny else 200)
    args.warmup = args.warmup or (1 if args.tiny else 20)
    args.concurrent_iters = args.concurrent_iters or (2 if args.tiny else 300)
    if args.concurrency is None:
        args.concurrency = "1,2" if args.tiny else "1,2,4,8,12"
    if args.concurrency_pipelines is None:
        args.concurrency_pipelines = "default,fast" if gpu else "default"
    if args.fast is None:
        args.fast = ("compile=reduce-overhead," if gpu else "") + "bf16=1,channels_last=1,fused_optim=1"
    if args.threads:
        torch.set_num_threads(args.threads)
    fast = parse_options(args.fast)
    keys = [k for k in args.learners.split(",") if k]
    unknown = [k for k in keys if k not in BENCH]
    if unknown:
        raise SystemExit(f"--learners: unknown {unknown}; known: {', '.join(BENCH)}")
    pipelines = {"reference": OPTIONS_OFF, "default": OPTIONS_OFF, "fast": fast}
    pipelines = {p: pipelines[p] for p in args.pipelines.split(",") if p}
    if args.ablate:
        for name in ("compile", *FLAGS):
            if fast[name] not in ("off", False):
                pipelines[f"only_{name}"] = {**OPTIONS_OFF, name: fast[name]}
    out_path = Path(args.out or f"bench_gpu_{device.type}.json")
    fuse_keys = [k for k in args.fuse_learners.split(",") if k]
    if [k for k in fuse_keys if k not in BENCH]:
        raise SystemExit(f"--fuse-learners: unknown {[k for k in fuse_keys if k not in BENCH]}; known: {', '.join(BENCH)}")
    fuse_ks = [k if k == "profile" else int(k) for k in args.fuse_k.split(",") if k]
    fuse_opts = [o for o in args.fuse_options.split(",") if o]
    if [o for o in fuse_opts if o not in FUSE_OPTIONS]:
        raise SystemExit(f"--fuse-options: unknown {[o for o in fuse_opts if o not in FUSE_OPTIONS]}; "
                         f"known: {', '.join(FUSE_OPTIONS)}")
    fuse_run, fuse_na = fuse_options(fuse_opts, gpu)
    ops_ks = [int(k) for k in args.ops_k.split(",") if k]
    if args.ops_iters < 1:
        raise SystemExit(f"--ops-iters: {args.ops_iters}; at least 1")
    count_keys = list(dict.fromkeys(fuse_keys + [k for k in args.ops_learners.split(",") if k]))
    if [k for k in count_keys if k not in BENCH]:
        raise SystemExit(f"--ops-learners: unknown {[k for k in count_keys if k not in BENCH]}; known: {', '.join(BENCH)}")

    from alkit.results import environment, git_commit

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    result = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if gpu else None,
              "environment": environment(), "git_commit": git_commit(ROOT), "args": vars(args), "fast_options": fast,
              "pipeline_options": pipelines, "bench": {k: {"learner": BENCH[k][0], "params": bench_params(k, args.tiny)}
                                                      for k in keys},
              "single": {}, "accuracy": {}, "concurrency": {}, "projection": {},
              "fused": {}, "fused_notes": FUSE_NOTES, "fuse_options": fuse_run,
              "fuse_options_not_applicable": fuse_na, "fused_errors": {},
              "ops_per_iteration": {}, "flops_per_iteration": {}, "accuracy_fused": {}, "throughput": {},
              "peak_bf16_tflops": peak_bf16_tflops(torch.cuda.get_device_name(device) if gpu else None),
              "sizes": "CPU, tiny: absolute times are not claims, ratios within this run are" if args.tiny and not gpu
              else ("tiny" if args.tiny else "paper")}
    if args.baseline:
        base = json.loads(Path(args.baseline).read_text())
        result["baseline"] = {"file": args.baseline, "device_name": base.get("device_name"),
                              "git_commit": base.get("git_commit"), "concurrency": base.get("concurrency", {})}
    rows = paper_trainings(Path(args.paper_dir))
    max_runs = fusable_runs(rows)

    def save():
        update_projection(result, rows, keys, pipelines, max_runs)
        out_path.write_text(json.dumps(result, indent=1, default=str))

    data = make_data(device, args.tiny, args.labelled)
    result["data"] = {"labelled": len(data.x_labelled), "unlabelled": len(data.x_unlabelled), "val": len(data.x_val)}
    log(f"{device} {result['device_name'] or result['environment']['cpu']}: labelled {len(data.x_labelled)}, "
        f"unlabelled {len(data.x_unlabelled)}, val {len(data.x_val)}; warm-up {args.warmup}, timed {args.iters}")
    for opt, why in fuse_na.items():
        if fuse_keys and fuse_ks:
            log(f"fused option {opt}: not applicable on {device.type} ({why}); not measured")
    for key in count_keys:  # hardware-independent counts first: cheap, and what the CPU can settle
        if key not in keys:
            continue
        t = time.perf_counter()
        result["flops_per_iteration"][key] = flops_per_iteration(key, args.tiny, data, device, args.ops_iters)
        if ops_ks:
            result["ops_per_iteration"][key] = ops_per_iteration(key, ops_ks, args.tiny, data, device, args.ops_iters)
        o = result["ops_per_iteration"].get(key)
        log(f"{key:10s} {result['flops_per_iteration'][key] / 1e9:9.3f} GFLOP/iteration"
            + (f", ops/model-iteration unfused {o['unfused']:.1f}, "
               + ", ".join(f"K={k} {v:.1f} ({o['ratio'][k]:.3f}x)" for k, v in o["fused"].items()) if o else "")
            + f" ({time.perf_counter() - t:.0f} s)")
        save()
    for key in keys:
        result["single"][key] = {}
        for pipeline, options in pipelines.items():
            t = time.perf_counter()
            result["single"][key][pipeline] = measure(key, pipeline, options, args.tiny, args.warmup, args.iters,
                                                      data, device)
            log(f"{key:10s} {pipeline:18s} {result['single'][key][pipeline]['ms_per_iteration']:9.2f} ms/it "
                f"({time.perf_counter() - t:.0f} s)")
            save()

    if args.accuracy_iters:
        seeds = [int(s) for s in args.accuracy_seeds.split(",") if s]
        for key in keys:
            result["accuracy"][key] = {}
            for pipeline, options in pipelines.items():
                if pipeline == "reference":  # the same computation as default, fed another way
                    continue
                accs = [timed_fit(key, pipeline, options, args.tiny, args.accuracy_iters, data, device, seed=s)[1]["val_acc"]
                        for s in seeds]
                result["accuracy"][key][pipeline] = {"val_acc": accs, "mean": float(np.mean(accs)), "seeds": seeds,
                                                     "iterations": args.accuracy_iters}
                log(f"{key:10s} {pipeline:18s} val_acc {np.mean(accs):.4f} after {args.accuracy_iters} iterations")
                save()
        for key in fuse_keys:
            if key not in keys or not fuse_ks:
                continue
            default = result["accuracy"].get(key, {}).get("default")
            a = accuracy_fused(key, seeds, args.accuracy_iters, args.tiny, data, device,
                               unfused=default["val_acc"] if default else None)
            result["accuracy_fused"][key] = a
            log(f"{key:10s} fused vs unfused val_acc {a['fused_mean']:.4f} vs {a['unfused_mean']:.4f} "
                f"(difference {a['difference_mean']:+.4f}, detectable {a['detectable_95']})")
            save()

    for k_arg in fuse_ks:  # every learner at one K before the next K: a run stopped early has all learners
        for key in fuse_keys:
            K = min(max_runs.get(key, 1), FUSE_MAX) if k_arg == "profile" else k_arg
            if key not in keys or str(K) in result["fused"].get(key, {}):
                continue
            by_k = result["fused"].setdefault(key, {}).setdefault(str(K), {})
            for opt, options in fuse_run.items():
                t = time.perf_counter()
                try:
                    m = measure_fused(key, K, options, args.tiny, args.warmup, args.iters, data, device)
                except Exception as exc:  # noqa: BLE001  (first GPU run of an option: keep what the others measure)
                    if not options.get("fused_graphs"):
                        raise
                    result["fused_errors"].setdefault(key, {}).setdefault(str(K), {})[opt] = repr(exc)
                    log(f"{key:10s} fused K={K:<3d} {opt:12s} failed: {exc!r}")
                    save()
                    continue
                by_k[opt] = m
                log(f"{key:10s} fused K={K:<3d} {opt:12s} {m['aggregate_it_s']:9.1f} it/s aggregate "
                    f"({time.perf_counter() - t:.0f} s)")
                save()

    ns = [int(n) for n in args.concurrency.split(",") if n]
    conc_pipes = [p for p in args.concurrency_pipelines.split(",") if p]
    if ns:
        concurrency(ns, keys, conc_pipes, fast, args, device, log, out=result["concurrency"], save=save)
        save()

    save()
    print_report(result, keys, pipelines, ns, conc_pipes)
    print(f"\nwrote {out_path}")


def print_report(result: dict, keys, pipelines, ns, conc_pipes) -> None:
    env = result["environment"]
    print(f"device {result['device']} ({result['device_name'] or env['cpu']}), torch {env['torch']}, "
          f"threads {env['torch_threads']}, commit {result['git_commit']}")
    print(f"fast = {', '.join(f'{k}={v}' for k, v in result['fast_options'].items())}\n")
    names = list(pipelines)
    print("ms per training iteration (1 process; fixed costs excluded, * = not separable from noise, included)")
    print(f"| {'learner':10s} | " + " | ".join(f"{p:>13s}" for p in names)
          + " | ref/default | default/fast | val_acc default/fast | compile warm-up s |")
    print("|" + "---|" * (len(names) + 5))
    for k in keys:
        s = result["single"][k]
        ratio = lambda a, b: f"{s[a]['ms_per_iteration'] / s[b]['ms_per_iteration']:.2f}x" if a in s and b in s else "-"
        acc = "/".join(f"{s[p]['val_acc']:.3f}" if p in s and s[p]["val_acc"] is not None else "-"
                       for p in ("default", "fast"))
        warm = f"{s['fast']['first_fit_extra_s']:.1f}" if "fast" in s else "-"
        cell = lambda p: f"{s[p]['ms_per_iteration']:.2f}" + ("" if s[p]["fixed_excluded"] else "*")
        print(f"| {k:10s} | " + " | ".join(f"{cell(p):>13s}" for p in names)
              + f" | {ratio('reference', 'default'):>11s} | {ratio('default', 'fast'):>12s} | {acc:>20s} | {warm:>17s} |")
    if ns:
        print("\naggregate iterations/s, N processes each training the same learner")
        print(f"| {'pipeline':8s} | {'learner':10s} | " + " | ".join(f"N={n:<5d}" for n in ns) + " |")
        print("|" + "---|" * (len(ns) + 2))
        for p in conc_pipes:
            for k in keys:
                by_n = result["concurrency"][p][k]
                print(f"| {p:8s} | {k:10s} | " + " | ".join(f"{by_n[str(n)]['aggregate_it_s']:7.1f}" for n in ns) + " |")
    sizes = "TINY models, so not the paper's cost" if result["args"]["tiny"] else "the paper's models"
    print(f"\nprojected minutes of the paper profile's training on this {result['device']} device "
          f"(params/paper; {sizes}; all runs, per experiment / total / distinct configs)")
    exps = sorted(next(iter(result["projection"].values()))["per_experiment"])
    print(f"| {'pipeline':18s} | " + " | ".join(f"{e[:16]:>16s}" for e in exps) + " | total | distinct |")
    print("|" + "---|" * (len(exps) + 3))
    fmt = lambda m: "n/a" if m is None else f"{m:.0f}"
    for p, proj in result["projection"].items():
        cells = [f"{fmt(proj['per_experiment'][e]['minutes']):>16s}" for e in exps]
        print(f"| {p:18s} | " + " | ".join(cells) + f" | {fmt(proj['minutes']):>5s} | {fmt(proj['minutes_distinct']):>8s} |")
    first = next(iter(result["projection"].values()))
    print(f"trainings: {first['trainings']} ({first['trainings_distinct']} distinct), "
          f"{first['iterations']:,} iterations; "
          + ", ".join(f"{e}: {v['trainings']} x {', '.join(v['learners'])}" for e, v in first["per_experiment"].items()))
    if result["accuracy"]:
        acc_pipes = [p for p in pipelines if p != "reference"]
        it = next(iter(next(iter(result["accuracy"].values())).values()))
        print(f"\nshort accuracy check: best val_acc after {it['iterations']} iterations, "
              f"mean of seeds {it['seeds']} ({result['data']['labelled']:,} labels)")
        print(f"| {'learner':10s} | " + " | ".join(f"{p:>13s}" for p in acc_pipes) + " |")
        print("|" + "---|" * (len(acc_pipes) + 1))
        for k in keys:
            print(f"| {k:10s} | " + " | ".join(f"{result['accuracy'][k][p]['mean']:13.4f}" for p in acc_pipes) + " |")
    print_fused(result)
    abl = [p for p in pipelines if p.startswith("only_")]
    if abl:
        print("\nper option vs default (ms/it ratio default/option; > 1.05 = a candidate for GPU_DEFAULTS if val_acc holds)")
        for k in keys:
            s = result["single"][k]
            print(f"  {k:10s} " + "  ".join(f"{p[5:]}: {s['default']['ms_per_iteration'] / s[p]['ms_per_iteration']:.2f}x"
                                            for p in abl))


def print_fused(result: dict) -> None:
    """The fused part: aggregate it/s per K and option vs today's best, ops, FLOPs, the accuracy check."""
    if not result["fused"] and not result["ops_per_iteration"]:
        return
    print(f"\nfused runs ({result['sizes']}): aggregate iterations/s of K runs trained as one stacked model "
          "(drive_fused; * = fixed costs not separable from noise, included)")
    ks = sorted({K for by_k in result["fused"].values() for K in by_k}, key=int)
    opts = list(result["fuse_options"])
    cols = [(K, o) for K in ks for o in opts]
    print(f"| {'learner':10s} | {'today':>8s} | " + " | ".join(f"{f'K={K} {o}':>16s}" for K, o in cols)
          + " | best/today |")
    print("|" + "---|" * (len(cols) + 3))
    for k, by_k in result["fused"].items():
        th = result["throughput"].get(k, {})
        cell = lambda m: "-" if m is None else f"{m['aggregate_it_s']:.1f}" + ("" if m["fixed_excluded"] else "*")
        today = th.get("today_it_s")
        sp = th.get("speedup_vs_today")
        print(f"| {k:10s} | {'-' if today is None else f'{today:.1f}':>8s} | "
              + " | ".join(f"{cell(by_k.get(K, {}).get(o)):>16s}" for K, o in cols)
              + f" | {'-' if sp is None else f'{sp:.2f}x':>10s} |")
    print("today = " + "; ".join(f"{k}: {v['today_source']}" for k, v in result["throughput"].items()))
    for name, note in result["fused_notes"].items():
        print(f"  {name}: {note}")
    for name, why in result.get("fuse_options_not_applicable", {}).items():
        print(f"  {name}: not applicable here ({why})")
    for k, by_k in result.get("fused_errors", {}).items():
        for K, by_o in by_k.items():
            print(f"  {k} K={K}: " + "; ".join(f"{o} failed: {e}" for o, e in by_o.items()))
    ops = result["ops_per_iteration"]
    if ops or result["flops_per_iteration"]:
        ok = sorted({K for o in ops.values() for K in o["fused"]}, key=int)
        peak = result["peak_bf16_tflops"]
        print(f"\ndispatched ops per model-iteration, all / non-view aten (unfused vs fused K, ratio to unfused), "
              f"FLOPs per unfused iteration, achieved TFLOP/s (peak {peak if peak else 'unknown'} dense bf16)")
        print(f"| {'learner':10s} | unfused | " + " | ".join(f"K={K} (ratio)" for K in ok)
              + " | GFLOP/it | TFLOP/s today | TFLOP/s fused best | share of peak |")
        print("|" + "---|" * (len(ok) + 6))
        for k in result["flops_per_iteration"]:
            o, th = ops.get(k), result["throughput"].get(k, {})
            f = lambda v, fmt: "-" if v is None else format(v, fmt)
            cells = [f"{o['fused'][K]:.1f} ({o['ratio'][K]:.3f}) / {o['kernels_fused'][K]:.1f} ({o['kernels_ratio'][K]:.3f})"
                     if o and K in o["fused"] else "-" for K in ok]
            share = th.get("fused_best_peak_share")
            unf = "-" if not o else f"{o['unfused']:.1f} / {o['kernels_unfused']:.1f}"
            print(f"| {k:10s} | {unf} | " + " | ".join(cells)
                  + f" | {result['flops_per_iteration'][k] / 1e9:.4f} | {f(th.get('today_tflop_s'), '.4f')} | "
                  + f"{f(th.get('fused_best_tflop_s'), '.4f')} | {'-' if share is None else f'{100 * share:.2f} %'} |")
    acc = result["accuracy_fused"]
    if acc:
        a0 = next(iter(acc.values()))
        print(f"\nfused vs unfused: best val_acc after {a0['iterations']} iterations, seeds {a0['seeds']} "
              f"(paired by seed; detectable = 95 % half-width of the mean difference; val resolution "
              f"{a0['val_resolution']:.4f})")
        print("| learner | unfused mean ± sd | fused mean ± sd | difference | detectable | within noise |")
        print("|---|---|---|---|---|---|")
        pm = lambda m, s: f"{m:.4f} ± {s:.4f}" if s is not None else f"{m:.4f}"
        for k, a in acc.items():
            det = "-" if a["detectable_95"] is None else f"{a['detectable_95']:.4f}"
            print(f"| {k} | {pm(a['unfused_mean'], a['unfused_sd'])} | {pm(a['fused_mean'], a['fused_sd'])} | "
                  f"{a['difference_mean']:+.4f} | {det} | {a['within_noise']} |")
    best = result["projection"].get("best")
    if best:
        fmt = lambda m: "n/a" if m is None else f"{m:.0f}"
        print(f"\nprojected GPU-minutes of the paper profile at the best measured rate per learner: "
              f"{fmt(best['minutes'])} (distinct configs {fmt(best['minutes_distinct'])}); "
              + "; ".join(f"{k}: {v}" for k, v in best["rate_source"].items()))


if __name__ == "__main__":
    main()
