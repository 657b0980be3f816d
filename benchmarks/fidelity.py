"""The cpu profile's fidelity checks that compare two runs cycle by cycle (docs/cpu_profile.md, Fidelity).

    python benchmarks/fidelity.py b [--results results]   # paper schedule against cpu schedule (paper_schedule_cpu.yaml)
    python benchmarks/fidelity.py c [--results results]   # warm-started against from-scratch VAAL (warm_start_cpu.yaml)

Per arm, seed and cycle, side by side: the test accuracy of the best-validated state, the discriminator's held-out
ROC AUC (labelled against unlabelled points it never fitted), the overlap of the batches the two runs selected
(|A ∩ B| / budget; two uniform draws of 1,000 from the 54,000 unlabelled points share 1.9 % on average), the total
variation distance between their class histograms, the histograms, and the training seconds.

(b) compares cycle 0 (1,000 labels, the same initial set): the schedules differ in iterations, validation interval,
M2 steps per iteration and M2's bound, nothing else. (c) compares cycles 0–2: cycle 0 trains both cold for 1,000
iterations, so its selections must coincide (a check of the comparison itself); the first difference is cycle 1's
training (warm: 300 iterations from cycle 0's models).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

#: check -> (what it compares, [(arm, the cpu profile's run folder, the check's run folder)], seeds, cycles)
CHECKS = {
    "b": ("paper schedule (B) against cpu schedule (A)",
          [("vaal", "cpu/02_vaal_vs_random/vaal", "cpu_check/paper_schedule/vaal_paper"),
           ("m2_vaal", "cpu/02_vaal_vs_random/m2_vaal", "cpu_check/paper_schedule/m2_vaal_paper")],
          [0], [0]),
    "c": ("from scratch (B) against warm-started (A)",
          [("vaal", "cpu/02_vaal_vs_random/vaal", "cpu_check/warm_start/vaal_cold")],
          [0, 1, 2], [0, 1, 2]),
}

#: pairs of runs whose cycle-0 selections give the check's overlaps a scale
SCALE = {"b": [("the cpu schedule's vaal against its m2_vaal (two learners, one schedule)",
                "cpu/02_vaal_vs_random/vaal", "cpu/02_vaal_vs_random/m2_vaal")]}


def records(path: Path) -> dict[int, dict]:
    if not path.exists():
        return {}
    return {r["cycle"]: r for r in (json.loads(line) for line in path.read_text().splitlines() if line.strip())}


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


def table(root: Path, check: str) -> list[str]:
    """The check's markdown: one row per arm, seed and cycle present in both runs, then the differences."""
    what, arms, seeds, cycles = CHECKS[check]
    out = [f"Fidelity check ({check}): {what}.", "",
           "| arm | seed | cycle | labels | test A | test B | AUC A | AUC B | overlap | class TV | classes A | classes B "
           "| train s A | train s B |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    diffs: dict[tuple[str, int], list] = {}
    for arm, a_dir, b_dir in arms:
        for seed in seeds:
            ra = records(root / a_dir / f"seed{seed}" / "records.jsonl")
            rb = records(root / b_dir / f"seed{seed}" / "records.jsonl")
            for c in sorted(set(ra) & set(rb) & set(cycles)):
                a, b = ra[c], rb[c]
                ov, tv = overlap(a, b), class_distance(a, b)
                auc_a, auc_b = a.get("disc_auc_heldout"), b.get("disc_auc_heldout")
                diffs.setdefault((arm, c), []).append((100 * (b["test_acc"] - a["test_acc"]),
                                                       None if auc_a is None or auc_b is None else auc_b - auc_a, ov, tv))
                out.append(f"| {arm} | {seed} | {c} | {a['n_labelled']:,} | {100 * a['test_acc']:.2f} | "
                           f"{100 * b['test_acc']:.2f} | {_f(auc_a, '.3f')} | {_f(auc_b, '.3f')} | {_f(ov, '.3f')} | "
                           f"{_f(tv, '.3f')} | {a.get('selected_class_counts')} | {b.get('selected_class_counts')} | "
                           f"{a['seconds']['train']:.0f} | {b['seconds']['train']:.0f} |")
    out.append("")
    for (arm, c), d in sorted(diffs.items()):
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        auc = [x[1] for x in d if x[1] is not None]
        ov = [x[2] for x in d if x[2] is not None]
        out.append(f"{arm}, cycle {c} ({len(d)} seed{'s' if len(d) > 1 else ''}): test B - A "
                   f"{mean([x[0] for x in d]):+.2f} points ({', '.join(f'{x[0]:+.2f}' for x in d)})"
                   + (f"; AUC B - A {mean(auc):+.3f} ({', '.join(f'{x:+.3f}' for x in auc)})" if auc else "")
                   + (f"; selections' overlap {mean(ov):.3f}" if ov else ""))
    for label, a_dir, b_dir in SCALE.get(check, []):
        for seed in seeds:
            a = records(root / a_dir / f"seed{seed}" / "records.jsonl").get(0)
            b = records(root / b_dir / f"seed{seed}" / "records.jsonl").get(0)
            if a and b:
                out.append(f"For scale, {label}, seed {seed}, cycle 0: overlap {_f(overlap(a, b), '.3f')}, "
                           f"class TV {_f(class_distance(a, b), '.3f')}")
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("check", choices=sorted(CHECKS))
    ap.add_argument("--results", default="results")
    args = ap.parse_args(argv)
    print("\n".join(table(Path(args.results), args.check)))


if __name__ == "__main__":
    main()
