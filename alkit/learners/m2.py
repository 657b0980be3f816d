"""The M2 family: M2 (Kingma et al. 2014), M2 + discriminator, and the study's M2-VAAL.

===========  ==========================================  ==============================================
learner      trained each cycle                          discriminator input (what sampling sees)
===========  ==========================================  ==============================================
``m2``       plain M2; its q(y|x) is the task model      none (``predict_proba``, ``mc_proba``, ``embed``)
``m2_disc``  the same M2, no adversarial term; a         ``[mu(x, argmax q(y|x)), q(y|x)]`` (d + C)
             discriminator trained alongside, for
             sampling only
``m2_vaal``  M2 whose encoder *and classifier* also      same as ``m2_disc``
             play VAAL's adversarial game
===========  ==========================================  ==============================================

Schedule (:mod:`.schedule`, :mod:`.adversarial`): M2 replaces VAAL's VAE in VAAL's
loop: ``iterations_per_cycle`` iterations (VAAL's ``pool * epochs // batch_size``),
each ``vae_steps`` (2, VAAL's num_vae_steps) M2 steps on a fresh labelled and
unlabelled batch, then the discriminator step. One Adam (VAAL's VAE optimiser,
5e-4) trains all of M2, its classifier included: the M2 classifier is the task
model, so it is optimised as part of M2's objective, not with VAAL's separate
task-model SGD. Plain ``m2`` runs exactly the same M2 steps, without a discriminator.

The adversarial term of ``m2_vaal`` is the study's: ``L_adv`` on the
discriminator's view ``[mu, q(y|x)]`` of both batches, with the gradient
reaching q(y|x) ("our latent space consists of [Z, Y']; adv tries to equalize Y'
probabilities, thereby degrading performance of the classifier").
``detach_y_in_adversary=True`` stops that gradient (the adversarial loss then
shapes only the encoder), so notebook 04 can test the study's explanation by
contrast.

One state per selection. q(y|x) is validated every ``val_every`` iterations and
after the last; the best validated state of the *whole* learner (M2 and its
discriminator, saved together) is restored after training. Evaluation,
``predict_proba``, ``embed`` (which encodes with argmax q(y|x)), ``labelled_prob``
and the held-out discriminator scores all read that one state.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..losses import classification_loss, kingma_alpha, m2_labelled_loss, m2_unlabelled_loss, vaal_adversarial_loss
from ..models import M2, Discriminator, count_parameters
from ..engine import Validation
from ..engine.batches import generator
from ..train import mc_dropout_proba, seed_everything
from .adversarial import (
    DiscriminatorLearner,
    DiscriminatorParams,
    GenerativeLearner,
    GenerativeParams,
    check_generative,
    holdout_split,
    warm_load,
)
from .base import TrainData, batched, register_learner
from .schedule import ScheduleParams
from ..engine.speed import SpeedParams, check_speed, resolve_speed

_MEMO_PASSES = 4  # latent passes kept (pool, labelled set, a batch, a reference batch: ~9 MB at 55,000 x 42)


@dataclass
class M2Params(ScheduleParams, GenerativeParams, SpeedParams):
    """M2 (Kingma et al. 2014) whose q(y|x) is alkit's task :class:`~alkit.models.Classifier`."""

    width: int = 64  # conv trunk / decoder channels (as VAAL's VAE); 8 for CPU smoke runs
    hidden: int = 256  # q(z|x,y) hidden layer
    classifier_size: str = "small"
    dropout: float = 0.3
    # weight of the mean labelled cross-entropy against the per-image-mean bounds. None = Kingma's
    # 0.1*N rescaled (losses.kingma_alpha): 1.0 at 500 of 5,000 labelled, where M2's q(y|x) collapsed
    # (val acc 0.20; alpha 10: 0.73; 50: 0.77 = the plain classifier's 0.77; Fashion-MNIST, 10 epochs)
    alpha: float | None = 50.0
    lr: float = 5e-4  # Adam on all of M2 (VAAL's VAE learning rate)
    # the unlabelled bound's expectation over q(y|x): None = all classes (Kingma's exact marginal); k = the k most
    # probable classes, renormalised (losses.m2_unlabelled_loss; a CPU cost lever, its bias measured first)
    unlabelled_topk: int | None = None

    def __post_init__(self):
        ScheduleParams.__post_init__(self)
        check_generative(self)
        check_speed(self)
        k = self.unlabelled_topk
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(f"unlabelled_topk must be an integer >= 1 or None (every class), got {k!r}")


@dataclass
class M2DiscParams(M2Params, DiscriminatorParams):
    """M2 plus a discriminator on ``[mu, q(y|x)]`` trained alongside (labelled = 1, unlabelled = 0).

    ``disc_snapshot``: ``"best"`` (default) samples and measures the stopping signal with the
    discriminator saved with M2's best-validation state (one model state per selection); ``"final"``
    keeps the discriminator of the last iteration, as VAAL's sampler uses its final one, on the
    restored M2.
    """

    disc_snapshot: str = "best"

    def __post_init__(self):
        super().__post_init__()
        if self.disc_snapshot not in ("best", "final"):
            raise ValueError(f"disc_snapshot={self.disc_snapshot!r}: allowed best, final")


@dataclass
class M2VAALParams(M2DiscParams):
    """M2-VAAL: :class:`M2DiscParams` plus the VAAL adversarial loss on M2."""

    adversary_weight: float = 1.0
    detach_y_in_adversary: bool = False  # True: no adversarial gradient reaches q(y|x) (not the study's form)


@register_learner
class M2Learner(GenerativeLearner):
    """Plain M2 semi-supervised VAE: ``predict_proba`` and ``mc_proba`` (its classifier), ``embed`` (its latent)."""

    name = "m2"
    Params = M2Params
    test_params = {"iterations": 4, "batch_size": 32, "val_every": 2, "latent_dim": 4, "width": 4, "hidden": 8,
                   "vae_steps": 1, "classifier_size": "tiny"}
    adversarial = False  # add the VAAL adversarial loss to the M2 objective

    def _generative_modules(self):
        return {"model": self.model}

    def _hp(self) -> dict:
        p = self.params
        return {"beta": p.beta, "alpha": self.alpha, "adversary_weight": getattr(p, "adversary_weight", 0.0),
                "detach_y": getattr(p, "detach_y_in_adversary", False)}

    def _static_flags(self) -> dict:
        return {"adversarial": self.adversarial and self.params.adversary_weight > 0}

    def _modules(self) -> list[torch.nn.Module]:
        """Everything whose state a selection reads, saved and restored together."""
        return [self.model, self.disc] if self.has_disc else [self.model]

    def _m2_terms(self, xl, yl, xu, hp):
        """One M2 forward on a labelled and an unlabelled batch: (loss, terms, h, logits)."""
        p, nl = self.params, len(xl)
        x = torch.cat([xl, xu])  # (Bl+Bu, 1, 28, 28): one pass for shared BatchNorm statistics
        h = self.model.trunk(x)  # (Bl+Bu, F)
        logits = self.model.classify(x)  # (Bl+Bu, C)
        lab = m2_labelled_loss(self.model, xl, yl, beta=hp["beta"], likelihood=p.likelihood, h=h[:nl])
        unl = m2_unlabelled_loss(self.model, xu, beta=hp["beta"], likelihood=p.likelihood, h=h[nl:], logits=logits[nl:],
                                 topk=p.unlabelled_topk)
        ce = classification_loss(logits[:nl], yl)
        loss = lab + unl + hp["alpha"] * ce
        return loss, {"m2_labelled_loss": lab, "m2_unlabelled_loss": unl, "task_loss": ce}, h, logits

    def adversarial_loss(self, h, logits, n_labelled: int, wl=None, wu=None, detach=None) -> torch.Tensor:
        """L_adv on the discriminator's view ``[mu(x, argmax q(y|x)), q(y|x)]`` of a mixed batch.

        ``h`` (B, F) trunk features and ``logits`` (B, C) q(y|x) logits of the labelled rows
        (first ``n_labelled``) then the unlabelled ones. The gradient reaches the encoder
        through ``mu`` and the classifier through ``q(y|x)``, unless ``detach`` (default: the learner's
        ``detach_y_in_adversary``; a 0-d tensor 0/1 in a fused group, where runs may differ).
        """
        y_hat = F.one_hot(logits.argmax(1), self.model.num_classes).to(h.dtype)  # (B, C)
        mu, _ = self.model.encode_h(h, y_hat)  # (B, d)
        q = logits.softmax(1)  # (B, C)
        detach = self.params.detach_y_in_adversary if detach is None else detach
        if isinstance(detach, torch.Tensor):  # per run: the same value, the gradient only where detach == 0
            q = detach * q.detach() + (1 - detach) * q
        elif detach:
            q = q.detach()
        d = self.disc(torch.cat([mu, q], dim=1))  # (B,) logits
        return vaal_adversarial_loss(d[:n_labelled], d[n_labelled:], wl, wu)

    def _generative_loss(self, xl, yl, xu, wl, wu, hp):
        loss, out, h, logits = self._m2_terms(xl, yl, xu, hp)
        if self._static["adversarial"]:
            adv = self.adversarial_loss(h, logits, len(xl), wl, wu, detach=hp["detach_y"])
            loss = loss + hp["adversary_weight"] * adv
            out["adv_loss"] = adv
        out["m2_loss"] = loss
        return loss, out

    def _disc_input(self, x):
        mu, q = self.model.latent(x)
        return torch.cat([mu, q], dim=1)  # (B, d + C)

    def fit_phases(self, data: TrainData, seed: int):
        p = self.params
        self.speed = resolve_speed(p, self.device, self.name)
        self._memo = None
        n_l, n_u = len(data.x_labelled), len(data.x_unlabelled)
        held = holdout_split(n_l, n_u, p.disc_holdout, generator(seed + 2, self.device)) if self.has_disc else None
        seed_everything(seed)
        self.model = M2(data.num_classes, p.latent_dim, p.width, p.hidden, p.classifier_size, p.dropout,
                        in_channels=data.x_labelled.shape[1]).to(self.device)
        if self.has_disc:
            # its own seed, outside the global stream: M2's dropout masks are then those of plain ``m2``,
            # so ``m2_disc`` trains M2 step for step as ``m2`` does and ``m2_random`` is its random control
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + 3)
                self.disc = Discriminator(p.latent_dim + data.num_classes, p.disc_hidden)
            self.disc = self.disc.to(self.device)
        warm = False
        if p.warm_start:
            warm = all([warm_load(m, self.previous, a) for m, a in zip(self._modules(), ("model", "disc"))])
        self.alpha = p.alpha if p.alpha is not None else kingma_alpha(n_l, n_l + n_u)
        self.speed.prepare(*self._modules())
        # one state per selection: the best validated one of M2 and its discriminator, saved and restored together;
        # disc_snapshot "final": the discriminator as training left it (VAAL samples with its final one)
        best_disc = self.has_disc and getattr(p, "disc_snapshot", "best") == "best"
        keep = ("model", "disc") if best_disc else ("model",)
        check = Validation("model", keep, attr="classifier", patience=p.patience, last_key="val_acc_last")
        result = yield self._generative_phase(data, held, p.lr, seed + 4, validation=check, warm=warm)
        metrics = {**self._own_terms(result.last), "iterations": result.iterations}
        self._memo = None
        if self.has_disc:
            metrics.update(self._heldout_metrics(data, held))
            metrics["disc_params"] = count_parameters(self.disc)
        metrics.update(
            val_acc=result.best_acc, best_iteration=result.best_iteration, alpha=self.alpha, warm_started=warm,
            task_labelled=n_l, m2_params=count_parameters(self.model),
            classifier_params=count_parameters(self.model.classifier), **self.speed.record(),
        )
        return metrics

    def task_network(self) -> torch.nn.Module:
        """q(y|x), (B, 1, 28, 28) -> (B, C) logits, in the restored best state."""
        return self.model.classifier

    _memo = None  # the last _MEMO_PASSES latent passes, newest first: (weakref to x, x._version, mu, q) each

    @torch.no_grad()
    def _latent_pass(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``mu`` (N, d) and ``q(y|x)`` (N, C) of the restored state, in one pass over ``x``.

        A selection and its diagnostics ask for predictions, latent codes and discriminator scores
        of the same candidates, interleaved with a few other tensors (the batch, a random reference
        batch, the labelled set); the last few passes are reused while ``x`` is the same, unmodified
        tensor (a weak reference: a freed tensor never matches), so the pool is passed once a cycle,
        not two or three times. ``fit`` and ``load`` forget them.
        """
        memo = [m for m in (self._memo or []) if m[0]() is not None]
        for m in memo:
            if m[0]() is x and m[1] == x._version:
                return m[2], m[3]
        self.model.eval()
        d = self.model.latent_dim
        out = batched(lambda b: torch.cat(self.model.latent(b), dim=1), x)  # (N, d + C)
        mu, q = out[:, :d], out[:, d:]
        self._memo = [(weakref.ref(x), x._version, mu, q), *memo][:_MEMO_PASSES]
        return mu, q

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_memo", None)  # weak references do not pickle, and the codes are not the model
        return state

    def _disc_logits(self, x: torch.Tensor) -> torch.Tensor:
        mu, q = self._latent_pass(x)
        self.disc.eval()
        return batched(self.disc, torch.cat([mu, q], dim=1))

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C) softmax of q(y|x)."""
        return self._latent_pass(x)[1]

    def mc_proba(self, x: torch.Tensor, samples: int) -> torch.Tensor:
        """(T, N, C) MC-dropout outputs of q(y|x) (BALD on M2's classifier)."""
        return mc_dropout_proba(self.model.classifier, x, samples)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, d) mean of q(z | x, y = one-hot(argmax q(y|x))) (see :meth:`M2.latent`)."""
        return self._latent_pass(x)[0]


@register_learner
class M2DiscLearner(M2Learner, DiscriminatorLearner):
    """M2 trained WITHOUT the adversarial term; a discriminator on ``[mu, q(y|x)]`` is trained alongside for sampling.

    The discriminator input treats labelled and unlabelled points alike: ``mu`` of
    q(z | x, argmax q(y|x)) and the soft q(y|x). Feeding the labelled points'
    one-hot labels would let it tell the sets apart by the form of y alone.
    """

    name = "m2_disc"
    Params = M2DiscParams
    has_disc = True
    test_params = {"iterations": 4, "batch_size": 32, "val_every": 2, "latent_dim": 4, "disc_hidden": 16,
                   "width": 4, "hidden": 8, "vae_steps": 1, "classifier_size": "tiny"}


@register_learner
class M2VAALLearner(M2DiscLearner):
    """M2-VAAL: M2 whose encoder and classifier also play VAAL's adversarial game against the discriminator."""

    name = "m2_vaal"
    Params = M2VAALParams
    adversarial = True
