"""What a trained generative learner looks like: reconstructions, samples and UMAP maps of its latent space.

Computed once from a run's saved files (``learners/cycleNN.pt``, ``latent/cycleNN.npz``)
and cached beside them as ``.npz``, so a notebook redraws its figures without a model,
the data, or a UMAP fit.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from .models import M2, VAE
from .own_data import load_data
from .results import atomic_write_bytes


def _module(learner, kind: type) -> torch.nn.Module | None:
    for value in vars(learner).values():
        if isinstance(value, kind):
            return value
    return None


@torch.no_grad()
def reconstruct(learner, x: torch.Tensor) -> np.ndarray:
    """(N, 28, 28) Bernoulli means of p(x|z) at z = the encoder mean (M2: with y = argmax q(y|x))."""
    vae, m2 = _module(learner, VAE), _module(learner, M2)
    if m2 is not None:
        m2.eval()
        mu, proba = m2.latent(x)
        y = torch.nn.functional.one_hot(proba.argmax(1), m2.num_classes).to(x.dtype)
        out = m2.decode(mu, y)
    elif vae is not None and not vae.cond_dim:
        vae.eval()
        out = vae.decode(vae.encode(x)[0])
    else:
        raise TypeError(f"learner {getattr(learner, 'name', learner)!r} has no plain VAE or M2 to reconstruct with")
    return torch.sigmoid(out)[:, 0].cpu().numpy()


@torch.no_grad()
def sample(learner, per_class: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Images decoded from z ~ N(0, I). M2: ``per_class`` samples for each class y (rows = classes).

    Returns (N, 28, 28) Bernoulli means and one label per row of ``per_class`` images.
    """
    vae, m2 = _module(learner, VAE), _module(learner, M2)
    g = torch.Generator().manual_seed(seed)
    if m2 is not None:
        m2.eval()
        c = m2.num_classes
        z = torch.randn(c * per_class, m2.latent_dim, generator=g).to(next(m2.parameters()).device)
        y = torch.eye(c, device=z.device).repeat_interleave(per_class, 0)  # rows: class 0 x per_class, ...
        return torch.sigmoid(m2.decode(z, y))[:, 0].cpu().numpy(), [f"y={k}" for k in range(c)]
    if vae is not None and not vae.cond_dim:
        vae.eval()
        z = torch.randn(per_class * 10, vae.latent_dim, generator=g).to(next(vae.parameters()).device)
        return torch.sigmoid(vae.decode(z))[:, 0].cpu().numpy(), [""] * 10
    raise TypeError(f"learner {getattr(learner, 'name', learner)!r} has no plain VAE or M2 to sample from")


def _cached(path: Path, compute) -> dict:
    if path.exists():
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    arrays = compute()
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    return arrays


def generative_views(exp, arm: str, seed: int, cycle: int, examples: int = 16, per_class: int = 8) -> dict:
    """Originals, reconstructions and samples of the learner saved for ``cycle``; cached as ``views/cycleNN.npz``.

    The originals are the first ``examples`` test images of the run's data
    split (loaded only when the cache is missing). Needs ``save_learner: true``.
    """
    run_dir = exp.run_dir(arm, seed)

    def compute():
        x_examples = load_data(exp.config(arm, seed), torch.device("cpu")).x_test[:examples]
        learner = torch.load(run_dir / "learners" / f"cycle{cycle:02d}.pt", weights_only=False, map_location="cpu")
        learner.device = torch.device("cpu")
        samples, row_labels = sample(learner, per_class, seed)
        return {"original": x_examples[:, 0].cpu().numpy(), "reconstruction": reconstruct(learner, x_examples.cpu()),
                "samples": samples, "sample_rows": np.array(row_labels)}

    return _cached(run_dir / "views" / f"cycle{cycle:02d}.npz", compute)


def umap_map(exp, arm: str, seed: int, cycle: int, n_neighbors: int = 15, min_dist: float = 0.1) -> dict:
    """2-D UMAP of the latent codes saved for ``cycle``; cached as ``latent/umap_cycleNN.npz``.

    Returns ``xy`` (N, 2), ``y`` (N,), ``status`` (N,: 0 unlabelled, 1 labelled,
    2 just selected) and ``pool_index`` (N,). UMAP is fitted with a fixed
    ``random_state`` (single-threaded, so the map is reproducible).
    """
    run_dir = exp.run_dir(arm, seed)
    return umap_file(run_dir / "latent" / f"cycle{cycle:02d}.npz", seed, n_neighbors, min_dist)


def umap_file(src: Path, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1) -> dict:
    """:func:`umap_map` of one saved ``latent/cycleNN.npz`` (any run or oracle session); cached beside it."""
    src = Path(src)

    def compute():
        import umap  # heavy (numba compiles on first use): imported only when a map is missing

        with np.load(src) as f:
            z, y, status, idx = f["z"].astype(np.float32), f["y"], f["status"], f["pool_index"]
        xy = umap.UMAP(n_neighbors=n_neighbors, min_dist=min_dist, random_state=seed, n_jobs=1).fit_transform(z)
        return {"xy": xy.astype(np.float32), "y": y, "status": status, "pool_index": idx}

    return _cached(src.with_name(f"umap_{src.name}"), compute)


def sample_row_labels(sample_rows, class_names) -> list[str]:
    """Row labels of a samples grid: ``"y=k"`` (an M2 row decoded with class k) -> ``class_names[k]``, else ``""``."""
    out = []
    for s in (str(v) for v in sample_rows):
        k = s[2:] if s.startswith("y=") else ""
        out.append(class_names[int(k)] if k.isdigit() and int(k) < len(class_names) else "")
    return out


def reconstruction_quality(original: np.ndarray, reconstruction: np.ndarray) -> dict:
    """How much better the reconstructions are than drawing the average image, per pixel.

    ``mse``: mean squared error of the reconstructions; ``mse_mean_image``: that of the average of the
    originals drawn for every one; ``gain`` = 1 - mse / mse_mean_image (0: no better than the average
    image; 1: perfect). Inputs (N, H, W) in [0, 1].
    """
    original, reconstruction = np.asarray(original, float), np.asarray(reconstruction, float)
    mse = float(np.mean((reconstruction - original) ** 2))
    base = float(np.mean((original.mean(0, keepdims=True) - original) ** 2))
    return {"mse": mse, "mse_mean_image": base, "gain": 1.0 - mse / base if base > 0 else float("nan")}


def describe_reconstruction(arm: str, n_labelled: int, quality: dict, iterations: int | None = None,
                            min_gain: float = 0.3) -> str:
    """One sentence on a reconstruction figure, computed: says so when the model is too small or too briefly
    trained to reconstruct (``gain`` below ``min_gain``: it explains less than 30 % of the pixel variance)."""
    head = (f"{arm} at {n_labelled:,} labels: reconstruction error {quality['mse']:.4f} per pixel against "
            f"{quality['mse_mean_image']:.4f} for the average image ({100 * quality['gain']:.0f} % of the pixel variance explained)")
    if quality["gain"] < min_gain:
        trained = f" ({iterations:,} iterations per cycle)" if iterations else ""
        return (head + f" — too small or too briefly trained{trained} to reconstruct: these images show the "
                "pipeline, not the model's quality; the `paper` profile trains it at the study's scale.")
    return head + "."


def latent_cycles(folder: Path) -> list[int]:
    """Cycles (rounds) with saved latent codes under ``folder/latent/`` (``cycleNN.npz``), sorted."""
    return sorted(int(p.stem[5:]) for p in (Path(folder) / "latent").glob("cycle[0-9][0-9].npz"))


def drawable(exp, rows, arms, seed: int, cycles=(0, 1), need: str = "views") -> tuple[list[tuple[str, int, dict]], list[str]]:
    """The (arm, cycle, record) of ``seed`` that can be drawn, and a note per one that cannot yet.

    ``need="views"``: reconstructions and samples (the cached ``views/cycleNN.npz`` or the saved learner);
    ``need="latent"``: a UMAP map (the saved ``latent/cycleNN.npz``). Partial results: a cycle with no
    record on disk, or without the files a figure needs, is left out and named in the notes.
    """
    recs = {(r.get("arm"), r.get("cycle")): r for r in rows if r.get("seed") == seed}
    ok, notes = [], []
    for arm in arms:
        run_dir = exp.run_dir(arm, seed)
        for cycle in cycles:
            rec = recs.get((arm, cycle))
            if rec is None:
                notes.append(f"{arm}, cycle {cycle}: no record on disk yet")
                continue
            files = ([run_dir / "views" / f"cycle{cycle:02d}.npz", run_dir / "learners" / f"cycle{cycle:02d}.pt"]
                     if need == "views" else [run_dir / "latent" / f"cycle{cycle:02d}.npz"])
            if any(f.exists() for f in files):
                ok.append((arm, cycle, rec))
            else:
                notes.append(f"{arm}, cycle {cycle}: no {' or '.join(f.relative_to(run_dir).as_posix() for f in files)} on disk")
    return ok, notes
