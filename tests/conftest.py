"""Shared pytest fixtures. Data fixtures: the real Fashion-MNIST files, skipped cleanly when absent."""
from __future__ import annotations

from pathlib import Path

import pytest

FMNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
_FMNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@pytest.fixture(scope="session")
def fmnist_dir() -> Path:
    """Folder with the four real Fashion-MNIST ``.gz`` files (Debian ``dataset-fashion-mnist``).

    Skips the requesting test, not the suite, when the package is not installed (CI installs it).
    """
    missing = [f for f in _FMNIST_FILES if not (FMNIST_SYSTEM_DIR / f).is_file()]
    if missing:
        pytest.skip(
            f"Fashion-MNIST not found in {FMNIST_SYSTEM_DIR} (missing {', '.join(missing)}); "
            "install the Debian package dataset-fashion-mnist to run this test"
        )
    return FMNIST_SYSTEM_DIR


@pytest.fixture(scope="session")
def fmnist_small(fmnist_dir):
    """A small, fixed Fashion-MNIST split on CPU for quick tests: 2000 pool, 1000 val, 1000 test."""
    from alkit.data import load_dataset

    return load_dataset(
        data_dir=fmnist_dir, device="cpu", split_seed=0, val_size=1000, pool_size=2000,
        test_size=1000, download=False,
    )


@pytest.fixture(scope="session")
def data():
    """A planted synthetic dataset (200 pool, 100 val, 100 test; class c lights rows 2c..2c+5), shared by the
    loop and strategy-contract tests; no test changes it (``Data.to`` copies)."""
    from helpers import synthetic_data

    return synthetic_data(pool=200)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny models: they gain nothing from intra-op threads, and on a shared
    2-core box the OpenMP hand-offs made test_generative ~8x slower (123 s vs 15 s); results do not depend on it.
    A module asks for it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

