"""Small helpers for the notebooks' first and last cells (no experiment logic lives here)."""
from __future__ import annotations

import os
import platform
import subprocess
import warnings
from pathlib import Path

import numpy as np
import plotly
import torch

from .results import git_commit


def setup() -> Path:
    """Make the repository root the working directory (params and results paths are relative to it).

    Works from Jupyter (cwd = notebooks/), papermill (``--cwd`` root) and nbval alike.
    """
    # umap/pynndescent import tqdm.auto, which warns when ipywidgets is absent; bars are off anyway
    warnings.filterwarnings("ignore", message="IProgress not found")
    root = find_root()
    os.chdir(root)
    return root


def _is_root(folder: Path) -> bool:
    return (folder / "pyproject.toml").exists() and (folder / "alkit").is_dir() and (folder / "params").is_dir()


def find_root(cwd: Path | None = None) -> Path:
    """The alkit repository root: ``$ALKIT_ROOT`` if set, else the first folder at or above the working
    directory that holds ``pyproject.toml``, ``alkit/`` and ``params/``, else the checkout the imported
    ``alkit`` package lives in (an editable install), so papermill may run from anywhere."""
    env = os.environ.get("ALKIT_ROOT")
    if env:
        root = Path(env).expanduser().resolve()
        if not _is_root(root):
            raise FileNotFoundError(f"ALKIT_ROOT={env} is not an alkit checkout (needs pyproject.toml, alkit/, params/)")
        return root
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if _is_root(folder):
            return folder
    package_home = Path(__file__).resolve().parent.parent
    if _is_root(package_home):
        return package_home
    raise FileNotFoundError(f"no alkit repository root above {here} nor at {package_home}; set ALKIT_ROOT")


def versions() -> str:
    """The versions cell: python, torch, numpy, plotly, device, the commit of the code (:func:`code_commit`)."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    return "\n".join([
        f"python   {platform.python_version()}",
        f"torch    {torch.__version__}",
        f"numpy    {np.__version__}",
        f"plotly   {plotly.__version__}",
        f"device   {device}",
        f"commit   {code_commit()}",
    ])


#: what draws a notebook: a commit that changes none of these (results, figures, notebooks) leaves the versions cell
CODE_PATHS = ("alkit", "params", "pyproject.toml", "requirements")


def code_commit() -> str:
    """The last commit that changed the code or parameters (:data:`CODE_PATHS`), ``-dirty`` as
    :func:`alkit.results.git_commit` says; so a rerun after a commit of results or notebooks alone prints
    the same line. Outside git: :func:`alkit.results.git_commit`'s fallback."""
    head = git_commit()
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%H", "--", *CODE_PATHS], cwd=find_root(),
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError, FileNotFoundError):
        return head
    sha = out.stdout.strip()
    if out.returncode != 0 or not sha:
        return head
    return sha + ("-dirty" if head.endswith("-dirty") else "")
