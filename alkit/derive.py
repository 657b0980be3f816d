"""Files derived from a run's saved files, for the figures: what a trained generative learner looks like
(reconstructions, samples, UMAP maps of its latent space), the numbers behind a UMAP map, and notebook 05's
exact-vs-approximate norm comparison.

Each is computed once from what a run saved (``learners/cycleNN.pt``: state_dicts, loaded with
``weights_only=True``; ``latent/cycleNN.npz``: paths in :mod:`alkit.results`) and cached beside it, so a
notebook redraws its figures without a model, the data, or a UMAP fit. This is the one step between training
and drawing that loads models and data; the records themselves are read by :mod:`alkit.analysis`.
"""
from __future__ import annotations

import io
import types
from pathlib import Path

import numpy as np
import torch

from . import results
from .analysis.tables import count_classes
from .models import CLASSIFIER_SIZES, M2, VAE
from .own_data import load_data
from .results import RunFolderError, atomic_write_bytes


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
        with np.load(io.BytesIO(results.read_bytes(path)), allow_pickle=False) as f:  # no link, no pickle
            return {k: f[k] for k in f.files}
    arrays = compute()
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    return arrays


def load_learner(path: Path) -> types.SimpleNamespace:
    """The generative modules of a learner saved by ``save_learner`` (``learners/cycleNN.pt``: state_dicts,
    :func:`alkit.loop.module_states`), rebuilt on the CPU in eval mode: its VAEs and M2s by attribute name, plus
    its ``name``. Loaded with ``weights_only=True`` (:func:`alkit.results.load_tensors`): a file that needs code to
    load (planted, or a learner pickled by alkit before issue 47) is a :class:`~alkit.results.RunFolderError`
    and nothing in it runs. The modules' sizes are read from the shapes of their weights."""
    state = results.load_tensors(path, results.LEARNER_FORMAT, "a saved learner")
    classes = state.get("classes") if isinstance(state.get("classes"), dict) else {}
    modules = {}
    for name, kind in classes.items():
        if kind in ("VAE", "M2") and isinstance(state["modules"].get(name), dict):
            modules[name] = _rebuild(kind, state["modules"][name], path, name)
    return types.SimpleNamespace(name=str(state.get("learner")), **modules)


def _rebuild(kind: str, sd: dict, path: Path, name: str) -> torch.nn.Module:
    """A :class:`~alkit.models.VAE` or :class:`~alkit.models.M2` shaped as the state_dict ``sd``, its weights loaded."""
    try:
        conv = sd["encoder.net.0.weight"]  # (width, in_channels, 4, 4)
        width, channels, latent = conv.shape[0], conv.shape[1], sd["fc_mu.weight"].shape[0]
        if kind == "VAE":
            candidates = [VAE(latent, width, sd["decoder.fc.weight"].shape[1] - latent, channels)]
        else:
            hidden, classes = sd["enc_y.weight"].shape
            candidates = [M2(classes, latent, width, hidden, size, 0.0, channels) for size, (widths, h) in
                          CLASSIFIER_SIZES.items() if (widths[0], h) == (sd["classifier.features.0.weight"].shape[0],
                                                                         sd["classifier.head.1.weight"].shape[0])]
        for module in candidates:
            module.load_state_dict(sd)
            return module.eval()
        raise KeyError("no classifier size fits")
    except (KeyError, IndexError, RuntimeError, ValueError, AttributeError) as exc:
        raise RunFolderError(f"{path}: module {name!r} is not a state_dict of alkit's {kind} "
                             f"({' '.join(str(exc).split())[:120]}); allowed: the file alkit writes; fix: "
                             "train the run again with --force") from None


def generative_views(exp, arm: str, seed: int, cycle: int, examples: int = 16, per_class: int = 8) -> dict:
    """Originals, reconstructions and samples of the learner saved for ``cycle``; cached as ``views/cycleNN.npz``.

    The originals are the first ``examples`` test images of the run's data
    split (loaded only when the cache is missing). Needs ``save_learner: true``.
    """
    run_dir = exp.run_dir(arm, seed)

    def compute():
        learner = load_learner(results.learner_path(run_dir, cycle))  # first: a refused file loads no data
        x_examples = load_data(exp.config(arm, seed), torch.device("cpu")).x_test[:examples]
        samples, row_labels = sample(learner, per_class, seed)
        return {"original": x_examples[:, 0].cpu().numpy(), "reconstruction": reconstruct(learner, x_examples.cpu()),
                "samples": samples, "sample_rows": np.array(row_labels)}

    return _cached(results.views_path(run_dir, cycle), compute)


def umap_map(exp, arm: str, seed: int, cycle: int, n_neighbors: int = 15, min_dist: float = 0.1) -> dict:
    """2-D UMAP of the latent codes saved for ``cycle``; cached as ``latent/umap_cycleNN.npz``.

    Returns ``xy`` (N, 2), ``y`` (N,), ``status`` (N,: 0 unlabelled, 1 labelled,
    2 just selected) and ``pool_index`` (N,). UMAP is fitted with a fixed
    ``random_state`` (single-threaded, so the map is reproducible).
    """
    return umap_file(results.latent_path(exp.run_dir(arm, seed), cycle), seed, n_neighbors, min_dist)


def umap_file(src: Path, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1) -> dict:
    """:func:`umap_map` of one saved ``latent/cycleNN.npz`` (any run or oracle session); cached beside it."""
    src = Path(src)

    def compute():
        umap = _import_umap()
        with np.load(io.BytesIO(results.read_bytes(src)), allow_pickle=False) as f:
            z, y, status, idx = f["z"].astype(np.float32), f["y"], f["status"], f["pool_index"]
        xy = umap.UMAP(n_neighbors=n_neighbors, min_dist=min_dist, random_state=seed, n_jobs=1).fit_transform(z)
        return {"xy": xy.astype(np.float32), "y": y, "status": status, "pool_index": idx}

    return _cached(results.umap_path(src), compute)


def _import_umap():
    """umap-learn, its numba functions cached on disk (``__pycache__`` beside their source, or
    ``$NUMBA_CACHE_DIR``).

    umap-learn compiles most of its ~110 numba functions without ``cache=True`` (pynndescent caches its own),
    so every fresh process that fits a map compiled them again: 13 s of a 100-point map on one core, 0.2 s
    from the cache. The cache holds the same machine code numba would compile, so the maps are the same
    numbers. Imported only when a map is missing (heavy)."""
    import sys

    import umap
    from numba.core.dispatcher import Dispatcher

    for name, module in list(sys.modules.items()):
        if name == "umap" or name.startswith("umap."):
            for fn in vars(module).values():
                if isinstance(fn, Dispatcher) and type(getattr(fn, "_cache", None)).__name__ == "NullCache":
                    fn.enable_caching()
    return umap


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
            files = ([results.views_path(run_dir, cycle), results.learner_path(run_dir, cycle)]
                     if need == "views" else [results.latent_path(run_dir, cycle)])
            if any(f.exists() for f in files):
                ok.append((arm, cycle, rec))
            else:
                notes.append(f"{arm}, cycle {cycle}: no {' or '.join(f.relative_to(run_dir).as_posix() for f in files)} on disk")
    return ok, notes


def norm_comparison(exp, arm: str = "kernel_norm_approx", seed: int | None = None, cycle: int = 0,
                    pool: int = 400, budget: int = 25) -> dict:
    """Exact vs approximate norm-based maximin on one small pool, from a run's saved latent codes.

    Uses ``latent/cycleNN.npz`` of (``arm``, ``seed``) — the run must set
    ``latent_sample`` — so no model is needed: candidates are the unlabelled
    sample points, anchors the labelled ones with their labels. The result
    (with the time of each method) is cached as ``norm_comparison.json`` in
    the experiment folder, so redrawing does not re-time it. None when the run has not reached
    ``cycle`` yet (partial results: no record of that cycle on disk).
    """
    from .strategies import Context
    from .strategies.norm import compare_norm

    seed = exp.seeds[0] if seed is None else seed
    cache = results.norm_comparison_path(exp.folder)
    key = {"arm": arm, "seed": seed, "cycle": cycle, "pool": pool, "budget": budget}
    if cache.exists():
        saved = results.read_json(cache)
        if saved.get("key") == key:
            return saved["result"]
    path = results.latent_path(exp.run_dir(arm, seed), cycle)
    if not path.exists():
        if not any(r.get("cycle") == cycle for r in results.read_records(results.records_path(exp.run_dir(arm, seed)))):
            return None  # the run has not reached this cycle yet
        raise FileNotFoundError(f"{path} missing: set latent_sample for arm {arm!r} to compare norm scores")
    f = np.load(io.BytesIO(results.read_bytes(path)), allow_pickle=False)
    z = torch.as_tensor(f["z"].astype(np.float32))
    unl, lab = f["status"] == 0, f["status"] == 1
    classes = count_classes(results.read_records(results.records_path(exp.run_dir(arm, seed))))
    ctx = Context(learner=None, x_unlabelled=z[unl], x_labelled=z[lab], y_labelled=torch.as_tensor(f["y"][lab]).long(),
                  unlabelled_indices=f["pool_index"][unl], labelled_indices=f["pool_index"][lab],
                  num_classes=classes or int(f["y"].max()) + 1, seed=seed)
    ctx.provide(latent=z[unl], labelled_latent=z[lab])  # the saved codes stand in for the model
    raw = compare_norm(ctx, budget=budget, pool_size=pool)
    result = {"pool": raw["n_candidates"], "labelled": raw["n_labelled"], "exact_seconds": raw["seconds_exact"],
              "approx_seconds": raw["seconds_approx"], "spearman": raw["spearman"], "overlap": raw["top_overlap"]}
    results.write_json(cache, {"key": key, "result": result, "raw": raw})
    return result


def latent_summary(exp, arm: str, seed: int, cycle: int, umap_map: dict) -> dict:
    """Numbers behind a UMAP figure: how class-organised the map is, and where the selected batch lies.

    ``knn_purity``: share of points whose 10 nearest neighbours on the 2-D map
    vote for their true class. ``selected_classes``: classes present in the
    batch selected at this cycle. ``selected_to_labelled``: mean latent (not
    map) distance from a selected point to its nearest labelled point, divided
    by the same for the unlabelled sample.
    """
    from sklearn.neighbors import KNeighborsClassifier

    xy, y, status = umap_map["xy"], umap_map["y"], umap_map["status"]
    knn = KNeighborsClassifier(n_neighbors=11).fit(xy, y)
    neigh = knn.kneighbors(xy, return_distance=False)[:, 1:]  # drop the point itself
    votes = np.array([np.bincount(y[n]).argmax() for n in neigh])  # the majority class among the neighbours
    latent = results.read_bytes(results.latent_path(exp.run_dir(arm, seed), cycle))
    with np.load(io.BytesIO(latent), allow_pickle=False) as f:
        z = torch.as_tensor(f["z"].astype(np.float32))
    lab = z[torch.as_tensor(status == 1)]
    near = lambda pts: torch.cdist(pts, lab).min(1).values.mean().item() if len(pts) and len(lab) else float("nan")
    sel, unl = z[torch.as_tensor(status == 2)], z[torch.as_tensor(status == 0)]
    return {"knn_purity": float((votes == y).mean()), "selected_classes": int(np.unique(y[status == 2]).size),
            "selected_to_labelled": near(sel) / near(unl) if len(sel) else float("nan")}
