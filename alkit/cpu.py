"""What this CPU is: its model name, its flags, and the fastest unit it has for the training steps' arithmetic.

The ``cpu`` profile trains with bf16 autocast, which pays only where the CPU multiplies bf16 natively
(AMX-BF16 or AVX-512-BF16): measured on two 2-core EPYC machines with torch 2.13 (``benchmarks/bench_cpu.py``),
bf16 + channels_last ran the small CNN's step x1.62 the fp32 speed with AVX-512-BF16
(``benchmarks/results/bench_cpu.json``) and x0.11 with AVX2 only (``bench_cpu_avx2.json``), where torch
emulates bf16. The kind of CPU therefore decides which cost table projects a run (:mod:`alkit.costplan`) and
whether ``alkit plan`` / ``alkit run`` warn that a run asks for bf16 on a CPU without it.

Read from ``/proc/cpuinfo`` (Linux); elsewhere the flags are unknown (empty) and the kind is ``"unknown"``,
which no warning fires on.
"""
from __future__ import annotations

import platform
from pathlib import Path

#: the kinds, fastest first: a CPU's kind is the first whose flag it has (``avx2`` also needs ``fma``)
KINDS = ("amx_bf16", "avx512_bf16", "avx512f", "avx2")
#: kinds with a native bf16 unit
BF16_KINDS = ("amx_bf16", "avx512_bf16")
#: what bf16 autocast cost on a CPU without a bf16 unit (bench_cpu_avx2.json: 2 cores of an AVX2 EPYC, torch 2.13)
BF16_PENALTY = "where bf16 + channels_last steps ran x0.09-0.11 the fp32 speed and channels_last alone x1.32-1.59"


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``'s "model name"; ``platform.processor()`` elsewhere)."""
    for line in _cpuinfo().splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> frozenset[str]:
    """The first core's flags (empty where ``/proc/cpuinfo`` is missing or has none)."""
    for line in _cpuinfo().splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_kind(flags: frozenset[str] | set[str] | list[str] | None = None) -> str:
    """The fastest unit of :data:`KINDS` among ``flags`` (default: this CPU's); ``"other"`` for an x86 CPU with none
    of them, ``"unknown"`` where no flags are known."""
    flags = cpu_flags() if flags is None else frozenset(flags)
    if not flags:
        return "unknown"
    for kind in KINDS:
        if kind in flags and (kind != "avx2" or "fma" in flags):
            return kind
    return "other"


def native_bf16(kind: str) -> bool | None:
    """Whether a CPU of ``kind`` multiplies bf16 natively; None where the kind is unknown."""
    if kind == "unknown":
        return None
    return kind in BF16_KINDS


def bf16_warning(runs: int, kind: str | None = None) -> str | None:
    """The ``warning:`` line of ``alkit plan`` and ``alkit run`` when ``runs`` runs left to train ask for bf16 autocast
    on a CPU of ``kind`` (default: this one's) without a bf16 unit; None where there is no such run or CPU."""
    kind = kind or cpu_kind()
    if not runs or native_bf16(kind) is not False:
        return None
    return (f"warning: {runs} run{'s' if runs != 1 else ''} left to train with bf16 autocast (learner_params.bf16: true) "
            f"on a CPU ({kind}) without a bf16 unit (AMX-BF16 or AVX-512-BF16): torch emulates bf16 there, "
            f"{BF16_PENALTY} (benchmarks/results/bench_cpu_avx2.json); the options are part of each run's config, "
            "so a run that resumes keeps them: for speed here, copy the parameter files with bf16: false and run them "
            "into another --results-root")


__all__ = ["KINDS", "BF16_KINDS", "cpu_model", "cpu_flags", "cpu_kind", "native_bf16", "bf16_warning"]
