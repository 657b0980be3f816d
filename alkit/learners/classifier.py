"""The plain task classifier trained on the labelled set only: the learner of the uncertainty baselines."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models import Classifier, count_parameters
from ..train import fit_classifier, mc_dropout_proba, seed_everything
from .base import Learner, TrainData, batched, register_learner


@dataclass
class ClassifierParams:
    size: str = "small"  # "small" (~0.42M params) or "large" (~3M, the study's low-label setting)
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 5e-4
    dropout: float = 0.3
    patience: int | None = None  # early stopping on validation accuracy; None = run all epochs

    def __post_init__(self):
        if self.size not in ("small", "large"):
            raise ValueError(f"size must be 'small' or 'large', got {self.size!r}")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("epochs must be >= 1 and batch_size >= 2")


@register_learner
class ClassifierLearner(Learner):
    """CNN trained with cross-entropy on labelled data; best validation epoch kept."""

    name = "classifier"
    Params = ClassifierParams
    test_params = {"epochs": 2, "batch_size": 32}

    def fit(self, data: TrainData, seed: int, progress: bool = False) -> dict:
        p = self.params
        seed_everything(seed)
        self.model = Classifier(data.num_classes, p.size, p.dropout).to(self.device)
        metrics = fit_classifier(
            self.model, data.x_labelled, data.y_labelled, data.x_val, data.y_val,
            epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, weight_decay=p.weight_decay,
            seed=seed + 1, patience=p.patience, progress=progress,
        )
        metrics["classifier_params"] = count_parameters(self.model)
        return metrics

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
