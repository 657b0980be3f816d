"""Models for 28x28x1 images: task classifier, beta-VAE (VAAL), M2 semi-supervised VAE, discriminator.

References
----------
- Sinha, Ebrahimi & Darrell, "Variational Adversarial Active Learning", ICCV 2019.
  https://arxiv.org/abs/1904.00370
- Kingma, Rezende, Mohamed & Welling, "Semi-Supervised Learning with Deep Generative Models"
  (the M2 model), NeurIPS 2014. https://arxiv.org/abs/1406.5298
- Kim et al., "Task-Aware Variational Adversarial Active Learning" (TA-VAAL), CVPR 2021.
  https://arxiv.org/abs/2002.04709

Shapes: B = batch, C = classes, d = latent size. Images are float in [0, 1].
"""
from __future__ import annotations

import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class Classifier(nn.Module):
    """The task model: a small CNN, or the study's "larger ~3M parameter" one.

    ``size="small"``: conv32-conv64 + fc128 (about 0.42M parameters).
    ``size="large"``: conv64-conv128-conv256 + fc1024 (about 2.7M parameters).
    Dropout before the last layer also serves MC-dropout (BALD).
    """

    def __init__(self, num_classes: int = 10, size: str = "small", dropout: float = 0.3):
        super().__init__()
        if size == "small":
            widths, hidden = (32, 64), 128
        elif size == "large":
            widths, hidden = (64, 128, 256), 1024
        else:
            raise ValueError(f"classifier size must be 'small' or 'large', got {size!r}")
        layers, c_in, side = [], 1, 28
        for w in widths:
            layers += [nn.Conv2d(c_in, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in, side = w, side // 2  # 28 -> 14 -> 7 -> 3
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * side * side, hidden),  # (B, c*s*s) -> (B, hidden)
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),  # (B, C) logits
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) -> (B, C) logits."""
        return self.head(self.features(x))

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """(B, hidden) activations feeding the last linear layer (for gradient-embedding strategies)."""
        return self.head[:-1](self.features(x))
