"""Small helpers for the notebooks' first and last cells (no experiment logic lives here)."""
from __future__ import annotations

import os
import platform
from pathlib import Path


def setup() -> Path:
    """Make the repository root the working directory (params and results paths are relative to it).

    Works from Jupyter (cwd = notebooks/), papermill (``--cwd`` root) and nbval alike.
    """
    import warnings

    # umap/pynndescent import tqdm.auto, which warns when ipywidgets is absent; bars are off anyway
    warnings.filterwarnings("ignore", message="IProgress not found")
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").exists() and (folder / "alkit").is_dir():
            os.chdir(folder)
            return folder
    raise FileNotFoundError(f"no alkit repository root above {here}")


def versions() -> str:
    """The versions cell: python, torch, numpy, plotly, device, git commit."""
    import numpy as np
    import plotly
    import torch

    from .results import git_commit

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    return "\n".join([
        f"python   {platform.python_version()}",
        f"torch    {torch.__version__}",
        f"numpy    {np.__version__}",
        f"plotly   {plotly.__version__}",
        f"device   {device}",
        f"commit   {git_commit()}",
    ])
