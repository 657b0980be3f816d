"""Sentences every notebook states, computed from records: a comparison, the best arm, the setting line of each
figure, what is missing from partial results, the validation set beside the labels.

Every number a notebook states in prose comes from :mod:`alkit.analysis`, so "What we see" paragraphs
are computed, not typed; each notebook's own lines are in :mod:`alkit.analysis.what_we_see`.
"""
from __future__ import annotations

import math
import numbers
from typing import Iterable

from .stats import MIN_SEEDS_FOR_DIRECTION, checkpoint_tests, compare_seeds, minimum_detectable_effect
from .tables import (AUBC_MIN_CYCLE, at_largest_budget, checkpoint_rows, coverage, cycle_span, markdown_table,
                     on_common_labels)


def signed(x: float) -> str:
    """``+1.23`` / ``−0.40`` with a real minus sign (U+2212); below 0.1 in size, three significant
    figures (``+0.00312``), so a small effect in small units never prints as ``+0.00``."""
    text = f"{x:+.2f}" if x == 0 or abs(x) >= 0.1 or not math.isfinite(x) else f"{x:+.3g}"
    return text.replace("-", "\u2212")


_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")


def number_word(n: int) -> str:
    """A count as prose writes it: ``7`` -> "seven" up to twelve, digits beyond ("15")."""
    return _NUMBER_WORDS[n] if 0 <= n < len(_NUMBER_WORDS) else f"{n:,}"


def p_text(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"= {p:.3f}" if p < 0.01 else f"= {p:.2f}"


def _labels_text(labels: list) -> str:
    """"1,000–3,000 labels" (or "1,000 labels" for one count)."""
    lo, hi = labels[0], labels[-1]
    return f"{lo:,} labels" if lo == hi else f"{lo:,}\u2013{hi:,} labels"


def grid_note(rows: Iterable[dict], y: str = "test_acc", by: str = "arm", what: str = "The areas under the budget curve") -> str:
    """A sentence when some run has label counts that others lack (partial results), else "".

    E.g. "The areas under the budget curve use 1,000–3,000 labels only (3 label counts): those every
    seed of every arm has; 2 more label counts on disk for some seeds are left out of them."
    """
    rows = list(rows)
    _, info = on_common_labels(rows, y=y, by=by)
    if not info["dropped"]:
        return ""
    if not info["labels"]:
        return f"{what}: no label count is shared by every seed of every arm yet, so nothing is compared."
    k = len(info["labels"])
    return (f"{what} use {_labels_text(info['labels'])} only ({k} label count{'s' if k != 1 else ''}): those every seed "
            f"of every arm has; {info['dropped']} more label count{'s' if info['dropped'] != 1 else ''} on disk for "
            "some seeds are left out of them.")


def describe_comparison(d: dict, scale: float = 100, unit: str = "points") -> str:
    """One sentence for a notebook's prose from a :func:`compare_seeds` result.

    ``scale`` turns the difference into ``unit`` (100: accuracy fractions to
    percentage points). Minus signs are the real minus (U+2212), also between
    the arm names, e.g. "vaal − random: +1.23 points (95% CI −0.40 to +2.86;
    paired t over 3 seeds, p = 0.14; sign-flip p = 0.25) — within noise."
    """
    head = f"{d['a']} \u2212 {d['b']}"
    if not d["testable"] and d["n"] == 0:
        return f"{head}: no seed in common \u2014 {d['verdict']}."
    amount = signed(scale * d["mean"]) + (f" {unit}" if unit else "")
    if d.get("labels_dropped") and d.get("labels") and isinstance(d["labels"][0], numbers.Real):
        amount += f" over {_labels_text(d['labels'])} only (the label counts every compared seed has)"
    if not d["testable"]:
        if d["n"] >= 2 and d.get("std") is not None:
            each = ", ".join(signed(scale * v) for v in d.get("diffs") or [])
            spread = f" (per seed {each}; sd {scale * d['std']:.2f})" if each else f" (sd {scale * d['std']:.2f})"
            return (f"{head}: {amount}{spread} \u2014 {d['verdict']}: a direction needs at least "
                    f"{MIN_SEEDS_FOR_DIRECTION} seeds.")
        return f"{head}: {amount} \u2014 {d['verdict']}."
    level = f"{100 * (1 - d['alpha']):g}%"
    holm_text = (f", Holm-adjusted p {p_text(d['p_holm'])} over {d['family_size']} comparisons"
                 if d.get("p_holm") is not None else "")
    text = (f"{head}: {amount} ({level} CI {signed(scale * d['ci_low'])} to "
            f"{signed(scale * d['ci_high'])}; paired t over {d['n']} seeds, p {p_text(d['p'])}{holm_text}; "
            f"sign-flip p {p_text(d['p_signflip'])}) \u2014 {d['verdict']}")
    if d["verdict"] == "within noise" and d.get("mde") is not None:
        text += (f": with {d['n']} seeds and this spread, differences below \u2248 {scale * d['mde']:.2g}"
                 f"{' ' + unit if unit else ''} cannot be told from noise")
    return text + "."


def answer(fam: list[dict], claims: Iterable[tuple[str, str]], scale: float = 100, unit: str = "points",
           measure: str = "AUBC") -> str:
    """The opening sentence of a "What we see" cell: the notebook's question answered by its ``claims`` (pairs of
    the Holm-corrected family ``fam``) as far as the statistics allow -- a direction only where a pair is
    testable (3 seeds or more) and its Holm-adjusted p is below its level, else "within noise" with the smallest
    difference the seeds could have detected -- then, said once, the claim pairs that cannot answer yet."""
    said, untestable, missing = [], [], []
    for a, b in claims:
        d = next((d for d in fam if (d["a"], d["b"]) == (a, b)), None)
        if d is None or d.get("missing"):
            missing.append(f"{a} vs {b}")
        elif not d["testable"]:
            untestable.append(f"{a} vs {b} ({d['n']} seed{'' if d['n'] == 1 else 's'})")
        elif d["verdict"] == "within noise":
            mde = "" if d.get("mde") is None else (f"; with {d['n']} seeds a difference below \u2248 "
                                                   f"{scale * d['mde']:.2g} {unit} could not be seen")
            said.append(f"{a} and {b} are within noise of each other ({a} \u2212 {b}: "
                        f"{signed(scale * d['mean'])} {unit} of {measure}{mde})")
        else:
            hi, lo = (a, b) if d["mean"] > 0 else (b, a)
            lo_ci, hi_ci = (d["ci_low"], d["ci_high"]) if d["mean"] > 0 else (-d["ci_high"], -d["ci_low"])
            said.append(f"{hi} is higher than {lo} by {abs(scale * d['mean']):.2f} {unit} of {measure} (95% CI "
                        f"{signed(scale * lo_ci)} to {signed(scale * hi_ci)}; {d['n']} seeds, Holm-adjusted p "
                        f"{p_text(d['p_holm'])})")
    parts = ["**The answer on this profile:** " + "; ".join(said) + "." if said else
             "**This profile cannot answer the question yet.**"]
    if untestable:
        parts.append(f"Not testable yet (a direction needs at least {MIN_SEEDS_FOR_DIRECTION} seeds): "
                     + ", ".join(untestable) + ".")
    if missing:
        parts.append("Not run yet: " + ", ".join(missing) + ".")
    return " ".join(parts)


def describe_versus(v: dict, scale: float = 100, unit: str = "points") -> str:
    """Two clauses for a notebook: the cycle-0 (learner) gap, then the AUBC gap after acquisition.

    An arm with no records yet (partial results) gives one clause saying so instead.
    """
    missing = v["cycle0"].get("missing") or []
    if missing:
        return f"not compared yet: no records of {' and '.join(missing)}."
    return (f"before any acquisition (cycle 0, learner only): {describe_comparison(v['cycle0'], scale, unit)} "
            f"After acquisition (AUBC over cycles \u2265 1): {describe_comparison(v['after'], scale, unit)}")


def describe_largest(table: list[dict], order: Iterable[str] | None = None, scale: float = 100, unit: str = "%") -> str:
    """"vaal 71.80 ± 0.85 % (400 labels, 2 seeds), …": mean ± sd over seeds at each arm's largest budget."""
    rows = {r["arm"]: r for r in at_largest_budget(table)}
    arms = [a for a in (order or rows) if a in rows]
    return ", ".join(f"{a} {scale * rows[a]['mean']:.2f} ± {scale * rows[a]['std']:.2f} {unit} "
                     f"({rows[a]['n_labelled']:,} labels, {rows[a]['n']} seed{'s' if rows[a]['n'] != 1 else ''})"
                     for a in arms)


def describe_best_aubc(aubc_rows: list[dict], rows: Iterable[dict], y: str = "test_acc", min_cycle: int = 0,
                       family_size: int = 0, alpha: float = 0.05) -> str:
    """The "What we see" line on the areas under the budget curve of :func:`aubc`.

    The arm with the largest mean is named "best" only when it beats the runner-up under a paired test
    over seeds (:func:`compare_seeds` on the same AUBC), Bonferroni-corrected for the ``family_size``
    other comparisons of the notebook plus this one (a data-chosen pair, so no less strict than Holm);
    otherwise "no arm distinguishable from the others", with the two means and the runner-up test.
    """
    if not aubc_rows:
        return "- No area under the budget curve yet: no arm has records."
    rows = [r for r in rows if min_cycle <= 0 or r["cycle"] >= min_cycle]
    _, info = on_common_labels(list(rows), y=y)
    seeds = max(r["n"] for r in aubc_rows)
    where = f"{seeds} seed{'s' if seeds != 1 else ''} and {len(info['labels'])} label count{'s' if len(info['labels']) != 1 else ''}"
    if len(aubc_rows) == 1:
        (r,) = aubc_rows
        return (f"- Only **{r['arm']}** has records yet: over {where}, its area under the budget curve is "
                f"{100 * r['aubc']:.2f} ± {100 * r['std']:.2f} %; nothing to compare it with.")
    ranked = sorted(aubc_rows, key=lambda r: -r["aubc"])
    best, second = ranked[0], ranked[1]
    d = compare_seeds(rows, best["arm"], second["arm"], y=y, min_cycle=min_cycle, alpha=alpha)
    m = family_size + 1
    if d["testable"]:
        d = dict(d, p_holm=min(1.0, m * d["p"]), family_size=m)
        d["verdict"] = f"{best['arm']} higher" if d["p_holm"] < alpha and d["mean"] > 0 else "within noise"
        if d["verdict"] == "within noise" and d["std"]:
            d["mde"] = minimum_detectable_effect(d["std"], d["n"], alpha / m)
    means = (f"{best['arm']} {100 * best['aubc']:.2f} ± {100 * best['std']:.2f} %, runner-up {second['arm']} "
             f"{100 * second['aubc']:.2f} ± {100 * second['std']:.2f} %")
    if d["testable"] and d["verdict"] == f"{best['arm']} higher":
        return (f"- Over {where}, the best area under the budget curve is **{best['arm']}**, ahead of the runner-up "
                f"under the corrected test ({means}; {describe_comparison(d)})")
    return (f"- Over {where}: no arm distinguishable from the others by area under the budget curve "
            f"(largest means: {means}; best vs runner-up: {describe_comparison(d)})")


def setting(exp, rows: Iterable[dict] = (), pool: int | None = None) -> str:
    """The setting of an experiment in one line, for figure subtitles and prose.

    E.g. "paper · pool 55,000 · start 1,000 labels (random), +1,000 per cycle × 7 · 8,593 training iterations
    per cycle · 3 seeds". The pool is ``pool`` when given (your own data), else the configured subset, else
    Fashion-MNIST's 60,000 training images less the validation set; iterations come from the records: the
    iterations a cycle trained (``iterations``: a warm-started generative model's E0 and E1 in the `cpu`
    profile), else the schedule's ``iterations_per_cycle``; a range where cycles or arms differ.
    """
    cfg = exp.config(next(iter(exp.arms)), exp.seeds[0])
    pool = pool or cfg.pool_size or 60_000 - cfg.val_size
    init = cfg.initial
    start = (f"start {init.n:,} labels of classes {{{', '.join(map(str, init.classes))}}}" if init.kind == "classes"
             else f"start {init.n:,} labels ({init.kind})")
    iters = sorted({int(n) for r in rows if (n := r.get("iterations") or r.get("iterations_per_cycle"))})
    schedule = ("" if not iters else f"{iters[0]:,} training iterations per cycle" if len(iters) == 1
                else f"{iters[0]:,}–{iters[-1]:,} training iterations per cycle")
    counts = sorted({len(exp.seeds_of(a)) for a in exp.arms}) if hasattr(exp, "seeds_of") else [len(exp.seeds)]
    n = counts[-1]
    seeds_text = (f"{n} seed{'s' if n != 1 else ''}" if len(counts) == 1
                  else f"{counts[0]}–{counts[-1]} seeds per arm")
    parts = [exp.profile, f"pool {pool:,}", f"{start}, +{cfg.budget:,} per cycle × {cfg.cycles}", schedule, seeds_text]
    if exp.oracle is None:  # an oracle session grows round by round: "partial" would say nothing
        cov = coverage(exp, list(rows))
        if cov["partial"]:
            parts.append(f"PARTIAL: {partial_counts(cov)}")
    return " · ".join(p for p in parts if p)


def partial_counts(cov: dict) -> str:
    """"3 of 15 runs started, 9 of 120 cycles" from :func:`alkit.experiment.coverage`."""
    return (f"{cov['runs_started']} of {cov['runs_total']} runs started, "
            f"{cov['cycles_on_disk']:,} of {cov['cycles_expected']:,} cycles")


def _seeds_text(seeds: list) -> str:
    return f"seed{'s' if len(seeds) != 1 else ''} {', '.join(str(s) for s in seeds)}"


def partial_note(exp, rows: Iterable[dict]) -> str:
    """Markdown for a notebook when its results are partial (what is missing), or empty when every run is finished.

    No record at all: says that nothing of the notebook has run yet, so its figures and statistics are
    skipped. Otherwise: the counts of :func:`partial_counts`, the arms with no record (left out of
    every figure and table), and per arm the seeds that are still under way with their cycles on disk.
    """
    if exp.oracle is not None:
        return ""
    cov = coverage(exp, list(rows))
    if not cov["partial"]:
        return ""
    if not cov["runs_started"]:
        return (f"**Nothing of this notebook has run yet** in the `{exp.profile}` profile: no records under "
                f"`{exp.folder}` (0 of {cov['runs_total']} runs, 0 of {cov['cycles_expected']:,} cycles), so its figures "
                f"and statistics are skipped. Train them with `alkit run params/{exp.profile}/{exp.name}.yaml`, then redraw.")
    lines = [f"**Partial results**: {partial_counts(cov)} ({cov['runs_finished']} finished). Figures and numbers "
             "below use what is on disk: a mean at a label count is over the seeds that reached it, and areas under "
             "the budget curve and paired comparisons use only the label counts every compared seed has."]
    by_arm: dict = {}
    for r in cov["runs"]:
        by_arm.setdefault(r["arm"], []).append(r)
    absent = [a for a, rs in by_arm.items() if not any(r["cycles"] for r in rs)]
    if absent:
        lines.append(f"- No record yet (left out of every figure and table): {', '.join(f'`{a}`' for a in absent)}.")
    for arm, rs in by_arm.items():
        if arm in absent:
            continue
        cfg = exp.config(arm, exp.seeds[0])
        target = cfg.initial.n + cfg.cycles * cfg.budget
        spans: dict = {}
        for r in rs:
            if r["finished"]:
                continue
            key = (cycle_span(r["cycles"]), r["n_labelled"][0] if r["cycles"] else None,
                   r["n_labelled"][-1] if r["cycles"] else None)
            spans.setdefault(key, []).append(r["seed"])
        parts = []
        for (span, lo, hi), seeds in spans.items():
            parts.append(f"{_seeds_text(seeds)}: no cycle on disk" if not span else
                         f"{_seeds_text(seeds)}: cycles {span} of {cycle_span(list(range(cfg.cycles + 1)))} "
                         f"({lo:,}\u2013{hi:,} of {cfg.initial.n:,}\u2013{target:,} labels)")
        if parts:
            lines.append(f"- `{arm}` under way: " + "; ".join(parts) + ".")
    return "\n".join(lines)


def describe_validation(exp, rows: Iterable[dict]) -> str:
    """The validation-set size beside the label counts: the checkpoint of every arm is chosen on ``val_size``
    labelled validation images, which at small label counts is far more labelled data than the training set
    (a known inflation of semi-supervised and active-learning results: Oliver et al. 2018)."""
    cfg = exp.config(next(iter(exp.arms)), exp.seeds[0])
    labels = sorted({r["n_labelled"] for r in rows if r.get("n_labelled") is not None})
    if not labels:
        return ""
    ratio = cfg.val_size / labels[0]
    return (f"- Validation: every checkpoint is chosen on {cfg.val_size:,} labelled validation images, beside "
            f"{_labels_text(labels)} for training ({ratio:.1f}\u00d7 the smallest labelled set): at small label counts "
            "this flatters every arm alike (Oliver et al. 2018); the test accuracies are of the best-validated state.")


def describe_task_model(rows: Iterable[dict], base: dict) -> str:
    """What task classifier this run trained, from its parameters and records (for a notebook's Method)."""
    rows = list(rows)
    size = (base.get("learner_params") or {}).get("classifier_size", "small")
    params = sorted({int(r["classifier_params"]) for r in rows if r.get("classifier_params")})
    count = f"{params[0] / 1e6:.2f}M parameters" if len(params) == 1 else "parameters not recorded"
    return f"the `{size}` task classifier ({count})"


def aubc_definition(min_cycle: int = AUBC_MIN_CYCLE) -> str:
    """The one AUBC a notebook uses, in words (its tables and its tests alike)."""
    span = "every cycle" if min_cycle <= 0 else f"cycles \u2265 {min_cycle} (after the first acquisition; cycle 0 is the same initial set in every arm)"
    return (f"AUBC here = area under the test-accuracy curve over {span}, trapezoid rule over the label counts "
            "divided by their range (a mean accuracy), one per seed; arms are then compared across seeds.")


def family_markdown(fam: list[dict], scale: float = 100, unit: str = "points") -> str:
    """The family as a table: pair, kind, what is held fixed, difference with its per-seed values, raw and
    Holm-adjusted p, verdict, and the smallest difference the family could have detected."""
    if not fam:
        return "No pair of this notebook has both arms yet."
    rows = []
    for d in fam:
        sc, un = (1.0, d["unit"]) if "unit" in d else (scale, unit)  # extra measures carry their own unit
        each = " / ".join(signed(sc * v) for v in d.get("diffs") or [])
        rows.append({"pair": f"{d['a']} \u2212 {d['b']}", "kind": d["kind"], "fixed": d["held_fixed"],
                     "mean": None if d.get("mean") is None else f"{signed(sc * d['mean'])} {un}".strip(),
                     "each": each or None, "p": d.get("p_raw"), "p_holm": d.get("p_holm"),
                     "verdict": "no records yet" if d.get("missing") else d["verdict"],
                     "mde": None if d.get("mde") is None else f"{sc * d['mde']:.2g} {un}".strip()})
    return markdown_table(rows, [
        ("pair", "pair", "s"), ("kind", "kind", "s"), ("fixed", "held fixed", "s"),
        ("mean", "difference", "s"), ("each", "per seed", "s"), ("p", "raw p", ".3f"),
        ("p_holm", "Holm p", ".3f"), ("verdict", "verdict", "s"), ("mde", "smallest detectable", "s")])


def describe_family(fam: list[dict], scale: float = 100, unit: str = "points") -> list[str]:
    """One prose line per pair (:func:`alkit.analysis.prose.describe_comparison` of the corrected result), kind first."""
    return [f"- **{d['a']} vs {d['b']}** ({d['kind']}: {d['held_fixed']} held fixed): "
            + (f"not compared yet: no records of {' and '.join(d['missing'])}." if d.get("missing")
               else describe_comparison(d, *((1.0, d["unit"]) if "unit" in d else (scale, unit)))) for d in fam]


def checkpoint_markdown(rows: Iterable[dict], arms: Iterable[str]) -> str:
    """The checkpoint section of a notebook: the :func:`checkpoint_rows` table and one line per arm from
    :func:`checkpoint_tests` ('' when no record has ``test_acc_final``)."""
    rows = list(rows)
    table = checkpoint_rows(rows, arms)
    if not table:
        return ""
    text = markdown_table(table, [("arm", "arm", "s"), ("n_labelled", "labels", ",d"),
                                  ("n_val", "validation images", ",d"), ("seeds", "seeds", "d"),
                                  ("best", "best-validated (%)", ".2f"), ("final", "final state (%)", ".2f"),
                                  ("gap", "best − final (points)", "+.2f")])
    lines = [f"- {t['arm']}: " + describe_comparison(t) for t in checkpoint_tests(rows, arms)]
    return text + "\n\n" + "\n".join(lines)
