"""alkit's on-device tensor pipeline versus a DataLoader pipeline fed the way the official VAAL code feeds data.

    .venv/bin/python benchmarks/bench_pipeline.py --device cpu --steps 40 --full-epoch
    .venv/bin/python benchmarks/bench_pipeline.py --device cuda --steps 200 --full-epoch

Both pipelines drive the SAME models and the SAME joint VAAL iteration
(sinhasam/vaal ``solver.py``): one task-classifier step, ``vae_steps`` (2) VAE
steps on fresh labelled + unlabelled batches, one discriminator step, batch 128.

- alkit: the pool lives on the device as one float tensor; a batch is an index
  tensor from :func:`alkit.train.endless_batches` applied with ``x[idx]``.
- reference: the raw uint8 images (read with :func:`alkit.data.read_idx`) in a
  ``Dataset`` whose ``__getitem__`` returns ``(image, label, index)`` after a
  per-item transform equivalent to torchvision's ``ToTensor`` (uint8 HxW ->
  float 1xHxW / 255), ``SubsetRandomSampler`` + ``DataLoader`` (labelled:
  ``drop_last=True``; unlabelled: ``drop_last=False``), endless re-iteration as
  VAAL's ``read_data``, then ``.to(device)`` per batch. ``num_workers``
  defaults to 0, the DataLoader default the official code uses.

Reported: (a) joint training steps/s over ``--steps`` iterations (labelled =
1000 random pool points, unlabelled = the rest) and data-only batches/s (fetch
and move to device, no model), each timed in 5 interleaved rounds per pipeline
(median round); (b) with ``--full-epoch``, one whole epoch over the
pool: ceil(P / 128) iterations with one VAE step each, so that their labelled
batches cover the pool exactly once (unlabelled batches drawn alongside).
"""
from __future__ import annotations

import argparse
import math
import platform
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, SubsetRandomSampler

from alkit.data import load_dataset, locate_files, read_idx
from alkit.losses import beta_elbo_loss, discriminator_loss, vaal_adversarial_loss
from alkit.models import VAE, Classifier, Discriminator, count_parameters
from alkit.engine.batches import endless_batches, generator
from alkit.train import seed_everything


class RawImages(Dataset):
    """VAAL's ``custom_datasets`` style: ``(transform(image), label, index)`` per item from uint8 arrays."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels  # (N, 28, 28) uint8, (N,) uint8

    def __len__(self) -> int:
        return len(self.images)

    @staticmethod
    def to_tensor(img: np.ndarray) -> torch.Tensor:
        """torchvision ``ToTensor`` for a uint8 HxW image: float32 (1, H, W) in [0, 1]."""
        return torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).unsqueeze(0).float().div(255)

    def __getitem__(self, i: int):
        return self.to_tensor(self.images[i]), int(self.labels[i]), i


def reference_batches(dataset: Dataset, indices: np.ndarray, batch_size: int, drop_last: bool, workers: int, seed: int):
    """VAAL's ``read_data``: re-iterate a DataLoader forever, yielding (images, labels)."""
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        dataset, sampler=SubsetRandomSampler(indices.tolist(), generator=g), batch_size=batch_size,
        drop_last=drop_last, num_workers=workers, persistent_workers=workers > 0,
    )
    while True:
        for img, label, _ in loader:
            yield img, label


class Models:
    """The models of one VAAL iteration, with their optimisers (VAAL's: Adam 5e-4; task Adam 1e-3 as alkit)."""

    def __init__(self, device: torch.device, vae_width: int, seed: int):
        seed_everything(seed)
        self.task = Classifier(10).to(device)
        self.vae = VAE(32, vae_width).to(device)
        self.disc = Discriminator(32).to(device)
        self.opt_task = torch.optim.Adam(self.task.parameters(), lr=1e-3, weight_decay=5e-4)
        self.opt_vae = torch.optim.Adam(self.vae.parameters(), lr=5e-4)
        self.opt_disc = torch.optim.Adam(self.disc.parameters(), lr=5e-4)

    def iteration(self, fetch, vae_steps: int = 2) -> torch.Tensor:
        """One VAAL iteration: task step, ``vae_steps`` VAE steps (fresh batches after the first), one disc step."""
        xl, yl, xu = fetch()
        loss = torch.nn.functional.cross_entropy(self.task(xl), yl)
        self.opt_task.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_task.step()
        for k in range(vae_steps):
            if k > 0:
                xl, yl, xu = fetch()
            x = torch.cat([xl, xu])
            logits, _, mu, logvar = self.vae(x)
            per = beta_elbo_loss(x, logits, mu, logvar, reduction="none")
            d = self.disc(mu)
            loss = per[: len(xl)].mean() + per[len(xl) :].mean() + vaal_adversarial_loss(d[: len(xl)], d[len(xl) :])
            self.opt_vae.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_vae.step()
        with torch.no_grad():
            mu = self.vae.encode(torch.cat([xl, xu]))[0]
        d = self.disc(mu)
        loss_d = discriminator_loss(d[: len(xl)], d[len(xl) :])
        self.opt_disc.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_disc.step()
        return loss_d.detach()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(n: int, fn, device: torch.device, warmup: int = 2) -> float:
    """Seconds per call of ``fn`` over ``n`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    t = time.perf_counter()
    for _ in range(n):
        fn()
    sync(device)
    return (time.perf_counter() - t) / n


def compare(n: int, fa, fb, device: torch.device, rounds: int = 5) -> tuple[float, float]:
    """Seconds per call of ``fa`` and ``fb``: ``rounds`` interleaved rounds (a, b, a, b, ...) of ``n // rounds``
    calls each, after 2 warm-up calls of each; the median round of each. Interleaving keeps drifts of the
    machine (clock, other load) from favouring whichever pipeline runs first."""
    k = max(1, n // rounds)
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(timed(k, fa, device))
        tb.append(timed(k, fb, device))
    return float(np.median(ta)), float(np.median(tb))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=20, help="joint iterations timed per pipeline")
    ap.add_argument("--full-epoch", action="store_true", help="also time one whole epoch over the pool")
    ap.add_argument("--num-workers", type=int, default=0, help="reference DataLoader workers (official code: 0)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--labelled", type=int, default=1000)
    ap.add_argument("--vae-width", type=int, default=64)
    ap.add_argument("--pool-size", type=int, default=None, help="subsample the 55k pool (quick runs)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    bs = args.batch_size

    data = load_dataset("fashion_mnist", device=device, pool_size=args.pool_size)
    files = locate_files("fashion_mnist")
    raw_x, raw_y = read_idx(files["train_images"])[data.pool_ids], read_idx(files["train_labels"])[data.pool_ids]
    P = len(raw_x)
    assert torch.equal(torch.from_numpy(raw_x).to(device).unsqueeze(1).float().div(255), data.x_pool)
    rng = np.random.default_rng(0)
    lab = np.sort(rng.choice(P, args.labelled, replace=False))
    unl = np.setdiff1d(np.arange(P), lab)

    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or platform.machine()}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"pool {P}, labelled {len(lab)}, batch {bs}, reference num_workers {args.num_workers}")
    models = Models(device, args.vae_width, seed=0)
    print(f"models: task {count_parameters(models.task):,} + VAE {count_parameters(models.vae):,} "
          f"+ discriminator {count_parameters(models.disc):,} parameters; iteration = task step + 2 VAE steps + 1 disc step")

    # alkit: index tensors on device
    lab_t, unl_t = torch.as_tensor(lab, device=device), torch.as_tensor(unl, device=device)
    li = endless_batches(len(lab), bs, generator(1, device))
    ui = endless_batches(len(unl), bs, generator(2, device))

    def alkit_fetch():
        il, iu = lab_t[next(li)], unl_t[next(ui)]
        return data.x_pool[il], data.y_pool[il], data.x_pool[iu]

    # reference: DataLoader over uint8 items with a per-item ToTensor
    ds = RawImages(raw_x, raw_y)
    rl = reference_batches(ds, lab, bs, True, args.num_workers, 1)
    ru = reference_batches(ds, unl, bs, False, args.num_workers, 2)

    def ref_fetch():
        xl, yl = next(rl)
        xu, _ = next(ru)
        return xl.to(device, non_blocking=True), yl.to(device, non_blocking=True), xu.to(device, non_blocking=True)

    rows = []
    n_data = max(50, args.steps * 5)
    t_a, t_r = compare(n_data, alkit_fetch, ref_fetch, device)
    rows.append(("data only (labelled + unlabelled batch)", n_data, t_a, t_r))
    t_a, t_r = compare(args.steps, lambda: models.iteration(alkit_fetch), lambda: models.iteration(ref_fetch), device)
    rows.append(("(a) joint iteration", args.steps, t_a, t_r))

    if args.full_epoch:
        iters = math.ceil(P / bs)
        all_t = torch.arange(P, device=device)
        pi = endless_batches(P, bs, generator(3, device))

        def alkit_pool_fetch():
            il, iu = all_t[next(pi)], unl_t[next(ui)]
            return data.x_pool[il], data.y_pool[il], data.x_pool[iu]

        pl = reference_batches(ds, np.arange(P), bs, True, args.num_workers, 3)

        def ref_pool_fetch():
            xl, yl = next(pl)
            xu, _ = next(ru)
            return xl.to(device), yl.to(device), xu.to(device)

        for name, fetch in (("alkit", alkit_pool_fetch), ("reference", ref_pool_fetch)):
            sync(device)
            t = time.perf_counter()
            for _ in range(iters):
                models.iteration(fetch, vae_steps=1)
            sync(device)
            rows.append((f"(b) full epoch, {name}", iters, time.perf_counter() - t, None))

    print(f"\n{'what':44s} {'n':>6s} {'alkit it/s':>11s} {'ref it/s':>10s} {'ratio':>7s}")
    for what, n, a, r in rows:
        if r is None:
            print(f"{what:44s} {n:6d} {'':>11s} {'':>10s}   {a:7.1f} s for {n} iterations ({n / a:.2f} it/s)")
        else:
            print(f"{what:44s} {n:6d} {1 / a:11.2f} {1 / r:10.2f} {r / a:6.2f}x")
    epochs = [r for r in rows if r[0].startswith("(b)")]
    if len(epochs) == 2:
        print(f"{'(b) full epoch ratio (reference / alkit time)':44s} {epochs[1][2] / epochs[0][2]:6.2f}x")


if __name__ == "__main__":
    main()
