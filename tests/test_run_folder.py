"""The run folder's layout is owned by ``alkit.results``: every file a run writes lies where its path function
says, and the step that derives figures' files (``alkit.derive``) finds them there."""
from __future__ import annotations

from pathlib import Path

from alkit import derive, results
from alkit.experiment import Experiment
from alkit.loop import RunConfig, run
from alkit.pool import InitialSet
from helpers import synthetic_data


def test_paths_spell_the_documented_layout(tmp_path):
    exp = Experiment(name="02_x", profile="smoke", arms={"vaal": {}}, results_root=str(tmp_path))
    run_dir = exp.run_dir("vaal", 3)
    assert exp.folder == tmp_path / "smoke" / "02_x" == results.experiment_dir(tmp_path, "smoke", "02_x")
    assert run_dir == exp.folder / "vaal" / "seed3" and exp.session_dir("vaal", 3) == run_dir / "oracle"
    rel = {f.__name__: f(run_dir, 7).relative_to(run_dir).as_posix()
           for f in (results.learner_path, results.latent_path, results.views_path)}
    assert rel == {"learner_path": "learners/cycle07.pt", "latent_path": "latent/cycle07.npz",
                   "views_path": "views/cycle07.npz"}
    assert results.umap_path(results.latent_path(run_dir, 12)) == run_dir / "latent" / "umap_cycle12.npz"
    assert results.config_path(run_dir).name == "config.json" and results.records_path(run_dir).name == "records.jsonl"
    assert results.warm_start_path(run_dir) == run_dir / "learner.pt"
    assert results.norm_comparison_path(exp.folder) == exp.folder / "norm_comparison.json"
    session = exp.session_dir("vaal", 3)
    assert [p(session).name for p in (results.labels_path, results.draft_path, results.proposal_path)] == \
        ["labels.json", "draft.json", "proposal.json"]
    assert results.lock_path(run_dir) == exp.folder / "vaal" / ".seed3.lock"


def test_a_run_writes_its_files_where_results_says_and_derive_finds_them(tmp_path):
    cfg = RunConfig(initial=InitialSet("random", 30), budget=20, cycles=1, learner="classifier",
                    learner_params={"iterations": 2, "batch_size": 32, "val_every": 2}, strategy="random", seed=0,
                    device="cpu", latent_sample=40, save_learner=True)
    run_dir = tmp_path / "run"
    recs = run(cfg, run_dir, data=synthetic_data(pool=120), progress=False)
    files = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}
    expected = {results.config_path(run_dir), results.records_path(run_dir)}
    expected |= {f(run_dir, c) for c in (0, 1) for f in (results.learner_path, results.latent_path)}
    assert files == {Path(p).relative_to(run_dir).as_posix() for p in expected}
    assert results.latent_cycles(run_dir) == [0, 1]

    class Exp:  # what derive.drawable asks of an experiment
        def run_dir(self, arm, seed):
            return run_dir

    rows = [dict(r, arm="a", seed=0) for r in recs]
    ok, notes = derive.drawable(Exp(), rows, ["a"], seed=0, cycles=(0, 1, 2), need="latent")
    assert [(a, c) for a, c, _ in ok] == [("a", 0), ("a", 1)] and notes == ["a, cycle 2: no record on disk yet"]
    ok, _ = derive.drawable(Exp(), rows, ["a"], seed=0, cycles=(0, 1), need="views")  # a saved learner will do
    assert [(a, c) for a, c, _ in ok] == [("a", 0), ("a", 1)]


def test_umap_is_imported_with_its_numba_functions_cached_on_disk():
    """umap-learn compiles ~110 numba functions without ``cache=True``; :func:`derive._import_umap` turns the
    on-disk cache on for each, so a fresh process that fits a map loads them (0.2 s) instead of compiling
    (13 s on one core). Turning it on twice changes nothing."""
    import sys

    from numba.core.dispatcher import Dispatcher

    from alkit import derive

    umap = derive._import_umap()
    assert derive._import_umap() is umap
    fns = [fn for name, m in list(sys.modules.items()) if name == "umap" or name.startswith("umap.")
           for fn in vars(m).values() if isinstance(fn, Dispatcher)]
    assert len(fns) > 50
    assert all(type(fn._cache).__name__ != "NullCache" for fn in fns)
