"""Generative learners: VAAL, M2, M2-VAAL, M2 + discriminator, TA-VAAL.

===========  ==========================================  ==============================================
learner      trained each cycle                          discriminator input (what sampling sees)
===========  ==========================================  ==============================================
``vaal``     task classifier (labelled only, like the    VAE mean ``mu`` (d)
             ``classifier`` learner); beta-VAE on
             labelled + unlabelled with the adversarial
             loss; discriminator labelled=1/unlabelled=0
``m2_vaal``  M2 (its q(y|x) is the task model) with      ``[mu(x, argmax q(y|x)), q(y|x)]`` (d + C)
             the adversarial loss on its encoder
``m2_disc``  the same M2 without the adversarial term;   same as ``m2_vaal``
             discriminator trained alongside, for
             sampling only
``m2``       plain M2 (Kingma et al. 2014), no           none (``predict_proba``, ``mc_proba``, ``embed``)
             discriminator
``tavaal``   classifier + loss predictor (ranking loss), ``[mu, predicted loss]`` (d + 1); the
             then beta-VAE + discriminator (Kim et al.   decoder also gets ``sigmoid(predicted loss)``
             2021, https://arxiv.org/abs/2002.04709)
===========  ==========================================  ==============================================

Training schedule (VAAL's ``solver.py``): one *iteration* takes ``vae_steps``
VAE/M2 steps, each on a fresh labelled batch and a fresh unlabelled batch
(unlabelled batches are drawn alongside with :func:`~alkit.train.endless_batches`),
then ``disc_steps`` discriminator steps (the first reuses the last batches).
An *epoch* is ``ceil(L / batch_size)`` iterations, one pass over the labelled
set; ``epochs`` (the study: 20) counts those. Labelled and unlabelled batches
go through the VAE in one concatenated forward (VAAL uses two): the BatchNorm
statistics are then those of the mixed batch, not of each set, so BatchNorm
cannot hide a difference between the sets from the discriminator.
Discriminator inputs are computed in eval mode, in training as at sampling
time (VAAL's sampler leaves the VAE in train mode; we do not).

Stopping signal. ``disc_holdout`` (10%) of the labelled points and as many
random unlabelled points are held out of everything that shapes the
discriminator or its input (VAE/M2, loss predictor, discriminator). After
training, ``disc_acc_heldout`` is the discriminator's accuracy at calling those
held-out points labelled (logit > 0) or unlabelled (balanced: the two groups
have equal size) and ``disc_auc_heldout`` its ROC AUC. Near 0.5, labelled and
unlabelled are no longer distinguishable. For ``m2_*`` and ``tavaal`` the task
model feeds the discriminator, so it too trains without the held-out labelled
points (a held-out point the classifier had memorised would look labelled);
``vaal``'s separate task classifier uses every labelled point.

Reported classifier: always the best *validation* epoch (never test). For M2
learners the sampling side (``embed``, ``labelled_prob``) uses the final M2,
the state the discriminator was trained against; ``predict_proba`` the
best-validation copy of its classifier.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..losses import (
    LIKELIHOODS,
    beta_elbo_loss,
    classification_loss,
    discriminator_loss,
    kingma_alpha,
    loss_prediction_loss,
    m2_labelled_loss,
    m2_unlabelled_loss,
    vaal_adversarial_loss,
)
from ..models import M2, VAE, Classifier, Discriminator, LossPredictor, classifier_taps, count_parameters
from ..progress import progress_bar
from ..train import accuracy, endless_batches, epoch_batches, fit_classifier, generator, mc_dropout_proba, seed_everything
from .base import Learner, TrainData, batched, register_learner

# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------


def _check_common(p) -> None:
    if p.epochs < 1 or p.batch_size < 2:
        raise ValueError(f"epochs must be >= 1 and batch_size >= 2, got {p.epochs}, {p.batch_size}")
    if p.latent_dim < 1:
        raise ValueError(f"latent_dim must be >= 1, got {p.latent_dim}")
    if p.beta < 0:
        raise ValueError(f"beta must be >= 0, got {p.beta}")
    if p.likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {p.likelihood!r}")
    for name in ("vae_steps", "disc_steps"):
        if getattr(p, name, 1) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(p, name)}")
    for name in ("lr_vae", "lr_disc", "lr", "classifier_lr"):
        if getattr(p, name, 1.0) <= 0:
            raise ValueError(f"{name} must be > 0, got {getattr(p, name)}")
    for name in ("vae_width", "width", "disc_hidden", "hidden"):
        if getattr(p, name, 1) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(p, name)}")
    if hasattr(p, "disc_holdout") and not 0.0 < p.disc_holdout <= 0.5:
        raise ValueError(f"disc_holdout must be in (0, 0.5], got {p.disc_holdout}")
    if getattr(p, "adversary_weight", 0.0) < 0:
        raise ValueError(f"adversary_weight must be >= 0, got {p.adversary_weight}")
    if getattr(p, "classifier_size", "small") not in ("small", "large"):
        raise ValueError(f"classifier_size must be 'small' or 'large', got {p.classifier_size!r}")
    if getattr(p, "classifier_epochs", 1) < 1:
        raise ValueError(f"classifier_epochs must be >= 1, got {p.classifier_epochs}")
    if getattr(p, "alpha", None) is not None and p.alpha < 0:
        raise ValueError(f"alpha must be >= 0 or None, got {p.alpha}")


@dataclass
class VAALParams:
    """VAAL (Sinha et al. 2019). Defaults follow the official code unless noted."""

    epochs: int = 20  # passes over the labelled set (VAE + discriminator)
    batch_size: int = 128
    latent_dim: int = 32
    vae_width: int = 64  # conv channels 64-128-256: 1.25M-parameter beta-VAE; 8 for CPU smoke runs
    disc_hidden: int = 512
    beta: float = 1.0
    adversary_weight: float = 1.0  # lambda_2 in the paper (VAAL's adversary_param)
    vae_steps: int = 2  # VAE steps per iteration (num_vae_steps)
    disc_steps: int = 1  # discriminator steps per iteration (num_adv_steps)
    lr_vae: float = 5e-4
    lr_disc: float = 5e-4
    likelihood: str = "bernoulli"  # or "gaussian" (fixed sigma 0.1); VAAL used MSE
    disc_holdout: float = 0.1  # fraction of labelled (and as many unlabelled) held out for disc_acc_heldout
    warm_start: bool = False  # VAE and discriminator start from the previous cycle's (the task classifier never does)
    # the task classifier, trained exactly like the `classifier` learner (Adam, best validation epoch);
    # VAAL's VGG16 with SGD 0.01 does not fit 28x28 images, and equal training keeps baselines comparable
    classifier_size: str = "small"
    classifier_epochs: int = 20
    classifier_lr: float = 1e-3
    classifier_weight_decay: float = 5e-4
    dropout: float = 0.3
    patience: int | None = None

    def __post_init__(self):
        _check_common(self)


@dataclass
class TAVAALParams(VAALParams):
    """TA-VAAL (Kim et al. 2021). Defaults as in the official code (cubeyoung/TA-VAAL) where it has them."""

    vae_steps: int = 1  # TA-VAAL's train_vaal uses 1 VAE step and 1 discriminator step
    ranker_weight: float = 1.0  # lambda of the loss-prediction loss (Yoo & Kweon, TA-VAAL: 1)
    ranker_margin: float = 1.0  # xi (Yoo & Kweon, TA-VAAL: 1)
    ranker_interm: int = 128  # width of each tap's FC in the loss predictor
    ranker_detach_after: float = 0.6  # stop ranking gradients into the classifier after this fraction of epochs (120/200)

    def __post_init__(self):
        super().__post_init__()
        if self.ranker_weight < 0 or self.ranker_margin < 0 or self.ranker_interm < 1:
            raise ValueError("ranker_weight, ranker_margin must be >= 0 and ranker_interm >= 1")
        if not 0.0 <= self.ranker_detach_after <= 1.0:
            raise ValueError(f"ranker_detach_after must be in [0, 1], got {self.ranker_detach_after}")


@dataclass
class M2Params:
    """M2 (Kingma et al. 2014) whose q(y|x) is alkit's task :class:`~alkit.models.Classifier`."""

    epochs: int = 20  # passes over the labelled set
    batch_size: int = 128  # labelled and unlabelled batch size each
    latent_dim: int = 32
    width: int = 64  # conv trunk / decoder channels (as VAAL's VAE); 8 for CPU smoke runs
    hidden: int = 256  # q(z|x,y) hidden layer
    classifier_size: str = "small"
    dropout: float = 0.3
    # weight of the mean labelled cross-entropy against the per-image-mean bounds. None = Kingma's
    # 0.1*N rescaled (losses.kingma_alpha): 1.0 at 500 of 5,000 labelled, where M2's q(y|x) collapsed
    # (val acc 0.20; alpha 10: 0.73; 50: 0.77 = the plain classifier's 0.77; Fashion-MNIST, 10 epochs)
    alpha: float | None = 50.0
    beta: float = 1.0
    vae_steps: int = 1  # M2 steps per iteration
    lr: float = 5e-4  # Adam on all of M2 (VAAL's VAE learning rate)
    likelihood: str = "bernoulli"
    warm_start: bool = False  # M2 (its classifier included) and discriminator start from the previous cycle's

    def __post_init__(self):
        _check_common(self)


@dataclass
class M2DiscParams(M2Params):
    """M2 plus a discriminator on ``[mu, q(y|x)]`` trained alongside (labelled = 1, unlabelled = 0)."""

    disc_hidden: int = 512
    disc_steps: int = 1
    lr_disc: float = 5e-4
    disc_holdout: float = 0.1


@dataclass
class M2VAALParams(M2DiscParams):
    """M2-VAAL: :class:`M2DiscParams` plus the VAAL adversarial loss on M2's encoder."""

    adversary_weight: float = 1.0


_TINY = {"epochs": 1, "batch_size": 32, "latent_dim": 4, "disc_hidden": 16}


# ---------------------------------------------------------------------------------------------
# Shared machinery
# ---------------------------------------------------------------------------------------------


@dataclass
class _Split:
    """Index tensors (on device) into ``x_labelled`` / ``x_unlabelled``: training part and held-out part."""

    l_train: torch.Tensor
    l_held: torch.Tensor
    u_train: torch.Tensor
    u_held: torch.Tensor


def holdout_split(n_labelled: int, n_unlabelled: int, fraction: float, gen: torch.Generator) -> _Split:
    """Hold out ``round(fraction * L)`` (at least 1) labelled and as many random unlabelled points.

    ``fraction=0`` holds out nothing. Each training part keeps >= 2 points (BatchNorm).
    """
    n_h = max(1, round(fraction * n_labelled)) if fraction > 0 else 0
    if n_labelled - n_h < 2 or n_unlabelled - n_h < 2:
        raise ValueError(
            f"{n_labelled} labelled / {n_unlabelled} unlabelled points are too few to hold out {n_h} of each "
            "and keep 2 for training; lower disc_holdout or label more points"
        )
    pl = torch.randperm(n_labelled, generator=gen, device=gen.device)
    pu = torch.randperm(n_unlabelled, generator=gen, device=gen.device)
    return _Split(pl[n_h:], pl[:n_h], pu[n_h:], pu[:n_h])


@torch.no_grad()
def heldout_scores(logits_labelled: torch.Tensor, logits_unlabelled: torch.Tensor) -> dict:
    """Discriminator accuracy (balanced: mean of the two per-group accuracies) and ROC AUC.

    AUC = P(logit of a random labelled > logit of a random unlabelled), ties count 1/2.
    """
    acc = 0.5 * ((logits_labelled > 0).double().mean() + (logits_unlabelled <= 0).double().mean())
    auc = torch.zeros((), dtype=torch.float64, device=logits_labelled.device)
    for chunk in logits_labelled.split(1024):  # (c, U) comparisons at a time
        diff = chunk.double().unsqueeze(1) - logits_unlabelled.double().unsqueeze(0)
        auc += (diff > 0).double().sum() + 0.5 * (diff == 0).double().sum()
    auc /= max(len(logits_labelled) * len(logits_unlabelled), 1)
    return {"disc_acc_heldout": acc.item(), "disc_auc_heldout": auc.item()}


class _EpochMeans:
    """Per-epoch running sums of loss tensors on device; one host sync per epoch."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, **losses: torch.Tensor) -> None:
        for k, v in losses.items():
            v = v.detach()
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
            self.counts[k] = self.counts.get(k, 0) + 1

    def means(self, where: str) -> dict[str, float]:
        out = {k: (s / self.counts[k]).item() for k, s in self.sums.items()}
        bad = [k for k, v in out.items() if not math.isfinite(v)]
        if bad:
            raise FloatingPointError(f"{where}: non-finite {', '.join(bad)} ({out}); lower the learning rates")
        return out


def _warm(module: torch.nn.Module, previous, attr: str) -> bool:
    """Load ``previous.<attr>``'s weights into ``module`` if the previous learner has a compatible one."""
    prev = getattr(previous, attr, None) if previous is not None else None
    if prev is None:
        return False
    try:
        module.load_state_dict(prev.state_dict())
    except RuntimeError:  # shapes changed (e.g. another width): start cold
        return False
    return True


class _DiscriminatorLearner(Learner):
    """Base for learners with a latent discriminator: the training loop, held-out scoring, sampling."""

    disc: Discriminator

    # subclasses: models that shape the discriminator's input, a VAE/M2 step, and the input itself
    def _generative_modules(self) -> list[torch.nn.Module]:
        raise NotImplementedError

    def _disc_input(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) -> (B, in_dim) discriminator input, no grad; caller sets eval mode."""
        raise NotImplementedError

    def _generative_step(self, xl: torch.Tensor, yl: torch.Tensor, xu: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _set_eval(self, flag: bool) -> None:
        for m in self._generative_modules():
            m.train(not flag)

    @torch.no_grad()
    def _disc_logits(self, x: torch.Tensor) -> torch.Tensor:
        self._set_eval(True)
        self.disc.eval()
        return batched(lambda b: self.disc(self._disc_input(b)), x)

    def _train_adversarial(
        self, data: TrainData, split: _Split, seed: int, lr_disc: float, progress: bool, on_epoch=None
    ) -> dict:
        """Run the iterations of the module docstring; returns last-epoch mean losses and held-out scores."""
        p = self.params
        opt_d = torch.optim.Adam(self.disc.parameters(), lr=lr_disc)
        n_lt, n_ut = len(split.l_train), len(split.u_train)
        lab = endless_batches(n_lt, p.batch_size, generator(seed, self.device))
        unl = endless_batches(n_ut, p.batch_size, generator(seed + 1, self.device))

        def draw():
            il, iu = split.l_train[next(lab)], split.u_train[next(unl)]
            return data.x_labelled[il], data.y_labelled[il], data.x_unlabelled[iu]

        iters = math.ceil(n_lt / p.batch_size)
        last: dict[str, float] = {}
        bar = progress_bar(range(p.epochs), desc=self.name, leave=False, disable=not progress)
        for epoch in bar:
            acc = _EpochMeans()
            for _ in range(iters):
                self._set_eval(False)
                self.disc.train()
                for _ in range(p.vae_steps):
                    xl, yl, xu = draw()
                    self.disc.requires_grad_(False)
                    acc.add(**self._generative_step(xl, yl, xu))
                    self.disc.requires_grad_(True)
                self._set_eval(True)
                for k in range(p.disc_steps):
                    if k > 0:
                        xl, yl, xu = draw()
                    with torch.no_grad():
                        f = self._disc_input(torch.cat([xl, xu]))  # (Bl+Bu, in_dim)
                    logits = self.disc(f)
                    loss_d = discriminator_loss(logits[: len(xl)], logits[len(xl) :])
                    opt_d.zero_grad(set_to_none=True)
                    loss_d.backward()
                    opt_d.step()
                    acc.add(disc_loss=loss_d)
            last = acc.means(f"{self.name} epoch {epoch}")
            if on_epoch is not None:
                last.update(on_epoch(epoch))
            bar.set_postfix({k: f"{v:.3g}" for k, v in last.items() if k in ("disc_loss", "val_acc")})
        self._set_eval(True)
        self.disc.eval()
        held = heldout_scores(
            self._disc_logits(data.x_labelled[split.l_held]), self._disc_logits(data.x_unlabelled[split.u_held])
        )
        return {**last, **held, "n_disc_heldout": len(split.l_held), "iterations_per_epoch": iters}

    @torch.no_grad()
    def labelled_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) P(labelled) = sigmoid(discriminator logit) of the learner's discriminator input."""
        return torch.sigmoid(self._disc_logits(x))


# ---------------------------------------------------------------------------------------------
# VAAL and TA-VAAL
# ---------------------------------------------------------------------------------------------


@register_learner
class VAALLearner(_DiscriminatorLearner):
    """VAAL: beta-VAE + latent discriminator for sampling; an independent task classifier.

    Per iteration, VAE loss = negative beta-ELBO of the labelled batch + that of the
    unlabelled batch (each a mean over its batch) + ``adversary_weight`` * L_adv;
    discriminator loss L_D on ``mu`` (labelled = 1). The task classifier is built and
    trained first, exactly as the ``classifier`` learner would be with the same seed.
    """

    name = "vaal"
    Params = VAALParams
    test_params = {**_TINY, "vae_width": 4, "vae_steps": 1, "classifier_epochs": 1}

    def _generative_modules(self):
        return [self.vae]

    def _side(self, x: torch.Tensor) -> torch.Tensor | None:
        """Extra per-image input to the decoder and discriminator: none in VAAL, (B, 1) predicted loss in TA-VAAL."""
        return None

    def _disc_features(self, mu: torch.Tensor, side: torch.Tensor | None) -> torch.Tensor:
        return mu if side is None else torch.cat([mu, side], dim=1)  # (B, d [+ 1])

    def _disc_input(self, x):
        return self._disc_features(self.vae.encode(x)[0], self._side(x))

    def _generative_step(self, xl, yl, xu):
        p, nl = self.params, len(xl)
        x = torch.cat([xl, xu])  # (Bl+Bu, 1, 28, 28)
        side = self._side(x)
        logits, _, mu, logvar = self.vae(x, None if side is None else torch.sigmoid(side))
        per_image = beta_elbo_loss(x, logits, mu, logvar, p.beta, p.likelihood, reduction="none")  # (Bl+Bu,)
        elbo = per_image[:nl].mean() + per_image[nl:].mean()
        loss, out = elbo, {"vae_loss": elbo}
        if p.adversary_weight > 0:
            d = self.disc(self._disc_features(mu, side))  # (Bl+Bu,) logits
            adv = vaal_adversarial_loss(d[:nl], d[nl:])
            loss = loss + p.adversary_weight * adv
            out["adv_loss"] = adv
        self.opt_vae.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_vae.step()
        return out

    def _fit_task_model(self, data: TrainData, split: _Split, seed: int, progress: bool) -> dict:
        p = self.params
        seed_everything(seed)
        self.classifier = Classifier(data.num_classes, p.classifier_size, p.dropout).to(self.device)
        m = fit_classifier(
            self.classifier, data.x_labelled, data.y_labelled, data.x_val, data.y_val,
            epochs=p.classifier_epochs, batch_size=p.batch_size, lr=p.classifier_lr,
            weight_decay=p.classifier_weight_decay, seed=seed + 1, patience=p.patience, progress=progress,
        )
        return {"task_loss": m["train_loss"], "val_acc": m["val_acc"], "best_epoch": m["best_epoch"]}

    def _build_generative(self, num_classes: int) -> None:
        p = self.params
        self.vae = VAE(p.latent_dim, p.vae_width).to(self.device)
        self.disc = Discriminator(p.latent_dim, p.disc_hidden).to(self.device)

    def fit(self, data: TrainData, seed: int, progress: bool = False) -> dict:
        p = self.params
        split = holdout_split(len(data.x_labelled), len(data.x_unlabelled), p.disc_holdout, generator(seed + 2, self.device))
        metrics = self._fit_task_model(data, split, seed, progress)
        seed_everything(seed + 3)
        self._build_generative(data.num_classes)
        warm = False
        if p.warm_start:
            warm = _warm(self.vae, self.previous, "vae") & _warm(self.disc, self.previous, "disc")
        self.opt_vae = torch.optim.Adam(self.vae.parameters(), lr=p.lr_vae)
        metrics.update(self._train_adversarial(data, split, seed + 4, p.lr_disc, progress))
        del self.opt_vae  # keep the pickled learner (warm starts) small
        metrics.update(
            vae_params=count_parameters(self.vae), disc_params=count_parameters(self.disc),
            classifier_params=count_parameters(self.classifier), warm_started=warm,
        )
        return metrics

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


def fit_classifier_with_loss_predictor(
    model: Classifier,
    ranker: LossPredictor,
    x: torch.Tensor,
    y: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    weight: float,
    margin: float,
    detach_after: float,
    patience: int | None = None,
    progress: bool = False,
) -> dict:
    """Yoo & Kweon's joint training: CE (mean) + ``weight`` * ranking loss, one Adam for both.

    After ``detach_after * epochs`` epochs the taps are detached, so the ranking
    loss stops shaping the classifier (Yoo & Kweon: epoch 120 of 200). Keeps the
    best validation epoch of classifier *and* predictor. Returns ``train_loss``
    (last-epoch mean CE), ``ranker_loss``, ``val_acc``, ``best_epoch``,
    ``ranker_val_spearman`` (rank correlation of predicted and true val losses).
    """
    gen = generator(seed, x.device)
    opt = torch.optim.Adam(list(model.parameters()) + list(ranker.parameters()), lr=lr, weight_decay=weight_decay)
    detach_epoch = math.ceil(detach_after * epochs)
    best_acc, best, since = -1.0, None, 0
    sums = {}
    bar = progress_bar(range(epochs), desc="classifier+ranker", leave=False, disable=not progress)
    for epoch in bar:
        model.train()
        ranker.train()
        acc = _EpochMeans()
        for idx in epoch_batches(len(x), batch_size, gen):
            if len(idx) < 2:
                continue
            logits, taps = classifier_taps(model, x[idx])
            ce = F.cross_entropy(logits, y[idx], reduction="none")  # (B,)
            if epoch >= detach_epoch:
                taps = [t.detach() for t in taps]
            rank = loss_prediction_loss(ranker(taps), ce, margin)
            loss = ce.mean() + weight * rank
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            acc.add(train_loss=ce.mean(), ranker_loss=rank)
        sums = acc.means(f"tavaal classifier epoch {epoch}")
        val = accuracy(model, x_val, y_val)
        if val > best_acc:
            best_acc, best, since = val, (copy.deepcopy(model.state_dict()), copy.deepcopy(ranker.state_dict()), epoch), 0
        else:
            since += 1
        bar.set_postfix(loss=f"{sums['train_loss']:.3f}", val=f"{val:.3f}")
        if patience is not None and since >= patience:
            break
    model.load_state_dict(best[0])
    ranker.load_state_dict(best[1])
    model.eval()
    ranker.eval()
    with torch.no_grad():
        true_l, pred_l = [], []
        for i in range(0, len(x_val), 2048):
            logits, taps = classifier_taps(model, x_val[i : i + 2048])
            true_l.append(F.cross_entropy(logits, y_val[i : i + 2048], reduction="none"))
            pred_l.append(ranker(taps))
        rt = torch.cat(true_l).argsort().argsort().double()
        rp = torch.cat(pred_l).argsort().argsort().double()
        rho = torch.corrcoef(torch.stack([rt, rp]))[0, 1].item() if len(rt) > 1 else 0.0
    return {**sums, "val_acc": best_acc, "best_epoch": best[2], "ranker_val_spearman": rho if math.isfinite(rho) else 0.0}


@register_learner
class TAVAALLearner(VAALLearner):
    """TA-VAAL (Kim et al., CVPR 2021, https://arxiv.org/abs/2002.04709).

    1. Task classifier + :class:`~alkit.models.LossPredictor` trained jointly with
       Yoo & Kweon's pairwise margin ranking loss, best validation epoch kept.
    2. With both frozen, a beta-VAE whose decoder input is ``[z, sigmoid(r)]`` and a
       discriminator on ``[mu, r]`` (r = predicted loss, as the official code feeds
       them) are trained as in VAAL. Sampling: least P(labelled) of ``[mu, r]``.
    """

    name = "tavaal"
    Params = TAVAALParams
    test_params = {**_TINY, "vae_width": 4, "classifier_epochs": 2, "ranker_interm": 8}

    @torch.no_grad()
    def _side(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1) predicted loss r of the frozen classifier + predictor (eval mode)."""
        self.classifier.eval()
        self.ranker.eval()
        return self.ranker(classifier_taps(self.classifier, x)[1]).unsqueeze(1)

    def _fit_task_model(self, data: TrainData, split: _Split, seed: int, progress: bool) -> dict:
        p = self.params
        seed_everything(seed)
        self.classifier = Classifier(data.num_classes, p.classifier_size, p.dropout).to(self.device)
        self.ranker = LossPredictor.for_classifier(self.classifier, p.ranker_interm).to(self.device)
        idx = split.l_train  # the held-out labelled points must stay unseen by anything feeding the discriminator
        m = fit_classifier_with_loss_predictor(
            self.classifier, self.ranker, data.x_labelled[idx], data.y_labelled[idx], data.x_val, data.y_val,
            epochs=p.classifier_epochs, batch_size=p.batch_size, lr=p.classifier_lr,
            weight_decay=p.classifier_weight_decay, seed=seed + 1, weight=p.ranker_weight,
            margin=p.ranker_margin, detach_after=p.ranker_detach_after, patience=p.patience, progress=progress,
        )
        return {
            "task_loss": m["train_loss"], "ranker_loss": m["ranker_loss"], "val_acc": m["val_acc"],
            "best_epoch": m["best_epoch"], "ranker_val_spearman": m["ranker_val_spearman"],
            "ranker_params": count_parameters(self.ranker),
        }

    def _build_generative(self, num_classes: int) -> None:
        p = self.params
        self.vae = VAE(p.latent_dim, p.vae_width, cond_dim=1).to(self.device)
        self.disc = Discriminator(p.latent_dim + 1, p.disc_hidden).to(self.device)


# ---------------------------------------------------------------------------------------------
# M2 family
# ---------------------------------------------------------------------------------------------


class _M2Base:
    """Shared M2 training: labelled bound + unlabelled bound + alpha * CE per step, best-val classifier kept."""

    adversarial = False  # add the VAAL adversarial loss to the M2 objective
    has_disc = False

    def _m2_terms(self, xl, yl, xu):
        """One M2 forward on a labelled and an unlabelled batch: (loss, terms, h, logits)."""
        p, nl = self.params, len(xl)
        x = torch.cat([xl, xu])  # (Bl+Bu, 1, 28, 28): one pass for shared BatchNorm statistics
        h = self.model.trunk(x)  # (Bl+Bu, F)
        logits = self.model.classify(x)  # (Bl+Bu, C)
        lab = m2_labelled_loss(self.model, xl, yl, beta=p.beta, likelihood=p.likelihood, h=h[:nl])
        unl = m2_unlabelled_loss(self.model, xu, beta=p.beta, likelihood=p.likelihood, h=h[nl:], logits=logits[nl:])
        ce = classification_loss(logits[:nl], yl)
        loss = lab + unl + self.alpha * ce
        return loss, {"m2_labelled_loss": lab, "m2_unlabelled_loss": unl, "task_loss": ce}, h, logits

    def _m2_step(self, xl, yl, xu):
        loss, out, h, logits = self._m2_terms(xl, yl, xu)
        if self.adversarial and self.params.adversary_weight > 0:
            y_hat = F.one_hot(logits.argmax(1), self.model.num_classes).to(h.dtype)  # (B, C)
            mu, _ = self.model.encode_h(h, y_hat)  # (B, d)
            # q(y|x) is detached: the adversarial loss shapes the encoder, not the task model
            d = self.disc(torch.cat([mu, logits.softmax(1).detach()], dim=1))
            adv = vaal_adversarial_loss(d[: len(xl)], d[len(xl) :])
            loss = loss + self.params.adversary_weight * adv
            out["adv_loss"] = adv
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        out["m2_loss"] = loss
        return out

    def _val_epoch(self, data: TrainData):
        """Per-epoch hook: validation accuracy of q(y|x); keep the best epoch's weights."""

        def hook(epoch: int) -> dict:
            val = accuracy(self.model.classifier, data.x_val, data.y_val)
            if val > self._best[0]:
                self._best = (val, copy.deepcopy(self.model.classifier.state_dict()), epoch)
            return {"val_acc_last": val}

        return hook

    def _fit_m2(self, data: TrainData, seed: int, progress: bool) -> dict:
        p = self.params
        n_l, n_u = len(data.x_labelled), len(data.x_unlabelled)
        frac = p.disc_holdout if self.has_disc else 0.0
        split = holdout_split(n_l, n_u, frac, generator(seed + 2, self.device))
        seed_everything(seed)
        self.model = M2(data.num_classes, p.latent_dim, p.width, p.hidden, p.classifier_size, p.dropout).to(self.device)
        if self.has_disc:
            self.disc = Discriminator(p.latent_dim + data.num_classes, p.disc_hidden).to(self.device)
        warm = False
        if p.warm_start:
            warm = _warm(self.model, self.previous, "model")
            if self.has_disc:
                warm &= _warm(self.disc, self.previous, "disc")
        n_lt, n_ut = len(split.l_train), len(split.u_train)
        self.alpha = p.alpha if p.alpha is not None else kingma_alpha(n_lt, n_lt + n_ut)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=p.lr)
        self._best = (-1.0, None, -1)
        hook = self._val_epoch(data)
        if self.has_disc:
            metrics = self._train_adversarial(data, split, seed + 4, p.lr_disc, progress, on_epoch=hook)
        else:
            metrics = self._train_plain(data, split, seed + 4, progress, hook)
        del self.opt
        val, state, epoch = self._best
        self.task = copy.deepcopy(self.model.classifier)
        self.task.load_state_dict(state)
        self.task.eval()
        self.model.eval()
        metrics.update(
            val_acc=val, best_epoch=epoch, alpha=self.alpha, warm_started=warm,
            m2_params=count_parameters(self.model), classifier_params=count_parameters(self.model.classifier),
        )
        if self.has_disc:
            metrics["disc_params"] = count_parameters(self.disc)
        return metrics

    def _train_plain(self, data: TrainData, split: _Split, seed: int, progress: bool, hook) -> dict:
        p = self.params
        lab = endless_batches(len(split.l_train), p.batch_size, generator(seed, self.device))
        unl = endless_batches(len(split.u_train), p.batch_size, generator(seed + 1, self.device))
        iters = math.ceil(len(split.l_train) / p.batch_size)
        last = {}
        bar = progress_bar(range(p.epochs), desc=self.name, leave=False, disable=not progress)
        for epoch in bar:
            self.model.train()
            acc = _EpochMeans()
            for _ in range(iters * p.vae_steps):
                il, iu = split.l_train[next(lab)], split.u_train[next(unl)]
                acc.add(**self._m2_step(data.x_labelled[il], data.y_labelled[il], data.x_unlabelled[iu]))
            last = acc.means(f"{self.name} epoch {epoch}")
            last.update(hook(epoch))
            bar.set_postfix(loss=f"{last['m2_loss']:.3g}", val=f"{last['val_acc_last']:.3f}")
        return {**last, "iterations_per_epoch": iters}

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C) softmax of the best-validation-epoch q(y|x)."""
        self.task.eval()
        return batched(lambda b: self.task(b).softmax(1), x)

    def mc_proba(self, x: torch.Tensor, samples: int) -> torch.Tensor:
        """(T, N, C) MC-dropout outputs of the best-validation q(y|x) (BALD on M2's classifier)."""
        return mc_dropout_proba(self.task, x, samples)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, d) mean of q(z | x, y = one-hot(argmax q(y|x))) under the final M2 (see :meth:`M2.latent`)."""
        self.model.eval()
        return batched(lambda b: self.model.latent(b)[0], x)


@register_learner
class M2Learner(_M2Base, Learner):
    """Plain M2 semi-supervised VAE: ``predict_proba`` and ``mc_proba`` (its classifier), ``embed`` (its latent)."""

    name = "m2"
    Params = M2Params
    test_params = {"epochs": 1, "batch_size": 32, "latent_dim": 4, "width": 4, "hidden": 8}

    def fit(self, data: TrainData, seed: int, progress: bool = False) -> dict:
        return self._fit_m2(data, seed, progress)


@register_learner
class M2DiscLearner(_M2Base, _DiscriminatorLearner):
    """M2 trained WITHOUT the adversarial term; a discriminator on ``[mu, q(y|x)]`` is trained alongside for sampling.

    The discriminator input treats labelled and unlabelled points alike: ``mu`` of
    q(z | x, argmax q(y|x)) and the soft q(y|x). Feeding the labelled points'
    one-hot labels would let it tell the sets apart by the form of y alone.
    """

    name = "m2_disc"
    Params = M2DiscParams
    has_disc = True
    test_params = {**_TINY, "width": 4, "hidden": 8}

    def _generative_modules(self):
        return [self.model]

    def _disc_input(self, x):
        mu, q = self.model.latent(x)
        return torch.cat([mu, q], dim=1)  # (B, d + C)

    def _generative_step(self, xl, yl, xu):
        return self._m2_step(xl, yl, xu)

    def fit(self, data: TrainData, seed: int, progress: bool = False) -> dict:
        return self._fit_m2(data, seed, progress)


@register_learner
class M2VAALLearner(M2DiscLearner):
    """M2-VAAL: M2 whose encoder also plays VAAL's adversarial game against the discriminator on ``[mu, q(y|x)]``."""

    name = "m2_vaal"
    Params = M2VAALParams
    adversarial = True
