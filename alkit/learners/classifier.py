"""The plain task classifier trained on the labelled set only: the learner of the uncertainty baselines."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..engine.batches import tensor_batches
from ..models import check_classifier_size
from ..train import mc_dropout_proba
from .base import Learner, TrainData, batched, register_learner
from .schedule import ScheduleParams, TaskOptimParams
from ..engine.speed import SpeedParams, check_speed, resolve_speed
from .task import train_task_classifier


@dataclass
class ClassifierParams(ScheduleParams, TaskOptimParams, SpeedParams):
    """The task classifier alone; schedule and optimiser as VAAL trains its task model (see :mod:`.schedule`)."""

    size: str = "small"  # "small" (~0.42M params), "large" (~3M, the study's low-label setting), "tiny" (tests)
    dropout: float = 0.3

    def __post_init__(self):
        ScheduleParams.__post_init__(self)
        TaskOptimParams.__post_init__(self)
        check_speed(self)
        check_classifier_size("size", self.size)


@register_learner
class ClassifierLearner(Learner):
    """CNN trained with cross-entropy on every labelled point; best validated state kept."""

    name = "classifier"
    Params = ClassifierParams
    test_params = {"iterations": 6, "batch_size": 32, "val_every": 3, "size": "tiny"}
    #: yields ``(idx, xb, yb)`` minibatches (:func:`~alkit.train.tensor_batches`); benchmarks swap it
    batch_source = staticmethod(tensor_batches)

    def fit_phases(self, data: TrainData, seed: int):
        p = self.params
        self.speed = resolve_speed(p, self.device, self.name)
        self.model, metrics = yield from train_task_classifier(data, p, p.size, p.dropout, seed, self.device,
                                                               speed=self.speed, batch_source=self.batch_source)
        metrics.update(self.speed.record())
        return metrics

    def task_network(self) -> torch.nn.Module:
        """The trained classifier, (B, 1, 28, 28) -> (B, C) logits."""
        return self.model

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        return batched(lambda b: self.model(b).softmax(1), x)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features (B, hidden): the classifier's own representation."""
        self.model.eval()
        return batched(self.model.penultimate, x)

    def mc_proba(self, x: torch.Tensor, samples: int) -> torch.Tensor:
        """(T, N, C) softmax outputs with dropout active (BatchNorm stays in eval mode)."""
        return mc_dropout_proba(self.model, x, samples)
