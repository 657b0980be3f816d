"""Summaries from result records, by concern; reading records only (nothing here trains, loads a model or data).

====================  ========================================================================================
:mod:`.study`         the study's own reference numbers (``STUDY_*``)
:mod:`.tables`        tables from records: curves over seeds, per-seed summaries, AUBC, class counts,
                      confusions, diagnostics, how much of an experiment is on disk
:mod:`.stats`         statistics over seeds: paired tests, Holm's correction, detectable effects, noise
:mod:`.prose`         sentences every notebook states: a comparison, the best arm, the setting, partial results
:mod:`.what_we_see`   each notebook's "What we see" lines, one function per cell
:mod:`.lowbudget`     notebook 05 beyond the study: TypiClust, ProbCover, BADGE beside Algorithms 1 and 2
====================  ========================================================================================

The public names of all but :mod:`.lowbudget` are re-exported here, so a notebook writes ``analysis.curve(rows)``.
What *computes* from a run's saved files (UMAP maps, the norm comparison, the latent summary) is
:mod:`alkit.derive`; the layout of a run folder is :mod:`alkit.results`.
"""
from __future__ import annotations

from .study import (  # noqa: F401
    STUDY_1000, STUDY_1000_ARMS, STUDY_1000_NAME, STUDY_CAPACITY_ANCHORS, STUDY_CAPACITY_NAME,
    STUDY_CAPACITY_PARAMS, STUDY_CLAIMS, STUDY_THREE_CLASS, STUDY_THREE_CLASS_SELECTIONS,
)
from .tables import (  # noqa: F401
    AUBC_MIN_CYCLE, adversary_sweep, at_largest_budget, aubc, beside_study, beside_study_arms_markdown,
    beside_study_markdown, checkpoint_rows, chosen_cycles, class_counts_by_cycle, class_coverage, count_classes,
    common_labels, confusions_by_cycle, coverage, curve, curve_markdown, cycle_span, diagnostics_rows,
    diagnostics_summary, differences, entropy_gap, final_confusions, first_below, group, markdown_table,
    on_common_labels, paired_difference, per_class_error, per_seed, sample_row_labels, seed_order,
    rounded_accuracies, stop_decisions, sweep_arm, unseen_classes,
)
from .stats import (  # noqa: F401
    MIN_SEEDS_FOR_DIRECTION, auc_noise, checkpoint_tests, class_entropy, compare_seeds, confusion_claim_tests,
    confusion_relation, correct_family, heldout_noise, holm, mechanism_tests, minimum_detectable_effect,
    paired_seed_test, reconstruction_quality, versus,
)
from .prose import (  # noqa: F401
    answer, aubc_definition, checkpoint_markdown, describe_best_aubc, describe_comparison, describe_family,
    describe_largest, describe_task_model, describe_validation, describe_versus, family_markdown, grid_note,
    number_word, p_text, partial_counts, partial_note, setting, signed,
)
from .what_we_see import (  # noqa: F401
    SWEEP_COLUMNS, describe_accuracy_change, describe_adversary_sweep, describe_against_random,
    describe_batches, describe_capacity, describe_discriminator_only, describe_latent_acquisition,
    describe_latent_map, describe_latent_maps, describe_mechanism, describe_reconstruction, describe_stopping,
    grid_stamp,
    describe_unseen_share, describe_vaal_vs_random, unseen_share_line,
)
from . import lowbudget  # noqa: F401,E402  (it uses the modules above)
