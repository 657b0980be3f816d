"""The README's results tables of a profile, from its records: test accuracy per arm and label count, mean ± sd
over seeds and each seed, beside the study's numbers and (for 02) the committed `paper` random arm.

    .venv/bin/python scripts/readme_tables.py cpu 02_vaal_vs_random [--arms vaal random m2_vaal m2_vaal_random]
    .venv/bin/python scripts/readme_tables.py cpu 03_three_class_start --side-by-side m2_vaal m2_vaal_random
    .venv/bin/python scripts/readme_tables.py cpu 05_latent_acquisition --means random alg1 alg2

The first form prints one table per arm, a column per seed; --side-by-side prints the README's compact form: one
table with each named arm's seeds ("a / b / c", in seed order, "–" where a seed has no record) and mean ± sd;
--means prints only each arm's mean ± sd and its number of seeds, for arms too many to show every seed.

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


def _accuracy(rows: list[dict], arm: str) -> dict[int, dict[int, float]]:
    """{n_labelled: {seed: test accuracy in %}} for one arm."""
    by: dict[int, dict[int, float]] = {}
    for r in rows:
        if r.get("arm") == arm:
            by.setdefault(r["n_labelled"], {})[r["seed"]] = 100 * r["test_acc"]
    return by


def _mean_sd(values: list[float], count: bool = False) -> str:
    """"m ± sd" of ``values`` (one value: itself; none: "–"), with " (n)" when ``count``."""
    n = f" ({len(values)})" if count else ""
    if len(values) > 1:
        return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}{n}"
    return f"{values[0]:.2f}{n}" if values else "–"


def table(profile: str, notebook: str, arms: list[str] | None) -> str:
    rows = load_results(ROOT / "results" / profile / notebook)
    paper = {(r["seed"], r["n_labelled"]): r["test_acc"] for r in load_results(ROOT / "results" / "paper" / notebook)
             if r.get("arm") == "random"} if notebook == "02_vaal_vs_random" else {}
    arms = arms or sorted({r["arm"] for r in rows})
    study = STUDY.get(notebook, {})
    out = []
    for arm in arms:
        by = _accuracy(rows, arm)
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
            mean = _mean_sd(got, count=True)
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


def side_by_side(profile: str, notebook: str, arms: list[str]) -> str:
    """One Markdown table: per label count, each arm's seeds and its mean ± sd, then the study's number."""
    rows = load_results(ROOT / "results" / profile / notebook)
    study = STUDY.get(notebook, {})
    acc = {arm: _accuracy(rows, arm) for arm in arms}
    seeds = {arm: sorted({s for v in acc[arm].values() for s in v}) for arm in arms}
    head = ["labels"]
    for arm in arms:
        head += [f"`{arm}` seeds {' / '.join(map(str, seeds[arm]))}", "mean ± sd"]
    head.append("the study")
    out = ["| " + " | ".join(head) + " |", "|---:|" + ":---|---:|" * len(arms) + "---:|"]
    for n in sorted({n for a in arms for n in acc[a]}):
        cells = [f"{n:,}"]
        for arm in arms:
            vals = [acc[arm].get(n, {}).get(s) for s in seeds[arm]]
            got = [v for v in vals if v is not None]
            cells.append(" / ".join("–" if v is None else f"{v:.2f}" for v in vals))
            cells.append(_mean_sd(got))
        cells.append(f"{study[n]:.2f}" if n in study else "–")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def means(profile: str, notebook: str, arms: list[str]) -> str:
    """One Markdown table: per label count, each arm's mean ± sd over its seeds with their number, then the study."""
    rows = load_results(ROOT / "results" / profile / notebook)
    study = STUDY.get(notebook, {})
    acc = {arm: _accuracy(rows, arm) for arm in arms}
    out = ["| labels | " + " | ".join(f"`{a}` mean ± sd (seeds)" for a in arms) + " | the study |",
           "|---:|" + "---:|" * len(arms) + "---:|"]
    for n in sorted({n for a in arms for n in acc[a]}):
        cells = [f"{n:,}"]
        for arm in arms:
            cells.append(_mean_sd([v for _, v in sorted(acc[arm].get(n, {}).items())], count=True))
        cells.append(f"{study[n]:.2f}" if n in study else "–")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("profile")
    ap.add_argument("notebook")
    ap.add_argument("--arms", nargs="*")
    ap.add_argument("--side-by-side", nargs="+", metavar="ARM", help="one compact table of these arms")
    ap.add_argument("--means", nargs="+", metavar="ARM", help="mean ± sd (seeds) of these arms, no seed columns")
    args = ap.parse_args(argv)
    if args.means:
        print(means(args.profile, args.notebook, args.means))
    elif args.side_by_side:
        print(side_by_side(args.profile, args.notebook, args.side_by_side))
    else:
        print(table(args.profile, args.notebook, args.arms))


if __name__ == "__main__":
    main()
