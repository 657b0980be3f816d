"""How many task-model iterations a cycle needs: test accuracy against iterations, at the study's label counts.

    .venv/bin/python benchmarks/saturation.py --labels 1000,8000 --iterations 500,1000,2000 --seeds 0,1,2 \
        --out benchmarks/results/saturation_cpu.json

The small classifier (the task model of ``random`` and ``vaal`` in notebook 02) on ``n`` random labels of the
55,000-image pool (each seed its own draw), trained ``k`` iterations with VAAL's SGD schedule (lr 0.01, momentum
0.9, weight decay 5e-4, lr / 10 every quarter of ``k``; best of the validations every ``val_every``), with the
``cpu`` profile's speed options (bf16 autocast + channels_last). Each (n, k, seed) is its own fit: the lr drops
depend on ``k``, so one long fit read at checkpoints would not be the shorter schedule. Reported: test accuracy
of the best validated state (as every record's ``test_acc``), per seed and mean ± sd, and the fit's seconds.
"""
from __future__ import annotations

import argparse
import json
import statistics
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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--labels", default="1000,8000")
    ap.add_argument("--iterations", default="500,1000,2000")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--val-every", type=int, default=250)
    ap.add_argument("--options", default="bf16,channels_last", help="speed options on (comma list; '' = fp32)")
    ap.add_argument("--pool-size", type=int, default=None, help="smaller pool (tests)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    d = load_dataset(pool_size=args.pool_size, test_size=None if args.pool_size is None else 500,
                     val_size=5000 if args.pool_size is None else 200)
    flags = {f: True for f in args.options.split(",") if f}
    cls = LEARNERS["classifier"]
    rows = []
    for n in map(int, args.labels.split(",")):
        for k in map(int, args.iterations.split(",")):
            accs = []
            for seed in map(int, args.seeds.split(",")):
                perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(d.x_pool)))
                lab, unl = perm[:n], perm[n:]
                data = TrainData(x_labelled=d.x_pool[lab], y_labelled=d.y_pool[lab], x_unlabelled=d.x_pool[unl],
                                 x_val=d.x_val, y_val=d.y_val, num_classes=10)
                p = from_dict(cls.Params, {"iterations": k, "val_every": args.val_every, **flags}, where="saturation")
                learner = cls(p, 10, torch.device("cpu"))
                t = time.perf_counter()
                m = learner.fit(data, seed=seed)
                secs = time.perf_counter() - t
                acc = float((learner.predict_proba(d.x_test).argmax(1) == d.y_test).float().mean())
                accs.append(acc)
                rows.append({"labels": n, "iterations": k, "seed": seed, "test_acc": acc, "val_acc": m["val_acc"],
                             "seconds": secs})
                print(f"labels {n:5d} iterations {k:5d} seed {seed}: test {100 * acc:.2f} % ({secs:.0f} s)", flush=True)
            sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
            print(f"labels {n:5d} iterations {k:5d}: {100 * statistics.mean(accs):.2f} ± {100 * sd:.2f} %", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"options": flags, "val_every": args.val_every, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
