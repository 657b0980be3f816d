"""Acquisition strategies. Importing this package registers every built-in strategy."""
from .base import STRATEGIES, Context, acquire, describe, get_strategy, register, select  # noqa: F401
from . import uncertainty  # noqa: F401  (registers random, least_confidence, margin, entropy)
from . import bald, latent, norm  # noqa: F401  (registers bald, alg1, alg2, coreset, norm_exact, norm_approx)
from . import generative  # noqa: F401  (registers vaal)
