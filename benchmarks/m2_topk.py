"""Is M2's unlabelled bound over the top-k classes of q(y|x) close enough to the exact one to train with?

    .venv/bin/python benchmarks/m2_topk.py --iterations 600 --seeds 0,1 --ks 3,2 --out benchmarks/results/m2_topk_cpu.json

For each seed: ``m2_vaal`` (the ``cpu`` profile's width, 1 M2 step per iteration, bf16 + channels_last) on 1,000
random labels of the 55,000-image pool, trained ``--iterations`` iterations with the exact bound and with each
top-k bound (same seeds, same batches). Reported per seed and k:

- *ELBO bias*: on 2,000 unlabelled images, the exact U(x) (sample=False, per image, nats) of the model trained
  exactly, minus its top-k U(x): the approximation's error on one fixed model (mean and relative);
- *accuracy*: best validation and test accuracy of q(y|x) trained with top-k against the exact-trained one;
- *seconds*: training time of each fit (the same work but the decoder rows).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alkit.config import from_dict  # noqa: E402
from alkit.data import load_dataset  # noqa: E402
from alkit.learners import LEARNERS, TrainData  # noqa: E402
from alkit.losses import m2_unlabelled_loss  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=600)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--ks", default="3,2")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--labels", type=int, default=1000)
    ap.add_argument("--pool-size", type=int, default=None, help="smaller pool (tests)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    small = args.pool_size is not None
    d = load_dataset(pool_size=args.pool_size, test_size=500 if small else None, val_size=200 if small else 5000)
    cls = LEARNERS["m2_vaal"]
    rows = []
    for seed in map(int, args.seeds.split(",")):
        perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(d.x_pool)))
        lab, unl = perm[: args.labels], perm[args.labels:]
        data = TrainData(x_labelled=d.x_pool[lab], y_labelled=d.y_pool[lab], x_unlabelled=d.x_pool[unl],
                         x_val=d.x_val, y_val=d.y_val, num_classes=10)
        probe = data.x_unlabelled[:2000]
        fits = {}
        for k in [None, *map(int, args.ks.split(","))]:
            p = from_dict(cls.Params, {"iterations": args.iterations, "val_every": 200, "width": args.width,
                                       "vae_steps": 1, "bf16": True, "channels_last": True, "unlabelled_topk": k},
                          where="m2_topk")
            learner = cls(p, 10, torch.device("cpu"))
            t = time.perf_counter()
            m = learner.fit(data, seed=seed)
            secs = time.perf_counter() - t
            test = float((learner.predict_proba(d.x_test).argmax(1) == d.y_test).float().mean())
            fits[k] = (learner, m["val_acc"], test, secs)
        exact_model = fits[None][0].model.eval()
        with torch.no_grad():
            u_exact = m2_unlabelled_loss(exact_model, probe, sample=False, reduction="none")
        for k in [k for k in fits if k is not None]:
            with torch.no_grad():
                u_k = m2_unlabelled_loss(exact_model, probe, sample=False, reduction="none", topk=k)
            row = {"seed": seed, "k": k, "iterations": args.iterations,
                   "elbo_bias_nats": float((u_exact - u_k).mean()),
                   "elbo_bias_relative": float(((u_exact - u_k) / u_exact.abs()).mean()),
                   "u_exact_nats": float(u_exact.mean()),
                   "val_exact": fits[None][1], "val_topk": fits[k][1], "test_exact": fits[None][2],
                   "test_topk": fits[k][2], "seconds_exact": fits[None][3], "seconds_topk": fits[k][3]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"width": args.width, "labels": args.labels, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
