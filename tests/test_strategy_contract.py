"""The contract every registered strategy must keep, checked through the real loop.

For each strategy: trained with the smallest learner that offers what it
needs, one acquisition of ``BUDGET`` points must be valid indices, unique,
not yet labelled, exactly ``BUDGET`` of them, identical under the same seed,
and identical when the labels of the unlabelled points are shuffled (a
strategy that peeks at them would change its picks).
"""
import numpy as np
import pytest

from alkit.learners import LEARNERS
from alkit.loop import RunConfig, derive_seed, run
from alkit.pool import InitialSet, initial_labelled
from alkit.strategies import STRATEGIES, get_strategy
from helpers import with_shuffled_unlabelled_labels

BUDGET = 25
PREFERENCE = ["classifier", "m2", "vaal", "m2_disc", "m2_vaal", "tavaal"]
#: run settings for strategies meant for small candidate sets, as a run would set them: ``candidates``
#: subsamples the 160 unlabelled points (seeded, label-blind), ``strategy_params`` keep the test fast
SMALL_CANDIDATE_SETS = {
    "network_norm": {"candidates": 30, "strategy_params": {"steps": 1, "batch_size": 4}},
}


def learner_for(strategy: str) -> str:
    needs = set(get_strategy(strategy).needs)
    names = PREFERENCE + sorted(set(LEARNERS) - set(PREFERENCE))
    for name in names:
        if name in LEARNERS and needs <= LEARNERS[name].capabilities():
            return name
    raise AssertionError(f"no registered learner offers {needs} for strategy {strategy!r}")


def config(strategy: str) -> RunConfig:
    learner = learner_for(strategy)
    return RunConfig(
        initial=InitialSet(kind="random", n=40), budget=BUDGET, cycles=1, learner=learner,
        learner_params=dict(LEARNERS[learner].test_params), strategy=strategy, seed=11, device="cpu", pool_size=200,  # the synthetic pool below
        **SMALL_CANDIDATE_SETS.get(strategy, {}),
    )


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_strategy_contract(strategy, data):
    cfg = config(strategy)
    initial = initial_labelled(data.y_pool.numpy(), cfg.initial, derive_seed(cfg.seed, "initial"))
    first = run(cfg, data=data, progress=False)[0]["selected"]
    sel = np.asarray(first)
    assert sel.shape == (BUDGET,)
    assert sel.min() >= 0 and sel.max() < len(data.y_pool)
    assert np.unique(sel).size == BUDGET
    assert not np.isin(sel, initial).any(), "selected an already labelled point"

    again = run(cfg, data=data, progress=False)[0]["selected"]
    assert again == first, "same seed, different selection"

    shuffled = with_shuffled_unlabelled_labels(data, initial)
    blind = run(cfg, data=shuffled, progress=False)[0]["selected"]
    assert blind == first, "selection changed when unlabelled labels were shuffled: the strategy sees them"


def test_registry_is_not_empty_and_baselines_present():
    assert {"random", "least_confidence", "margin", "entropy"} <= set(STRATEGIES)


def test_readme_example_strategy_registers_and_keeps_the_contract(data):
    """The 'Plug in your own strategy' snippet of the README works as printed."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    snippet = next(b for b in blocks if "@register(" in b)
    name = re.search(r'@register\("([^"]+)"', snippet).group(1)
    assert name not in STRATEGIES
    exec(snippet, {})
    try:
        assert name in STRATEGIES
        test_strategy_contract(name, data)
    finally:
        STRATEGIES.pop(name, None)
