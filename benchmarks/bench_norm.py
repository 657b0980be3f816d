"""What the study's network weight-norm score costs next to its kernel stand-ins, on the same candidates.

    .venv/bin/python benchmarks/bench_norm.py                      # CPU, 32 candidates, 100 labelled
    .venv/bin/python benchmarks/bench_norm.py --device cuda --candidates 64 --chunk 8
    .venv/bin/python benchmarks/bench_norm.py --both-impls         # + network_norm's other implementation

One small task classifier (alkit's ``classifier`` learner, small CNN) is
trained on ``--labelled`` random real Fashion-MNIST pool images. Then, on the
SAME ``--candidates`` random unlabelled images and the same model:

- ``network_norm``: the study's score, min_y ||theta^{u,y} - theta|| after
  fine-tuning the network per candidate and hypothetical label (strategy
  defaults unless ``--steps/--lr/--batch-size/--chunk``; its default
  implementation: the per-(u, y) loop on CPU, vmap-batched on CUDA);
- ``kernel_norm_exact``: RBF min-norm interpolant refit per candidate and label
  on the classifier's penultimate features (``learner.embed``);
- ``kernel_norm_approx``: the same kernel scores in closed form;
- with ``--both-impls``, ``network_norm`` forced to its other implementation
  (same scores up to float rounding).

Each is timed as the registered score function on a fresh context (so the
kernel versions pay for their embedding forward passes, as in a run), in
``--rounds`` interleaved rounds (the order rotates each round); the median
round is reported as seconds per candidate, with the ratios network/kernel
from the same run. Rank agreement is Spearman's rho between the score vectors
and the overlap of the ``--budget`` top picks. The machine's load average is
printed before and after: other processes on a small machine inflate every
time, the ratios less so (interleaving).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time

import numpy as np
import torch

from alkit.data import load_dataset
from alkit.learners import TrainData, make_learner
from alkit.strategies import Context, get_strategy, select
from alkit.strategies.norm import (
    NetworkNormParams, NormExactParams, NormParams, spearman,
)



def classifier_params(iterations: int, batch_size: int) -> dict:
    """Minimal parameters for a short fit of the classifier learner."""
    return {"iterations": iterations, "batch_size": batch_size, "val_every": max(1, iterations // 4)}


def make_ctx(learner, data, lab, cand, seed, params) -> Context:
    dev = data.x_pool.device
    lab_t, cand_t = torch.as_tensor(lab.copy(), device=dev), torch.as_tensor(cand.copy(), device=dev)
    return Context(
        learner=learner, x_unlabelled=data.x_pool[cand_t], x_labelled=data.x_pool[lab_t],
        y_labelled=data.y_pool[lab_t], unlabelled_indices=cand, labelled_indices=lab,
        num_classes=data.num_classes, seed=seed, params=params,
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--pool-size", type=int, default=2000, help="Fashion-MNIST pool subset to draw from")
    ap.add_argument("--labelled", type=int, default=100)
    ap.add_argument("--candidates", type=int, default=32)
    ap.add_argument("--budget", type=int, default=8, help="top picks compared between methods")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fit-iterations", type=int, default=300, help="classifier training iterations")
    ap.add_argument("--steps", type=int, default=None, help="network_norm: SGD steps (default: strategy default)")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--chunk", type=int, default=None)
    ap.add_argument("--both-impls", action="store_true", help="also time network_norm's other implementation")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    a.budget = min(a.budget, a.candidates)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    load_before = os.getloadavg()

    data = load_dataset("fashion_mnist", pool_size=a.pool_size, val_size=1000, test_size=2000, device=device)
    rng = np.random.default_rng(a.seed)
    perm = rng.permutation(len(data.y_pool))
    lab, rest = np.sort(perm[: a.labelled]), perm[a.labelled :]
    cand = np.sort(rest[: a.candidates])
    lab.setflags(write=False)
    cand.setflags(write=False)
    lab_t, rest_t = torch.as_tensor(lab.copy(), device=device), torch.as_tensor(np.sort(rest), device=device)
    train = TrainData(
        x_labelled=data.x_pool[lab_t], y_labelled=data.y_pool[lab_t], x_unlabelled=data.x_pool[rest_t],
        x_val=data.x_val, y_val=data.y_val, num_classes=data.num_classes,
    )
    lparams = classifier_params(a.fit_iterations, 32)
    learner = make_learner("classifier", lparams, data.num_classes, device)
    t = time.perf_counter()
    learner.fit(train, seed=a.seed)
    fit_s = time.perf_counter() - t
    test_acc = float((learner.predict_proba(data.x_test).argmax(1) == data.y_test).float().mean())
    n_params = sum(p.numel() for p in learner.task_network().parameters() if p.requires_grad)

    overrides = {k: v for k, v in (("steps", a.steps), ("lr", a.lr), ("batch_size", a.batch_size),
                                   ("chunk", a.chunk)) if v is not None}
    net_params = NetworkNormParams(**overrides, max_pool=max(NetworkNormParams().max_pool, a.candidates))
    default_batched = device.type == "cuda"  # what network_norm picks with batched=None
    other = "network_norm[" + ("loop" if default_batched else "batched") + "]"
    methods = {  # row name -> (registered strategy, its parameters)
        "network_norm": ("network_norm", net_params),
        "kernel_norm_exact": ("kernel_norm_exact", NormExactParams()),
        "kernel_norm_approx": ("kernel_norm_approx", NormParams()),
    }
    if a.both_impls:
        methods[other] = ("network_norm", dataclasses.replace(net_params, batched=not default_batched))
    names = list(methods)

    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, load average before {load_before[0]:.2f}")
    print(f"Fashion-MNIST: classifier ({n_params:,} trainable parameters, params {lparams}) fitted on "
          f"{a.labelled} labelled pool images in {fit_s:.1f}s, test accuracy {test_acc:.3f}")
    print(f"{a.candidates} candidates x {data.num_classes} labels; network_norm {dataclasses.asdict(net_params)} "
          f"(implementation: {'batched' if default_batched else 'loop'})")

    seconds = {m: [] for m in names}
    scores = {m: [] for m in names}
    for r in range(a.rounds):
        k = r % len(names)
        for m in names[k:] + names[:k]:
            strategy, params = methods[m]
            ctx = make_ctx(learner, data, lab, cand, a.seed, params)  # fresh: no cached embeddings
            sync(device)
            t = time.perf_counter()
            s = get_strategy(strategy).fn(ctx)
            sync(device)
            seconds[m].append(time.perf_counter() - t)
            scores[m].append(np.asarray(s, dtype=np.float64))
        print(f"round {r + 1}/{a.rounds}: " + ", ".join(f"{m} {seconds[m][-1]:.3f}s" for m in names), flush=True)

    med = {m: float(np.median(seconds[m])) for m in names}
    print()
    print(f"| {'method':<24} | {'median s':>9} | {'s / candidate':>13} | {'rounds (s)':<26} |")
    print(f"|{'-' * 26}|{'-' * 11}|{'-' * 15}|{'-' * 28}|")
    for m in names:
        runs = " ".join(f"{x:.3f}" for x in seconds[m])
        print(f"| {m:<24} | {med[m]:9.3f} | {med[m] / a.candidates:13.2e} | {runs:<26} |")
    print()
    print(f"ratio network_norm / kernel_norm_exact:  {med['network_norm'] / med['kernel_norm_exact']:,.0f}x")
    print(f"ratio network_norm / kernel_norm_approx: {med['network_norm'] / med['kernel_norm_approx']:,.0f}x")
    if a.both_impls:
        print(f"ratio {other} / network_norm: {med[other] / med['network_norm']:.2f}")

    final = {m: scores[m][-1] for m in names}
    drift = max(float(np.abs(s - final["network_norm"]).max()) for s in scores["network_norm"])
    picks = {m: select(final[m], a.budget, np.random.default_rng(1)) for m in names}
    print()
    print(f"network_norm scores identical across rounds (same seed): max diff {drift:.1e}")
    if a.both_impls:
        rel = float(np.abs(final[other] - final["network_norm"]).max() / np.abs(final["network_norm"]).max())
        print(f"{other} vs network_norm: max rel diff of scores {rel:.1e}")
    for x, y in (("network_norm", "kernel_norm_exact"), ("network_norm", "kernel_norm_approx"),
                 ("kernel_norm_exact", "kernel_norm_approx")):
        overlap = np.intersect1d(picks[x], picks[y]).size
        print(f"spearman {x} vs {y}: {spearman(final[x], final[y]):+.3f}; top-{a.budget} overlap {overlap}/{a.budget}")
    print(f"\nload average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
