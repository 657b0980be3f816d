"""A run whose config equals a finished run's on disk (another experiment of the same profile, an earlier call) is
copied, not trained: by ``alkit run`` (jobs), by a notebook (run_experiment) and in the cost plan."""
import json
import os

import torch
import yaml

from alkit import costplan, jobs, shared_runs
from alkit.experiment import load_experiment, run_experiment
from alkit.results import load_results
from helpers import MICRO

CONFIG = {"seed": 0, "cycles": 2, "device": "cpu", "learner": "classifier", "strategy": "random"}


def _run_folder(root, exp, arm, config, n_records, seed=0):
    run = root / "p" / exp / arm / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"experiment": exp, "arm": arm, "profile": "p", "config": config}))
    (run / "records.jsonl").write_text("".join(json.dumps({"cycle": c}) + "\n" for c in range(n_records)))
    return run


def test_a_finished_twin_is_found_by_config_only_device_aside(tmp_path):
    want = dict(CONFIG, device="cuda")  # the device is not part of what a run learns
    _run_folder(tmp_path, "a", "unfinished", CONFIG, 2)  # 2 of 3 trainings: not a twin
    _run_folder(tmp_path, "b", "other", dict(CONFIG, strategy="vaal"), 3)  # another strategy: not a twin
    me = _run_folder(tmp_path, "c", "me", CONFIG, 3)  # the run itself is never its own twin
    assert shared_runs.finished_twin(tmp_path, "p", want, me) is None
    twin = _run_folder(tmp_path, "d", "done", CONFIG, 3)
    assert shared_runs.finished_twin(tmp_path, "p", want, me) == twin
    assert shared_runs.finished_twin(tmp_path, "other_profile", want, me) is None
    (twin / "config.json").write_text("{not json")  # a folder that cannot be read is passed over
    assert shared_runs.finished_twin(tmp_path, "p", want, me) is None
    (twin / "config.json").write_text(json.dumps({"config": CONFIG}))
    assert shared_runs.finished_twin(tmp_path, "p", want, me) == twin
    os.rename(tmp_path / "p" / "d", tmp_path / "outside")  # the only twin now sits behind a link: passed over
    os.symlink(tmp_path / "outside", tmp_path / "p" / "d", target_is_directory=True)
    assert shared_runs.finished_twin(tmp_path, "p", want, me) is None


def _experiments(tmp_path, *specs):
    base = yaml.safe_load(MICRO.read_text())
    out = []
    for name, arms in specs:
        values = dict(base, name=name, arms={k: base["arms"][k] for k in arms}, seeds=[0])
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(values))
        out.append(load_experiment(path, results_root=str(tmp_path / "r")))
    return out


def test_a_run_finished_in_an_earlier_call_is_copied_by_alkit_run_a_notebook_and_the_plan(tmp_path, fmnist_dir):
    """03 ran; then 04 alone (alkit run, or its notebook) copies the arm 03 finished instead of training it."""
    a, b, c = _experiments(tmp_path, ("a", ["random"]), ("b", ["random", "vaal"]), ("c", ["random"]))
    threads = torch.get_num_threads()
    try:
        assert jobs.run_tasks(jobs.plan([a]), threads=1, progress=False).cycles_done == 2
        src = a.run_dir("random", 0)
        costs = {("classifier", "fp32"): 1.0, ("vae64_s2", "fp32"): 1.0}
        plan_rows = {r.arm: r for r in costplan.plan_costs([b], costs)}
        assert plan_rows["random"].shared_with == str(src) and plan_rows["random"].left_s == 0
        assert plan_rows["vaal"].shared_with is None and plan_rows["vaal"].left_s > 0
        tasks = jobs.plan([b])
        assert [t.copy_from for t in tasks] == [src, None]
        summary = jobs.run_tasks(tasks, threads=1, progress=False)
        assert summary.finished == 2 and summary.cycles_done == 2  # b/vaal trained, b/random copied
        assert f"copied (same config, finished on disk): {src} -> b/random/seed0" in summary.lines()
        rows = run_experiment(c, progress=False, log=None)  # the notebook's path: copied too, nothing trained
    finally:
        torch.set_num_threads(threads)
    for exp in (b, c):
        dst = exp.run_dir("random", 0)
        assert (dst / "records.jsonl").read_bytes() == (src / "records.jsonl").read_bytes()
        meta = json.loads((dst / "config.json").read_text())
        assert meta["experiment"] == exp.name and meta["copied_from"] == str(src)
    assert len(rows) == 2 and [r["arm"] for r in load_results(b.folder)].count("random") == 2
    again = jobs.plan([b])  # now on disk: loaded, neither copied nor trained again
    assert all(t.finished and t.copy_from is None for t in again)
