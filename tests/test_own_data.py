"""Your own data: MedMNIST-style .npz, image folders and arrays load into the same Data, every learner and
strategy runs on them through a parameter file, and bad data gets one clear error. The tests write their
own datasets (real Fashion-MNIST images saved as PNG folders, a synthetic RGB .npz), no downloads."""
import json
import re

import numpy as np
import pytest
import torch
import yaml

from alkit.data import DataError
from alkit.experiment import load_experiment, run_experiment
from alkit.label_widget import png_bytes
from alkit.learners import LEARNERS
from alkit.own_data import from_arrays, is_own_dataset, load_folder, load_npz, to_images
from alkit.strategies import STRATEGIES
from helpers import rgb_bands, synthetic_images

from test_strategy_contract import learner_for

#: small candidate sets and few MC samples keep the per-strategy runs short
OWN_SETTINGS = {"network_norm": {"candidates": 10, "strategy_params": {"steps": 1, "batch_size": 4}},
                "bald": {"strategy_params": {"samples": 3}}}


@pytest.fixture(scope="module")
def rgb_npz(tmp_path_factory):
    """A 32 x 32 RGB .npz in MedMNIST's layout (labels (N, 1)), 10 planted classes."""
    x, y = synthetic_images(200, seed=5)
    path = tmp_path_factory.mktemp("npz") / "bandmnist.npz"
    parts = {"train": slice(0, 120), "val": slice(120, 160), "test": slice(160, 200)}
    np.savez(path, **{f"{k}_images": rgb_bands(x[s]) for k, s in parts.items()},
             **{f"{k}_labels": y[s].numpy()[:, None] for k, s in parts.items()})
    return path


@pytest.fixture(scope="module")
def png_folder(tmp_path_factory, fmnist_small):
    """A few hundred real Fashion-MNIST images as PNG files: 4 class folders of 30, 60 unlabelled, a test/ folder."""
    root = tmp_path_factory.mktemp("own") / "clothes"
    x, y = fmnist_small.x_pool.numpy(), fmnist_small.y_pool.numpy()
    names = {0: "t-shirt", 1: "trouser", 7: "sneaker", 9: "boot"}
    for c, name in names.items():
        idx = np.flatnonzero(y == c)
        for part, sel in ((root / name, idx[:30]), (root / "test" / name, idx[30:40])):
            part.mkdir(parents=True, exist_ok=True)
            for i in sel:
                (part / f"{i}.png").write_bytes(png_bytes(x[i], scale=1))
    (root / "unlabelled").mkdir()
    for i in np.flatnonzero(np.isin(y, list(names)))[-60:]:
        (root / "unlabelled" / f"u{i}.png").write_bytes(png_bytes(x[i], scale=1))
    return root, names


def test_npz_in_medmnist_layout_loads_as_rgb_28x28(rgb_npz):
    d = load_npz(rgb_npz)
    assert d.x_pool.shape == (120, 3, 28, 28) and d.x_val.shape == (40, 3, 28, 28) and d.x_test.shape[0] == 40
    assert d.num_classes == 10 and d.class_names[:2] == ("0", "1") and d.y_pool.dtype == torch.int64
    assert 0 <= float(d.x_pool.min()) and float(d.x_pool.max()) <= 1
    raw = np.load(rgb_npz)
    assert torch.equal(d.y_val, torch.as_tensor(raw["val_labels"][:, 0]))  # order and labels kept
    assert is_own_dataset(str(rgb_npz)) and not is_own_dataset("fashion_mnist")


def test_image_folders_load_with_unknown_labels_a_stratified_validation_and_their_test(png_folder):
    root, names = png_folder
    d = load_folder(root)
    assert d.class_names == ("boot", "sneaker", "t-shirt", "trouser") and d.x_pool.shape[1:] == (1, 28, 28)
    assert int((d.y_pool == -1).sum()) == 60 and len(d.y_pool) + len(d.y_val) == 4 * 30 + 60
    assert torch.bincount(d.y_val).tolist() == [6, 6, 6, 6]  # 20 % of each class validates
    assert len(d.y_test) == 40 and "test = validation" not in d.name
    # the PNGs hold the very pixels of the dataset (up to 8-bit rounding)
    boot = sorted((root / "boot").iterdir())[0]
    from PIL import Image

    assert np.asarray(Image.open(boot)).shape == (28, 28)


def test_a_folder_without_test_images_tests_on_validation_and_says_so(png_folder, tmp_path):
    import shutil

    root, _ = png_folder
    copy = tmp_path / "notest"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("test"))
    d = load_folder(copy)
    assert d.name == "notest (test = validation)" and torch.equal(d.y_test, d.y_val)


def test_arrays_of_any_layout_and_size_become_c_x_28_x_28():
    x, y = synthetic_images(60, seed=1)
    chw = torch.nn.functional.interpolate(x, size=(56, 56)).repeat(1, 3, 1, 1).numpy()  # (N, 3, 56, 56) floats
    d = from_arrays(chw[:40], y[:40].numpy(), test_images=chw[40:], test_labels=y[40:].numpy())
    assert d.x_pool.shape[1:] == (3, 28, 28) and d.name == "arrays" and len(d.y_test) == 20
    assert len(d.y_val) > 0 and len(d.y_pool) + len(d.y_val) == 40  # validation carved from the labelled pool
    assert from_arrays(chw[:40], y[:40].numpy()).name == "arrays (test = validation)"
    assert torch.allclose(to_images(x[:3, 0].numpy()), x[:3], atol=1e-6)  # (N, H, W) at 28 x 28: unchanged


@pytest.mark.parametrize("case, message", [
    ("channels", "same number of channels"),
    ("range", "pool: label 10 out of range (allowed -1 .. 9; -1 = unknown)"),
    ("empty", "class '10' has no labelled image"),
    ("multilabel", "multi-label data is not supported"),
    ("shape", "is not (N, H, W), (N, H, W, C) or (N, C, H, W)"),
    ("floats", "float pixels must lie in [0, 1]"),
    ("count", "9 labels for 10 images"),
])
def test_inconsistent_data_gets_one_clear_error(case, message):
    x, y = synthetic_images(30, seed=2)
    g, yy = (x[:, 0].numpy() * 255).astype(np.uint8), y.numpy()
    kw = dict(test_images=g[20:], test_labels=yy[20:])
    with pytest.raises(DataError, match=re.escape(message)):
        if case == "channels":
            from_arrays(g[:20], yy[:20], test_images=np.repeat(g[20:, ..., None], 3, axis=3), test_labels=yy[20:])
        elif case == "range":
            from_arrays(g[:20], np.where(np.arange(20) == 3, 10, yy[:20]), class_names=[str(i) for i in range(10)], **kw)
        elif case == "empty":
            from_arrays(g[:20], yy[:20], class_names=[str(i) for i in range(11)], **kw)
        elif case == "multilabel":
            from_arrays(g[:20], np.stack([yy[:20], yy[:20]], 1), **kw)
        elif case == "shape":
            from_arrays(g[:20, None, None], yy[:20], **kw)  # (N, 1, 1, H, W)
        elif case == "floats":
            from_arrays(g[:20].astype(np.float32), yy[:20], **kw)
        elif case == "count":
            from_arrays(g[:10], yy[:9], **kw)


def test_npz_and_folder_problems_name_the_file(tmp_path, rgb_npz):
    bad = tmp_path / "bad.npz"
    np.savez(bad, train_images=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError, match="missing train_labels, val_images"):
        load_npz(bad)
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(DataError, match=r"not an .npz file: it starts with b.not "):
        load_npz(tmp_path / "junk.npz")
    folder = tmp_path / "f"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    (folder / "a" / "1.png").write_bytes(png_bytes(np.zeros((28, 28)), 1))
    with pytest.raises(DataError, match="class 'b' has no images"):
        load_folder(folder)
    (folder / "b" / "2.png").write_bytes(png_bytes(np.zeros((30, 30)), 1))
    with pytest.raises(DataError, match="images of different sizes"):
        load_folder(folder)


def _experiment_file(tmp_path, dataset, learner, strategy, extra=None) -> "Path":
    params = dict(LEARNERS[learner].test_params)
    spec = {"name": "own", "profile": "test", "seeds": [0],
            "base": {"dataset": str(dataset), "initial": {"kind": "random", "n": 20}, "budget": 8, "cycles": 1,
                     "device": "cpu", "learner": learner, "learner_params": params, **(extra or {})},
            "arms": {strategy: {"strategy": strategy, **OWN_SETTINGS.get(strategy, {})}}}
    path = tmp_path / f"{learner}-{strategy}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("learner", sorted(LEARNERS))
def test_every_learner_runs_on_an_rgb_npz_through_a_parameter_file(learner, rgb_npz, tmp_path):
    exp = load_experiment(_experiment_file(tmp_path, rgb_npz, learner, "random"), results_root=str(tmp_path / "r"))
    rows = run_experiment(exp, progress=False, log=None)
    assert [r["n_labelled"] for r in rows] == [20, 28] and all(0 <= r["test_acc"] <= 1 for r in rows)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_runs_on_an_rgb_npz(strategy, rgb_npz, tmp_path):
    learner = learner_for(strategy)
    exp = load_experiment(_experiment_file(tmp_path, rgb_npz, learner, strategy), results_root=str(tmp_path / "r"))
    rows = run_experiment(exp, progress=False, log=None)
    sel = rows[0]["selected"]
    assert len(sel) == len(set(sel)) == 8 and max(sel) < 120


def test_a_simulated_run_refuses_images_without_labels_before_writing_anything(png_folder, tmp_path):
    from alkit.pool import BudgetError

    root, _ = png_folder
    exp = load_experiment(_experiment_file(tmp_path, root, "classifier", "random"), results_root=str(tmp_path / "r"))
    with pytest.raises(BudgetError, match="60 pool images without a label"):
        run_experiment(exp, progress=False, log=None)
    assert not (tmp_path / "r").exists()


def test_records_of_own_data_keep_its_class_count(png_folder, tmp_path, rgb_npz):
    exp = load_experiment(_experiment_file(tmp_path, rgb_npz, "classifier", "entropy"), results_root=str(tmp_path / "r"))
    rec = run_experiment(exp, progress=False, log=None)[0]
    assert len(rec["labelled_class_counts"]) == 10 and np.asarray(rec["test_confusion"]).shape == (10, 10)
    saved = json.loads((exp.run_dir("entropy", 0) / "config.json").read_text())
    assert saved["config"]["dataset"] == str(rgb_npz)


def test_the_committed_rgb_npz_is_the_one_the_helper_writes(tmp_path):
    from pathlib import Path

    from helpers import write_band_npz

    write_band_npz(tmp_path / "again.npz")
    committed = np.load(Path(__file__).parent / "data" / "bandmnist_rgb.npz")
    again = np.load(tmp_path / "again.npz")
    assert sorted(committed.files) == sorted(again.files)
    assert all(np.array_equal(committed[k], again[k]) for k in committed.files)
    assert committed["train_images"].shape == (120, 32, 32, 3)


@pytest.mark.parametrize("classes", [3, 15])
def test_any_number_of_classes_runs_a_strategy_a_learner_and_the_notebook_analysis(classes, tmp_path):
    """Own data of 3 and of 15 classes: M2 + ProbCover from a stratified start, its latent coverage recorded
    (notebook 05's path), and the records' tables and figures sized by the data's classes, not by ten."""
    from alkit import analysis, plots
    from alkit.analysis import lowbudget

    x, y = synthetic_images(240, seed=7, num_classes=classes)
    g = (x[:, 0].numpy() * 255).astype(np.uint8)  # (N, 28, 28) grey
    path = tmp_path / f"k{classes}.npz"
    parts = {"train": slice(0, 150), "val": slice(150, 195), "test": slice(195, 240)}
    np.savez(path, **{f"{k}_images": g[s] for k, s in parts.items()}, **{f"{k}_labels": y[s].numpy() for k, s in parts.items()})
    extra = {"initial": {"kind": "stratified", "n": 2 * classes}, "coverage_purity": 0.95}
    exp = load_experiment(_experiment_file(tmp_path, path, "m2", "probcover", extra), results_root=str(tmp_path / "r"))
    rows = run_experiment(exp, progress=False, log=None)
    first = rows[0]
    assert first["labelled_class_counts"] == [2] * classes  # stratified: two of every class
    assert np.asarray(first["test_confusion"]).shape == (classes, classes)
    assert len(first["selected_class_counts"]) == classes == len(first["pred_class_share_unlabelled"])
    assert analysis.count_classes(rows) == classes
    table = analysis.class_counts_by_cycle(rows, "probcover")
    assert [name for name, _ in table] == ["initial set", "batch 1"] and all(len(c) == classes for _, c in table)
    bal = lowbudget.balance_rows(rows)
    assert {r["classes"] for r in bal} == {classes}
    assert any(f"nats of ln {classes} = {np.log(classes):.3f}" in line
               for line in lowbudget.describe_coverage(rows, ["probcover"], baseline="probcover"))
    fig = plots.coverage_balance(lowbudget.coverage_rows(rows), bal, order=["probcover"], title="t")
    assert [a.text for a in fig.layout.annotations if a.text.startswith("balanced")] == [f"balanced: ln {classes}"]
    names = [str(c) for c in range(classes)]
    heat = plots.class_histograms(rows, arms=["probcover"], class_names=names).data[0]
    assert list(heat.y) == names and np.asarray(heat.z).shape == (classes, 2)  # classes down, batches across
    # notebooks 03/04's unseen-class path: class 0 seen, the rest unseen, counted and named in the prose
    unseen = analysis.unseen_classes(rows, [0])
    assert unseen == list(range(1, classes))
    line, = analysis.describe_unseen_share(analysis.class_coverage(rows, unseen), ["probcover"], len(unseen))
    assert f"belong to the {analysis.number_word(classes - 1)} unseen classes" in line
    assert analysis.number_word(classes - 1) == {3: "two", 15: "14"}[classes]
