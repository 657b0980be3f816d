"""Models for 28x28 images (1 channel, or ``in_channels`` for colour): task classifier, beta-VAE (VAAL), M2 semi-supervised VAE, discriminator.

References
----------
- Sinha, Ebrahimi & Darrell, "Variational Adversarial Active Learning", ICCV 2019.
  https://arxiv.org/abs/1904.00370
- Kingma, Rezende, Mohamed & Welling, "Semi-Supervised Learning with Deep Generative Models"
  (the M2 model), NeurIPS 2014. https://arxiv.org/abs/1406.5298
- Kim et al., "Task-Aware Variational Adversarial Active Learning" (TA-VAAL), CVPR 2021.
  https://arxiv.org/abs/2002.04709

Shapes: B = batch, C = classes, d = latent size. Images are float in [0, 1].

ReLUs are not in place (VAAL's code has ``inplace=True``): the same numbers, bit for bit, but under
``torch.vmap`` (the fused engine) a conv's or linear's output is a view of the batched result, and an
in-place op on a view that needs a gradient makes autograd rebuild the base (``CopySlices``,
``AsStridedBackward``): 16 of a fused classifier iteration's 238 dispatched ops at K = 9.
"""
from __future__ import annotations

import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


#: the task classifier's sizes: conv widths and the hidden layer. "tiny" (~27k parameters) is for tests and
#: the micro test profiles only (the same layers, a sixteenth of the multiply-adds: tests train it in
#: milliseconds); no profile of the study uses it.
CLASSIFIER_SIZES = {"tiny": ((8, 16), 32), "small": ((32, 64), 128), "large": ((64, 128, 256), 1024)}


def check_classifier_size(key: str, size: str) -> None:
    """``ValueError`` naming ``key`` unless ``size`` is one of :data:`CLASSIFIER_SIZES`."""
    if size not in CLASSIFIER_SIZES:
        raise ValueError(f"{key} must be one of {', '.join(map(repr, CLASSIFIER_SIZES))}, got {size!r}")


class Classifier(nn.Module):
    """The task model: a small CNN, or the study's "larger ~3M parameter" one.

    ``size="small"``: conv32-conv64 + fc128 (about 0.42M parameters).
    ``size="large"``: conv64-conv128-conv256 + fc1024 (about 2.7M parameters).
    ``size="tiny"``: conv8-conv16 + fc32 (about 27k parameters; tests only).
    Dropout before the last layer also serves MC-dropout (BALD).
    """

    def __init__(self, num_classes: int = 10, size: str = "small", dropout: float = 0.3, in_channels: int = 1):
        super().__init__()
        check_classifier_size("classifier size", size)
        widths, hidden = CLASSIFIER_SIZES[size]
        layers, c_in, side = [], in_channels, 28
        for w in widths:
            layers += [nn.Conv2d(c_in, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2)]
            c_in, side = w, side // 2  # 28 -> 14 -> 7 -> 3
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * side * side, hidden),  # (B, c*s*s) -> (B, hidden)
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),  # (B, C) logits
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, 28, 28) -> (B, C) logits."""
        return self.head(self.features(x))

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """(B, hidden) activations feeding the last linear layer (for gradient-embedding strategies)."""
        return self.head[:-1](self.features(x))

    def mc_split(self) -> tuple:
        """``(prefix, rest)`` around the dropout: ``prefix`` (B, 1, 28, 28) -> (B, hidden) is deterministic in
        eval mode, so MC dropout runs it once per image (:func:`alkit.train.mc_dropout_proba`)."""
        k = next(i for i, m in enumerate(self.head) if isinstance(m, nn.Dropout))
        trunk, rest = self.head[:k], self.head[k:]
        return (lambda x: trunk(self.features(x))), rest


# --------------------------------------------------------------------------------------------
# Generative models: beta-VAE (VAAL), M2 (Kingma et al. 2014), latent discriminator, loss predictor
# --------------------------------------------------------------------------------------------


def _kaiming_init(module: nn.Module) -> None:
    """VAAL's initialisation: Kaiming-normal conv/linear weights, zero biases, unit BatchNorm."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ConvEncoder(nn.Module):
    """VAAL-style trunk for 28x28x1: three stride-2 convs with BatchNorm + ReLU.

    ``width`` w gives channels w, 2w, 4w; the output is flattened to (B, 16*4w).
    VAAL's original (for 32x32x3) uses 128-256-512-1024 channels; w=64 keeps the whole
    beta-VAE near 1M parameters on Fashion-MNIST.
    """

    def __init__(self, width: int = 64, in_channels: int = 1):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, w, 4, 2, 1, bias=False),  # (B, w, 14, 14)
            nn.BatchNorm2d(w),
            nn.ReLU(),
            nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False),  # (B, 2w, 7, 7)
            nn.BatchNorm2d(2 * w),
            nn.ReLU(),
            nn.Conv2d(2 * w, 4 * w, 3, 2, 1, bias=False),  # (B, 4w, 4, 4)
            nn.BatchNorm2d(4 * w),
            nn.ReLU(),
            nn.Flatten(),  # (B, 16*4w)
        )
        self.out_features = 16 * 4 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) -> (B, 16*4w)."""
        return self.net(x)


class ConvDecoder(nn.Module):
    """Mirror of :class:`ConvEncoder`: (B, in_dim) -> (B, 1, 28, 28) Bernoulli *logits*.

    The output is logits, not means: ``sigmoid(logits)`` is the pixel mean, and
    the reconstruction term in :mod:`alkit.losses` applies the likelihood to the logits
    (BCE-with-logits for Bernoulli, squared error of ``sigmoid(logits)`` for Gaussian).
    """

    def __init__(self, in_dim: int, width: int = 64, out_channels: int = 1):
        super().__init__()
        w = width
        self.w = w
        self.fc = nn.Linear(in_dim, 4 * w * 4 * 4)  # (B, 4w*4*4)
        self.net = nn.Sequential(
            nn.ConvTranspose2d(4 * w, 2 * w, 3, 2, 1, bias=False),  # (B, 2w, 7, 7)
            nn.BatchNorm2d(2 * w),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False),  # (B, w, 14, 14)
            nn.BatchNorm2d(w),
            nn.ReLU(),
            nn.ConvTranspose2d(w, out_channels, 4, 2, 1),  # (B, out_channels, 28, 28) logits
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) -> (B, 1, 28, 28) logits."""
        return self.net(self.fc(h).view(-1, 4 * self.w, 4, 4))


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps with eps ~ N(0, I) from torch's global RNG (seeded by ``seed_everything``)."""
    return mu + torch.randn_like(mu) * (0.5 * logvar).exp()


#: logvar is clamped to this range: exp(20) is finite in float32 and float16, and the
#: clamp stops a diverging encoder from turning the KL into inf before anyone notices
LOGVAR_RANGE = (-20.0, 20.0)


class VAE(nn.Module):
    """VAAL's beta-VAE adapted to 28x28x1 (Sinha et al. 2019).

    Encoder: :class:`ConvEncoder` -> ``fc_mu``, ``fc_logvar`` (B, d). Decoder:
    :class:`ConvDecoder` on ``[z, c]`` where ``c`` is an optional (B, cond_dim)
    conditioning vector (TA-VAAL feeds the predicted loss to the decoder, cond_dim=1).
    ``decode`` returns Bernoulli logits (see :class:`ConvDecoder`).

    Parameters (d=32): width 64 -> 1,252,673 (cond_dim=1: 1,256,769); width 8 -> 63,457.
    """

    def __init__(self, latent_dim: int = 32, width: int = 64, cond_dim: int = 0, in_channels: int = 1):
        super().__init__()
        self.latent_dim, self.cond_dim = latent_dim, cond_dim
        self.encoder = ConvEncoder(width, in_channels)
        self.fc_mu = nn.Linear(self.encoder.out_features, latent_dim)
        self.fc_logvar = nn.Linear(self.encoder.out_features, latent_dim)
        self.decoder = ConvDecoder(latent_dim + cond_dim, width, in_channels)
        _kaiming_init(self)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, 28, 28) -> mu, logvar, each (B, d)."""
        h = self.encoder(x)  # (B, F)
        return self.fc_mu(h), self.fc_logvar(h).clamp(*LOGVAR_RANGE)

    def decode(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """(B, d) [+ (B, cond_dim)] -> (B, 1, 28, 28) logits."""
        if self.cond_dim:
            z = torch.cat([z, c], dim=1)  # (B, d + cond_dim)
        return self.decoder(z)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None):
        """Returns ``(logits, z, mu, logvar)`` like VAAL's ``(recon, z, mu, logvar)``; logits (B, 1, 28, 28)."""
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar)  # (B, d)
        return self.decode(z, c), z, mu, logvar


class M2(nn.Module):
    """Kingma et al.'s M2 semi-supervised VAE (NeurIPS 2014, https://arxiv.org/abs/1406.5298).

    - q(y|x): ``self.classifier``, alkit's task :class:`Classifier` (logits), so the
      M2 classifier *is* the task model that is evaluated each cycle;
    - q(z|x,y) = N(mu, diag exp(logvar)): :class:`ConvEncoder` trunk h(x), then
      ``ReLU(W_h h + W_y y + b)`` -> mu, logvar. ``y`` is a (B, C) one-hot (or
      probability) vector. Because y enters linearly, the trunk runs once per image
      and all C classes are encoded by broadcasting (:meth:`encode_all_classes`);
    - p(x|y,z): :class:`ConvDecoder` on ``[z, y]``, Bernoulli logits;
    - priors p(z) = N(0, I), p(y) = uniform over C.

    Parameters (d=32, C=10, width 64, hidden 256, small classifier): 2,521,099 of which the
    classifier 421,834; width 8, hidden 32, small classifier: 476,427.
    """

    def __init__(
        self,
        num_classes: int = 10,
        latent_dim: int = 32,
        width: int = 64,
        hidden: int = 256,
        classifier_size: str = "small",
        dropout: float = 0.3,
        in_channels: int = 1,
    ):
        super().__init__()
        self.num_classes, self.latent_dim = num_classes, latent_dim
        self.encoder = ConvEncoder(width, in_channels)
        self.enc_h = nn.Linear(self.encoder.out_features, hidden)
        self.enc_y = nn.Linear(num_classes, hidden, bias=False)
        self.fc_mu = nn.Linear(hidden, latent_dim)
        self.fc_logvar = nn.Linear(hidden, latent_dim)
        self.decoder = ConvDecoder(latent_dim + num_classes, width, in_channels)
        _kaiming_init(self)
        # the task model keeps its own (PyTorch default) initialisation, as in ClassifierLearner
        self.classifier = Classifier(num_classes, classifier_size, dropout, in_channels)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """q(y|x) logits: (B, 1, 28, 28) -> (B, C)."""
        return self.classifier(x)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) -> (B, F) encoder features shared by every y."""
        return self.encoder(x)

    def encode_h(self, h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x,y) from trunk features: h (..., F), y (..., C) -> mu, logvar (..., d)."""
        g = torch.relu(self.enc_h(h) + self.enc_y(y))  # (..., hidden)
        return self.fc_mu(g), self.fc_logvar(g).clamp(*LOGVAR_RANGE)

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x,y): x (B, 1, 28, 28), y (B, C) -> mu, logvar (B, d)."""
        return self.encode_h(self.trunk(x), y)

    def encode_all_classes(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x,y) for every class at once: h (B, F) -> mu, logvar (C, B, d), row c for y = one-hot(c)."""
        a = self.enc_h(h)  # (B, hidden)
        b = self.enc_y.weight.t()  # (C, hidden): W_y one-hot(c) is column c of W_y
        g = torch.relu(a.unsqueeze(0) + b.unsqueeze(1))  # (C, B, hidden)
        return self.fc_mu(g), self.fc_logvar(g).clamp(*LOGVAR_RANGE)

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """p(x|y,z): z (B, d), y (B, C) -> (B, 1, 28, 28) logits."""
        return self.decoder(torch.cat([z, y], dim=-1))  # input (B, d + C)

    @torch.no_grad()
    def latent(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The study's M2 latent code and class probabilities, without labels.

        Returns ``mu`` (B, d), the mean of q(z | x, y = one-hot(argmax q(y|x))), and
        ``q(y|x)`` (B, C) softmax. Labelled and unlabelled points are treated alike
        (no true labels), so the code carries no trace of which set a point is in.
        """
        logits = self.classify(x)  # (B, C)
        y_hat = nn.functional.one_hot(logits.argmax(1), self.num_classes).to(x.dtype)  # (B, C)
        mu, _ = self.encode(x, y_hat)  # (B, d)
        return mu, logits.softmax(1)


class Discriminator(nn.Module):
    """VAAL's adversary: an MLP on a latent code, ``in_dim -> hidden -> hidden -> 1`` logits.

    VAAL's code has four hidden layers of 512; TA-VAAL and this study use two.
    Returns logits (B,) for "labelled"; ``sigmoid`` gives P(labelled).
    Inputs: VAAL ``mu`` (d); M2-VAAL ``[mu, q(y|x)]`` (d + C); TA-VAAL ``[mu, predicted loss]`` (d + 1).
    Parameters (hidden 512): in_dim 32 -> 280,065; 42 -> 285,185; 33 -> 280,577.
    """

    def __init__(self, in_dim: int = 32, hidden: int = 512):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),  # (B, hidden)
            nn.ReLU(),
            nn.Linear(hidden, hidden),  # (B, hidden)
            nn.ReLU(),
            nn.Linear(hidden, 1),  # (B, 1)
        )
        _kaiming_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) -> (B,) logits."""
        return self.net(z).squeeze(1)


def classifier_taps(model: Classifier, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run :class:`Classifier` once and return ``(logits, taps)`` for the loss-prediction module.

    ``taps`` are the output of every conv block (after pooling: (B, 32, 14, 14) and
    (B, 64, 7, 7) for the small classifier) and the penultimate activation (B, hidden),
    the analogue of the four ResNet stage outputs Yoo & Kweon tap. Equivalent to
    ``model(x)`` (same modules, same order), so the logits need no second pass.
    """
    taps, h = [], x
    for m in model.features:
        h = m(h)
        if isinstance(m, nn.MaxPool2d):
            taps.append(h)  # (B, c_k, s_k, s_k)
    pen = model.head[:-1](h)  # (B, hidden)
    taps.append(pen)
    return model.head[-1](pen), taps  # (B, C) logits


class LossPredictor(nn.Module):
    """Yoo & Kweon's loss-prediction module (CVPR 2019, https://arxiv.org/abs/1905.03677), as in TA-VAAL.

    Each tap of :func:`classifier_taps` is global-average-pooled (feature maps) and
    mapped by ``Linear -> ReLU`` to ``interm_dim``; the concatenation goes through
    one linear layer to the predicted loss (B,), an unnormalised ranking score.
    Parameters (interm 128): small classifier 29,441; large 189,441.
    """

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128), interm_dim: int = 128):
        super().__init__()
        self.fcs = nn.ModuleList(nn.Linear(c, interm_dim) for c in channels)
        self.out = nn.Linear(interm_dim * len(channels), 1)

    @classmethod
    def for_classifier(cls, model: Classifier, interm_dim: int = 128) -> "LossPredictor":
        convs = [m.out_channels for m in model.features if isinstance(m, nn.Conv2d)]
        return cls((*convs, model.head[-1].in_features), interm_dim)

    def forward(self, taps: list[torch.Tensor]) -> torch.Tensor:
        """taps (B, c_k, s, s) or (B, c_k) -> (B,) predicted loss."""
        outs = []
        for fc, t in zip(self.fcs, taps):
            if t.dim() == 4:
                t = t.mean(dim=(2, 3))  # (B, c_k) global average pool
            outs.append(torch.relu(fc(t)))  # (B, interm)
        return self.out(torch.cat(outs, dim=1)).squeeze(1)  # (B,)
