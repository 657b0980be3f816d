"""Learners: what is trained each cycle. Importing this package registers every built-in learner."""
from .base import LEARNERS, CapabilityError, Learner, TrainData, make_learner, register_learner  # noqa: F401
from . import classifier  # noqa: F401
from . import generative  # noqa: F401  (registers vaal, tavaal, m2, m2_disc, m2_vaal)
