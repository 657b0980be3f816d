"""Device names of ``alkit run``: checked before anything is written, one :class:`ConfigError` per bad name.

``tasks`` below are :class:`alkit.jobs.Task` (each run's config names its ``device``).
"""
from __future__ import annotations

import torch

from .config import ConfigError


def check_devices(names: list[str], key: str = "--devices", cluster: bool = False) -> list[str]:
    """Parse and check device names; one :class:`ConfigError` naming ``key``, the bad name and what is allowed.

    ``cluster``: the runs go to Ray workers, whose GPUs this machine cannot see; only the device type is
    checked (each run uses the GPU Ray gives it).
    """
    if cluster:
        allowed = "allowed with --executor ray: cpu, auto, cuda (the GPU Ray gives the run)"
    else:
        allowed = "allowed on this machine: cpu, auto" + (
            f", cuda, cuda:0..cuda:{torch.cuda.device_count() - 1}" if torch.cuda.is_available() else "")
    out = []
    for name in names:
        try:
            dev = torch.device(name) if name != "auto" else None
        except (RuntimeError, TypeError):
            raise ConfigError(f"{key}: unknown device {name!r}; {allowed}") from None
        if dev is not None and dev.type == "cuda" and not cluster:
            if not torch.cuda.is_available():
                raise ConfigError(f"{key}: {name!r} asked for, but this machine has no CUDA GPU "
                                  f"(torch {torch.__version__}); {allowed}")
            if (dev.index or 0) >= torch.cuda.device_count():
                raise ConfigError(f"{key}: {name!r} does not exist; {allowed}")
        elif dev is not None and dev.type not in ("cpu", "cuda"):
            raise ConfigError(f"{key}: device type {dev.type!r} is not supported; {allowed}")
        out.append(name)
    return out


def check_config_devices(tasks: list, cluster: bool = False) -> None:
    """The ``device`` of every run's config (when no ``--device`` / ``--devices`` overrides it), as :func:`check_devices`."""
    seen = set()
    for t in tasks:
        device = t.exp.config(t.arm, t.seed).device
        if (t.exp.name, device) not in seen:
            seen.add((t.exp.name, device))
            check_devices([device], key=f"{t.exp.name}: arm {t.arm!r}: device", cluster=cluster)


def is_cuda(name: str) -> bool:
    """Whether the device ``name`` is a CUDA GPU here (``auto`` is one where CUDA is available)."""
    return str(name).startswith("cuda") or (name == "auto" and torch.cuda.is_available())


def on_cuda(tasks: list, devices: list[str | None]) -> bool:
    """Whether the runs go to a CUDA device (``--fuse auto``): the devices given, else every run's config."""
    names = [d for d in devices if d is not None] or [t.exp.config(t.arm, t.seed).device for t in tasks]
    return bool(names) and all(is_cuda(n) for n in names)
