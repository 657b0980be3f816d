"""The README's results tables of a profile, from its records: test accuracy per arm and label count, mean ± sd
over seeds and each seed, beside the study's numbers and (for 02) the committed `paper` random arm.

    .venv/bin/python scripts/readme_tables.py cpu 02_vaal_vs_random [--arms vaal random m2_vaal m2_vaal_random]

Reads records only (results/<profile>/<notebook>/); prints Markdown. Verdicts are not made here: they come from
the executed notebook's family table (paired tests across seeds, Holm, smallest detectable effect).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alkit.analysis import STUDY_1000, STUDY_THREE_CLASS  # noqa: E402
from alkit.results import load_results  # noqa: E402

STUDY = {"02_vaal_vs_random": STUDY_1000, "03_three_class_start": STUDY_THREE_CLASS}


def table(profile: str, notebook: str, arms: list[str] | None) -> str:
    rows = load_results(ROOT / "results" / profile / notebook)
    paper = {(r["seed"], r["n_labelled"]): r["test_acc"] for r in load_results(ROOT / "results" / "paper" / notebook)
             if r.get("arm") == "random"} if notebook == "02_vaal_vs_random" else {}
    arms = arms or sorted({r["arm"] for r in rows})
    study = STUDY.get(notebook, {})
    out = []
    for arm in arms:
        by = {}
        for r in rows:
            if r.get("arm") == arm:
                by.setdefault(r["n_labelled"], {})[r["seed"]] = 100 * r["test_acc"]
        if not by:
            continue
        seeds = sorted({s for v in by.values() for s in v})
        head = ["labels", *[f"seed {s}" for s in seeds], "mean ± sd (seeds)", "the study (one run)"]
        if paper and arm == "random":
            head.append("`paper` random, same seed (mean ± sd)")
        out += [f"**{arm}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for n in sorted(by):
            vals = [by[n].get(s) for s in seeds]
            got = [v for v in vals if v is not None]
            mean = f"{statistics.mean(got):.2f} ± {statistics.stdev(got):.2f} ({len(got)})" if len(got) > 1 else (
                f"{got[0]:.2f} (1)")
            cells = [f"{n:,}", *[f"{v:.2f}" if v is not None else "–" for v in vals], mean,
                     f"{study[n]:.2f}" if n in study else "–"]
            if paper and arm == "random":
                pv = [100 * paper[(s, n)] for s in seeds if (s, n) in paper]
                diffs = [by[n][s] - 100 * paper[(s, n)] for s in seeds if (s, n) in paper and s in by[n]]
                cells.append(f"{statistics.mean(pv):.2f} ± {statistics.stdev(pv):.2f} (cpu − paper per seed: "
                             f"{', '.join(f'{d:+.2f}' for d in diffs)})" if len(pv) > 1 else "–")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("profile")
    ap.add_argument("notebook")
    ap.add_argument("--arms", nargs="*")
    args = ap.parse_args(argv)
    print(table(args.profile, args.notebook, args.arms))


if __name__ == "__main__":
    main()
