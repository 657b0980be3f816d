"""Each notebook's "What we see" lines, computed from records (and, for notebook 01, from the numbers that
:mod:`alkit.derive` computes from a run's saved files): the cell calls one function and displays its Markdown.

In notebook order; each function's test plants records and expects its sentence.
"""
from __future__ import annotations

import math
from typing import Iterable

from .prose import (answer, aubc_definition, describe_comparison, describe_largest, describe_validation,
                    number_word)
from .stats import MIN_SEEDS_FOR_DIRECTION, auc_noise, compare_seeds
from .study import STUDY_1000, STUDY_1000_ARMS, STUDY_CAPACITY_PARAMS, STUDY_CLAIMS
from .tables import AUBC_MIN_CYCLE, beside_study, class_coverage, markdown_table, stop_decisions


def describe_reconstruction(arm: str, n_labelled: int, quality: dict, iterations: int | None = None,
                            min_gain: float = 0.3) -> str:
    """One sentence on a reconstruction figure, computed: says so when the model is too small or too briefly
    trained to reconstruct (``gain`` below ``min_gain``: it explains less than 30 % of the pixel variance)."""
    head = (f"{arm} at {n_labelled:,} labels: reconstruction error {quality['mse']:.4f} per pixel against "
            f"{quality['mse_mean_image']:.4f} for the average image ({100 * quality['gain']:.0f} % of the pixel variance explained)")
    if quality["gain"] < min_gain:
        trained = f" ({iterations:,} iterations per cycle)" if iterations else ""
        return (head + f" — too small or too briefly trained{trained} to reconstruct: these images show the "
                "pipeline, not the model's quality; the `paper` profile trains it at the study's scale.")
    return head + "."


def grid_stamp(quality: dict, min_gain: float = 0.3) -> str:
    """A second subtitle line for an image grid whose model does not reconstruct (``gain`` below ``min_gain``, as
    :func:`describe_reconstruction` says it): what the grid can and cannot show. "" for a model that does."""
    if not quality["gain"] < min_gain:
        return ""
    return (f"<br>NOT A TRAINED MODEL: it explains {100 * max(quality['gain'], 0):.0f} % of the pixel variance; the grid "
            "shows that the pipeline runs, not what the study's VAE draws")


def describe_accuracy_change(rows: Iterable[dict], arms: Iterable[str], seed=None, first: int = 0, last: int = 1) -> str:
    """Notebook 01's line: each arm's test accuracy at cycle ``first`` -> ``last`` (of ``seed``, default any);
    an arm short of a cycle says what it has."""
    acc = {(r["arm"], r["cycle"]): r for r in rows if seed is None or r.get("seed") == seed}
    parts = []
    for a in arms:
        x, y = acc.get((a, first)), acc.get((a, last))
        if x and y:
            parts.append(f"{a} {100 * x['test_acc']:.1f} % with {x['n_labelled']} labels → {100 * y['test_acc']:.1f} % with "
                         f"{y['n_labelled']}")
        elif x:
            parts.append(f"{a} {100 * x['test_acc']:.1f} % with {x['n_labelled']} labels (cycle {last} not on disk yet)")
        else:
            parts.append(f"{a}: no records yet")
    return "- Test accuracy of the task model: " + ", ".join(parts) + "."


def describe_latent_map(arm: str, cycle: int, summary: dict) -> str:
    """Notebook 01's line on one UMAP map from :func:`alkit.derive.latent_summary`'s ``summary``: how well a
    10-nearest-neighbour vote on the map recovers the class, and (where the cycle selected a batch) how many
    classes the batch spans and how far it lies from the labelled points, against the unlabelled sample."""
    line = (f"- **{arm}**, cycle {cycle}: a 10-nearest-neighbour vote on the 2-D map recovers the true class of "
            f"{100 * summary['knn_purity']:.1f} % of points (chance ≈ 10 %)")
    if summary["selected_classes"]:
        line += (f"; the batch it selects spans {summary['selected_classes']} classes and lies on average "
                 f"{summary['selected_to_labelled']:.2f}× as far from its nearest labelled point as the unlabelled sample does")
    return line + "."


def describe_latent_maps(maps: Iterable[tuple[str, int, dict]], rows: Iterable[dict], arms: Iterable[str]) -> str:
    """Notebook 01's "What we see": a :func:`describe_latent_map` line per (arm, cycle, summary) of ``maps``,
    then the task model's accuracy change (:func:`describe_accuracy_change`), as Markdown."""
    maps = list(maps)
    lines = [describe_latent_map(arm, cycle, summary) for arm, cycle, summary in maps]
    return "\n".join([latent_maps_answer(maps), ""] + lines + [describe_accuracy_change(rows, arms)])


def latent_maps_answer(maps: Iterable[tuple[str, int, dict]]) -> str:
    """Notebook 01's opening sentence: how much class structure each latent map holds (its 10-nearest-neighbour
    purity), said as an illustration: one seed's maps answer no comparison."""
    maps = list(maps)
    if not maps:
        return "**This profile cannot show the latent spaces yet:** no saved latent codes on disk."
    best = max(maps, key=lambda m: m[2]["knn_purity"])
    lo, hi = (100 * f(m[2]["knn_purity"] for m in maps) for f in (min, max))
    return (f"**What the maps show (one seed: an illustration, not a test):** every latent space holds class "
            f"structure: a 10-nearest-neighbour vote on the 2-D map recovers {lo:.0f}\u2013{hi:.0f} % of the classes "
            f"(chance \u2248 10 %), most in {best[0]}'s at cycle {best[1]} ({100 * best[2]['knn_purity']:.1f} %).")


def describe_vaal_vs_random(rows: Iterable[dict], table: list[dict], aubc_rows: list[dict], fam: list[dict],
                            order: Iterable[str]) -> str:
    """Notebook 02's "What we see", as Markdown: the answer of its claim pairs (:func:`alkit.analysis.prose.answer`
    over the notebook's family ``fam``; every pair is in the family table that follows), every arm at the largest
    budget (``table`` of :func:`alkit.analysis.tables.curve`, arms in ``order``) and, for each arm of
    :data:`alkit.analysis.study.STUDY_1000_ARMS` that meets the study's grid, its mean difference from the study."""
    lines = [answer(fam, STUDY_CLAIMS["02_vaal_vs_random"]), ""]
    lines.append("- At the largest budget (mean ± sd over seeds): " + describe_largest(table, order) + ".")
    for arm in STUDY_1000_ARMS:
        side = beside_study(table, STUDY_1000, arm=arm)
        if side:
            lines.append(f"- alkit's {arm} minus the study's model, averaged over the study's label counts: "
                         f"{sum(s['diff'] for s in side) / len(side):+.2f} points.")
    return "\n".join(lines)


def describe_stopping(rows: Iterable[dict], threshold: float) -> list[str]:
    """Lines for notebook 03: where the stopping rule (held-out AUC <= ``threshold``) would stop each run,
    where the accuracy signal would have, how many decisions the two disagree on, and the noise of the AUC."""
    rows = list(rows)
    out = []
    decisions = stop_decisions(rows, threshold)
    when = lambda c: "never" if c is None else f"cycle {c}"
    for d in decisions:
        line = (f"- Stopping rule (held-out ROC AUC \u2264 {threshold:g}) for {d['arm']}, seed {d['seed']}: {when(d['auc'])}; "
                f"by held-out accuracy \u2264 {100 * threshold:g} % (second line): {when(d['acc'])}")
        if d["flat"]:
            line += (f" (accuracy exactly 50 % at cycle{'s' if len(d['flat']) > 1 else ''} "
                     f"{', '.join(map(str, d['flat']))}: every logit on one side of 0, the AUC still ranks)")
        out.append(line + ".")
    if decisions:
        k = sum(d["changed"] for d in decisions)
        out.append(f"- AUC and accuracy disagree on {k} of {len(decisions)} stop decisions.")
    noise = auc_noise(rows)
    if noise:
        out.append(f"- The held-out set behind this signal has {noise['n_min']}\u2013{noise['n_max']} labelled and as many unlabelled "
                   f"points per cycle, so an AUC of 0.5 is measured to \u00b1 {noise['se_at_chance']:.2f} (one standard error): "
                   + ("crossings of the stop line are within that noise." if noise["se_at_chance"] > abs(threshold - 0.5)
                      else "the stop line lies outside that noise."))
    return out


def _unseen_shares(cover: dict, arm: str) -> list[float]:
    """Per seed of ``arm``, the share of its selected images from the unseen classes (:func:`class_coverage`)."""
    return [v["share"] for (a, _), v in cover.items() if a == arm]


def describe_unseen_share(cover: dict, arms: Iterable[str], n_unseen: int) -> list[str]:
    """Lines on :func:`class_coverage`: per arm with records, the share of selected images from the ``n_unseen``
    unseen classes (mean over seeds) and the first batch per seed with one; arms without records say so."""
    lines = []
    for arm in arms:
        share = _unseen_shares(cover, arm)
        first = [v["first_cycle"] for (a, s), v in cover.items() if a == arm]
        if not share:
            lines.append(f"- **{arm}**: no records yet.")
            continue
        lines.append(f"- **{arm}**: {100 * sum(share) / len(share):.1f} % of all selected images belong to the "
                     f"{number_word(n_unseen)} unseen classes (mean over {len(share)} seeds); first batch with an unseen "
                     f"class, per seed: cycle {', '.join('never' if f is None else str(f) for f in first)}.")
    return lines


def unseen_share_line(cover: dict, arms: Iterable[str], n_unseen: int) -> str:
    """"Share of selected images from the seven unseen classes (mean over seeds): a x %, b y %." over arms with
    records (``n_unseen`` = 7 there)."""
    parts = []
    for arm in arms:
        share = _unseen_shares(cover, arm)
        if share:
            parts.append(f"{arm} {100 * sum(share) / len(share):.1f} %")
    missing = [a for a in arms if not any(k[0] == a for k in cover)]
    text = (f"- Share of selected images from the {number_word(n_unseen)} unseen classes (mean over seeds): "
            + (", ".join(parts) if parts else "no arm has records yet") + ".")
    return text + (f" No records yet: {', '.join(missing)}." if missing and parts else "")


#: the adversary-weight sweep's table columns: (key, header, format)
SWEEP_COLUMNS = [("arm", "learner", "s"), ("weight", "adversary weight", "g"), ("seeds", "seeds", "d"),
                 ("entropy", "class entropy (nats)", ".2f"), ("entropy_sd", "± sd", ".2f"),
                 ("unseen", "unseen-class share (%)", ".1f"), ("unseen_sd", "± sd", ".1f"),
                 ("aubc", "AUBC c ≥ 1 (%)", ".2f")]


def describe_adversary_sweep(sweep_table: list[dict] | None, n_seeds: int, profile: str) -> str:
    """Notebook 03's adversary-weight sweep as Markdown: the table of :func:`alkit.analysis.tables.adversary_sweep`
    and how to read it with ``n_seeds`` seeds (fewer than :data:`~alkit.analysis.stats.MIN_SEEDS_FOR_DIRECTION`:
    a trend, not a test); ``sweep_table`` None: the ``profile`` has no sweep."""
    if sweep_table is None:
        return f"No adversary-weight sweep in the `{profile}` profile (`options.sweep` unset)."
    return (markdown_table(sweep_table, SWEEP_COLUMNS) + f"\n\n{n_seeds} seeds: "
            + ("a trend, not a test." if n_seeds < MIN_SEEDS_FOR_DIRECTION else "see the spread before reading a direction."))


def describe_mechanism(mech: dict, plain: str, adv: str) -> list[str]:
    """Notebook 04's lines on the equalising explanation, from the family's corrected batch-measure results
    ``mech`` (``{y: result}`` for ``class_entropy``, ``pairwise_ratio``, ``entropy_gap`` of
    :func:`alkit.analysis.stats.mechanism_tests`): the two diversity measures, then the entropy gap of y′ and
    what its verdict says of the explanation (the adversarial arm ``adv`` should have the smaller gap)."""
    ent, div, gap = mech["class_entropy"], mech["pairwise_ratio"], mech["entropy_gap"]
    if gap["verdict"] not in (f"{plain} higher", f"{adv} higher"):
        reading = "This run can neither confirm nor refute the equalising explanation."
    elif gap["verdict"] == f"{plain} higher":
        reading = "The adversarial arm has the smaller gap, consistent with the equalising explanation."
    else:
        reading = "The adversarial arm has the larger gap: this run contradicts the equalising explanation."
    return [f"- Batch diversity, class entropy: {describe_comparison(ent, scale=1, unit='nats')} "
            f"Pairwise-distance ratio: {describe_comparison(div, scale=1, unit='')}",
            f"- y′ spread, unlabelled-minus-labelled entropy gap: {describe_comparison(gap, scale=1, unit='nats')} " + reading]


def describe_discriminator_only(fam: list[dict], rows: Iterable[dict], arms: Iterable[str], unseen: Iterable[int], exp,
                                plain: str = "m2_disc", adv: str = "m2_vaal") -> str:
    """Notebook 04's "What we see", as Markdown: the AUBC used, the learner and acquisition pairs of the family
    ``fam``, the unseen-class shares, the mechanism's measures (:func:`describe_mechanism`, where ``fam`` holds
    them) and the validation set beside the labels (``exp``: the notebook's experiment)."""
    rows, unseen = list(rows), list(unseen)
    mech = {d["y"]: d for d in fam if d["kind"].startswith("batch measure")}
    lines = [answer(fam, STUDY_CLAIMS["04_discriminator_only"]), "", "- " + aubc_definition()]
    lines.append(unseen_share_line(class_coverage(rows, unseen), arms, len(unseen)))
    if mech:
        lines += describe_mechanism(mech, plain, adv)
    lines.append(describe_validation(exp, rows))
    return "\n".join(lines)


def describe_capacity(rows: Iterable[dict]) -> str:
    """The study's "~3M parameters" read both ways from the records: q(y|x) alone (``classifier_params``)
    and the whole M2 (``m2_params``), and which of the two it matches (the closer, within a factor 1.5)."""
    rows = list(rows)
    q = sorted({int(r["classifier_params"]) for r in rows if r.get("classifier_params")})
    m2 = sorted({int(r["m2_params"]) for r in rows if r.get("m2_params")})
    if len(q) != 1 or len(m2) != 1:
        return "- Parameter counts: not recorded (or not one per run) yet."
    (q,), (m2,) = q, m2
    near = min((("q(y|x) alone", q), ("the whole M2", m2)), key=lambda kv: abs(math.log(kv[1] / STUDY_CAPACITY_PARAMS)))
    match = (f"the study's ~3M matches {near[0]}" if abs(math.log(near[1] / STUDY_CAPACITY_PARAMS)) <= math.log(1.5)
             else "neither is near the study's ~3M (this profile's classifier is another size)")
    return (f"- Capacity: q(y|x) alone has {q / 1e6:.2f}M parameters, the whole M2 (encoder, decoder and q(y|x)) "
            f"{m2 / 1e6:.2f}M; {match}.")


def describe_against_random(rows: Iterable[dict], summary: list[dict], rank: list[dict], arm: str,
                            baseline: str = "random") -> str:
    """Notebook 05's line on ``arm`` (Alg 1 / Alg 2): its AUBC rank, the paired comparison with ``baseline``
    after the first acquisition, and how spread out and how often misclassified its batches are.
    Says so instead where ``arm`` or ``baseline`` has no records yet."""
    stats = {r["arm"]: r for r in summary}
    pos = {r["arm"]: i + 1 for i, r in enumerate(rank)}
    missing = [a for a in (arm, baseline) if a not in pos]
    if missing:
        return f"- {arm}: not compared yet: no records of {' and '.join(missing)}."
    d = compare_seeds(rows, arm, baseline, min_cycle=1)
    line = (f"- {arm}: rank {pos[arm]} of {len(rank)}; AUBC after the first acquisition, per seed then paired over seeds: "
            f"{describe_comparison(d)}")
    s, base = stats.get(arm), stats.get(baseline)
    if s and base and s["pairwise_ratio"] is not None and s["misclassified_fraction"] is not None \
            and base["misclassified_fraction"] is not None:
        line += (f" Its batches are {s['pairwise_ratio']:.2f}× as spread out as random batches and "
                 f"{100 * s['misclassified_fraction']:.1f} % of them are misclassified ({baseline}: "
                 f"{100 * base['misclassified_fraction']:.1f} %).")
    return line


def describe_batches(summary: list[dict], arms: Iterable[str] = ("alg1", "alg2"), baseline: str = "random") -> list[str]:
    """Notebook 05's lines on the batches of ``arms`` from :func:`alkit.analysis.tables.diagnostics_summary`'s
    ``summary``: how spread out they are against random batches and how often misclassified, beside
    ``baseline``'s; an arm (or the baseline) without those numbers gives no line."""
    stats = {r["arm"]: r for r in summary}
    base = stats.get(baseline)
    lines = []
    for arm in arms:
        s = stats.get(arm)
        if s and base and s["pairwise_ratio"] is not None and s["misclassified_fraction"] is not None \
                and base["misclassified_fraction"] is not None:
            lines.append(f"- {arm}: its batches are {s['pairwise_ratio']:.2f}× as spread out as random batches and "
                         f"{100 * s['misclassified_fraction']:.1f} % of them are misclassified ({baseline}: "
                         f"{100 * base['misclassified_fraction']:.1f} %).")
    return lines


def describe_latent_acquisition(rows: Iterable[dict], aubc_rows: list[dict], fam: list[dict], summary: list[dict],
                                norm: dict | None, exp) -> str:
    """Notebook 05's "What we see", as Markdown: the AUBC ranking (an order, not a verdict), the best AUBC
    corrected with the family ``fam``, each comparison of the family, Algorithms 1 and 2's batches
    (:func:`describe_batches`), the kernel norm comparison ``norm`` of :func:`alkit.derive.norm_comparison`
    (None: not on disk yet) and the validation set beside the labels (``exp``: the notebook's experiment)."""
    rows = list(rows)
    rank = sorted(aubc_rows, key=lambda r: -r["aubc"])
    lines = [answer([d for d in fam if d["kind"] == "acquisition"], STUDY_CLAIMS["05_latent_acquisition"]), "",
             "- Ranking by area under the budget curve (means; an order, not a verdict): "
             + ", ".join(f"{r['arm']} ({100 * r['aubc']:.2f} %)" for r in rank) + "."]
    lines += describe_batches(summary)
    if norm is not None:
        lines.append(f"- Kernel norm-based maximin: the closed form ranks the small pool with Spearman ρ = "
                     f"{norm['spearman']:.2f} against the exact kernel score and is "
                     f"{norm['exact_seconds'] / max(norm['approx_seconds'], 1e-9):.0f}× faster there.")
    lines.append(describe_validation(exp, rows))
    return "\n".join(lines)
