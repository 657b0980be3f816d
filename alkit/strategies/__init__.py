"""Acquisition strategies. Importing this package registers every built-in strategy."""
from .base import STRATEGIES, Context, acquire, describe, get_strategy, register, select  # noqa: F401
from . import uncertainty  # noqa: F401  (registers random, least_confidence, margin, entropy)
# registers bald, alg1, alg2, coreset, kernel_norm_exact, kernel_norm_approx, network_norm
from . import bald, latent, norm  # noqa: F401
from . import generative  # noqa: F401  (registers vaal)
from . import lowbudget  # noqa: F401  (registers typiclust, probcover, badge)
