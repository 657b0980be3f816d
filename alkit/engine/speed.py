"""How fast a training step runs: compilation, bf16 autocast, channels_last, fused optimisers, whole-iteration CUDA graphs.

28x28 models are launch-bound on a GPU: a step costs a few milliseconds whatever the batch,
most of it Python and kernel launches. :class:`SpeedParams` (mixed into every learner's
parameters, like :class:`~.schedule.ScheduleParams`) names five ways to cut that cost; each
changes *how* a step is computed, never what it computes (same losses, same batches, same
schedule), though not bit for bit:

=================  ==========================================================================
``compile``        ``torch.compile`` of each training step's forward + loss (task-model step,
                   generative step, discriminator step); ``"reduce-overhead"`` adds CUDA graphs
                   (one launch per graph instead of one per kernel; CUDA only), ``"default"``
                   fuses kernels only; ``"off"`` runs eagerly. Evaluation and acquisition always
                   run the plain modules.
``bf16``           ``torch.autocast(dtype=bfloat16)`` around each step's forward + loss; weights,
                   gradients and optimiser state stay float32 (no loss scaling needed).
``channels_last``  conv weights (and hence activations) in NHWC memory layout.
``fused_optim``    ``fused=True`` Adam (generative models, discriminators) and SGD (task model):
                   one kernel per optimiser step instead of a few per parameter group.
``fused_graphs``   the fused engine (:mod:`.fused`, K runs as one stacked model) captures its whole
                   iteration (every step's draws, forward, backward and optimiser step) as one
                   CUDA graph after a few eager warm-up iterations, and replays it every iteration
                   (:mod:`.graph`): one graph launch per iteration, not one per kernel. CUDA only (asked
                   for on another device: an error); its optimisers become capturable ones (SGD
                   ``fused=True``, Adam ``capturable=True``) with the learning rate as a device
                   tensor. The unfused engine ignores it (its graphs are ``compile``'s).
=================  ==========================================================================

Each field defaults to ``None`` = automatic, resolved per device by :func:`resolve_speed`:
on CPU every option is off; on a GPU the value comes from :data:`GPU_DEFAULTS`, which is
EMPTY (= off) until a GPU run of ``benchmarks/bench_gpu.py`` shows a gain for a learner *and*
a short accuracy check shows no loss; the session that measures it fills the table in. The
resolved options are recorded in every cycle record as flat booleans (``speed_compile``,
``speed_cuda_graphs``, ``speed_bf16``, ``speed_channels_last``, ``speed_fused_optim``: records hold
scalars only), so every record says how it was trained. With every option off the training code runs exactly the former eager path
(records bit-identical to those before the options existed).

The two kinds of CUDA graphs are two fields: ``speed_cuda_graphs`` is ``compile="reduce-overhead"``'s
(per compiled step, unfused engine; :attr:`Speed.cuda_graphs`), ``speed_fused_graphs`` the fused
engine's whole-iteration graph. ``speed_fused_graphs`` is in a record only where the option was asked
for (so that every record from before it stays byte-identical), and there it says what happened: true
if the run's iterations were replayed as graphs (a fused phase of enough iterations), false if it
trained otherwise (unfused, or a phase too short to capture) -- :func:`~.drive.drive` and
:func:`~.drive.drive_fused` set it from the engine's :attr:`~.phase.PhaseResult.graphs`.

No step syncs with the host: losses are summed on device (:class:`~alkit.train.RunningMeans`)
and read at validation points only.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch

COMPILE_MODES = ("off", "default", "reduce-overhead")
FLAGS = ("bf16", "channels_last", "fused_optim")
#: options of the fused engine alone (recorded only where asked for: module docstring)
FUSED_FLAGS = ("fused_graphs",)

#: learner name -> {option: value} used on CUDA devices where a field is None (automatic).
#: Empty: no GPU benchmark has been run yet, so automatic means off everywhere. Fill it from
#: ``benchmarks/bench_gpu.py``'s output (its ``ablation`` rows per option) once a GPU run shows
#: a gain and a short accuracy check shows no loss, e.g. ``{"vaal": {"fused_optim": True}}``.
GPU_DEFAULTS: dict[str, dict[str, object]] = {}

#: learner name -> {option: value} that pay on a CPU at the study's sizes (batches of 128, the small / large CNN,
#: VAE / M2 width 32-64), measured by ``benchmarks/bench_cpu.py`` (benchmarks/results/bench_cpu.json, 2 cores of an
#: AMD EPYC with AVX-512-BF16, torch 2.13): bf16 + channels_last x1.62 (small CNN), x2.35 (large CNN), x1.31-1.61
#: (VAE width 32-64), each alone x0.97-1.26; fused optimisers and torch.compile no steady gain (compile: +10-20 s
#: cold per step). At toy sizes they lose (VAE width 4: x0.30-0.66), so :func:`resolve_speed` does NOT apply this
#: table by itself: automatic stays off on CPU (``smoke`` and every record before it stay bit-identical), and the
#: ``cpu`` profile's parameter files name these options explicitly (a test holds them equal to this table).
#: They pay only on a CPU with a bf16 unit (AMX-BF16, AVX-512-BF16): with AVX2 alone torch emulates bf16 and the
#: same steps ran x0.05-0.13 the fp32 speed, while channels_last alone gave x1.42-1.59 (bench_cpu_avx2.json, 2 cores
#: of an AVX2 EPYC); ``alkit plan`` and ``alkit run`` warn there (:func:`alkit.cpu.bf16_warning`).
CPU_DEFAULTS: dict[str, dict[str, object]] = {
    name: {"bf16": True, "channels_last": True}
    for name in ("classifier", "vaal", "tavaal", "m2", "m2_disc", "m2_vaal")
}


@dataclass
class SpeedParams:
    """Speed options of the training steps (see the module docstring); ``None`` = automatic for the device."""

    compile: str | bool | None = None  # "off" (YAML's bare off: False), "default", "reduce-overhead" (+ CUDA graphs); None = auto
    bf16: bool | None = None  # bfloat16 autocast of forward + loss; None = auto
    channels_last: bool | None = None  # NHWC conv weights and activations; None = auto
    fused_optim: bool | None = None  # fused Adam / SGD kernels; None = auto
    fused_graphs: bool | None = None  # fused engine: each whole iteration as one CUDA graph (CUDA only); None = auto

    def __post_init__(self):
        check_speed(self)


def _check_compile(value) -> str | None:
    if value is False:  # YAML reads a bare `off` as False
        return "off"
    if value is None or (isinstance(value, str) and value in COMPILE_MODES):
        return value
    raise ValueError(f"compile must be one of {COMPILE_MODES} or None (automatic), got {value!r}")


def check_speed(p) -> None:
    """Reject values no option knows; normalises ``compile: off`` (YAML's False) to ``"off"``."""
    p.compile = _check_compile(p.compile)
    for name in (*FLAGS, *FUSED_FLAGS):
        value = getattr(p, name, None)
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"{name} must be true, false or None (automatic), got {value!r}")


@dataclass(frozen=True)
class Speed:
    """Resolved speed options for one device; builds the pieces the training loops use."""

    compile: str = "off"
    bf16: bool = False
    channels_last: bool = False
    fused_optim: bool = False
    fused_graphs: bool = False
    device_type: str = "cpu"

    @property
    def cuda_graphs(self) -> bool:
        """``compile="reduce-overhead"``'s CUDA graphs (per compiled step); the fused engine's are ``fused_graphs``."""
        return self.compile == "reduce-overhead" and self.device_type == "cuda"

    def record(self) -> dict:
        """The options as stored in each cycle record: flat ``speed_*`` booleans (records hold scalars);
        ``speed_fused_graphs`` only where asked for (module docstring; the engine then sets what happened)."""
        return {"speed_compile": self.compile != "off", "speed_cuda_graphs": self.cuda_graphs,
                **{f"speed_{name}": getattr(self, name) for name in FLAGS},
                **({"speed_fused_graphs": True} if self.fused_graphs else {})}

    @property
    def off(self) -> bool:
        return self.compile == "off" and not (self.bf16 or self.channels_last or self.fused_optim or self.fused_graphs)

    def prepare(self, *modules: torch.nn.Module) -> None:
        """Put the modules' conv weights in the chosen memory layout (in place)."""
        if self.channels_last:
            for m in modules:
                m.to(memory_format=torch.channels_last)

    def optimizer_kwargs(self) -> dict:
        """Extra keyword arguments of ``torch.optim.Adam`` / ``SGD``; empty when off (the former call exactly)."""
        return {"fused": True} if self.fused_optim else {}

    def adam(self, params, **kw) -> torch.optim.Adam:
        return torch.optim.Adam(params, **kw, **self.optimizer_kwargs())

    def autocast(self, cache: bool = True):
        """Context of a step's forward + loss: bf16 autocast, or nothing. ``cache=False``: without autocast's
        cache of cast weights, as a CUDA graph capture needs (a cache filled at capture is stale at replay)."""
        if self.bf16:
            if cache:
                return torch.autocast(self.device_type, dtype=torch.bfloat16)
            return torch.autocast(self.device_type, dtype=torch.bfloat16, cache_enabled=False)
        return contextlib.nullcontext()

    def step(self, fn: Callable) -> Callable:
        """``fn`` (forward + loss of one training step, tensors in, tensors out) with autocast and compilation.

        All options off: ``fn`` itself. ``fn`` is compiled as it is (dynamo caches graphs on its
        own code object, and a fresh learner of the same shapes reuses them) and autocast is
        entered around the call (dynamo guards on it). With ``compile="reduce-overhead"`` on CUDA
        each call starts a new CUDA-graph step (``cudagraph_mark_step_begin``): several compiled
        steps run per iteration, and their outputs are consumed (summed on device,
        back-propagated) before the next call.
        """
        if not self.bf16 and self.compile == "off":
            return fn
        if self.compile != "off":
            _raise_recompile_limit()
            fn = torch.compile(fn, mode=None if self.compile == "default" else self.compile)
        graphs = self.cuda_graphs

        def run(*args, **kwargs):
            if graphs:
                torch.compiler.cudagraph_mark_step_begin()
            with self.autocast():
                return fn(*args, **kwargs)

        return run


#: graphs dynamo may keep per step function. Learners share step code (every discriminator
#: learner runs ``_disc_loss``; VAAL, the classifier and TA-VAAL's phases run
#: ``fit_task_model``'s loss), one graph per model shape and option set; past dynamo's default
#: limit of 8 it would silently run the step eagerly.
RECOMPILE_LIMIT = 64


def _raise_recompile_limit() -> None:
    cfg = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):  # the name changed across torch versions
        if hasattr(cfg, name) and getattr(cfg, name) < RECOMPILE_LIMIT:
            setattr(cfg, name, RECOMPILE_LIMIT)


OFF = Speed()


def resolve_speed(params, device, learner: str | None = None) -> Speed:
    """The options for ``device``: each explicit field as given; each ``None`` from :data:`GPU_DEFAULTS`
    (``learner``'s entry) on CUDA, off elsewhere. ``params`` may lack the fields (all automatic).
    ``fused_graphs: true`` on a device other than CUDA is refused (ValueError)."""
    device = torch.device(device)
    table = GPU_DEFAULTS.get(learner, {}) if device.type == "cuda" else {}
    values = {}
    for name, off in (("compile", "off"), *((f, False) for f in (*FLAGS, *FUSED_FLAGS))):
        given = getattr(params, name, None)
        values[name] = given if given is not None else table.get(name, off)
    values["compile"] = _check_compile(values["compile"]) or "off"
    if values["fused_graphs"]:
        require_cuda(device)
    return Speed(**values, device_type=device.type)


def require_cuda(device) -> None:
    """``fused_graphs`` needs CUDA: a clear error elsewhere (asked for explicitly, never automatic there)."""
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"fused_graphs: true needs a CUDA device (CUDA graphs), but this run trains on {device}; "
                         "leave fused_graphs unset (automatic: off there) or set it false")
