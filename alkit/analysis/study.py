"""The study's own numbers, as its slides report them (one run each), for tables and figures beside ours.

Test accuracies in percent; class counts per class index 0-9. Nothing here is measured by alkit.
"""

#: test accuracy (%) of the study's "Initial Set of Results On Fashion MNIST", 1000 -> 8000 labels, one run. The
#: slide never names the arm: it follows "Proposed Model" (M2-VAAL) and "Components of our Architecture:
#: Variational autoencoder with classifier ..." and precedes "Comparison to TA-VAAL, VAAL and Random Selection",
#: so it is most likely the study's own model, M2-VAAL. Label it as :data:`STUDY_1000_NAME` says.
STUDY_1000 = {1000: 84.91, 2000: 85.84, 3000: 86.58, 4000: 87.33, 5000: 88.66, 6000: 88.79, 7000: 89.94, 8000: 90.37}
STUDY_1000_NAME = "the study's model, one run; most likely M2-VAAL \u2014 the slide does not say"
#: the arms of ours set beside it: the study's model and VAAL
STUDY_1000_ARMS = ("m2_vaal", "vaal")
#: the study's three-class start ({2, 4, 7}, 500 labels, +64 per cycle): test accuracy (%) of its one run
STUDY_THREE_CLASS = {500: 27.25, 564: 28.34, 628: 30.29, 692: 40.42, 756: 36.39, 820: 36.61, 884: 39.97, 948: 42.84,
                     1012: 48.52, 1076: 45.46, 1140: 52.14, 1204: 50.59, 1268: 50.82, 1332: 49.86, 1396: 52.44}
#: the study's "Discriminator Selection of Samples" (three-class start, one run): class counts per class index
#: 0-9 of the initial set and of the first two batches of 64. Its "Skirt" is read as Shirt (class 6):
#: Fashion-MNIST has no skirt, and each list then sums to 64.
STUDY_THREE_CLASS_SELECTIONS = {
    "initial set": [0, 0, 166, 0, 167, 0, 0, 167, 0, 0],
    "batch 1": [2, 0, 4, 11, 7, 8, 13, 5, 10, 4],
    "batch 2": [1, 0, 19, 1, 5, 14, 5, 0, 1, 18],
}

#: the study's "Increased Model Capacity" slide: "~3M parameters", "Training with 1000 labeled samples: ~85%
#: accuracy", "Training with 50 labeled samples: ~68% accuracy" (approximate, as the slide says)
STUDY_CAPACITY_PARAMS = 3_000_000
STUDY_CAPACITY_ANCHORS = {50: 68.0, 1000: 85.0}
STUDY_CAPACITY_NAME = "the study's ~3M model: ~68 % at 50, ~85 % at 1,000 labels (its slide, approximate)"


#: the pairs that carry each notebook's question (the study's claims; the cpu profile runs them at 5 seeds): the
#: opening sentence of its "What we see" (:func:`alkit.analysis.prose.answer`); the rest of its family is its table
STUDY_CLAIMS = {
    "02_vaal_vs_random": (("vaal", "random"), ("m2_vaal", "m2_vaal_random")),
    "03_three_class_start": (("m2_vaal", "m2_vaal_random"), ("vaal", "random")),
    "04_discriminator_only": (("m2_vaal", "m2_disc"), ("m2_disc", "m2_random")),
    "05_latent_acquisition": (("alg1", "random"), ("alg2", "random")),
}
