"""Notebook 05 beyond the study: TypiClust, ProbCover and BADGE beside Algorithms 1 and 2 (issue 29).

Tables, derived rows for the coverage / class-balance figure, and the prose of
the notebook, all from result records. Statistics follow the project's rules:

- every seed is summarised first (AUBC after the first acquisition, or a mean
  over cycles), then arms are compared across seeds with a paired test
  (:func:`alkit.analysis.stats.compare_seeds`);
- no direction from fewer than :data:`MIN_SEEDS` seeds: such a comparison reads
  "not testable with n seeds", whatever its p-value;
- the comparisons of one notebook section are one family, Holm-corrected
  (:func:`alkit.analysis.stats.holm`);
- every "within noise" states the smallest effect the run could have detected
  (:func:`alkit.analysis.stats.minimum_detectable_effect`).
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from .prose import p_text, signed
from .stats import class_entropy, compare_seeds, holm, minimum_detectable_effect
from .tables import AUBC_MIN_CYCLE, count_classes, differences, group, markdown_table, per_seed, seed_order

#: the low-budget strategies of issue 29, in the notebook's order
NEW_ARMS = ("typiclust", "probcover", "badge")
#: what they are compared with: random acquisition and the study's own two algorithms
AGAINST = ("random", "alg1", "alg2")
#: fewer seeds than this give no direction (the project's rule)
MIN_SEEDS = 3


def compare_family(rows: Iterable[dict], arms: Sequence[str] = NEW_ARMS, against: Sequence[str] = AGAINST,
                   y: str = "test_acc", summary: str = "aubc", min_cycle: int = 1, alpha: float = 0.05,
                   min_seeds: int = MIN_SEEDS) -> list[dict]:
    """Every ``arm`` against every ``against`` arm, as one Holm-corrected family.

    Each pair is :func:`alkit.analysis.stats.compare_seeds` (per-seed ``summary`` of ``y``
    over cycles ``>= min_cycle``, paired over the seeds both have). Added keys:
    ``family`` (the number of testable pairs, m), ``p_holm`` (None when not
    testable), ``mde`` (the smallest mean difference detectable with 80 % power at
    the family's strictest Holm level alpha / m), and ``verdict`` rewritten: fewer
    than ``min_seeds`` seeds -> "not testable with n seed(s)"; else "{a} higher" /
    "{b} higher" when ``p_holm < alpha``, else "within noise". Pairs whose arms have
    no records are left out.
    """
    rows = list(rows)
    present = {r.get("arm") for r in rows}
    out = [compare_seeds(rows, a, b, y=y, min_cycle=min_cycle, summary=summary, alpha=alpha)
           for a in arms for b in against if a in present and b in present and a != b]
    testable = [d for d in out if d["n"] >= min_seeds and d["p"] is not None]
    adj = holm([d["p"] for d in testable])
    m = len(testable)
    for d, p in zip(testable, adj):
        d["p_holm"] = p
        d["verdict"] = "within noise" if not p < alpha else f"{d['a']} higher" if d["mean"] > 0 else f"{d['b']} higher"
        d["mde"] = minimum_detectable_effect(d["std"], d["n"], alpha / m)
    for d in out:
        d["family"] = m
        if d not in testable:
            d["p_holm"], d["mde"] = None, None
            d["verdict"] = f"not testable with {d['n']} seed{'' if d['n'] == 1 else 's'}"
            d["testable"] = False
    return out


def _num(x: float) -> float:
    """Rounding noise (a difference of equal sums, 1e-15) read as the zero it is."""
    return 0.0 if abs(x) < 1e-9 else x


def describe_family(family: list[dict], scale: float = 100, unit: str = "points", what: str = "AUBC after the first acquisition") -> list[str]:
    """Markdown lines, one per comparison of :func:`compare_family`, with the rule that decided the verdict."""
    if not family:
        return [f"- {what}: nothing to compare yet (no records of these arms)."]
    lines = []
    for d in family:
        head = f"{d['a']} \u2212 {d['b']}"
        per_seed = ", ".join(f"{signed(_num(scale * v))}" for v in d["diffs"])
        amount = f"{signed(_num(scale * d['mean']))} {unit}" if d["mean"] is not None else "no common seed"
        if not d["testable"]:
            lines.append(f"- {head}: {amount} (per seed: {per_seed or 'none'}) \u2014 {d['verdict']} "
                         f"(a direction needs at least {MIN_SEEDS} seeds).")
            continue
        text = (f"- {head}: {amount} (95% CI {signed(scale * d['ci_low'])} to {signed(scale * d['ci_high'])}; "
                f"paired t over {d['n']} seeds, p {p_text(d['p'])}, Holm-adjusted over {d['family']} comparisons "
                f"p {p_text(d['p_holm'])}) \u2014 {d['verdict']}")
        if d["verdict"] == "within noise":
            text += ("; the smallest effect this run could have detected (80 % power at the family's strictest level) is "
                     f"{scale * d['mde']:.2f} {unit}" if d["mde"] is not None else "")
        lines.append(text + ".")
    return lines


def verdict_markdown(rows: Iterable[dict], arms: Sequence[str] = NEW_ARMS, against: Sequence[str] = AGAINST) -> str:
    """The notebook's verdict paragraph: the family of AUBC comparisons, with its rules stated."""
    rows = list(rows)
    fam = compare_family(rows, arms, against)
    seeds = sorted({r["seed"] for r in rows if r.get("arm") in arms}, key=seed_order)
    head = (f"**Verdict** (AUBC of test accuracy after the first acquisition, one number per seed, paired over "
            f"{len(seeds)} seed{'' if len(seeds) == 1 else 's'}; the {len(fam)} comparisons below are one family, "
            f"Holm-corrected; no direction from fewer than {MIN_SEEDS} seeds):")
    return "\n".join([head, *describe_family(fam)])


def difference_table(rows: Iterable[dict], arms: Sequence[str] = NEW_ARMS + ("alg1", "alg2"),
                     baseline: str = "random", scale: float = 100) -> str:
    """Markdown: accuracy minus ``baseline`` (same seed and cycle) per arm and label count, the mean over
    seeds with every seed's value in brackets, then each seed's AUBC and its mean (in %)."""
    rows = list(rows)
    diffs = differences(rows, baseline=baseline)
    labels = sorted({d["n_labelled"] for d in diffs if d["arm"] in arms})
    if not labels:
        return f"No cycles of {', '.join(arms)} and {baseline} at the same seed yet."
    head = ["arm", *[f"{n:,} labels" for n in labels], f"AUBC per seed, cycles ≥ {AUBC_MIN_CYCLE} (%)", "AUBC mean (%)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    # the notebook's one AUBC (cycles after the first acquisition), as its table and verdict use
    per = per_seed([r for r in rows if r.get("arm") in (*arms, baseline)], min_cycle=AUBC_MIN_CYCLE)
    for arm in [*arms, baseline]:
        cells = [arm]
        for n in labels:
            ds = sorted((d for d in diffs if d["arm"] == arm and d["n_labelled"] == n), key=lambda d: seed_order(d["seed"]))
            cells.append("0 (baseline)" if arm == baseline else
                         "\u2013" if not ds else
                         f"{signed(_num(scale * np.mean([d['diff'] for d in ds])))} "
                         f"({', '.join(signed(_num(scale * d['diff'])) for d in ds)})")
        seeds = per.get(arm, {})
        cells.append(", ".join(f"s{s}: {scale * v:.2f}" for s, v in seeds.items()) or "\u2013")
        cells.append(f"{scale * np.mean(list(seeds.values())):.2f}" if seeds else "\u2013")
        if seeds:
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# coverage and class balance (the "why" figure)


def coverage_rows(rows: Iterable[dict]) -> list[dict]:
    """Latent coverage per run and label count, from the ``coverage`` field of the records.

    One row ``{arm, seed, n_labelled, coverage}`` for the starting set (cycle 0's
    ``coverage.labelled``), then one per batch at the label count after it
    (``coverage.after_selection`` at ``n_labelled + batch``): how much of the latent
    each method's labelled set covers, measured in the latent its batch was chosen
    in, at that cycle's ProbCover delta. Records without coverage are skipped.
    """
    out = []
    for r in rows:
        c = r.get("coverage")
        if not c:
            continue
        batch = len(r["selected"]) if r.get("selected") is not None else 0
        if r["cycle"] == 0:
            out.append({"arm": r["arm"], "seed": r["seed"], "cycle": 0, "n_labelled": r["n_labelled"], "coverage": c["labelled"],
                        "delta": c["delta"]})
        out.append({"arm": r["arm"], "seed": r["seed"], "cycle": r["cycle"] + 1, "n_labelled": r["n_labelled"] + batch,
                    "coverage": c["after_selection"], "delta": c["delta"]})
    return out


def balance_rows(rows: Iterable[dict]) -> list[dict]:
    """Class balance of the labelled set per record: ``class_entropy`` (nats; ln C when balanced),
    ``min_class_share`` (the rarest class's share) and ``classes`` (C), from ``labelled_class_counts``."""
    out = []
    for r in rows:
        counts = r.get("labelled_class_counts")
        if counts is None:
            continue
        total = sum(counts)
        out.append({"arm": r["arm"], "seed": r["seed"], "cycle": r["cycle"], "n_labelled": r["n_labelled"],
                    "class_entropy": class_entropy(np.asarray(counts)), "min_class_share": min(counts) / total if total else None,
                    "classes": len(counts)})
    return out


def _last(rows: list[dict], arm: str, key: str) -> dict[object, float]:
    """Each seed's value of ``key`` at its largest label count."""
    out = {}
    for (seed,), rs in group((r for r in rows if r["arm"] == arm and r.get(key) is not None), "seed").items():
        out[seed] = max(rs, key=lambda r: r["n_labelled"])[key]
    return dict(sorted(out.items(), key=lambda kv: seed_order(kv[0])))


def describe_coverage(rows: Iterable[dict], arms: Sequence[str], baseline: str = "random",
                      order: Sequence[str] | None = None) -> list[str]:
    """Markdown lines on the 'why' figure: per arm (in ``order``, the figures' legend order; default ``arms``),
    the coverage after its last batch and the class balance of its last labelled set (mean over seeds, each
    seed in brackets), then the family of paired comparisons of the per-seed mean coverage with ``baseline``
    (Holm-corrected, in the order of ``arms``; no direction below 3 seeds)."""
    rows = list(rows)
    cov, bal = coverage_rows(rows), balance_rows(rows)
    if not cov:
        return ["- No coverage recorded yet (records without `coverage`: set `coverage_purity` in the parameter file)."]
    deltas = [c["delta"] for c in cov]
    lines = [f"- Coverage is the share of pool points within δ of a labelled point in that cycle's M2 latent; δ (chosen per "
             f"cycle so that 95 % of the balls are pure under 10 k-means pseudo-labels) ranged {min(deltas):.2f}\u2013{max(deltas):.2f}."]
    classes = count_classes(rows)
    for arm in order or arms:
        c, b = _last(cov, arm, "coverage"), _last(bal, arm, "class_entropy")
        s = _last(bal, arm, "min_class_share")
        if not c:
            continue
        lines.append(f"- {arm}: after its last batch it covers {100 * np.mean(list(c.values())):.1f} % "
                     f"({', '.join(f'{100 * v:.1f}' for v in c.values())}); its labelled set's class entropy is "
                     f"{np.mean(list(b.values())):.3f} nats of ln {classes} = {math.log(classes):.3f} "
                     f"(rarest class {100 * np.mean(list(s.values())):.1f} % of the labels).")
    fam = compare_family(cov, [a for a in arms if a != baseline], [baseline], y="coverage", summary="mean", min_cycle=1)
    lines.append("- Mean coverage after the batches (one number per seed), each arm against "
                 f"{baseline}, one Holm-corrected family:")
    lines += ["  " + line for line in describe_family(fam, what="coverage")]
    return lines


def selection_seconds(rows: Iterable[dict], arms: Sequence[str]) -> str:
    """Markdown: mean seconds of one selection (strategy only, ``seconds.select``) per arm, over seeds and cycles."""
    rows = list(rows)
    cells = []
    for arm in arms:
        sec = [r["seconds"]["select"] for r in rows if r.get("arm") == arm and "select" in (r.get("seconds") or {})]
        if sec:
            cells.append({"arm": arm, "seconds": float(np.mean(sec)), "n": len(sec)})
    return markdown_table(cells, [("arm", "arm", "s"), ("seconds", "seconds per selection", ".3f"),
                                  ("n", "selections", "d")])


__all__ = ["NEW_ARMS", "AGAINST", "MIN_SEEDS", "compare_family", "describe_family",
           "verdict_markdown", "difference_table", "coverage_rows", "balance_rows", "describe_coverage", "selection_seconds"]
