"""Time the part of a cycle outside training (selection, diagnostics, coverage) as it was and as it is, in one
process, on the 55,000-image pool. Before: M2 kept its last latent pass only, and MC dropout (BALD) ran the whole
classifier T times. Now: M2 keeps its last few passes, and MC dropout runs the layers before the dropout once.

    .venv/bin/python benchmarks/bench_cycle_overhead.py --strategies random,entropy,coreset,bald:1 \
        --out benchmarks/results/cycle_overhead_cpu.json
    .venv/bin/python benchmarks/bench_cycle_overhead.py --smoke     # tiny sizes, seconds

The learner is notebook 05's ``cpu`` M2 (the ~3M-parameter classifier, width 32, bf16 + channels_last), fitted
``--iterations`` iterations on its 50 initial labels (a pass over the pool costs the same whatever the weights).
For each strategy, ``alkit.loop._after_fit`` (what a cycle does after its fit and evaluation: selection,
selection diagnostics, prediction spread, latent coverage) runs ``--repeats`` times per setting (``name:k``: k
times), the settings alternated (A B B A ...), each from the same pool state, global seed and empty pass memory.
Reported per strategy: median seconds per setting, their ratio, and whether the two settings' records are
identical (they must be: both changes only skip recomputing the same numbers).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alkit import loop  # noqa: E402
from alkit.experiment import load_experiment  # noqa: E402
from alkit.learners import m2  # noqa: E402
from alkit.models import Classifier  # noqa: E402
from alkit.own_data import load_data  # noqa: E402
from alkit.pool import Pool  # noqa: E402
from alkit.results import cpu_model  # noqa: E402

PARAMS = ROOT / "params" / "cpu" / "05_latent_acquisition.yaml"
SHIPPED_MEMO, SHIPPED_SPLIT = m2._MEMO_PASSES, Classifier.mc_split
STRATEGIES = ["random", "entropy", "least_confidence", "alg1", "alg2", "margin", "coreset", "typiclust", "badge"]


def _trial(cfg, data, learner, train, lab, unl, rec, before: bool) -> tuple[float, dict]:
    m2._MEMO_PASSES = 1 if before else SHIPPED_MEMO
    Classifier.mc_split = None if before else SHIPPED_SPLIT  # None: mc_dropout_proba runs whole passes
    learner._memo = None
    torch.manual_seed(0)
    pool = Pool(len(data.y_pool), lab)
    t = time.perf_counter()
    out = loop._after_fit(cfg, data, pool, 0, data.x_pool.device, learner, train, lab, unl, dict(rec), {}, None)
    seconds = time.perf_counter() - t
    out = {k: v for k, v in out.items() if k != "seconds"}
    return seconds, out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=100, help="M2 iterations of the one fit (default 100)")
    ap.add_argument("--repeats", type=int, default=2, help="trials per setting and strategy (default 2; name:k: k)")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--smoke", action="store_true", help="a 2,000-image pool and 10 iterations")
    ap.add_argument("--out", default=None, help="write the table as JSON here")
    ap.add_argument("--profile", default=None, metavar="STRATEGY",
                    help="also profile one trial of STRATEGY with the shipped setting (cProfile, top 20 by cumulative time)")
    args = ap.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))

    overrides = {"pool_size": 2000, "val_size": 500, "test_size": 500} if args.smoke else {}
    iters = 10 if args.smoke else args.iterations
    exp = load_experiment(PARAMS)
    base = exp.config("random", 0)
    lp = dict(base.learner_params, gen_iterations=iters, val_every=iters)
    cfg0 = loop.from_dict(loop.RunConfig, {**loop.to_dict(base), **overrides, "learner_params": lp})
    data = load_data(cfg0)
    y = data.y_pool.numpy()
    start = Pool(len(y), loop.initial_labelled(y, cfg0.initial, loop.initial_set_seed(cfg0), data.num_classes))
    lab, unl = start.labelled_indices(), start.unlabelled_indices()
    t = time.perf_counter()
    rec, learner, train, _ = loop.fit_and_evaluate(cfg0, data, lab, unl, 0, data.x_pool.device)
    fit_s = time.perf_counter() - t
    print(f"pool {len(y):,}, {len(lab)} labelled; M2 fitted {iters} iterations in {fit_s:.1f} s "
          f"({cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} threads)")

    rows = []
    print(f"{'strategy':<18} {'before (s)':>10} {'now (s)':>8} {'ratio':>6}  records equal")
    for item in args.strategies.split(","):
        name, _, k = item.partition(":")
        repeats = int(k) if k else args.repeats
        cfg = loop.from_dict(loop.RunConfig, {**loop.to_dict(cfg0), "strategy": name})
        times: dict = {True: [], False: []}
        outs: dict = {}
        for before in [b for i in range(repeats) for b in ((True, False) if i % 2 == 0 else (False, True))]:
            s, out = _trial(cfg, data, learner, train, lab, unl, rec, before)
            text = json.dumps(out, sort_keys=True, default=str)
            times[before].append(s)
            assert outs.setdefault(before, text) == text, f"{name}: a repeat differs"
        old, new = statistics.median(times[True]), statistics.median(times[False])
        same = outs[True] == outs[False]
        rows.append({"strategy": name, "before_s": old, "now_s": new, "ratio": old / new, "records_equal": same,
                     "before_trials": times[True], "now_trials": times[False]})
        print(f"{name:<18} {old:>10.2f} {new:>8.2f} {old / new:>6.2f}  {same}")
    m2._MEMO_PASSES, Classifier.mc_split = SHIPPED_MEMO, SHIPPED_SPLIT
    if args.profile:
        import cProfile
        import pstats

        cfg = loop.from_dict(loop.RunConfig, {**loop.to_dict(cfg0), "strategy": args.profile})
        prof = cProfile.Profile()
        prof.runcall(_trial, cfg, data, learner, train, lab, unl, rec, False)
        pstats.Stats(prof).sort_stats("cumulative").print_stats(20)
    if args.out:
        info = {"machine": cpu_model(), "torch": torch.__version__,
                "threads": torch.get_num_threads(), "pool": len(y), "labelled": len(lab), "fit_iterations": iters,
                "repeats": args.repeats, "params": str(PARAMS.relative_to(ROOT))}
        Path(args.out).write_text(json.dumps({"info": info, "rows": rows}, indent=1) + "\n")
        print(f"wrote {args.out}")
    if not all(r["records_equal"] for r in rows):
        sys.exit("error: the records differ between the settings")


if __name__ == "__main__":
    main()
