"""The plain task classifier trained on the labelled set only: the learner of the uncertainty baselines."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models import Classifier, count_parameters
from ..train import fit_task_model, mc_dropout_proba, seed_everything
from .base import Learner, TrainData, batched, register_learner
from .schedule import ScheduleParams, TaskOptimParams


@dataclass
class ClassifierParams(ScheduleParams, TaskOptimParams):
    """The task classifier alone; schedule and optimiser as VAAL trains its task model (see :mod:`.schedule`)."""

    size: str = "small"  # "small" (~0.42M params) or "large" (~3M, the study's low-label setting)
    dropout: float = 0.3

    def __post_init__(self):
        ScheduleParams.__post_init__(self)
        TaskOptimParams.__post_init__(self)
        if self.size not in ("small", "large"):
            raise ValueError(f"size must be 'small' or 'large', got {self.size!r}")


@register_learner
class ClassifierLearner(Learner):
    """CNN trained with cross-entropy on every labelled point; best validated state kept."""

    name = "classifier"
    Params = ClassifierParams
    test_params = {"iterations": 6, "batch_size": 32, "val_every": 3}

    def fit(self, data: TrainData, seed: int, progress: bool = False) -> dict:
        p = self.params
        seed_everything(seed)
        self.model = Classifier(data.num_classes, p.size, p.dropout).to(self.device)
        metrics = fit_task_model(
            self.model, data.x_labelled, data.y_labelled, data.x_val, data.y_val, schedule=p, optim=p,
            seed=seed + 1, n_unlabelled=len(data.x_unlabelled), progress=progress,
        )
        metrics["task_labelled"] = len(data.x_labelled)
        metrics["classifier_params"] = count_parameters(self.model)
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
