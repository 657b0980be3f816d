"""Shared machinery of the generative learners (VAAL, TA-VAAL, the M2 family): the generative phase,
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

from dataclasses import dataclass

import torch

from ..losses import LIKELIHOODS, discriminator_loss
from ..models import Discriminator, check_classifier_size
from ..engine import Optim, Phase, Step, Validation
from ..engine.batches import tensor_batches
from ..engine.speed import OFF, Speed
from .base import Learner, TrainData, batched


@dataclass
class GenerativeParams:
    """Fields every generative learner shares (mixed in after :class:`~.schedule.ScheduleParams`)."""

    latent_dim: int = 32
    beta: float = 1.0
    likelihood: str = "bernoulli"  # or "gaussian" (fixed sigma 0.1); VAAL used MSE
    vae_steps: int = 2  # generative steps per iteration (VAAL's num_vae_steps)
    warm_start: bool = False  # generative model (and discriminator) start from the previous cycle's
    # iterations of the generative phase (VAE / M2 + discriminator), overriding the schedule's count: in a cycle
    # that starts cold (gen_iterations) and in one that continues the previous cycle's models (gen_iterations_warm,
    # needs warm_start). None = the schedule's iterations_per_cycle, as VAAL. The cpu profile's E0 / E1.
    gen_iterations: int | None = None
    gen_iterations_warm: int | None = None


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
    if hasattr(p, "classifier_size"):
        check_classifier_size("classifier_size", p.classifier_size)
    if getattr(p, "alpha", None) is not None and p.alpha < 0:
        raise ValueError(f"alpha must be >= 0 or None, got {p.alpha}")
    for name in ("gen_iterations", "gen_iterations_warm"):
        value = getattr(p, name, None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be an integer >= 1 or None (the schedule's count), got {value!r}")
    if getattr(p, "gen_iterations_warm", None) is not None and not p.warm_start:
        raise ValueError("gen_iterations_warm needs warm_start: true (it is the length of a warm-started cycle)")


def generative_iterations(p, n_labelled: int, n_unlabelled: int, warm: bool) -> int:
    """Iterations of a cycle's generative phase: ``gen_iterations_warm`` in a warm-started cycle, else
    ``gen_iterations``, else the schedule's ``iterations_per_cycle`` (VAAL: the task model's count)."""
    if warm and getattr(p, "gen_iterations_warm", None) is not None:
        return p.gen_iterations_warm
    if getattr(p, "gen_iterations", None) is not None:
        return p.gen_iterations
    return p.iterations_per_cycle(n_labelled, n_unlabelled)


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
    """Load the previous cycle's weights of ``attr`` into ``module`` if it has compatible ones.

    ``previous``: what the loop keeps of the previous cycle's learner, ``{"modules": {attr: state_dict}, ...}``
    (:func:`alkit.loop.module_states`; a resumed run loads it from ``learner.pt`` with ``weights_only=True``),
    or a fitted learner itself (its ``<attr>`` module)."""
    if previous is None:
        return False
    if isinstance(previous, dict):
        state = (previous.get("modules") or {}).get(attr)
    else:
        prev = getattr(previous, attr, None)
        state = prev.state_dict() if prev is not None else None
    if state is None:
        return False
    try:
        module.load_state_dict(state)
    except RuntimeError:  # shapes changed (e.g. another width): start cold
        return False
    return True


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


class GenerativeLearner(Learner):
    """Base of VAAL, TA-VAAL and the M2 family: the iteration of the module docstring as one engine phase."""

    has_disc = False
    disc: Discriminator
    #: the resolved :mod:`~alkit.engine.speed` options of the training steps; ``fit_phases`` sets them
    speed: Speed = OFF
    #: yields ``(idx, xb, yb)`` minibatches (:func:`~alkit.engine.batches.tensor_batches`); benchmarks swap it
    batch_source = staticmethod(tensor_batches)

    # subclasses: the modules the generative optimiser trains, the generative loss, the discriminator input
    def _generative_modules(self) -> dict[str, torch.nn.Module]:
        raise NotImplementedError

    def _side_modules(self) -> dict[str, torch.nn.Module]:
        """Frozen modules (eval mode, no optimiser) the losses read: TA-VAAL's task model and loss predictor."""
        return {}

    def _hp(self) -> dict:
        """The per-run numbers of the losses (:attr:`alkit.engine.Phase.hp`)."""
        return {"beta": self.params.beta}

    def _static_flags(self) -> dict:
        """The flags the losses branch on in Python (:attr:`alkit.engine.Phase.static`)."""
        return {}

    def _generative_loss(self, xl, yl, xu, wl, wu, hp) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Forward + loss of one generative step on a labelled and an unlabelled batch: ``(loss, terms)``.

        ``wl`` (Bl,), ``wu`` (Bu,): 1 for points in the adversarial game, 0 for held-out ones; ``hp``:
        :meth:`_hp` (Python numbers alone, 0-d tensors in a fused group). Tensors in, tensors out, no host
        sync: :meth:`Speed.step` may compile it, :func:`torch.vmap` fuses it.
        """
        raise NotImplementedError

    def _disc_loss(self, xl, xu, wl, wu):
        """Forward + loss of one discriminator step (generative modules in eval mode, no gradient into them)."""
        with torch.no_grad():
            f = self._disc_input(torch.cat([xl, xu]))  # (Bl+Bu, in_dim)
        logits = self.disc(f)  # (Bl+Bu,)
        loss = discriminator_loss(logits[: len(xl)], logits[len(xl) :], wl, wu)
        return loss, {"disc_loss": loss}

    def _disc_input(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) -> (B, in_dim) discriminator input, no grad; caller sets eval mode."""
        raise NotImplementedError

    def _set_eval(self, flag: bool) -> None:
        for m in self._generative_modules().values():
            m.train(not flag)

    def _generative_phase(self, data: TrainData, held: HeldOut | None, lr: float, seed: int,
                          validation: Validation | None = None, warm: bool = False) -> Phase:
        """The cycle's generative phase: ``vae_steps`` generative steps (Adam ``lr``, the discriminator
        frozen), then ``disc_steps`` discriminator steps (Adam ``lr_disc``, the first on the last batches),
        per iteration; labelled batches from ``seed``, unlabelled from ``seed + 1``. ``validation``: M2's
        check of q(y|x) and best state of the whole learner. ``warm``: the models continue the previous cycle's
        (:func:`generative_iterations`)."""
        p = self.params
        n_l, n_u = len(data.x_labelled), len(data.x_unlabelled)
        gen, side = self._generative_modules(), self._side_modules()
        names, side_names = tuple(gen), tuple(side)
        modules = {**gen, **side, **({"disc": self.disc} if self.has_disc else {})}
        self._static = self._static_flags()
        steps = [Step("generative", lambda b, hp, iteration: self._generative_loss(b["xl"], b["yl"], b["xu"], b["wl"],
                                                                                   b["wu"], hp),
                      "generative", draw="both", times=p.vae_steps, train=names, eval=side_names,
                      frozen=("disc",) if self.has_disc else ())]
        optimizers = {"generative": Optim("adam", names, {"lr": lr})}
        if self.has_disc:
            steps.append(Step("discriminator", lambda b, hp, iteration: self._disc_loss(b["xl"], b["xu"], b["wl"], b["wu"]),
                              "discriminator", draw="reuse", times=p.disc_steps, train=("disc",), eval=names + side_names))
            optimizers["discriminator"] = Optim("adam", ("disc",), {"lr": p.lr_disc})
        return Phase(
            name=self.name, modules=modules, optimizers=optimizers, steps=steps,
            iterations=generative_iterations(p, n_l, n_u, warm), batch_size=p.batch_size,
            labelled=(data.x_labelled, data.y_labelled,
                      held.l_weight if held is not None else torch.ones(n_l, device=self.device)),
            seed_labelled=seed,
            unlabelled=(data.x_unlabelled, held.u_weight if held is not None else torch.ones(n_u, device=self.device)),
            seed_unlabelled=seed + 1, validation=validation, x_val=data.x_val, y_val=data.y_val,
            validates_at=p.validates_at, hp=self._hp(), static=self._static, speed=self.speed,
            batch_source=self.batch_source, watch=f"{self.name} generative steps",
        )

    def _own_terms(self, last: dict) -> dict:
        """``last`` without the terms this run's own losses do not have (a fused group computes the union:
        an ``adversary_weight`` 0 run beside adversarial ones gets an ``adv_loss`` it never used)."""
        if not self._static_flags().get("adversarial", True):
            last = {k: v for k, v in last.items() if k != "adv_loss"}
        return last

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
