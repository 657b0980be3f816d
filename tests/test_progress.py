"""Progress while training: one bar over the runs and one per run where someone watches; none in stored outputs."""
import io
import json
from pathlib import Path

import pytest

from alkit import experiment, progress
from alkit.experiment import Experiment

ROOT = Path(__file__).resolve().parent.parent


def test_bars_are_off_when_quiet_and_widgets_only_inside_a_notebook(monkeypatch):
    monkeypatch.setattr(progress, "interactive", lambda: True)
    monkeypatch.setenv("ALKIT_QUIET", "1")
    assert progress.progress_bar(range(3)).disable
    monkeypatch.delenv("ALKIT_QUIET")
    assert not progress.progress_bar(range(3), file=io.StringIO()).disable
    pytest.importorskip("ipywidgets")  # imports ipykernel: that alone must not switch to widgets
    assert not progress.in_kernel() and progress._tqdm_class().__module__ == "tqdm.std"
    monkeypatch.setattr(progress, "in_kernel", lambda: True)  # as inside a Jupyter kernel
    assert progress._tqdm_class().__module__ == "tqdm.notebook"


def test_run_experiment_shows_an_overall_bar_only_when_something_trains(monkeypatch, tmp_path, capsys):
    exp = Experiment(name="p", seeds=[0, 1], base={"pool_size": 200, "initial": {"n": 20}, "budget": 10, "cycles": 1},
                     arms={"random": {"learner": "classifier", "strategy": "random"}}, results_root=str(tmp_path))
    done = []
    monkeypatch.setattr(progress, "interactive", lambda: True)
    monkeypatch.setattr(experiment, "run_one", lambda exp, arm, seed, *a, **k: done.append((arm, seed)) or [{"test_acc": 0.5}])
    monkeypatch.setattr(experiment, "experiment_records", lambda exp, log=None: [])
    experiment.run_experiment(exp, log=None)
    err = capsys.readouterr().err
    assert done == [("random", 0), ("random", 1)] and "p: runs" in err and "2/2" in err, err
    monkeypatch.setattr(experiment, "is_finished", lambda exp, runs=None: True)
    experiment.run_experiment(exp, log=None)  # everything on disk: no bar at all
    assert "p: runs" not in capsys.readouterr().err


def test_committed_notebooks_hold_no_progress_bar_output():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            for out in cell.get("outputs", []):
                text = "".join(out.get("text", ""))
                assert "%|" not in text and "\r" not in text, (path.name, text[:200])
                assert "application/vnd.jupyter.widget-view+json" not in out.get("data", {}), path.name
