"""Print one line per cycle of every run below a results folder: accuracy, learner losses, the
discriminator's held-out accuracy, seconds per cycle, and whether any number is NaN/inf.

    python benchmarks/report_runs.py results/cpu_check/generative_short
"""
import math
import sys

from alkit.analysis import markdown_table
from alkit.results import load_results

COLUMNS = [("run", "run", "s"), ("cycle", "cycle", "d"), ("n_labelled", "labels", "d"), ("test_acc", "test acc", ".3f"),
           ("generative_loss", "VAE/M2 loss", ".1f"), ("disc_loss", "disc loss", ".3f"), ("disc_acc_heldout", "disc acc (held-out)", ".3f"),
           ("task_loss", "task loss", ".3f"), ("cycle_seconds", "s / cycle", ".1f"), ("selected_classes", "selected classes", "s")]


def _non_finite(record: dict) -> list[str]:
    return [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]


def main(folder: str) -> int:
    rows = load_results(folder)
    if not rows:
        print(f"no records.jsonl below {folder}", file=sys.stderr)
        return 1
    bad = []
    for r in rows:
        r["generative_loss"] = r.get("vae_loss", r.get("m2_loss"))
        r["cycle_seconds"] = sum(r.get("seconds", {}).values())
        counts = r.get("selected_class_counts") or []
        r["selected_classes"] = " ".join(str(c) for c in counts) if counts else "–"
        bad += [f"{r['run']} cycle {r['cycle']}: {k}" for k in _non_finite(r)]
    print(markdown_table(rows, COLUMNS))
    print(f"\n{len(rows)} records; non-finite values: {', '.join(bad) if bad else 'none'}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "results/cpu_check"))
