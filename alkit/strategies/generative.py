"""VAAL-family sampling: the candidates the discriminator rates least likely to be labelled.

One strategy serves every learner with a ``labelled_prob`` capability (``vaal``,
``m2_vaal``, ``m2_disc``, ``tavaal``); the learner decides what its
discriminator sees (VAE mean, ``[mu, q(y|x)]``, ``[mu, predicted loss]``).
"""
from __future__ import annotations

import numpy as np

from .base import Context, register


@register("vaal", needs=("labelled_prob",))
def vaal(ctx: Context) -> np.ndarray:
    """1 - P(labelled) from the learner's discriminator: the likeliest-unlabelled candidates score highest.

    VAAL's sampler (discriminator trained with labelled = 1) takes the *lowest*
    P(labelled); ``select`` takes the highest score, hence the ``1 -``.
    Where the sigmoid saturates (P(labelled) below ~1e-16 in float64), candidates
    tie at 1.0 and ``select`` breaks ties with the run's seed, as VAAL's top-k of
    saturated float32 scores would arbitrarily.
    """
    p = ctx.labelled_prob().double().cpu().numpy()
    return 1.0 - p
