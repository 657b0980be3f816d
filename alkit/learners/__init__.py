"""Learners: what is trained each cycle. Importing this package registers every built-in learner."""
from .base import LEARNERS, CapabilityError, Learner, TrainData, make_learner, register_learner  # noqa: F401
from . import classifier  # noqa: F401
from . import m2, vaal  # noqa: F401  (register vaal, tavaal, m2, m2_disc, m2_vaal)
