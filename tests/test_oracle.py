"""The oracle session: it proposes what the loop would, keeps every answer on disk (drafts, rounds, the
proposed batch), resumes without retraining, refuses bad answers; and the labelling grid drives it."""
import json

import numpy as np
import pytest

from alkit import loop, oracle
from alkit.config import ConfigError
from alkit.loop import RunConfig
from alkit.oracle import LabelSession, true_labels
from alkit.own_data import from_arrays
from helpers import synthetic_images

CFG = dict(initial={"kind": "stratified", "n": 20}, budget=8, cycles=2, device="cpu", learner="classifier",
           learner_params={"iterations": 6, "batch_size": 16, "val_every": 3}, strategy="entropy", seed=3)


@pytest.fixture(scope="module")
def named_data():
    x, y = synthetic_images(200, seed=9)
    return from_arrays(x[:120].numpy(), y[:120].numpy(), val_images=x[120:160].numpy(), val_labels=y[120:160].numpy(),
                       test_images=x[160:].numpy(), test_labels=y[160:].numpy(), class_names=[f"c{i}" for i in range(10)])


def test_a_simulated_oracle_gives_exactly_the_records_of_the_loop(named_data, tmp_path):
    cfg = RunConfig(**CFG)
    ref = loop.run(cfg, data=named_data, progress=False)
    recs = LabelSession(cfg, tmp_path / "s", data=named_data).run(true_labels(named_data))
    for a, b in zip(ref, recs):
        assert (a["cycle"], a["n_labelled"], a["selected"], a["val_acc"], a["test_acc"]) == \
               (b["cycle"], b["n_labelled"], b["selected"], b["val_acc"], b["test_acc"])
        if a["selected"]:
            assert a["selected_class_counts"] == b["selected_class_counts"]  # the batch as the oracle labelled it
    assert len(recs) == len(ref) == 3


def test_answers_are_on_disk_at_once_and_reopening_resumes_without_training(named_data, tmp_path, monkeypatch):
    cfg = RunConfig(**CFG)
    s = LabelSession(cfg, tmp_path / "s", data=named_data)
    batch = s.proposal()["indices"]
    s.save_draft({batch[0]: 4, batch[1]: None})
    monkeypatch.setattr(oracle, "fit_and_evaluate", lambda *a, **k: pytest.fail("retrained on reopening"))
    again = LabelSession(cfg, tmp_path / "s", data=named_data)  # the notebook was closed and opened again
    assert again.proposal()["indices"] == batch and again.draft() == {batch[0]: 4, batch[1]: None}
    assert again.answer({batch[0]: 4, batch[1]: None, batch[2]: 7}) == 2
    saved = json.loads((tmp_path / "s" / "labels.json").read_text())
    assert [(a["index"], a["label"], a["round"]) for a in saved["answers"]] == [(i, v, 0) for i, v in
                                                                                sorted({batch[0]: 4, batch[1]: None, batch[2]: 7}.items())]
    assert not (tmp_path / "s" / "draft.json").exists() and not (tmp_path / "s" / "proposal.json").exists()
    third = LabelSession(cfg, tmp_path / "s", data=named_data)
    assert third.round == 1 and third.labels()[batch[0]] == 4 and third.labels()[batch[2]] == 7  # the person's label wins
    assert third.skipped() == {batch[1]} and batch[3] not in third.labels()  # left open: still unlabelled


def test_skipped_images_are_not_proposed_again_and_bad_answers_are_refused(named_data, tmp_path):
    s = LabelSession(RunConfig(**CFG), tmp_path / "s", data=named_data)
    batch = s.proposal()["indices"]
    outside = next(i for i in range(120) if i not in batch)
    with pytest.raises(ConfigError, match=f"pool index {outside}: not in this round's batch"):
        s.answer({outside: 1})
    with pytest.raises(ConfigError, match="12 is not a class 0 .. 9"):
        s.answer({batch[0]: 12})
    with pytest.raises(ConfigError, match="nothing to submit"):
        s.answer({})
    s.answer({i: None for i in batch})
    assert not set(batch) & set(s.proposal()["indices"])


def test_a_folder_dataset_starts_from_its_labelled_images(tmp_path):
    x, y = synthetic_images(80, seed=4)
    yy = y.numpy().copy()
    yy[40:] = -1  # half the pool unlabelled, as in a folder with unlabelled/
    d = from_arrays(x[:60].numpy(), yy[:60], test_images=x[60:].numpy(), test_labels=y[60:].numpy())
    s = LabelSession(RunConfig(**{**CFG, "initial": {"kind": "random", "n": 5}}), tmp_path / "s", data=d)
    known = set(np.flatnonzero(d.y_pool.numpy() >= 0).tolist())
    assert set(s.initial) == known and len(known) < 40  # every labelled pool image, not `initial`
    with pytest.raises(ConfigError, match="have no label in the dataset"):
        s.run(true_labels(d), rounds=1)


def test_keys_parse_to_answers():
    from alkit.label_widget import OPEN, parse_keys

    assert parse_keys("3-1.", 5, 10) == [3, None, 1, OPEN, OPEN]
    assert parse_keys("3 - 12 .", 4, 13) == [3, None, 12, OPEN]
    with pytest.raises(ValueError, match="'x' is not a class 0 .. 9"):
        parse_keys("3x", 4, 10)
    with pytest.raises(ValueError, match="5 answers typed for 4 images"):
        parse_keys("12345", 4, 10)


def test_png_tiles_decode_to_the_pixels():
    from PIL import Image
    import io

    from alkit.label_widget import png_bytes

    img = np.linspace(0, 1, 28 * 28).reshape(1, 28, 28)
    decoded = np.asarray(Image.open(io.BytesIO(png_bytes(img, scale=2))))
    assert decoded.shape == (56, 56) and decoded[0, 0] == 0 and decoded[-1, -1] == 255
    rgb = np.asarray(Image.open(io.BytesIO(png_bytes(np.stack([img[0]] * 3), scale=1))))
    assert rgb.shape == (28, 28, 3)


def test_the_grid_saves_clicks_as_drafts_and_submits_a_round(named_data, tmp_path):
    pytest.importorskip("ipywidgets")
    from alkit.label_widget import OPEN, SKIP, LabelGrid

    cfg = RunConfig(**CFG)
    grid = LabelGrid(LabelSession(cfg, tmp_path / "s", data=named_data))
    batch = list(grid.indices)
    assert len(grid.dropdowns) == 8 and "Round 0" in grid.widget.children[0].value
    grid.dropdowns[0].value = 5  # a click
    assert LabelSession(cfg, tmp_path / "s", data=named_data).draft() == {batch[0]: 5}
    grid.keys.value = "-2"  # keys: skip the first, class 2 for the second
    assert [d.value for d in grid.dropdowns[:3]] == [SKIP, 2, OPEN]
    grid.keys.value = "9x"
    assert "is not a class" in grid.message.value
    reopened = LabelGrid(LabelSession(cfg, tmp_path / "s", data=named_data))  # the draft comes back
    assert [d.value for d in reopened.dropdowns[:2]] == [SKIP, 2]
    reopened._submit()
    assert "Round 1" in reopened.widget.children[0].value and reopened.indices != batch
    assert LabelSession(cfg, tmp_path / "s", data=named_data).labels()[batch[1]] == 2
