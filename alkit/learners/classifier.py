"""The plain task classifier trained on the labelled set only: the learner of the uncertainty baselines."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models import Classifier, count_parameters
from ..train import fit_task_model, mc_dropout_proba, seed_everything, tensor_batches
from .base import Learner, TrainData, batched, register_learner
from .schedule import ScheduleParams, TaskOptimParams
from .speed import OFF, Speed, SpeedParams, check_speed, resolve_speed


@dataclass
class ClassifierParams(ScheduleParams, TaskOptimParams, SpeedParams):
    """The task classifier alone; schedule and optimiser as VAAL trains its task model (see :mod:`.schedule`)."""

    size: str = "small"  # "small" (~0.42M params) or "large" (~3M, the study's low-label setting)
    dropout: float = 0.3

    def __post_init__(self):
        ScheduleParams.__post_init__(self)
        TaskOptimParams.__post_init__(self)
        check_speed(self)
        if self.size not in ("small", "large"):
            raise ValueError(f"size must be 'small' or 'large', got {self.size!r}")


def train_task_classifier(
    data: TrainData, p, size: str, dropout: float, seed: int, device, progress: bool = False,
    speed: Speed = OFF, batch_source=tensor_batches,
) -> tuple[Classifier, dict]:
    """Build and train the task classifier on every labelled point; the ``classifier`` learner *and* VAAL's task model.

    ``p`` carries the schedule and optimiser (:class:`ScheduleParams`, :class:`TaskOptimParams`). One
    function for both keeps a VAAL arm's task model identical to the random arm's, seed for seed.
    Returns the model (best validated state) and its metrics, ``task_labelled`` and ``classifier_params``
    included. ``speed``: :mod:`.speed` options of the training steps; ``batch_source``: see
    :func:`~alkit.train.fit_task_model`.
    """
    seed_everything(seed)
    model = Classifier(data.num_classes, size, dropout, data.x_labelled.shape[1]).to(device)
    speed.prepare(model)
    metrics = fit_task_model(
        model, data.x_labelled, data.y_labelled, data.x_val, data.y_val, schedule=p, optim=p,
        seed=seed + 1, n_unlabelled=len(data.x_unlabelled), progress=progress, speed=speed,
        batch_source=batch_source,
    )
    metrics["task_labelled"] = len(data.x_labelled)
    metrics["classifier_params"] = count_parameters(model)
    return model, metrics


@register_learner
class ClassifierLearner(Learner):
    """CNN trained with cross-entropy on every labelled point; best validated state kept."""

    name = "classifier"
    Params = ClassifierParams
    test_params = {"iterations": 6, "batch_size": 32, "val_every": 3}
    #: yields ``(idx, xb, yb)`` minibatches (:func:`~alkit.train.tensor_batches`); benchmarks swap it
    batch_source = staticmethod(tensor_batches)

    def fit(self, data: TrainData, seed: int, progress: bool = False) -> dict:
        p = self.params
        self.speed = resolve_speed(p, self.device, self.name)
        self.model, metrics = train_task_classifier(data, p, p.size, p.dropout, seed, self.device, progress,
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
