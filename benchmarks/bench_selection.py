"""Time ONE selection per strategy over a full-size pool (55,000 candidates, budget 1000).

    .venv/bin/python benchmarks/bench_selection.py            # all strategies, CPU
    .venv/bin/python benchmarks/bench_selection.py --cnn      # + BALD with real MC-dropout CNN passes
    .venv/bin/python benchmarks/bench_selection.py --smoke    # tiny sizes, seconds

Inputs are synthetic but shaped like a real cycle (stated in the printout):

- latent codes: d = 32, a mixture of 10 overlapping Gaussians (centres
  N(0, 0.6^2 I), unit noise); 1000 labelled points from the same mixture with
  their cluster as label.
- probabilities: a soft nearest-centre classifier,
  ``softmax(-||z - mu_c||^2 / 3 + N(0, 0.5^2))``: ~90% accurate, mean
  confidence ~0.84 (so Alg 1/2 have real anchors and real mistakes).
- MC-dropout samples (BALD): the same logits with fresh N(0, 0.5^2) noise per sample.
- discriminator probabilities (VAAL family): uniform random.
- penultimate features (BADGE): ``relu(z W)``, W a fixed N(0, 1/d) (d, H) matrix,
  H = 1024 (the large classifier of paper notebook 05; ``--hidden``).

The planted learner only looks these up, so the times are the strategies'
own cost (distances, greedy loops, kernel solves), not the model's forward
passes; ``--cnn`` adds a row for BALD with the small task CNN's real T=20
MC-dropout passes over 55,000 images. ``kernel_norm_exact`` runs on a 500-candidate
pool only (it is O(U L^3)); ``kernel_norm_approx`` runs on both. ``network_norm``
fine-tunes real networks and is timed by ``bench_norm.py``, not here.

A second table times the low-budget strategies (TypiClust, ProbCover, BADGE) beside
Algorithms 1 and 2 and the core-set at paper notebook 05's largest selection:
550 labelled, budget 50, the same 55,000 candidates (``--low-labelled``, ``--low-budget``).
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from alkit.strategies import STRATEGIES, Context, acquire, get_strategy
from alkit.strategies.base import make_params
from alkit.strategies.norm import compare_norm

SUPPORTED = {"proba", "embed", "mc_proba", "labelled_prob", "network"}
NOT_HERE = {"network_norm": "fine-tunes networks: benchmarks/bench_norm.py"}
LOW_BUDGET = ["typiclust", "probcover", "badge", "alg1", "alg2", "coreset"]


class SyntheticNetwork(torch.nn.Module):
    """A task network that looks its penultimate features up by row id (for BADGE)."""

    def __init__(self, h):
        super().__init__()
        self.h = h

    def penultimate(self, x):
        return self.h[x[:, 0].long()]


class SyntheticLearner:
    """Looks its outputs up by row id (labelled rows first, then the pool)."""

    def __init__(self, z, logits, seed, hidden: int = 1024):
        self.z, self.logits, self.seed = z, logits, seed
        g = torch.Generator().manual_seed(seed)
        self.disc = torch.rand(len(z), generator=g)
        w = torch.randn(z.shape[1], hidden, generator=g) / z.shape[1] ** 0.5
        self.net = SyntheticNetwork(torch.relu(z @ w))  # (N, H)

    def task_network(self):
        return self.net

    def _ids(self, x):
        return x[:, 0].long()

    def predict_proba(self, x):
        return self.logits[self._ids(x)].softmax(1)

    def embed(self, x):
        return self.z[self._ids(x)]

    def labelled_prob(self, x):
        return self.disc[self._ids(x)]

    def mc_proba(self, x, samples):
        lg = self.logits[self._ids(x)]
        return torch.stack([(lg + 0.5 * torch.randn_like(lg)).softmax(1) for _ in range(samples)])


def synthetic(n_pool: int, n_lab: int, d: int, num_classes: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    centres = 0.6 * torch.randn(num_classes, d, generator=g)
    y = torch.randint(num_classes, (n_lab + n_pool,), generator=g)
    z = centres[y] + torch.randn(n_lab + n_pool, d, generator=g)  # (N, d)
    logits = -torch.cdist(z, centres).square() / 3.0 + 0.5 * torch.randn(n_lab + n_pool, num_classes, generator=g)
    return z, logits, y


def make_ctx(learner, y, n_lab, n_pool, num_classes, seed, strategy, pool_rows=None):
    ids = torch.arange(n_lab + n_pool, dtype=torch.float32)[:, None]
    cand = np.arange(n_pool) if pool_rows is None else np.asarray(pool_rows)
    return Context(
        learner=learner, x_unlabelled=ids[n_lab + cand], x_labelled=ids[:n_lab], y_labelled=y[:n_lab],
        unlabelled_indices=cand, labelled_indices=np.arange(n_lab), num_classes=num_classes, seed=seed,
        params=make_params(get_strategy(strategy), {}),
    )


def time_one(name, learner, y, n_lab, n_pool, num_classes, budget, pool_rows=None):
    ctx = make_ctx(learner, y, n_lab, n_pool, num_classes, 0, name, pool_rows)
    t = time.perf_counter()
    sel = acquire(name, ctx, budget)
    return time.perf_counter() - t, sel


def cnn_bald_seconds(n_pool: int, samples: int) -> float:
    """T MC-dropout passes of the small task CNN (untrained) over n_pool random images, plus the score."""
    from alkit.learners.classifier import ClassifierLearner, ClassifierParams
    from alkit.models import Classifier
    from alkit.strategies.bald import bald_scores

    learner = ClassifierLearner(ClassifierParams(), 10, "cpu")
    learner.model = Classifier(10, "small", 0.3)
    x = torch.rand(n_pool, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    t = time.perf_counter()
    bald_scores(learner.mc_proba(x, samples))
    return time.perf_counter() - t


def _table(rows):
    print()
    print(f"| {'strategy':<22} | {'candidates':>10} | {'labelled':>8} | {'budget':>6} | {'seconds':>8} |")
    print(f"|{'-' * 24}|{'-' * 12}|{'-' * 10}|{'-' * 8}|{'-' * 10}|")
    for r in rows:
        print(f"| {r[0]:<22} | {r[1]!s:>10} | {r[2]!s:>8} | {r[3]!s:>6} | {r[4]:>8} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", type=int, default=55_000)
    ap.add_argument("--labelled", type=int, default=1000)
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--small-pool", type=int, default=500)
    ap.add_argument("--small-budget", type=int, default=50)
    ap.add_argument("--hidden", type=int, default=1024, help="penultimate width for BADGE")
    ap.add_argument("--low-labelled", type=int, default=550)
    ap.add_argument("--low-budget", type=int, default=50)
    ap.add_argument("--only", nargs="*", help="time only these strategies")
    ap.add_argument("--cnn", action="store_true", help="also time BALD with real CNN MC-dropout passes")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes for a quick check")
    a = ap.parse_args(argv)
    if a.smoke:
        a.pool, a.labelled, a.budget, a.small_pool, a.small_budget = 2000, 100, 50, 100, 10
        a.low_labelled, a.low_budget, a.hidden = 50, 20, 64
    num_classes, seed = 10, 0
    z, logits, y = synthetic(a.pool, a.labelled, a.dim, num_classes, seed)
    learner = SyntheticLearner(z, logits, seed, a.hidden)
    acc = float((logits[: a.labelled].argmax(1) == y[: a.labelled]).float().mean())
    small = np.sort(np.random.default_rng(seed).choice(a.pool, a.small_pool, replace=False))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"pool {a.pool}, labelled {a.labelled} (model accuracy on them {acc:.2f}), latent d={a.dim}, "
          f"{num_classes} classes; synthetic Gaussian-mixture latent, nearest-centre probabilities")
    rows = []
    names = sorted(STRATEGIES) if not a.only else [n for n in sorted(STRATEGIES) if n in a.only]
    for name in names:
        needs = set(STRATEGIES[name].needs)
        if name in NOT_HERE:
            rows.append((name, "-", "-", "-", f"skipped: {NOT_HERE[name]}"))
            continue
        if not needs <= SUPPORTED:
            rows.append((name, "-", "-", "-", f"skipped: needs {sorted(needs - SUPPORTED)}"))
            continue
        if name == "kernel_norm_exact":
            sec, _ = time_one(name, learner, y, a.labelled, a.pool, num_classes, a.small_budget, small)
            rows.append((name, a.small_pool, a.labelled, a.small_budget, f"{sec:8.2f}"))
            continue
        sec, _ = time_one(name, learner, y, a.labelled, a.pool, num_classes, a.budget)
        rows.append((name, a.pool, a.labelled, a.budget, f"{sec:8.2f}"))
        if name == "kernel_norm_approx":
            sec, _ = time_one(name, learner, y, a.labelled, a.pool, num_classes, a.small_budget, small)
            rows.append((name, a.small_pool, a.labelled, a.small_budget, f"{sec:8.2f}"))
    if a.cnn:
        sec = cnn_bald_seconds(a.pool, 20)
        rows.append(("bald + 20 CNN passes", a.pool, a.labelled, a.budget, f"{sec:8.2f}"))

    _table(rows)

    # the low-budget regime of notebook 05: labelled rows first in the synthetic arrays, so the
    # first low_labelled of them are labelled and the same pool follows
    low = []
    z2, logits2, y2 = synthetic(a.pool, a.low_labelled, a.dim, num_classes, seed)
    learner2 = SyntheticLearner(z2, logits2, seed, a.hidden)
    for name in (n for n in LOW_BUDGET if n in names):
        sec, _ = time_one(name, learner2, y2, a.low_labelled, a.pool, num_classes, a.low_budget)
        low.append((name, a.pool, a.low_labelled, a.low_budget, f"{sec:8.2f}"))
    if low:
        print(f"\nnotebook 05's low-budget selection (BADGE's penultimate width H = {a.hidden}):")
        _table(low)
    if a.only and "kernel_norm_exact" not in a.only:
        return

    cmp_ctx = make_ctx(learner, y, a.labelled, a.pool, num_classes, 0, "kernel_norm_exact", small)
    c = compare_norm(cmp_ctx, a.small_budget, pool_size=None)
    print(f"\nkernel_norm_exact vs kernel_norm_approx on {c['n_candidates']} candidates: spearman {c['spearman']:.6f}, "
          f"top-{c['budget']} overlap {c['top_overlap']:.2f}, max rel diff {c['max_rel_diff']:.1e}, "
          f"exact {c['seconds_exact']:.2f}s, approx {c['seconds_approx']:.3f}s ({c['speedup']:.0f}x)")


if __name__ == "__main__":
    main()
