"""Shared machinery of the generative learners (VAAL, TA-VAAL, the M2 family): the iteration loop,
the discriminator, and the held-out stopping signal.

Iteration (VAAL's ``solver.py``): ``vae_steps`` generative (VAE or M2) steps,
each on a fresh labelled batch and a fresh unlabelled batch, then
``disc_steps`` discriminator steps (the first reuses the last batches). The
number of iterations per cycle is the learner's schedule
(:meth:`~alkit.learners.schedule.ScheduleParams.iterations_per_cycle`: VAAL's
``pool * epochs // batch_size``). Labelled and unlabelled batches go through
the generative model in one concatenated forward (VAAL uses two): BatchNorm
statistics are those of the mixed batch, so BatchNorm cannot hide a difference
between the sets from the discriminator. Discriminator inputs are computed in
eval mode, in training as at sampling time (VAAL's sampler leaves the VAE in
train mode; we do not).

Stopping signal. ``disc_holdout`` (10 %) of the labelled points and as many
random unlabelled points are held out of the *adversarial game only*: the
discriminator never trains on them and the adversarial term of the generative
loss ignores them (weight 0). Everything else uses every point: the task model
trains on every labelled point (an arm is credited with exactly the labels it
used), the VAE/M2 reconstruct every image. After training,
``disc_acc_heldout`` is the discriminator's balanced accuracy at calling the
held-out points labelled (logit > 0) or unlabelled, ``disc_auc_heldout`` its
ROC AUC: how well it tells labelled from unlabelled on points it never fitted.
Near 0.5 the sets are indistinguishable, the study's stopping rule. (The task
model has seen the held-out labelled points, as it has every labelled point
at sampling time, so the signal measures what sampling relies on.)
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ..losses import LIKELIHOODS, discriminator_loss
from ..models import Discriminator
from ..progress import progress_bar
from ..timebox import Watch
from ..train import RunningMeans, generator, tensor_batches
from .base import Learner, TrainData, batched
from .speed import OFF, Speed


@dataclass
class GenerativeParams:
    """Fields every generative learner shares (mixed in after :class:`~.schedule.ScheduleParams`)."""

    latent_dim: int = 32
    beta: float = 1.0
    likelihood: str = "bernoulli"  # or "gaussian" (fixed sigma 0.1); VAAL used MSE
    vae_steps: int = 2  # generative steps per iteration (VAAL's num_vae_steps)
    warm_start: bool = False  # generative model (and discriminator) start from the previous cycle's


@dataclass
class DiscriminatorParams:
    disc_hidden: int = 512
    disc_steps: int = 1  # discriminator steps per iteration (VAAL's num_adv_steps)
    lr_disc: float = 5e-4  # Adam, as VAAL
    disc_holdout: float = 0.1  # fraction of labelled (and as many unlabelled) held out of the adversarial game


def check_generative(p) -> None:
    """Value checks shared by the generative learners' parameter dataclasses."""
    if p.latent_dim < 1:
        raise ValueError(f"latent_dim must be >= 1, got {p.latent_dim}")
    if p.beta < 0:
        raise ValueError(f"beta must be >= 0, got {p.beta}")
    if p.likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {p.likelihood!r}")
    for name in ("vae_steps", "disc_steps", "vae_width", "width", "disc_hidden", "hidden"):
        if getattr(p, name, 1) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(p, name)}")
    for name in ("lr_vae", "lr_disc", "lr"):
        if getattr(p, name, 1.0) <= 0:
            raise ValueError(f"{name} must be > 0, got {getattr(p, name)}")
    if hasattr(p, "disc_holdout") and not 0.0 < p.disc_holdout <= 0.5:
        raise ValueError(f"disc_holdout must be in (0, 0.5], got {p.disc_holdout}")
    if getattr(p, "adversary_weight", 0.0) < 0:
        raise ValueError(f"adversary_weight must be >= 0, got {p.adversary_weight}")
    if getattr(p, "classifier_size", "small") not in ("small", "large"):
        raise ValueError(f"classifier_size must be 'small' or 'large', got {p.classifier_size!r}")
    if getattr(p, "alpha", None) is not None and p.alpha < 0:
        raise ValueError(f"alpha must be >= 0 or None, got {p.alpha}")


# ---------------------------------------------------------------------------------------------
# Held-out points of the adversarial game
# ---------------------------------------------------------------------------------------------


@dataclass
class HeldOut:
    """Which labelled / unlabelled points sit out the adversarial game (index tensors and 0/1 weights, on device)."""

    l_held: torch.Tensor  # (h,) indices into x_labelled
    u_held: torch.Tensor  # (h,) indices into x_unlabelled
    l_weight: torch.Tensor  # (L,) 1 = in the game, 0 = held out
    u_weight: torch.Tensor  # (U,)


def holdout_split(n_labelled: int, n_unlabelled: int, fraction: float, gen: torch.Generator) -> HeldOut:
    """Hold out ``round(fraction * L)`` (at least 1) labelled and as many random unlabelled points.

    ``fraction=0`` holds out nothing. The game keeps >= 2 points of each set.
    """
    n_h = max(1, round(fraction * n_labelled)) if fraction > 0 else 0
    if n_labelled - n_h < 2 or n_unlabelled - n_h < 2:
        raise ValueError(
            f"{n_labelled} labelled / {n_unlabelled} unlabelled points are too few to hold out {n_h} of each "
            "and keep 2 in the adversarial game; lower disc_holdout or label more points"
        )
    pl = torch.randperm(n_labelled, generator=gen, device=gen.device)[:n_h]
    pu = torch.randperm(n_unlabelled, generator=gen, device=gen.device)[:n_h]
    wl = torch.ones(n_labelled, device=gen.device)
    wu = torch.ones(n_unlabelled, device=gen.device)
    wl[pl] = 0.0
    wu[pu] = 0.0
    return HeldOut(pl, pu, wl, wu)


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


def warm_load(module: torch.nn.Module, previous, attr: str) -> bool:
    """Load ``previous.<attr>``'s weights into ``module`` if the previous learner has a compatible one."""
    prev = getattr(previous, attr, None) if previous is not None else None
    if prev is None:
        return False
    try:
        module.load_state_dict(prev.state_dict())
    except RuntimeError:  # shapes changed (e.g. another width): start cold
        return False
    return True


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


class GenerativeLearner(Learner):
    """Base of VAAL, TA-VAAL and the M2 family: the iteration loop of the module docstring."""

    has_disc = False
    disc: Discriminator
    #: the resolved :mod:`.speed` options of the training steps; ``fit`` sets them
    speed: Speed = OFF
    #: yields ``(idx, xb, yb)`` minibatches (:func:`~alkit.train.tensor_batches`); benchmarks swap it
    batch_source = staticmethod(tensor_batches)

    # subclasses: the modules that shape the discriminator input, the generative loss, the input itself
    def _generative_modules(self) -> list[torch.nn.Module]:
        raise NotImplementedError

    def _generative_loss(self, xl, yl, xu, wl, wu) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Forward + loss of one generative step on a labelled and an unlabelled batch: ``(loss, terms)``.

        ``wl`` (Bl,), ``wu`` (Bu,): 1 for points in the adversarial game, 0 for held-out ones.
        Tensors in, tensors out, no host sync: :meth:`Speed.step` may compile it.
        """
        raise NotImplementedError

    def _generative_step(self, xl, yl, xu, wl, wu) -> dict[str, torch.Tensor]:
        """One optimiser step of the generative model (inside :meth:`_train_loop`); returns the loss terms."""
        loss, terms = self._gen_loss(xl, yl, xu, wl, wu)
        self._gen_opt.zero_grad(set_to_none=True)
        loss.backward()
        self._gen_opt.step()
        return terms

    def _disc_loss(self, xl, xu, wl, wu) -> torch.Tensor:
        """Forward + loss of one discriminator step (generative modules in eval mode, no gradient into them)."""
        with torch.no_grad():
            f = self._disc_input(torch.cat([xl, xu]))  # (Bl+Bu, in_dim)
        logits = self.disc(f)  # (Bl+Bu,)
        return discriminator_loss(logits[: len(xl)], logits[len(xl) :], wl, wu)

    def _disc_input(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) -> (B, in_dim) discriminator input, no grad; caller sets eval mode."""
        raise NotImplementedError

    def _set_eval(self, flag: bool) -> None:
        for m in self._generative_modules():
            m.train(not flag)

    def _train_loop(
        self, data: TrainData, held: HeldOut | None, opt: torch.optim.Optimizer, seed: int, progress: bool,
        on_check=None,
    ) -> dict:
        """Run the cycle's iterations; returns the mean losses since the last check and ``iterations``.

        ``opt`` optimises the generative model. ``on_check(iteration) -> (metrics, stop)`` runs at
        every validation point of the schedule (M2: validate q(y|x), keep the best state; ``stop``
        ends training early). Steps run through :meth:`Speed.step` (autocast, compilation).
        """
        p = self.params
        n_l, n_u = len(data.x_labelled), len(data.x_unlabelled)
        iterations = p.iterations_per_cycle(n_l, n_u)
        opt_d = self.speed.adam(self.disc.parameters(), lr=p.lr_disc) if self.has_disc else None
        self._gen_opt, self._gen_loss = opt, self.speed.step(self._generative_loss)
        disc_loss = self.speed.step(self._disc_loss)
        lab = self.batch_source(data.x_labelled, data.y_labelled, p.batch_size, generator(seed, self.device))
        unl = self.batch_source(data.x_unlabelled, None, p.batch_size, generator(seed + 1, self.device))
        wl_all = held.l_weight if held is not None else torch.ones(n_l, device=self.device)
        wu_all = held.u_weight if held is not None else torch.ones(n_u, device=self.device)

        def draw():
            (il, xl, yl), (iu, xu, _) = next(lab), next(unl)
            return xl, yl, xu, wl_all[il], wu_all[iu]

        means, last = RunningMeans(), {}
        bar = progress_bar(range(iterations), desc=self.name, leave=False, disable=not progress, mininterval=1.0)
        watch = Watch(iterations, f"{self.name} generative steps")  # the cycle's time box (alkit.timebox)
        it = -1
        for it in bar:
            self._set_eval(False)
            for _ in range(p.vae_steps):
                batch = draw()
                if self.has_disc:
                    self.disc.requires_grad_(False)
                means.add(**self._generative_step(*batch))
                if self.has_disc:
                    self.disc.requires_grad_(True)
            if self.has_disc:
                self._set_eval(True)
                self.disc.train()
                for k in range(p.disc_steps):
                    if k > 0:
                        batch = draw()
                    xl, _, xu, wl, wu = batch
                    loss_d = disc_loss(xl, xu, wl, wu)
                    opt_d.zero_grad(set_to_none=True)
                    loss_d.backward()
                    opt_d.step()
                    means.add(disc_loss=loss_d)
            if p.validates_at(it, iterations):
                last = means.means(f"{self.name} iteration {it}")
                means = RunningMeans()
                stop = False
                if on_check is not None:
                    extra, stop = on_check(it)
                    last.update(extra)
                bar.set_postfix({k: f"{v:.3g}" for k, v in last.items() if k in ("disc_loss", "val_acc_last")})
                if stop:
                    break
            watch.tick(it)
        del self._gen_opt, self._gen_loss  # the pickled learner keeps neither
        self._set_eval(True)
        if self.has_disc:
            self.disc.eval()
        return {**last, "iterations": it + 1}

    def _heldout_metrics(self, data: TrainData, held: HeldOut) -> dict:
        scores = heldout_scores(
            self._disc_logits(data.x_labelled[held.l_held]), self._disc_logits(data.x_unlabelled[held.u_held])
        )
        return {**scores, "n_disc_heldout": len(held.l_held)}

    @torch.no_grad()
    def _disc_logits(self, x: torch.Tensor) -> torch.Tensor:
        self._set_eval(True)
        self.disc.eval()
        return batched(lambda b: self.disc(self._disc_input(b)), x)


class DiscriminatorLearner(GenerativeLearner):
    """A generative learner with a latent discriminator: adds the ``labelled_prob`` capability."""

    has_disc = True

    @torch.no_grad()
    def labelled_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) P(labelled) = sigmoid(discriminator logit) of the learner's discriminator input."""
        return torch.sigmoid(self._disc_logits(x))


class BestState:
    """The best validated state of several modules (deep copies), restored together."""

    def __init__(self):
        self.acc, self.iteration, self.states = -1.0, -1, None
        self.since = 0

    def offer(self, acc: float, iteration: int, modules: list[torch.nn.Module]) -> None:
        if acc > self.acc:
            self.acc, self.iteration, self.since = acc, iteration, 0
            self.states = [copy.deepcopy(m.state_dict()) for m in modules]
        else:
            self.since += 1

    def restore(self, modules: list[torch.nn.Module]) -> None:
        for m, s in zip(modules, self.states):
            m.load_state_dict(s)
