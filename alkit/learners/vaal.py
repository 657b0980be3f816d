"""VAAL (Sinha et al. 2019) and TA-VAAL (Kim et al. 2021): a beta-VAE and a latent discriminator
for sampling, beside an independent task classifier.

===========  ==============================================  ==========================================
learner      trained each cycle                              discriminator input (what sampling sees)
===========  ==============================================  ==========================================
``vaal``     task classifier (every labelled point, exactly  VAE mean ``mu`` (d)
             as the ``classifier`` learner); beta-VAE on
             labelled + unlabelled with the adversarial
             loss; discriminator labelled=1/unlabelled=0
``tavaal``   classifier + loss predictor (ranking loss),     ``[mu, predicted loss]`` (d + 1); the
             then beta-VAE + discriminator                   decoder also gets ``sigmoid(predicted loss)``
===========  ==============================================  ==========================================

Schedule (:mod:`.schedule`, VAAL's ``solver.py``): the task model takes one
step per iteration for ``iterations_per_cycle`` iterations (SGD 0.01, momentum
0.9, weight decay 5e-4, lr / 10 every quarter, best of the validations every
1,000 iterations); the VAE and discriminator run the same number of iterations
(:mod:`.adversarial`). VAAL interleaves the task-model step with the VAE steps
in one loop; the two share no parameters, so training the task model first is
the same computation in another order, and it makes the VAAL arm's task model
*identical* to the ``classifier`` learner's with the same seed: a VAAL-vs-random
comparison changes only the acquisition.

Reported classifier: the best validated state (never test), as VAAL's
``best_model``. VAE and discriminator: their final state, as VAAL samples with.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..losses import (VAE_LOSSES, beta_elbo_loss, cross_entropy, loss_prediction_loss, vaal_adversarial_loss,
                      vaal_vae_loss)
from ..models import VAE, Classifier, Discriminator, LossPredictor, classifier_taps, count_parameters
from ..engine.batches import generator
from ..train import mc_dropout_proba, seed_everything
from .adversarial import (
    DiscriminatorLearner,
    DiscriminatorParams,
    GenerativeParams,
    check_generative,
    holdout_split,
    warm_load,
)
from .base import TrainData, batched, register_learner
from .task import task_metrics, task_phase, train_task_classifier
from .schedule import ScheduleParams, TaskOptimParams
from ..engine.speed import SpeedParams, check_speed, resolve_speed


@dataclass
class VAALParams(ScheduleParams, TaskOptimParams, GenerativeParams, DiscriminatorParams, SpeedParams):
    """VAAL. Defaults follow the official code (github.com/sinhasam/vaal) unless noted.

    ``lr``, ``momentum``, ``weight_decay``, ``optimizer``, ``lr_drop_every``: the task classifier's
    optimiser (:class:`~.schedule.TaskOptimParams`, VAAL's SGD). The task model is alkit's
    :class:`~alkit.models.Classifier`: VAAL's VGG16 does not fit 28x28 images, and the same network
    in every arm keeps the comparison about acquisition.
    """

    vae_width: int = 64  # conv channels 64-128-256: 1.25M-parameter beta-VAE; 8 for CPU smoke runs
    adversary_weight: float = 1.0  # lambda_2 in the paper (VAAL's adversary_param)
    lr_vae: float = 5e-4  # Adam, as VAAL
    classifier_size: str = "small"
    dropout: float = 0.3
    # "elbo": per-image beta-ELBO (sum over pixels and latents, mean over images; ``likelihood`` applies);
    # "vaal": VAAL's solver, MSE mean over pixels and images + beta * KL summed over the batch (losses.vaal_vae_loss)
    vae_loss: str = "elbo"

    def __post_init__(self):
        ScheduleParams.__post_init__(self)
        TaskOptimParams.__post_init__(self)
        check_generative(self)
        check_speed(self)
        if self.vae_loss not in VAE_LOSSES:
            raise ValueError(f"vae_loss={self.vae_loss!r}: allowed {', '.join(VAE_LOSSES)}")


@dataclass
class TAVAALParams(VAALParams):
    """TA-VAAL (Kim et al. 2021). Defaults as in the official code (github.com/cubeyoung/TA-VAAL) where it has them.

    The task model + loss predictor follow the same schedule and optimiser as the other arms'
    task models (TA-VAAL's own: 200 epochs over the labelled set, SGD 0.1, one drop at 160), so
    that an arm differs from random only in what it trains for acquisition.
    """

    vae_steps: int = 1  # TA-VAAL's train_vaal uses 1 VAE step and 1 discriminator step
    ranker_weight: float = 1.0  # lambda of the loss-prediction loss (Yoo & Kweon, TA-VAAL: 1)
    ranker_margin: float = 1.0  # xi (Yoo & Kweon, TA-VAAL: 1)
    ranker_interm: int = 128  # width of each tap's FC in the loss predictor
    ranker_detach_after: float = 0.6  # stop ranking gradients into the classifier after this fraction (120/200 epochs)

    def __post_init__(self):
        super().__post_init__()
        if self.ranker_weight < 0 or self.ranker_margin < 0 or self.ranker_interm < 1:
            raise ValueError("ranker_weight, ranker_margin must be >= 0 and ranker_interm >= 1")
        if not 0.0 <= self.ranker_detach_after <= 1.0:
            raise ValueError(f"ranker_detach_after must be in [0, 1], got {self.ranker_detach_after}")


TINY = {"iterations": 4, "batch_size": 32, "val_every": 2, "latent_dim": 4, "disc_hidden": 16, "classifier_size": "tiny"}


@register_learner
class VAALLearner(DiscriminatorLearner):
    """VAAL: beta-VAE + latent discriminator for sampling; an independent task classifier.

    Per generative step, VAE loss = negative beta-ELBO of the labelled batch + that of the
    unlabelled batch (each a mean over its batch) + ``adversary_weight`` * L_adv;
    discriminator loss L_D on ``mu`` (labelled = 1). The task classifier is built and
    trained first, exactly as the ``classifier`` learner would be with the same seed.
    """

    name = "vaal"
    Params = VAALParams
    test_params = {**TINY, "vae_width": 4, "vae_steps": 1}

    def _generative_modules(self):
        return {"vae": self.vae}

    def _hp(self) -> dict:
        return {"beta": self.params.beta, "adversary_weight": self.params.adversary_weight}

    def _static_flags(self) -> dict:
        return {"adversarial": self.params.adversary_weight > 0}

    def _side(self, x: torch.Tensor) -> torch.Tensor | None:
        """Extra per-image input to the decoder and discriminator: none in VAAL, (B, 1) predicted loss in TA-VAAL."""
        return None

    def _disc_features(self, mu: torch.Tensor, side: torch.Tensor | None) -> torch.Tensor:
        return mu if side is None else torch.cat([mu, side], dim=1)  # (B, d [+ 1])

    def _disc_input(self, x):
        return self._disc_features(self.vae.encode(x)[0], self._side(x))

    def _generative_loss(self, xl, yl, xu, wl, wu, hp):
        p, nl = self.params, len(xl)
        x = torch.cat([xl, xu])  # (Bl+Bu, 1, 28, 28)
        side = self._side(x)
        logits, _, mu, logvar = self.vae(x, None if side is None else torch.sigmoid(side))
        if p.vae_loss == "vaal":  # VAAL's reductions, labelled and unlabelled batch each on its own
            elbo = (vaal_vae_loss(x[:nl], logits[:nl], mu[:nl], logvar[:nl], hp["beta"])
                    + vaal_vae_loss(x[nl:], logits[nl:], mu[nl:], logvar[nl:], hp["beta"]))
        else:
            per_image = beta_elbo_loss(x, logits, mu, logvar, hp["beta"], p.likelihood, reduction="none")  # (Bl+Bu,)
            elbo = per_image[:nl].mean() + per_image[nl:].mean()
        loss, out = elbo, {"vae_loss": elbo}
        if self._static["adversarial"]:
            d = self.disc(self._disc_features(mu, side))  # (Bl+Bu,) logits
            adv = vaal_adversarial_loss(d[:nl], d[nl:], wl, wu)
            loss = loss + hp["adversary_weight"] * adv
            out["adv_loss"] = adv
        return loss, out

    def _fit_task_model(self, data: TrainData, seed: int):
        """The ``classifier`` learner's training, step for step (same seeds), on every labelled point."""
        p = self.params
        self.classifier, m = yield from train_task_classifier(data, p, p.classifier_size, p.dropout, seed, self.device,
                                                              speed=self.speed, batch_source=self.batch_source)
        m["task_iterations"] = m.pop("iterations")
        return m

    def _build_generative(self, num_classes: int, in_channels: int = 1) -> None:
        p = self.params
        self.vae = VAE(p.latent_dim, p.vae_width, in_channels=in_channels).to(self.device)
        self.disc = Discriminator(p.latent_dim, p.disc_hidden).to(self.device)

    def fit_phases(self, data: TrainData, seed: int):
        p = self.params
        self.speed = resolve_speed(p, self.device, self.name)
        held = holdout_split(len(data.x_labelled), len(data.x_unlabelled), p.disc_holdout, generator(seed + 2, self.device))
        metrics = yield from self._fit_task_model(data, seed)
        seed_everything(seed + 3)
        self._build_generative(data.num_classes, data.x_labelled.shape[1])
        warm = False
        if p.warm_start:
            warm = warm_load(self.vae, self.previous, "vae") & warm_load(self.disc, self.previous, "disc")
        self.speed.prepare(self.vae, self.disc)
        result = yield self._generative_phase(data, held, p.lr_vae, seed + 4, warm=warm)
        metrics.update({**self._own_terms(result.last), "iterations": result.iterations})
        metrics.update(self._heldout_metrics(data, held))
        metrics.update(
            vae_params=count_parameters(self.vae), disc_params=count_parameters(self.disc),
            classifier_params=count_parameters(self.classifier), task_labelled=len(data.x_labelled), warm_started=warm,
            **self.speed.record(),
        )
        return metrics

    def task_network(self) -> torch.nn.Module:
        """The task classifier (best validated state), (B, 1, 28, 28) -> (B, C) logits."""
        return self.classifier

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        self.classifier.eval()
        return batched(lambda b: self.classifier(b).softmax(1), x)

    def mc_proba(self, x: torch.Tensor, samples: int) -> torch.Tensor:
        """(T, N, C) MC-dropout outputs of the task classifier (BALD)."""
        return mc_dropout_proba(self.classifier, x, samples)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, d) VAE posterior means mu (eval mode)."""
        self.vae.eval()
        return batched(lambda b: self.vae.encode(b)[0], x)


def ranking_loss(model: Classifier, ranker: LossPredictor, weight: float, margin: float, detach_from: int):
    """TA-VAAL's task loss for :func:`~.task.task_phase`: CE (mean) + ``weight`` * ranking loss.

    From iteration ``detach_from`` on, the classifier's taps are detached, so the ranking loss
    stops shaping the classifier (Yoo & Kweon: epoch 120 of 200).
    """

    def loss(batch, hp, iteration):
        logits, taps = classifier_taps(model, batch["xl"])
        ce = cross_entropy(logits, batch["yl"], reduction="none")  # (B,)
        if iteration >= detach_from:
            taps = [t.detach() for t in taps]
        rank = loss_prediction_loss(ranker(taps), ce, margin)
        return ce.mean() + weight * rank, {"task_loss": ce.mean(), "ranker_loss": rank}

    return loss


@torch.no_grad()
def ranker_spearman(model: Classifier, ranker: LossPredictor, x: torch.Tensor, y: torch.Tensor) -> float:
    """Rank correlation of predicted and true per-image losses (validation set), eval mode."""
    model.eval()
    ranker.eval()
    true_l, pred_l = [], []
    for i in range(0, len(x), 2048):
        logits, taps = classifier_taps(model, x[i : i + 2048])
        true_l.append(F.cross_entropy(logits, y[i : i + 2048], reduction="none"))
        pred_l.append(ranker(taps))
    rt = torch.cat(true_l).argsort().argsort().double()
    rp = torch.cat(pred_l).argsort().argsort().double()
    rho = torch.corrcoef(torch.stack([rt, rp]))[0, 1].item() if len(rt) > 1 else 0.0
    return rho if math.isfinite(rho) else 0.0


@register_learner
class TAVAALLearner(VAALLearner):
    """TA-VAAL (Kim et al., CVPR 2021, https://arxiv.org/abs/2002.04709).

    1. Task classifier + :class:`~alkit.models.LossPredictor` trained jointly (one optimiser)
       with Yoo & Kweon's pairwise margin ranking loss on every labelled point; best validated
       state of both kept.
    2. With both frozen, a beta-VAE whose decoder input is ``[z, sigmoid(r)]`` and a
       discriminator on ``[mu, r]`` (r = predicted loss, as the official code feeds
       them) are trained as in VAAL. Sampling: least P(labelled) of ``[mu, r]``.
    """

    name = "tavaal"
    Params = TAVAALParams
    test_params = {**TINY, "vae_width": 4, "ranker_interm": 8}

    @torch.no_grad()
    def _side(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1) predicted loss r of the frozen classifier + predictor (eval mode)."""
        if self.classifier.training or self.ranker.training:  # already eval after fitting: no module change per step
            self.classifier.eval()
            self.ranker.eval()
        return self.ranker(classifier_taps(self.classifier, x)[1]).unsqueeze(1)

    def _side_modules(self):
        return {"classifier": self.classifier, "ranker": self.ranker}

    def _fit_task_model(self, data: TrainData, seed: int):
        p = self.params
        seed_everything(seed)
        self.classifier = Classifier(data.num_classes, p.classifier_size, p.dropout, data.x_labelled.shape[1]).to(self.device)
        self.ranker = LossPredictor.for_classifier(self.classifier, p.ranker_interm).to(self.device)
        self.speed.prepare(self.classifier, self.ranker)
        iterations = p.iterations_per_cycle(len(data.x_labelled), len(data.x_unlabelled))
        detach_from = math.ceil(p.ranker_detach_after * iterations)
        result = yield task_phase(
            {"model": self.classifier, "ranker": self.ranker}, data.x_labelled, data.y_labelled, data.x_val,
            data.y_val, schedule=p, optim=p, seed=seed + 1, n_unlabelled=len(data.x_unlabelled),
            loss=ranking_loss(self.classifier, self.ranker, p.ranker_weight, p.ranker_margin, detach_from),
            name="classifier+ranker", speed=self.speed, batch_source=self.batch_source,
            phase_of=lambda iteration: iteration >= detach_from,  # all the loss reads of the iteration
        )
        m = task_metrics(result)
        m["task_iterations"] = m.pop("iterations")
        m["ranker_val_spearman"] = ranker_spearman(self.classifier, self.ranker, data.x_val, data.y_val)
        m["ranker_params"] = count_parameters(self.ranker)
        return m

    def _build_generative(self, num_classes: int, in_channels: int = 1) -> None:
        p = self.params
        self.vae = VAE(p.latent_dim, p.vae_width, cond_dim=1, in_channels=in_channels).to(self.device)
        self.disc = Discriminator(p.latent_dim + 1, p.disc_hidden).to(self.device)
