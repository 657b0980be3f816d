"""Low-budget acquisition beside the study's Algorithms 1 and 2: TypiClust, ProbCover and BADGE.

TypiClust and ProbCover work in the learner's embedding, ``ctx.latent()`` (for
the ``m2`` learner the M2 latent mean that Algorithms 1 and 2 and the core-set
use), with Euclidean distance; BADGE works in its own gradient embedding built
from the task network's penultimate features. The labelled points enter only
through their latent codes (TypiClust, ProbCover) -- never their labels -- and
no strategy sees an unlabelled label.

References (papers, and the official code read for what the papers leave out)
--------------------------------------------------------------------------------
- TypiClust: Hacohen, Dekel & Weinshall, "Active Learning on a Budget: Opposite
  Strategies Suit High and Low Budgets", ICML 2022, https://arxiv.org/abs/2202.02794;
  code github.com/avihu111/TypiClust (``deep-al/pycls/al/typiclust.py``).
- ProbCover: Yehuda, Dekel, Hacohen & Weinshall, "Active Learning Through a
  Covering Lens", NeurIPS 2022, https://arxiv.org/abs/2205.11320; code in the same
  repository (``deep-al/pycls/al/prob_cover.py``).
- BADGE: Ash, Zhang, Krishnamurthy, Langford & Agarwal, "Deep Batch Active
  Learning by Diverse, Uncertain Gradient Lower Bounds", ICLR 2020,
  https://arxiv.org/abs/1906.03671; code github.com/JordanAsh/badge
  (``query_strategies/badge_sampling.py``, with the outer-product distance of
  Zhang et al. 2023, Appendix D).

What alkit does differently from the official code, and why, is in each
strategy's docstring. Shapes: U candidates, L labelled, N = L + U, d latent size,
H penultimate width, C classes, k clusters, M coverage targets.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..train import batched
from .base import Context, register
from .latent import _greedy_threads

# rng streams (base.select 1, random 2, alg1 11, coreset 12, diagnostics 21)
_STREAM_TYPICLUST_KMEANS = 31
_STREAM_PROBCOVER_KMEANS = 32
_STREAM_PROBCOVER_TARGETS = 33
_STREAM_PROBCOVER_FALLBACK = 34
_STREAM_PROBCOVER_PURITY = 36
_STREAM_BADGE = 35

#: rows per block of the (rows, N) distance blocks below: 2**22 floats = 16 MiB
_BLOCK_ELEMENTS = 1 << 22


def _rows_per_block(m: int) -> int:
    return max(1, _BLOCK_ELEMENTS // max(1, m))


def _sq_dist(a: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor | None = None) -> torch.Tensor:
    """(n, m) squared Euclidean distances by the matmul expansion, clamped at 0."""
    b_sq = b.square().sum(1) if b_sq is None else b_sq
    return (a.square().sum(1, keepdim=True) - 2.0 * a @ b.T + b_sq).clamp_min_(0.0)


def _assign(z: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """(N,) index of the nearest centre for every row of ``z`` (first on ties), in row blocks."""
    c_sq = centres.square().sum(1)
    rows = _rows_per_block(len(centres))
    out = torch.empty(len(z), dtype=torch.long, device=z.device)
    ct = centres.T.contiguous()
    for i in range(0, len(z), rows):
        # |z|^2 is the same for every centre, so the argmin needs only |c|^2 - 2 z.c (one fused addmm)
        out[i : i + rows] = torch.addmm(c_sq, z[i : i + rows], ct, alpha=-2.0).argmin(1)
    return out


def kmeans(z: torch.Tensor, k: int, rng: np.random.Generator, iters: int = 20, sample: int = 20_000
           ) -> tuple[np.ndarray, torch.Tensor]:
    """Lloyd's k-means with k-means++ seeding; returns labels (N,) int64 and centres (k, d).

    The centres are fitted on a seeded subsample of ``sample`` rows (all rows when
    N is smaller, as in every smoke run): k-means++ seeding (D^2 sampling, Arthur &
    Vassilvitskii 2007), then at most ``iters`` Lloyd steps, stopping when no
    assignment changes (a centre that loses all its points keeps its place); finally
    every row is assigned to its nearest centre. The official TypiClust code calls
    scikit-learn (``KMeans`` up to 50 clusters, ``MiniBatchKMeans`` with batches of
    5,000 above, which also fits its centres on part of the data at a time); this is
    the same objective, seeded by the run's generator, and fits 55,000 points into
    500 clusters in about a second on 2 CPU cores (``benchmarks/bench_selection.py``).
    """
    n = len(z)
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= N, got k={k}, N={n}")
    z = z.float()
    sub = z if n <= sample else z[torch.as_tensor(np.sort(rng.choice(n, sample, replace=False)), device=z.device)]
    first = int(rng.integers(len(sub)))
    idx = [first]
    with _greedy_threads(z.device):  # k small sequential steps: thread barriers would dominate on shared cores
        d2 = _sq_dist(sub, sub[first : first + 1]).ravel().double()  # (S,)
        for _ in range(1, k):
            total = float(d2.sum())
            if total <= 0:  # fewer distinct points than clusters: any unchosen row
                free = np.setdiff1d(np.arange(len(sub)), idx)
                j = int(rng.choice(free))
            else:
                p = (d2 / total).cpu().numpy()
                j = int(rng.choice(len(sub), p=p / p.sum()))
            idx.append(j)
            torch.minimum(d2, _sq_dist(sub, sub[j : j + 1]).ravel().double(), out=d2)
    centres = sub[torch.as_tensor(idx, device=z.device)].clone()  # (k, d)
    labels = _assign(sub, centres)
    for _ in range(iters):
        sums = torch.zeros_like(centres).index_add_(0, labels, sub)
        counts = torch.bincount(labels, minlength=k).to(z.dtype)
        keep = counts > 0
        centres[keep] = sums[keep] / counts[keep, None]
        new = _assign(sub, centres)
        if torch.equal(new, labels):
            break
        labels = new
    if sub is not z:
        labels = _assign(z, centres)
    return labels.cpu().numpy().astype(np.int64), centres


# --------------------------------------------------------------------------------------------
# TypiClust


@dataclass
class TypiClustParams:
    """The official code's constants (``TypiClust.MAX_NUM_CLUSTERS``, ``MIN_CLUSTER_SIZE``, ``K_NN``)."""

    max_clusters: int = 500  # k = min(L + budget, max_clusters)
    min_cluster_size: int = 5  # clusters of at most this many points are never drawn from
    knn: int = 20  # neighbours in the typicality
    kmeans_iters: int = 20

    def __post_init__(self):
        for name in ("max_clusters", "knn"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.min_cluster_size < 0 or self.kmeans_iters < 0:
            raise ValueError(f"min_cluster_size and kmeans_iters must be >= 0, got {self.min_cluster_size}, {self.kmeans_iters}")


def typicality(z: torch.Tensor, knn: int) -> torch.Tensor:
    """(n,) typicality ``1 / (mean_{K nearest j != i} ||z_i - z_j||^2 + 1e-5)`` with K = min(knn, n // 2).

    As the official code: squared distances (its faiss ``IndexFlatL2`` returns
    squared L2; the paper writes plain distances), K halved for small clusters.
    A single point (K = 0) has typicality +inf.
    """
    n = len(z)
    kk = min(knn, n // 2)
    if kk == 0:
        return torch.full((n,), float("inf"), device=z.device)
    d2 = _sq_dist(z, z)
    d2.fill_diagonal_(float("inf"))  # a point is not its own neighbour
    near = d2.topk(kk, dim=1, largest=False).values  # (n, K)
    return 1.0 / (near.mean(1) + 1e-5)


def typiclust_select(z_lab: torch.Tensor, z: torch.Tensor, budget: int, rng: np.random.Generator,
                     p: TypiClustParams) -> np.ndarray:
    """TypiClust's selection: (budget,) candidate positions in pick order.

    1. k-means of labelled + candidates (N rows) into ``k = min(L + budget, max_clusters)``.
    2. Clusters with more than ``min_cluster_size`` points, ordered by fewest labelled
       points, then largest size, then cluster id; the order is fixed for the batch
       (as the official code, which sorts once).
    3. Pick ``i`` goes to the ``i mod K``-th cluster of that order: its most typical
       point among its candidates not yet picked (:func:`typicality` over those
       candidates only, recomputed at each visit).

    Fallbacks (the official code has none of these cases): no cluster larger than
    ``min_cluster_size`` -> every cluster qualifies; a cluster whose candidates are
    exhausted is passed over for the next one in the order. When every cluster
    already holds a labelled point ("no uncovered cluster"), step 2's order simply
    starts at the clusters with the fewest labelled points, as in the official code;
    a budget above the number of clusters wraps around them.
    """
    n_lab = len(z_lab)
    allz = torch.cat([z_lab.to(z.device, z.dtype), z]).float()  # (N, d), labelled first
    k = min(n_lab + budget, p.max_clusters, len(allz))
    labels, _ = kmeans(allz, k, rng, iters=p.kmeans_iters)
    sizes = np.bincount(labels, minlength=k)
    lab_counts = np.bincount(labels[:n_lab], minlength=k)
    ok = np.flatnonzero(sizes > p.min_cluster_size)
    if ok.size == 0:
        ok = np.flatnonzero(sizes > 0)
    order = ok[np.lexsort((ok, -sizes[ok], lab_counts[ok]))]  # last key primary: fewest labelled first
    cand_cluster = labels[n_lab:].copy()  # (U,); -1 once picked
    with _greedy_threads(z.device):  # one small cluster per pick: thread barriers would dominate on shared cores
        picks = _typiclust_picks(z, cand_cluster, order, sizes, lab_counts, k, budget, p)
    return np.asarray(picks, dtype=np.int64)


def _typiclust_picks(z, cand_cluster, order, sizes, lab_counts, k, budget, p) -> list[int]:
    """Step 3 of :func:`typiclust_select`; ``cand_cluster`` (U,) is marked -1 as points are picked."""
    picks: list[int] = []
    i = misses = 0
    while len(picks) < budget:
        c = order[i % len(order)]
        i += 1
        members = np.flatnonzero(cand_cluster == c)
        if members.size == 0:
            misses += 1
            if misses >= len(order):  # every qualifying cluster exhausted: the others, in the same order
                rest = np.flatnonzero(np.bincount(cand_cluster[cand_cluster >= 0], minlength=k) > 0)
                order = rest[np.lexsort((rest, -sizes[rest], lab_counts[rest]))]
                i = misses = 0
            continue
        misses = 0
        t = typicality(z[torch.as_tensor(members, device=z.device)].float(), p.knn)
        j = int(members[int(t.argmax())])
        picks.append(j)
        cand_cluster[j] = -1
    return picks


@register("typiclust", batch=True, params=TypiClustParams, needs=("embed",))
def typiclust(ctx: Context, budget: int) -> np.ndarray:
    """TypiClust (Hacohen et al., ICML 2022): the most typical candidate of each of the largest clusters without labels.

    k-means of the labelled and candidate latent codes into ``min(L + budget, 500)``
    clusters; clusters of more than 5 points, fewest labelled points first, then
    largest; from each the candidate with the highest typicality, the inverse mean
    squared distance to its 20 nearest candidates in the cluster
    (:func:`typiclust_select`). Latent: ``ctx.latent()`` (M2's latent mean for the
    ``m2`` learner), raw Euclidean -- the official code L2-normalises its
    self-supervised (SimCLR) features, which are trained on the sphere; M2's
    Gaussian latent is not, and Algorithms 1 and 2 use it unnormalised.
    k-means: :func:`kmeans` (k-means++ seeding and <= 20 Lloyd steps on up to
    20,000 rows, then every row assigned), seeded by the run.
    """
    p = ctx.params or TypiClustParams()
    return typiclust_select(ctx.labelled_latent(), ctx.latent(), budget, ctx.rng(_STREAM_TYPICLUST_KMEANS), p)


# --------------------------------------------------------------------------------------------
# ProbCover


@dataclass
class ProbCoverParams:
    """``delta``: ball radius in latent units; None = chosen each cycle by :func:`purity_delta`."""

    delta: float | None = None
    purity: float = 0.95  # alpha: share of pure balls the chosen delta keeps
    pseudo_classes: int | None = None  # k of the k-means pseudo-labels; None = the number of classes
    targets: int = 5000  # points whose coverage is counted (all of them when N is smaller)
    purity_points: int = 2000  # of those, the balls whose purity chooses delta
    kmeans_iters: int = 20

    def __post_init__(self):
        if self.delta is not None and not self.delta > 0:
            raise ValueError(f"delta must be > 0 or null (chosen by purity), got {self.delta}")
        if not 0 < self.purity <= 1:
            raise ValueError(f"purity must be in (0, 1], got {self.purity}")
        if self.pseudo_classes is not None and self.pseudo_classes < 2:
            raise ValueError(f"pseudo_classes must be >= 2 or null (the number of classes), got {self.pseudo_classes}")
        if self.targets < 1 or self.purity_points < 1 or self.kmeans_iters < 0:
            raise ValueError(f"targets and purity_points must be >= 1 and kmeans_iters >= 0, got "
                             f"{self.targets}, {self.purity_points}, {self.kmeans_iters}")


def nearest_other_label(z_t: torch.Tensor, lab_t: np.ndarray, z: torch.Tensor, lab: np.ndarray) -> torch.Tensor:
    """(M,) distance from each target row to the nearest row of ``z`` with another pseudo-label (+inf if none).

    Computed as the nearest row of each pseudo-class (M, K), then the minimum over
    the classes other than the target's: no (M, N) mask is ever built.
    """
    lab = np.asarray(lab)
    classes = np.unique(lab)
    per_class = torch.full((len(z_t), len(classes)), float("inf"), dtype=z.dtype, device=z.device)
    for j, c in enumerate(classes):
        zc = z[torch.as_tensor(np.flatnonzero(lab == c), device=z.device)]
        per_class[:, j] = _min_sq_dist(z_t, zc)
    own = torch.as_tensor(np.searchsorted(classes, np.asarray(lab_t)), device=z.device)
    per_class[torch.arange(len(z_t), device=z.device), own] = float("inf")
    return per_class.min(1).values.sqrt_()


def _min_sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(n,) squared distance from each row of ``a`` to its nearest row of ``b``, in row blocks."""
    b_sq, bt = b.square().sum(1), b.T.contiguous()
    rows = _rows_per_block(len(b))
    out = torch.empty(len(a), dtype=a.dtype, device=a.device)
    for i in range(0, len(a), rows):
        blk = a[i : i + rows]
        out[i : i + rows] = torch.addmm(b_sq, blk, bt, alpha=-2.0).min(1).values + blk.square().sum(1)
    return out.clamp_min_(0.0)


def purity_delta(d_other: np.ndarray | torch.Tensor, alpha: float) -> float:
    """The largest delta at which at least ``alpha`` of the balls are pure.

    The ball ``B(x) = {y : ||x - y|| < delta}`` is pure when every point in it shares
    x's pseudo-label, i.e. when ``delta <= d_other(x)``, the distance to the nearest
    point of another pseudo-label. So purity(delta) = share of x with
    ``d_other(x) >= delta``, and its largest delta with purity >= alpha is an order
    statistic: the ``(M - ceil(alpha M) + 1)``-th smallest ``d_other``. (The paper
    scans a grid of delta for the same criterion; this is the grid's limit.)
    """
    d = np.sort(np.asarray(torch.as_tensor(d_other).cpu().numpy() if torch.is_tensor(d_other) else d_other, float))
    m = d.size
    if m == 0:
        raise ValueError("purity_delta needs at least one point")
    j = m - math.ceil(alpha * m - 1e-9)  # 0-based index of that order statistic
    return float(d[max(0, min(m - 1, j))])


def coverage_edges(z_c: torch.Tensor, z_t: torch.Tensor, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Edges ``(centre, target)`` with ``||z_c - z_t|| < delta``: two int64 arrays, sorted by target."""
    zc_sq, zct = z_c.square().sum(1), z_c.T.contiguous()
    rows = _rows_per_block(len(z_c))
    ts, cs = [], []
    for i in range(0, len(z_t), rows):
        blk = z_t[i : i + rows]
        # ||t - c||^2 < delta^2  <=>  |c|^2 - 2 t.c < delta^2 - |t|^2 (one fused addmm, one compare)
        limit = (delta * delta - blk.square().sum(1))[:, None]
        t, c = torch.nonzero(torch.addmm(zc_sq, blk, zct, alpha=-2.0) < limit, as_tuple=True)
        ts.append((t + i).cpu().numpy())
        cs.append(c.cpu().numpy())
    t = np.concatenate(ts) if ts else np.zeros(0, np.int64)
    c = np.concatenate(cs) if cs else np.zeros(0, np.int64)
    return c.astype(np.int64), t.astype(np.int64)


def max_coverage(centre: np.ndarray, target: np.ndarray, n_centres: int, n_targets: int, covered: np.ndarray,
                 budget: int, eligible: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Greedy maximum coverage: ``budget`` times the eligible centre whose ball holds the most uncovered targets.

    ``covered`` (M,) bool is updated in place; ties go to the lowest index (the
    official ``argmax``). Stops early when no eligible centre covers anything new;
    returns the picks and ``covered``.
    """
    from scipy import sparse  # optional (the notebooks extra): only ProbCover needs it

    ones = np.ones(centre.size, dtype=np.int32)
    by_centre = sparse.csr_matrix((ones, (centre, target)), shape=(n_centres, n_targets))
    by_target = by_centre.tocsc()
    degree = np.asarray(by_centre @ (~covered).astype(np.int32)).ravel().astype(np.int64)  # (n_centres,)
    degree[~eligible] = -1
    picks: list[int] = []
    while len(picks) < budget:
        c = int(degree.argmax())
        if degree[c] <= 0:
            break
        picks.append(c)
        row = by_centre.indices[by_centre.indptr[c] : by_centre.indptr[c + 1]]
        new = row[~covered[row]]
        covered[new] = True
        # every centre that reached a newly covered target loses one degree per such target
        degree -= np.bincount(by_target[:, new].indices, minlength=n_centres)
        degree[c] = -1
    return picks, covered


def coverage_setup(z_lab: torch.Tensor, z: torch.Tensor, num_classes: int, ctx_rng, p: ProbCoverParams):
    """ProbCover's inputs for one cycle: ``allz`` (N, d) labelled rows first, the target
    indices ``tgt`` (M,) and rows ``z_t`` (M, d), and ``delta`` (see :func:`probcover_select`).

    Shared by the strategy and :func:`alkit.diagnostics.latent_coverage`, so that the recorded
    coverage of a ``probcover`` run is measured with the very delta and targets it selected with.
    delta's purity is estimated on ``p.purity_points`` of the targets (a seeded sample when
    there are more), each against all N points.
    """
    n = len(z_lab) + len(z)
    allz = torch.cat([z_lab.to(z.device, z.dtype), z]).float()  # (N, d)
    tgt = np.arange(n) if n <= p.targets else np.sort(ctx_rng(_STREAM_PROBCOVER_TARGETS).choice(n, p.targets, replace=False))
    z_t = allz[torch.as_tensor(tgt, device=allz.device)]
    if p.delta is not None:
        return allz, tgt, z_t, float(p.delta)
    labels, _ = kmeans(allz, min(p.pseudo_classes or num_classes, n), ctx_rng(_STREAM_PROBCOVER_KMEANS), iters=p.kmeans_iters)
    pur = tgt if len(tgt) <= p.purity_points else np.sort(
        ctx_rng(_STREAM_PROBCOVER_PURITY).choice(tgt, p.purity_points, replace=False))
    z_p = allz[torch.as_tensor(pur, device=allz.device)]
    return allz, tgt, z_t, purity_delta(nearest_other_label(z_p, labels[pur], allz, labels), p.purity)


def probcover_select(z_lab: torch.Tensor, z: torch.Tensor, budget: int, num_classes: int, ctx_rng,
                     p: ProbCoverParams) -> tuple[np.ndarray, dict]:
    """ProbCover's selection: (budget,) candidate positions in pick order, and what it saw.

    1. delta: ``p.delta``, or :func:`purity_delta` at ``p.purity`` with k-means
       pseudo-labels (k = ``p.pseudo_classes`` or C) of labelled + candidates, the
       balls centred at the targets and holding any of the N points.
    2. Targets: all N points, or a seeded uniform sample of ``p.targets`` of them --
       the probability coverage ``P(union of balls)`` that ProbCover maximises is then
       estimated by Monte Carlo (standard error <= 0.5 / sqrt(M), 0.7 points at 5,000).
    3. Targets within delta of a labelled point are covered; greedy maximum coverage
       over the candidates (:func:`max_coverage`).
    4. Fallback when nothing uncovered is left within delta of any candidate (full
       coverage): the remaining picks are a seeded uniform draw of the candidates not
       yet picked. (The official code would pick index 0 again, a labelled point.)

    ``info``: ``delta``, ``coverage_before`` / ``coverage_after`` (share of targets
    covered by the labelled set / by labelled + picks), ``fallback`` (picks drawn at random).
    """
    n_lab, n = len(z_lab), len(z_lab) + len(z)
    allz, tgt, z_t, delta = coverage_setup(z_lab, z, num_classes, ctx_rng, p)
    centre, target = coverage_edges(allz, z_t, delta)
    covered = np.zeros(len(tgt), dtype=bool)
    covered[np.unique(target[centre < n_lab])] = True
    before = float(covered.mean())
    eligible = np.arange(n) >= n_lab
    picks, covered = max_coverage(centre, target, n, len(tgt), covered, budget, eligible)
    pos = [c - n_lab for c in picks]
    fallback = budget - len(pos)
    if fallback:
        free = np.setdiff1d(np.arange(len(z)), pos)
        pos += ctx_rng(_STREAM_PROBCOVER_FALLBACK).choice(free, fallback, replace=False).tolist()
    info = {"delta": delta, "coverage_before": before, "coverage_after": float(covered.mean()), "fallback": fallback}
    return np.asarray(pos, dtype=np.int64), info


@register("probcover", batch=True, params=ProbCoverParams, needs=("embed",))
def probcover(ctx: Context, budget: int) -> np.ndarray:
    """ProbCover (Yehuda et al., NeurIPS 2022): greedy maximum coverage by latent balls of radius delta.

    delta each cycle: the largest radius whose balls are >= 95 % pure under k-means
    pseudo-labels with k = C clusters of the labelled + candidate latent codes (the
    paper's criterion; closed form in :func:`purity_delta`, the purity of up to 2,000
    of the balls). Coverage counted on all points up to 5,000, on a seeded
    5,000-point sample above (Monte Carlo probability coverage). Targets within delta of a labelled point start covered;
    then, ``budget`` times, the candidate whose ball covers the most uncovered
    targets. Full coverage before the budget is spent: the rest is a seeded random
    draw (:func:`probcover_select`). Latent: ``ctx.latent()``, raw Euclidean (see
    ``typiclust`` for why not L2-normalised). The official code picks the argmax
    degree (the paper randomises among the top few); so does alkit.
    """
    p = ctx.params or ProbCoverParams()
    pos, _ = probcover_select(ctx.labelled_latent(), ctx.latent(), budget, ctx.num_classes, ctx.rng, p)
    return pos


# --------------------------------------------------------------------------------------------
# BADGE


def penultimate_features(learner, x: torch.Tensor) -> torch.Tensor:
    """(N, H) input of the task network's last linear layer on ``x`` (eval mode, no grad).

    Uses the network's ``penultimate`` method when it has one (alkit's
    :class:`~alkit.models.Classifier`), else a forward hook on its last ``nn.Linear``.
    """
    net = learner.task_network()
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            if hasattr(net, "penultimate"):
                return batched(net.penultimate, x)
            last = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
            seen: list[torch.Tensor] = []
            handle = last.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach()))
            try:
                batched(net, x)
            finally:
                handle.remove()
            return torch.cat(seen)
    finally:
        net.train(was_training)


def badge_select(h: torch.Tensor, proba: torch.Tensor, budget: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding on gradient embeddings; (budget,) positions in pick order.

    The gradient of the cross-entropy at the predicted label ``yhat = argmax p`` with
    respect to the last layer's weights is ``g = (onehot(yhat) - p) (x) h`` (C x H;
    the sign is immaterial). Distances use the outer-product identity
    ``||a_i (x) h_i - a_j (x) h_j||^2 = |a_i|^2 |h_i|^2 + |a_j|^2 |h_j|^2 - 2 (a_i . a_j)(h_i . h_j)``
    so the (U, C H) embedding is never built (the official code does the same).
    First centre: the largest ``|g|``; then each next centre drawn with probability
    proportional to ``D^2``, the squared distance to the nearest centre so far
    (chosen points have D = 0); if every D is 0, uniformly among the unchosen.
    """
    h = h.float()
    a = -proba.to(h.device, h.dtype).clone()
    a[torch.arange(len(a), device=a.device), proba.argmax(1).to(a.device)] += 1.0  # (U, C)
    a_sq, h_sq = a.square().sum(1), h.square().sum(1)
    g_sq = (a_sq * h_sq).double()  # (U,)
    first = int(g_sq.argmax())
    chosen = [first]
    is_chosen = np.zeros(len(h), dtype=bool)
    is_chosen[first] = True

    def dist2(j: int) -> torch.Tensor:
        return (g_sq + float(g_sq[j]) - 2.0 * ((a @ a[j]) * (h @ h[j])).double()).clamp_min_(0.0)

    with _greedy_threads(h.device):
        d2 = dist2(first)
        d2[first] = 0.0
        while len(chosen) < budget:
            w = d2.cpu().numpy()
            w[is_chosen] = 0.0
            total = w.sum()
            if total > 0:
                j = int(rng.choice(len(w), p=w / total))
            else:
                j = int(rng.choice(np.flatnonzero(~is_chosen)))
            chosen.append(j)
            is_chosen[j] = True
            torch.minimum(d2, dist2(j), out=d2)
    return np.asarray(chosen, dtype=np.int64)


@register("badge", batch=True, needs=("proba", "network"))
def badge(ctx: Context, budget: int) -> np.ndarray:
    """BADGE (Ash et al., ICLR 2020): k-means++ seeding on last-layer gradient embeddings at the predicted label.

    Embedding per candidate: ``(onehot(argmax p) - p) (x) h``, with ``h`` the task
    network's penultimate features (:func:`penultimate_features`; for ``m2`` the
    features of q(y|x)'s last hidden layer, so not the M2 latent) and ``p`` its
    class probabilities; the first centre is the largest gradient norm, the rest
    D^2-sampled with the run's generator (:func:`badge_select`), as the official code.
    """
    h = penultimate_features(ctx.learner, ctx.x_unlabelled)
    return badge_select(h, ctx.proba(), budget, ctx.rng(_STREAM_BADGE))


__all__ = [
    "kmeans", "typicality", "typiclust_select", "typiclust", "TypiClustParams",
    "nearest_other_label", "purity_delta", "coverage_edges", "max_coverage", "probcover_select", "probcover",
    "ProbCoverParams", "coverage_setup", "penultimate_features", "badge_select", "badge",
]
