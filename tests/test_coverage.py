"""ProbCover's latent coverage, recorded per cycle for the 'why' figure of notebook 05 (issue 29)."""
import numpy as np
import pytest
import torch

from alkit.config import ConfigError
from alkit.diagnostics import latent_coverage
from alkit.loop import RunConfig, run, validate
from alkit.pool import InitialSet
from alkit.strategies import Context
from alkit.strategies import lowbudget as lb
from helpers import synthetic_data

FAST = {"iterations": 4, "batch_size": 32, "val_every": 2}


class Planted:
    """A learner whose latent code is the image's first pixel row (so a test can plant it)."""

    def embed(self, x):
        return x[:, 0, 0, :2]

    def predict_proba(self, x):
        return torch.full((len(x), 3), 1 / 3)


def planted_ctx(z_lab, z):
    def img(zz):
        x = torch.zeros(len(zz), 1, 28, 28)
        x[:, 0, 0, :2] = zz
        return x

    return Context(learner=Planted(), x_unlabelled=img(z), x_labelled=img(z_lab), y_labelled=torch.zeros(len(z_lab), dtype=torch.long),
                   unlabelled_indices=np.arange(len(z)), labelled_indices=np.arange(len(z_lab)) + 1000, num_classes=3, seed=0)


def test_latent_coverage_counts_the_blobs_a_labelled_point_sits_in():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    sizes = [20, 40, 25]
    z = torch.cat([c + 0.2 * torch.randn(n, 2, generator=g) for c, n in zip(centres, sizes)])
    # labelled: one point of blob 0; the batch: one point of blob 2
    ctx = planted_ctx(z[:1], z[1:])
    cov = latent_coverage(ctx, [20 + 40 - 1 + 3], purity=0.95)  # a candidate of blob 2 (positions skip the labelled row)
    assert 1.0 < cov["delta"] < 10.5  # pure balls reach up to the gap between blobs
    assert cov["targets"] == 85
    assert cov["labelled"] == pytest.approx(20 / 85)
    assert cov["after_selection"] == pytest.approx(45 / 85)
    # the delta is ProbCover's own: same streams, same targets
    _, info = lb.probcover_select(ctx.labelled_latent(), ctx.latent(), 1, 3, ctx.rng, lb.ProbCoverParams())
    assert info["delta"] == cov["delta"] and info["coverage_before"] == cov["labelled"]


def cfg(**kw):
    base = dict(initial=InitialSet("random", 30), budget=20, cycles=2, learner="classifier", learner_params=FAST,
                strategy="random", seed=3, device="cpu", pool_size=200)
    base.update(kw)
    return RunConfig(**base)


def test_loop_records_coverage_only_when_asked_and_changes_nothing_else():
    data = synthetic_data(pool=200)
    plain = run(cfg(), data=data, progress=False)
    with_cov = run(cfg(coverage_purity=0.95), data=data, progress=False)
    assert all("coverage" not in r for r in plain)
    assert [("coverage" in r) for r in with_cov] == [True, True, False]  # no selection after the last cycle
    for r in with_cov[:-1]:
        c = r["coverage"]
        assert 0 <= c["labelled"] <= c["after_selection"] <= 1 and c["delta"] > 0 and c["targets"] == 200
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("seconds", "coverage")} for r in rs]  # noqa: E731
    assert strip(plain) == strip(with_cov), "recording coverage must not change training or selection"


@pytest.mark.parametrize("value", [0.0, 1.5, True])
def test_bad_coverage_purity_is_one_clear_error(value):
    with pytest.raises(ConfigError, match="coverage_purity"):
        validate(cfg(coverage_purity=value))


def test_configs_without_the_key_stay_resumable():
    """A default of None reads the same as a config.json written before the key existed."""
    from alkit.config import to_dict

    assert to_dict(cfg())["coverage_purity"] is None
