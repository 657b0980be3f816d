"""Synthetic data for fast tests: 10 classes of 28x28 images with a planted class structure."""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import torch

from alkit.data import Data


def synthetic_images(n: int, seed: int, num_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 1, 28, 28) images in [0, 1]: class c lights a horizontal band at rows 2c..2c+5, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % num_classes
    y = y[torch.randperm(n, generator=g)]
    x = 0.15 * torch.rand(n, 1, 28, 28, generator=g)
    rows = torch.arange(28)
    for c in range(num_classes):
        band = ((rows >= 2 * c + 1) & (rows < 2 * c + 6)).float()  # (28,)
        x[y == c] += 0.8 * band[None, None, :, None]
    return x.clamp(0, 1), y


def synthetic_data(pool: int = 200, val: int = 100, test: int = 100, seed: int = 0) -> Data:
    x, y = synthetic_images(pool + val + test, seed)
    return Data(
        name="synthetic",
        x_pool=x[:pool], y_pool=y[:pool],
        x_val=x[pool : pool + val], y_val=y[pool : pool + val],
        x_test=x[pool + val :], y_test=y[pool + val :],
        pool_ids=np.arange(pool),
    )


def with_shuffled_unlabelled_labels(data: Data, labelled: np.ndarray, seed: int = 1) -> Data:
    """A copy of ``data`` whose pool labels are permuted among the points not in ``labelled``."""
    y = data.y_pool.clone()
    unl = np.setdiff1d(np.arange(len(y)), labelled)
    perm = np.random.default_rng(seed).permutation(unl)
    y[torch.as_tensor(unl)] = data.y_pool[torch.as_tensor(perm)]
    assert not torch.equal(y, data.y_pool)
    return Data(name=data.name, x_pool=data.x_pool, y_pool=y, x_val=data.x_val, y_val=data.y_val,
                x_test=data.x_test, y_test=data.y_test, pool_ids=data.pool_ids)


def rec(arm, seed, cycle, n_labelled=None, test_acc=None, **extra) -> dict:
    """One per-cycle record; ``n_labelled`` defaults to 100 + 100 * cycle."""
    r = {"arm": arm, "seed": seed, "cycle": cycle, "n_labelled": 100 + 100 * cycle if n_labelled is None else n_labelled}
    if test_acc is not None:
        r["test_acc"] = test_acc
    r.update(extra)
    return r


def write_band_npz(path, n: int = 240, seed: int = 7, side: int = 32) -> None:
    """A MedMNIST-layout RGB ``.npz`` of the planted-band images (side x side x 3 uint8, labels (N, 1)):
    half train, a quarter val, a quarter test. Deterministic: ``tests/data/bandmnist_rgb.npz`` is this file."""
    x, y = synthetic_images(n, seed)
    images = rgb_bands(x, side)
    labels = y.numpy().astype(np.uint8)[:, None]
    cut = {"train": slice(0, n // 2), "val": slice(n // 2, 3 * n // 4), "test": slice(3 * n // 4, n)}
    np.savez_compressed(path, **{f"{k}_images": images[s] for k, s in cut.items()},
                        **{f"{k}_labels": labels[s] for k, s in cut.items()})


def rgb_bands(x: torch.Tensor, side: int = 32) -> np.ndarray:
    """(N, 1, 28, 28) in [0, 1] -> (N, side, side, 3) uint8, a different tint per channel (MedMNIST's RGB layout)."""
    grey = torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)[:, 0].numpy()
    return (np.stack([grey, grey * 0.7, 1 - grey], axis=3) * 255).round().astype(np.uint8)


#: the micro experiment of the "same records as one process" tests (test_jobs, test_safety; conftest's
#: ``micro_reference``): 2 seeds x 2 cycles of each arm
MICRO = Path(__file__).resolve().parent / "params" / "02_vaal_vs_random.yaml"
MICRO_ARMS = ("random", "vaal", "m2_vaal")


def records_without_timings(root) -> list[dict]:
    """Every record below ``root`` without its timings (the only field that differs between equal runs), by run
    and cycle."""
    from alkit.results import load_results

    rows = [{k: v for k, v in r.items() if k != "seconds"} for r in load_results(root)]
    return sorted(rows, key=lambda r: (r["run"], r["cycle"]))


def run_micro(root, **kwargs):
    """:data:`MICRO`'s :data:`MICRO_ARMS` runs trained in this process, one after another, 1 torch thread, under
    ``root``: ``alkit.jobs.run_tasks``'s summary (``kwargs``: e.g. ``time_limit``)."""
    from alkit import jobs
    from alkit.experiment import load_experiment

    exp = load_experiment(MICRO, results_root=str(root))
    return jobs.run_tasks(jobs.plan([exp], arms=list(MICRO_ARMS)), threads=1, progress=False, **kwargs)


# ------------------------------------------------------------------ bad parameter files (test_safety, test_hostile_inputs)

#: a micro experiment's base and arms: the parameter files the bad-input tests start from and spoil
BASE = dict(pool_size=300, val_size=200, test_size=200, initial={"kind": "random", "n": 40}, budget=20, cycles=1,
            device="cpu", learner_params={"iterations": 4, "batch_size": 32, "val_every": 2})
OWN = dict(initial={"kind": "random", "n": 20}, budget=10, cycles=1, device="cpu",
           learner_params={"iterations": 4, "batch_size": 16, "val_every": 2})
RANDOM = {"random": {"learner": "classifier", "strategy": "random"}}


def experiment_values(base=None, arms=None, **top) -> dict:
    return {"name": "x", "profile": "micro", "seeds": [0], **top, "base": base if base is not None else dict(BASE),
            "arms": arms or RANDOM}


def snapshot(root: Path) -> dict:
    """Every entry below ``root`` (links not followed) with what it holds: a file's bytes, a link's target, None for
    a folder or a FIFO. Two equal snapshots: nothing was written, changed or deleted."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(folder) / name
            out[str(p.relative_to(root))] = (os.readlink(p) if p.is_symlink() else
                                             p.read_bytes() if p.is_file() else None)
    return out


def assert_one_error_and_nothing_written(tmp_path, capsys, argv, words):
    """``alkit run argv`` in this process: exit 2, one ``error:`` line holding ``words``, nothing written."""
    from alkit.cli import main

    before = snapshot(tmp_path)
    capsys.readouterr()
    rc = main(["run", *argv, "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    assert snapshot(tmp_path) == before  # nothing written, inside the results root or outside it
    return err


# ------------------------------------------------------------------ headless Chromium (the browser tests)

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def page_json(page: Path, pre_id: str, window: tuple[int, int], budget_ms: int) -> dict:
    """Open ``page`` in headless Chromium with every host unresolvable and return the JSON that its script left in
    ``<pre id="{pre_id}">`` (the test gave the page that script), read from the DOM Chromium dumps."""
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND",
         f"--window-size={window[0]},{window[1]}", f"--virtual-time-budget={budget_ms}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180)
    found = re.search(rf'<pre id="{pre_id}">(.*?)</pre>', proc.stdout, flags=re.S)
    assert found, f"{page.name}: nothing measured; chromium said: {proc.stderr[-1500:]}"
    return json.loads(html.unescape(found.group(1)))
