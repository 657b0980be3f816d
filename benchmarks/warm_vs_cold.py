"""Fidelity check (c): warm-started against from-scratch generative models (benchmarks/warm_start_cpu.yaml).

    python benchmarks/warm_vs_cold.py [--results results]

Per seed and cycle, side by side: the discriminator's held-out AUC (labelled vs unlabelled on points it never
fitted), the test accuracy, the overlap of the batch each selected (|A ∩ B| / budget) and the two batches'
class counts. Cycle 0 trains both cold for 1,000 iterations, so its selections must coincide (a check of the
comparison itself); the first difference is cycle 1's training (warm: 300 iterations from cycle 0's models).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def records(path: Path) -> dict[int, dict]:
    if not path.exists():
        return {}
    return {r["cycle"]: r for r in (json.loads(line) for line in path.read_text().splitlines() if line.strip())}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", default="results")
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args(argv)
    root = Path(args.results)
    diffs: dict[int, list] = {}
    print("| seed | cycle | labels | AUC warm | AUC cold | test warm | test cold | overlap | classes warm | classes cold |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for seed in map(int, args.seeds.split(",")):
        warm = records(root / "cpu" / "02_vaal_vs_random" / "vaal" / f"seed{seed}" / "records.jsonl")
        cold = records(root / "cpu_check" / "warm_start" / "vaal_cold" / f"seed{seed}" / "records.jsonl")
        for c in sorted(set(warm) & set(cold)):
            w, k = warm[c], cold[c]
            sw, sk = set(w.get("selected") or []), set(k.get("selected") or [])
            overlap = f"{len(sw & sk) / max(len(sw), 1):.2f}" if sw and sk else "-"
            if c > 0:
                diffs.setdefault(c, []).append((w.get("disc_auc_heldout", float("nan")) - k.get("disc_auc_heldout", float("nan")),
                                                100 * (w["test_acc"] - k["test_acc"]),
                                                len(sw & sk) / max(len(sw), 1) if sw and sk else None))
            print(f"| {seed} | {c} | {w['n_labelled']:,} | {w.get('disc_auc_heldout', float('nan')):.3f} | "
                  f"{k.get('disc_auc_heldout', float('nan')):.3f} | {100 * w['test_acc']:.2f} | {100 * k['test_acc']:.2f} | "
                  f"{overlap} | {w.get('selected_class_counts')} | {k.get('selected_class_counts')} |")
    print()
    for c, d in sorted(diffs.items()):
        ov = [x[2] for x in d if x[2] is not None]
        print(f"cycle {c} ({len(d)} seeds): AUC warm - cold {sum(x[0] for x in d) / len(d):+.3f} "
              f"({', '.join(f'{x[0]:+.3f}' for x in d)}); test warm - cold {sum(x[1] for x in d) / len(d):+.2f} points "
              f"({', '.join(f'{x[1]:+.2f}' for x in d)})" + (f"; selections' overlap {sum(ov) / len(ov):.2f}" if ov else ""))


if __name__ == "__main__":
    main()
