"""`python -m alkit run` (experiments without Jupyter), its errors, and the batch runner's bookkeeping."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alkit.batch import _merge_runtimes, notebooks_for

ROOT = Path(__file__).resolve().parent.parent
MICRO = ROOT / "tests" / "params" / "03_three_class_start.yaml"


def alkit(*args, cwd=ROOT):
    """``python -m alkit ARGS`` in a process of its own (what a user types)."""
    return subprocess.run([sys.executable, "-m", "alkit", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def alkit_here(capsys, *args):
    """``alkit ARGS`` through :func:`alkit.cli.main` in this process (what ``python -m alkit`` calls; its error
    paths end before any training, so a process of their own would only add torch's import, about 2 s each)."""
    from types import SimpleNamespace

    from alkit.cli import main

    capsys.readouterr()
    rc = main(list(args))
    out = capsys.readouterr()
    return SimpleNamespace(returncode=rc, stdout=out.out, stderr=out.err)


def write_yaml(path: Path, **changes) -> Path:
    values = yaml.safe_load(MICRO.read_text())
    for key, value in changes.items():
        if key == "base":  # merged; other keys are replaced
            values[key].update(value)
        else:
            values[key] = value
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.slow
def test_run_then_rerun_finds_every_run_finished(tmp_path, fmnist_dir, capsys):
    res = tmp_path / "results"
    first = alkit("run", str(MICRO), "--results-root", str(res), "--arms", "random", "vaal", "--quiet")
    assert first.returncode == 0, first.stderr[-2000:]
    records = sorted((res / "micro" / "03_three_class_start").rglob("records.jsonl"))
    assert [p.parent.parent.name for p in records] == ["random", "random", "vaal", "vaal"]  # 2 arms x 2 seeds
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in records}
    again = alkit_here(capsys, "run", str(MICRO), "--results-root", str(res), "--arms", "random", "vaal", "--quiet")
    assert again.returncode == 0
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in records} == before  # loaded, not recomputed
    meta = json.loads((records[0].parent / "config.json").read_text())
    assert meta["arm"] == "random" and meta["config"]["strategy"] == "random" and meta["git_commit"]


@pytest.mark.parametrize("changes, words", [
    ({"arms": {"a": {"learner": "classifier", "strategy": "leastconfidence"}}}, ["unknown strategy 'leastconfidence'", "least_confidence"]),
    ({"arms": {"a": {"learner": "classifier", "strategy": "vaal"}}}, ["needs ['labelled_prob']", "learners that fit"]),
    ({"base": {"budget": 5000}}, ["budget 5000", "the pool has only 300 points"]),
    ({"base": {"epochs": 3}}, ["epochs"]),  # a key RunConfig does not have (it belongs in learner_params)
    ({"seed": [0]}, ["seed"]),
], ids=["unknown-strategy", "capability", "budget", "bad-key", "bad-top-key"])
def test_bad_input_is_one_clear_line_and_exit_2(tmp_path, changes, words, capsys):
    path = write_yaml(tmp_path / "exp.yaml", **changes)
    out = alkit_here(capsys, "run", str(path), "--results-root", str(tmp_path / "r"), "--quiet")
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    for w in words:
        assert w in out.stderr
    assert not (tmp_path / "r").exists()  # nothing trained, nothing written


def test_unknown_arm_and_missing_file(capsys, monkeypatch):
    out = alkit("run", str(MICRO), "--arms", "nope")  # through python -m alkit: its exit status and stderr
    assert out.returncode == 2 and "no arm 'nope'" in out.stderr and "random" in out.stderr
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1
    monkeypatch.chdir(ROOT)
    out = alkit_here(capsys, "run", "params/smoke/99_missing.yaml")
    assert out.returncode == 2 and "99_missing.yaml" in out.stderr


def test_strategies_and_learners_are_listed(capsys):
    from alkit.strategies import STRATEGIES
    from alkit.learners import LEARNERS

    out = alkit_here(capsys, "strategies").stdout
    assert all(name in out for name in STRATEGIES)
    out = alkit_here(capsys, "learners").stdout
    assert all(name in out for name in LEARNERS)


def test_runtimes_merge_keeps_rows_of_notebooks_not_rerun_and_from_scratch_times(tmp_path):
    report = tmp_path / "runtimes.json"
    ok = dict(status="ok")
    _merge_runtimes(report, [{"notebook": "01.ipynb", "seconds": 100.0, "runs_trained": 2, **ok},
                             {"notebook": "02.ipynb", "seconds": 90.0, "runs_trained": 8, **ok}])
    rows = _merge_runtimes(report, [{"notebook": "02.ipynb", "seconds": 95.0, "runs_trained": 8, **ok}])
    assert rows == json.loads(report.read_text())
    assert [(r["notebook"], r["seconds"]) for r in rows] == [("01.ipynb", 100.0), ("02.ipynb", 95.0)]
    # a redraw (nothing trained) keeps the from-scratch row; a failure is always reported
    rows = _merge_runtimes(report, [{"notebook": "01.ipynb", "seconds": 7.0, "runs_trained": 0, **ok},
                                    {"notebook": "02.ipynb", "seconds": 3.0, "runs_trained": 0, "status": "failed"}])
    assert [(r["notebook"], r["seconds"], r["status"]) for r in rows] == [("01.ipynb", 100.0, "ok"), ("02.ipynb", 3.0, "failed")]


def test_batch_pairs_each_notebook_with_its_params_and_names_what_is_missing(tmp_path):
    pairs = notebooks_for("smoke")
    assert [nb.stem for nb, _ in pairs] == [p.stem for _, p in pairs]
    assert len(pairs) == len(list((ROOT / "notebooks").glob("[0-9]*.ipynb"))) >= 5  # every notebook, 06 included
    assert [nb.stem for nb, _ in notebooks_for("paper", only=["03"])] == ["03_three_class_start"]
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "01_x.ipynb").write_text("{}")
    with pytest.raises(FileNotFoundError, match="01_x.ipynb.*profile 'smoke'"):
        notebooks_for("smoke", root=tmp_path)


def test_own_strategy_from_a_file_runs_through_the_cli(tmp_path, fmnist_dir):
    import re

    readme = (ROOT / "README.md").read_text()
    snippet = next(b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "@register(" in b)
    (tmp_path / "my_strategies.py").write_text(snippet)
    path = write_yaml(tmp_path / "exp.yaml", seeds=[0], arms={"mine": {"learner": "classifier", "strategy": "variation_ratio"}})
    out = alkit("run", str(path), "--results-root", str(tmp_path / "r"), "--quiet")
    assert out.returncode == 2 and "unknown strategy 'variation_ratio'" in out.stderr  # not registered without --import
    out = alkit("run", str(path), "--import", str(tmp_path / "my_strategies.py"), "--results-root", str(tmp_path / "r"), "--quiet")
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(list((tmp_path / "r").rglob("records.jsonl"))) == 1
    out = alkit("run", str(path), "--import", "no_such_module_xyz")
    assert out.returncode == 2 and "no_such_module_xyz" in out.stderr


def _initial(classes):
    return {"kind": "classes", "n": 30, "classes": classes}


# issue 15's table: what a new user tried; each must be one error line naming the key, the value and what is
# allowed, exit 2, before any training and before any file is written
NEW_USER_ROWS = [
    ({"base": {"device": "cuda"}}, [], ["device: 'cuda'", "no CUDA GPU", "allowed on this machine: cpu, auto"]),
    ({}, ["--device", "cuda:7"], ["--device: 'cuda:7'", "allowed on this machine: cpu, auto"]),
    ({"base": {"device": "tpu"}}, [], ["device: unknown device 'tpu'", "allowed on this machine: cpu, auto"]),
    ({"base": {"device": "cpux"}}, [], ["device: unknown device 'cpux'", "allowed"]),
    ({"base!": [1, 2]}, [], ["base: [1, 2] is a list", "allowed: a mapping"]),
    ({"base": {"budget": "100"}}, [], ["budget: '100' is a string", "allowed: an integer"]),
    ({"base": {"initial": _initial([2, 4, 17])}}, [],
     ["initial.classes: [2, 4, 17]", "17 is not a class of fashion_mnist", "allowed: class numbers 0..9"]),
    ({}, ["--seeds", "-1"], ["--seeds: -1 is negative", "allowed: integers >= 0", "03_three_class_start: 0, 1"]),
    ({}, ["--seeds", "5"], ["--seeds: 5 not in the parameter files", "allowed: 03_three_class_start: 0, 1"]),
    ({}, ["--arms"], ["--arms: no arm named", "allowed", "m2_random", "vaal"]),
    ({}, ["--seeds"], ["--seeds: no seed named", "allowed"]),
    ({"seeds": [0, -1]}, [], ["seeds: [0, -1]", "-1 is negative", "allowed: integers >= 0"]),
    ({}, ["--gpus-per-run", "0.5"], ["--gpus-per-run: only with --executor ray", "allowed"]),
]


@pytest.mark.parametrize("changes, args, words", NEW_USER_ROWS, ids=[
    "yaml-cuda", "device-cuda7", "yaml-tpu", "yaml-cpux", "base-list", "budget-string", "class-17", "seed-negative",
    "seed-not-in-file", "arms-empty", "seeds-empty", "yaml-seed-negative", "ray-option-without-ray"])
def test_new_users_bad_inputs_are_one_error_line_exit_2_and_nothing_written(tmp_path, capsys, changes, args, words):
    import torch

    from alkit.cli import main

    if any("cuda" in str(v) for v in [*args, *changes.get("base", {}).values()]) and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    values = yaml.safe_load(MICRO.read_text())
    for key, value in changes.items():
        if key == "base":
            values["base"].update(value)
        else:
            values[key.rstrip("!")] = value
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(values))
    rc = main(["run", str(path), "--results-root", str(tmp_path / "r"), "--quiet", *args])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    assert not (tmp_path / "r").exists()  # nothing trained, nothing written


def test_a_run_folder_of_another_config_is_refused_before_training_and_names_the_flag(tmp_path, capsys):
    from alkit.cli import main

    run = tmp_path / "r" / "micro" / "03_three_class_start" / "random" / "seed0"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"config": {"budget": 99}}))
    rc = main(["run", str(MICRO), "--results-root", str(tmp_path / "r"), "--arms", "random", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "holds a run with a different config" in err
    assert "--force" in err and "force=True" not in err
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["config.json"]


def test_executor_ray_without_ray_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    from alkit.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    rc = main(["run", str(MICRO), "--results-root", str(tmp_path / "r"), "--executor", "ray", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "pip install 'alkit[cluster]'" in err
    assert not (tmp_path / "r").exists()


def test_alkit_command_is_installed_and_its_help_is_plain_text():
    exe = Path(sys.executable).with_name("alkit")
    assert exe.exists(), "the console script: pip install -e . (scripts/setup.sh does)"
    for args in ([], ["run"]):
        out = subprocess.run([str(exe), *args, "--help"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and out.stdout.startswith(f"usage: alkit {' '.join(args)}".rstrip())
        assert "``" not in out.stdout and ":func:" not in out.stdout
    assert "--executor {local,ray}" in out.stdout


@pytest.mark.parametrize("args, words", [
    (["--gpus-per-run", "0.25"], ["--gpus-per-run: 0.25", "no CUDA GPU for a local Ray", "allowed: 0 (CPU runs)"]),
    (["--device", "cuda"], ["--device: 'cuda' with --gpus-per-run 0", "allowed: --gpus-per-run > 0"]),
    (["--jobs", "2"], ["--jobs: not with --executor ray", "allowed: --gpus-per-run"]),
    (["--device", "tpu"], ["--device: unknown device 'tpu'", "allowed with --executor ray: cpu, auto, cuda"]),
], ids=["gpus-without-gpu", "cuda-without-gpus-per-run", "jobs", "tpu"])
def test_bad_ray_options_are_one_error_line_before_ray_starts(tmp_path, capsys, args, words):
    import torch

    from alkit.cli import main

    pytest.importorskip("ray")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    rc = main(["run", str(MICRO), "--results-root", str(tmp_path / "r"), "--executor", "ray", "--quiet", *args])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and all(w in err for w in words), err
    assert not (tmp_path / "r").exists()


def test_oracle_sessions_are_left_to_their_notebook(tmp_path, capsys):
    out = alkit_here(capsys, "run", str(ROOT / "params" / "smoke" / "06_label_your_own.yaml"), "--results-root",
                     str(tmp_path / "r"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "06_label_your_own: left out: oracle: simulated" in out.stderr and not (tmp_path / "r").exists()


def test_own_data_is_checked_before_any_training(tmp_path, capsys):
    import numpy as np

    bad = tmp_path / "mine.npz"
    np.savez(bad, train_images=np.zeros((4, 28, 28), np.uint8))
    path = write_yaml(tmp_path / "exp.yaml", base={"dataset": str(bad), "pool_size": None, "val_size": 10, "test_size": None})
    out = alkit_here(capsys, "run", str(path), "--results-root", str(tmp_path / "r"), "--quiet")
    assert out.returncode == 2 and out.stderr.startswith(f"error: {bad}: missing train_labels"), out.stderr[-2000:]
    assert not (tmp_path / "r").exists()
