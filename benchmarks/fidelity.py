"""The cpu profile's fidelity checks that compare runs cycle by cycle (docs/cpu_profile.md, Fidelity).

    python benchmarks/fidelity.py b [--results results]   # paper schedule against cpu schedule (paper_schedule_cpu.yaml)
    python benchmarks/fidelity.py c [--results results]   # warm-started against from-scratch VAAL (warm_start_cpu.yaml)

Per pair of runs and cycle, side by side: the test accuracy of the best-validated state, the discriminator's
held-out ROC AUC (labelled against unlabelled points it never fitted), the overlap of the batches the two runs
selected (|A ∩ B| / budget; two uniform draws of 1,000 from the 54,000 unlabelled points share 1.9 % on average),
the total variation distance between their class histograms (0: the same class shares), the histograms, and the
training seconds.

(b) compares cycle 0 (1,000 labels, the same initial set): the schedules differ in iterations, validation interval,
M2 steps per iteration and M2's bound, nothing else. Its scale: the cpu schedule trained again on the same labels
with other training randomness (training_noise_cpu.yaml: seeds 1 and 2, ``initial_seed: 0``), and the cpu
schedule's two learners against each other. (c) compares cycles 0–2: cycle 0 trains both cold for 1,000
iterations, so its selections must coincide (a check of the comparison itself); the first difference is cycle 1's
training (warm: 300 iterations from cycle 0's models).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alkit.results import read_records  # noqa: E402

CPU02 = "cpu/02_vaal_vs_random"

#: check -> (what it compares, [(row label, folder A, seed A, folder B, seed B)], cycles); folders below results/
CHECKS = {
    "b": ("paper schedule (B) against cpu schedule (A) on the same initial 1,000 labels; for scale, the cpu "
          "schedule trained again with other training randomness on the same labels (noise), and the cpu "
          "schedule's two learners against each other",
          [("vaal: paper vs cpu", f"{CPU02}/vaal", 0, "cpu_check/paper_schedule/vaal_paper", 0),
           ("m2_vaal: paper vs cpu", f"{CPU02}/m2_vaal", 0, "cpu_check/paper_schedule/m2_vaal_paper", 0),
           ("vaal: noise", f"{CPU02}/vaal", 0, "cpu_check/training_noise/vaal", 1),
           ("vaal: noise", f"{CPU02}/vaal", 0, "cpu_check/training_noise/vaal", 2),
           ("m2_vaal: noise", f"{CPU02}/m2_vaal", 0, "cpu_check/training_noise/m2_vaal", 1),
           ("m2_vaal: noise", f"{CPU02}/m2_vaal", 0, "cpu_check/training_noise/m2_vaal", 2),
           ("m2_vaal vs vaal, cpu", f"{CPU02}/vaal", 0, f"{CPU02}/m2_vaal", 0)],
          [0]),
    "c": ("from scratch (B) against warm-started (A)",
          [("vaal: cold vs warm", f"{CPU02}/vaal", s, "cpu_check/warm_start/vaal_cold", s) for s in (0, 1, 2)],
          [0, 1, 2]),
}


def records(path: Path) -> dict[int, dict]:
    """A run's records by cycle (none when the run is not on disk)."""
    return {r["cycle"]: r for r in read_records(path)}


def overlap(a: dict, b: dict) -> float | None:
    sa, sb = set(a.get("selected") or []), set(b.get("selected") or [])
    return len(sa & sb) / len(sa) if sa and sb else None


def class_distance(a: dict, b: dict) -> float | None:
    """Total variation distance between two selected batches' class histograms (0: same shares, 1: disjoint)."""
    ca, cb = a.get("selected_class_counts"), b.get("selected_class_counts")
    if not ca or not cb:
        return None
    return 0.5 * sum(abs(x / sum(ca) - y / sum(cb)) for x, y in zip(ca, cb))


def _f(x, fmt: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def table(root: Path, check: str) -> list[str]:
    """The check's Markdown: one row per pair and cycle present in both runs, then the differences per label."""
    what, pairs, cycles = CHECKS[check]
    out = [f"Fidelity check ({check}): {what}.", "",
           "| pair | seeds A / B | cycle | labels | test A | test B | AUC A | AUC B | overlap | class TV | classes A "
           "| classes B | train s A | train s B |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    diffs: dict[tuple[str, int], list] = {}
    for label, a_dir, a_seed, b_dir, b_seed in pairs:
        ra = records(root / a_dir / f"seed{a_seed}" / "records.jsonl")
        rb = records(root / b_dir / f"seed{b_seed}" / "records.jsonl")
        for c in sorted(set(ra) & set(rb) & set(cycles)):
            a, b = ra[c], rb[c]
            ov, tv = overlap(a, b), class_distance(a, b)
            auc_a, auc_b = a.get("disc_auc_heldout"), b.get("disc_auc_heldout")
            diffs.setdefault((label, c), []).append(
                (100 * (b["test_acc"] - a["test_acc"]), None if auc_a is None or auc_b is None else auc_b - auc_a, ov, tv))
            out.append(f"| {label} | {a_seed} / {b_seed} | {c} | {a['n_labelled']:,} | {100 * a['test_acc']:.2f} | "
                       f"{100 * b['test_acc']:.2f} | {_f(auc_a, '.3f')} | {_f(auc_b, '.3f')} | {_f(ov, '.3f')} | "
                       f"{_f(tv, '.3f')} | {a.get('selected_class_counts')} | {b.get('selected_class_counts')} | "
                       f"{a['seconds']['train']:.0f} | {b['seconds']['train']:.0f} |")
    out.append("")
    for (label, c), d in diffs.items():
        auc = [x[1] for x in d if x[1] is not None]
        ov = [x[2] for x in d if x[2] is not None]
        tv = [x[3] for x in d if x[3] is not None]
        out.append(f"- {label}, cycle {c} ({len(d)} pair{'s' if len(d) > 1 else ''}): test B − A "
                   f"{_mean([x[0] for x in d]):+.2f} points ({', '.join(f'{x[0]:+.2f}' for x in d)})"
                   + (f"; AUC B − A {_mean(auc):+.3f} ({', '.join(f'{x:+.3f}' for x in auc)})" if auc else "")
                   + (f"; selections' overlap {_mean(ov):.3f} ({', '.join(f'{x:.3f}' for x in ov)})" if ov else "")
                   + (f"; class TV {_mean(tv):.3f}" if tv else ""))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("check", choices=sorted(CHECKS))
    ap.add_argument("--results", default="results")
    args = ap.parse_args(argv)
    print("\n".join(table(Path(args.results), args.check)))


if __name__ == "__main__":
    main()
