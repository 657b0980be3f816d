"""False-positive rate of "arm a differs from arm b" when the two arms are the same in distribution.

    .venv/bin/python benchmarks/null_fpr.py                          # 2000 experiments, 3 seeds x 7 cycles
    .venv/bin/python benchmarks/null_fpr.py --sims 500 --seeds 5 --rho 0.9 --model ar1
    .venv/bin/python benchmarks/null_fpr.py --family 6 9                 # + a notebook's family of comparisons

Simulation (one experiment = two arms x ``--seeds`` seeds x ``--cycles`` cycles of tidy records):

- test accuracy of arm ``k``, seed ``s``, cycle ``c``:
  ``y = base(c) + sigma * (sqrt(rho) * u[k, s] + sqrt(1 - rho) * e[k, s, c]) + shared[s]``,
  ``u, e ~ N(0, 1)`` independent, so two cycles of one run are correlated ``rho`` (``--model seed``:
  a seed-level random effect plus independent noise). ``--model ar1``: ``sigma * x[k, s, c]`` with
  ``x`` a stationary AR(1) in the cycle, ``corr(x_c, x_c+1) = rho``.
- ``base(c) = 0.80 + 0.01 c`` (a rising budget curve, ``n_labelled = 1000 (c + 1)``), ``sigma = 0.01``
  (one accuracy point), ``shared[s] ~ N(0, 0.01^2)``: the same in both arms of a seed (same initial
  set); it cancels in every paired difference.
- Both arms have the same distribution: every "difference" called is a false positive.

Rules compared at level 0.05 (nominal false-positive rate 5 %):

- old: ``|mean| > 2 std / sqrt(pairs)`` over all (seed, cycle) pairs of ``analysis.paired_difference``
  (the removed rule, reimplemented here), which counts correlated cycles as independent pairs;
- new: ``analysis.compare_seeds`` (per-seed AUBC, then a paired t-test over seeds): verdict not
  "within noise";
- sign-flip: its exact sign-flip p < 0.05 (it cannot go below ``2 / 2**seeds``; 0.25 for 3 seeds).

``--family m ...``: a notebook's family of ``m`` comparisons, each of ``m`` arms against one shared
control (notebook 05's shape, so the comparisons are correlated), every arm the same in distribution;
the family-wise rate is the share of experiments with at least one "higher", uncorrected and after
``analysis.correct_family`` (Holm–Bonferroni).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from alkit.analysis import compare_seeds, correct_family, paired_difference


def simulate(rng: np.random.Generator, sims: int, seeds: int, cycles: int, rho: float, model: str = "seed",
             sigma: float = 0.01, arms: int = 2) -> np.ndarray:
    """Null test accuracies, (sims, arms, seeds, cycles); see the module docstring."""
    shape = (sims, arms, seeds, cycles)
    if model == "seed":
        u = rng.standard_normal(shape[:3] + (1,))
        noise = np.sqrt(rho) * u + np.sqrt(1 - rho) * rng.standard_normal(shape)
    elif model == "ar1":
        e = rng.standard_normal(shape)
        noise = np.empty(shape)
        noise[..., 0] = e[..., 0]
        for c in range(1, cycles):  # stationary: unit variance at every cycle
            noise[..., c] = rho * noise[..., c - 1] + np.sqrt(1 - rho ** 2) * e[..., c]
    else:
        raise ValueError(f"model must be 'seed' or 'ar1', got {model!r}")
    base = 0.80 + 0.01 * np.arange(cycles)  # (cycles,)
    shared = 0.01 * rng.standard_normal((sims, 1, seeds, 1))
    return base + sigma * noise + shared


def records(acc: np.ndarray, arms=("a", "b")) -> list[dict]:
    """Tidy per-cycle records of one experiment, ``acc`` (len(arms), seeds, cycles)."""
    return [{"arm": arm, "seed": s, "cycle": c, "n_labelled": 1000 * (c + 1), "test_acc": float(acc[k, s, c])}
            for k, arm in enumerate(arms) for s in range(acc.shape[1]) for c in range(acc.shape[2])]


def old_rule(d: dict, z: float = 2.0) -> bool:
    """The removed rule, for comparison only: ``|mean| > z std / sqrt(pairs)`` over (seed, cycle) pairs."""
    return d["pairs"] >= 2 and abs(d["mean"]) > z * d["std"] / np.sqrt(d["pairs"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sims", type=int, default=2000, help="simulated experiments per correlation")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--cycles", type=int, default=7)
    ap.add_argument("--rho", type=float, nargs="+", default=[0.0, 0.5, 0.95], help="within-seed correlation of cycles")
    ap.add_argument("--model", choices=("seed", "ar1"), default="seed", help="seed random effect or AR(1) over cycles")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--rng-seed", type=int, default=0)
    ap.add_argument("--family", type=int, nargs="*", default=[], help="family sizes: m arms vs one control, Holm")
    a = ap.parse_args(argv)

    rng = np.random.default_rng(a.rng_seed)
    se = np.sqrt(a.alpha * (1 - a.alpha) / a.sims)
    print(f"{a.sims} null experiments per row, {a.seeds} seeds x {a.cycles} cycles per arm, model {a.model!r}, "
          f"alpha {a.alpha}; binomial s.e. of a rate near {a.alpha}: {se:.3f}")
    print()
    print(f"| {'rho':>5} | {'old: 2 s.e. over pairs':>22} | {'new: compare_seeds':>18} | {'sign-flip p < alpha':>19} | {'seconds':>7} |")
    print(f"|{'-' * 7}|{'-' * 24}|{'-' * 20}|{'-' * 21}|{'-' * 9}|")
    for rho in a.rho:
        t0 = time.perf_counter()
        acc = simulate(rng, a.sims, a.seeds, a.cycles, rho, a.model)
        old = new = flip = 0
        for x in acc:
            rows = records(x)
            old += old_rule(paired_difference(rows, "a", "b"))
            c = compare_seeds(rows, "a", "b", alpha=a.alpha)
            new += c["verdict"] != "within noise"
            flip += c["p_signflip"] < a.alpha
        dt = time.perf_counter() - t0
        print(f"| {rho:>5g} | {old / a.sims:>22.3f} | {new / a.sims:>18.3f} | {flip / a.sims:>19.3f} | {dt:>7.1f} |")
    print(f"\nsign-flip minimum p with {a.seeds} seeds: {2 / 2 ** a.seeds:g}")
    if a.family:
        print(f"\nfamily-wise rate: share of {a.sims} null experiments with at least one false 'higher' "
              f"({a.seeds} seeds x {a.cycles} cycles, rho {a.rho[-1]:g}, m arms each vs one control)\n")
        print(f"| {'m':>3} | {'uncorrected':>11} | {'Holm (correct_family)':>21} | {'seconds':>7} |")
        print(f"|{'-' * 5}|{'-' * 13}|{'-' * 23}|{'-' * 9}|")
        for m in a.family:
            t0 = time.perf_counter()
            acc = simulate(rng, a.sims, a.seeds, a.cycles, a.rho[-1], a.model, arms=m + 1)
            names = ["control"] + [f"arm{k}" for k in range(m)]
            raw_any = holm_any = 0
            for x in acc:
                rows = records(x, names)
                raw = [compare_seeds(rows, arm, "control", alpha=a.alpha) for arm in names[1:]]
                raw_any += any(r["verdict"] != "within noise" for r in raw)
                holm_any += any(r["verdict"] != "within noise" for r in correct_family(raw))
            dt = time.perf_counter() - t0
            print(f"| {m:>3} | {raw_any / a.sims:>11.3f} | {holm_any / a.sims:>21.3f} | {dt:>7.1f} |")


if __name__ == "__main__":
    main()
