"""Draw-only mode: a GPU profile's partial (or empty) results drawn without training, and said to be partial.

``run_experiment(train=False)`` / ``$ALKIT_DRAW_ONLY=1`` train nothing and return the records on disk;
the setting line and a notebook note say what is missing; AUBC and paired comparisons use only the
label counts every compared seed has; an arm without records is left out, never drawn as zeros.
"""
import json
import re
import shutil
from pathlib import Path

import pytest

from alkit import analysis, experiment, loop, plots
from alkit.experiment import Experiment, coverage, incomplete_lines, run_experiment
from alkit.results import write_json, write_records

ROOT = Path(__file__).resolve().parent.parent
ARMS = {"random": {"learner": "classifier", "strategy": "random"}, "vaal": {"learner": "vaal", "strategy": "vaal"}}


def make_exp(tmp_path, seeds=(0, 1, 2), cycles=3) -> Experiment:
    return Experiment(name="nb", profile="paper", seeds=list(seeds), arms=ARMS, results_root=str(tmp_path),
                      base={"pool_size": 2000, "initial": {"kind": "random", "n": 100}, "budget": 100, "cycles": cycles})


def rec(arm, seed, cycle, acc, **kw):
    return {"arm": arm, "seed": seed, "cycle": cycle, "n_labelled": 100 * (cycle + 1), "test_acc": acc, **kw}


def plant(exp, arm, seed, cycles, acc=0.5):
    """Records of ``cycles`` for one run on disk, as the loop writes them (config.json names the arm)."""
    folder = exp.run_dir(arm, seed)
    write_json(folder / "config.json", {"arm": arm, "experiment": exp.name, "seed": seed})
    write_records(folder / "records.jsonl", [{k: v for k, v in rec(arm, seed, c, acc + 0.01 * c).items() if k != "arm"}
                                             for c in cycles])


def no_training(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("draw-only mode trained")

    monkeypatch.setattr(experiment, "run_one", fail)
    monkeypatch.setattr(experiment, "run", fail)
    monkeypatch.setattr(loop, "run", fail)


# ------------------------------------------------------------------------------------------- draw only


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_draw_only_trains_nothing_and_logs_each_unfinished_run(monkeypatch, tmp_path, how):
    exp = make_exp(tmp_path)
    for seed in (0, 1, 2):
        plant(exp, "random", seed, range(4) if seed == 0 else range(2))
    no_training(monkeypatch)
    log = []
    if how == "environment":
        monkeypatch.setenv("ALKIT_DRAW_ONLY", "1")
        rows = run_experiment(exp, log=log.append)
    else:
        rows = run_experiment(exp, log=log.append, train=False)
    assert len(rows) == 4 + 2 + 2 and {r["arm"] for r in rows} == {"random"}
    assert log == ["nb/random/seed1: cycles 0-1 of 0-3", "nb/random/seed2: cycles 0-1 of 0-3",
                   "nb/vaal/seed0: no cycle on disk", "nb/vaal/seed1: no cycle on disk", "nb/vaal/seed2: no cycle on disk"]


def test_training_stays_the_default_and_the_switch_reads_off_values(monkeypatch, tmp_path):
    exp = make_exp(tmp_path, seeds=[0])
    trained = []
    monkeypatch.setattr(experiment, "run_one", lambda exp, arm, seed, *a, **k: trained.append(arm) or [{"test_acc": 0.5}])
    for off in ("", "0", "false", "no"):
        monkeypatch.setenv("ALKIT_DRAW_ONLY", off)
        assert not experiment.draw_only()
    monkeypatch.delenv("ALKIT_DRAW_ONLY")
    run_experiment(exp, log=None, progress=False)
    assert trained == ["random", "vaal"]


def test_a_rerun_that_trains_nothing_logs_what_a_draw_only_run_logs(monkeypatch, tmp_path):
    """``make figures`` and ``make figures DRAW_ONLY=1`` on finished results print the same lines, so a committed
    notebook does not change with the mode it was last run in (issue 27 item 9: a plain rerun added a
    "(on disk)" line per run to notebooks last run draw-only); a run trained in the call keeps its line."""
    exp = make_exp(tmp_path, seeds=[0])
    for arm in ARMS:
        plant(exp, arm, 0, range(4))
    finished = {"random"}
    monkeypatch.setattr(experiment, "is_finished", lambda e, runs: all(a in finished for a, _ in runs))
    monkeypatch.setattr(experiment, "run_one", lambda e, arm, seed, *a, **k: [rec(arm, seed, c, 0.5) for c in range(4)])
    drawn, again, trained = [], [], []
    run_experiment(exp, log=drawn.append, train=False)
    finished.add("vaal")
    run_experiment(exp, log=again.append, progress=False)
    assert again == drawn and not any("final test acc" in line for line in again)
    finished.discard("vaal")
    run_experiment(exp, log=trained.append, progress=False)
    assert [line.split(" (")[0] for line in trained if "final test acc" in line] == \
        ["nb/vaal/seed0: 4 cycles, final test acc 0.5000"]


def test_batch_draw_only_sets_the_switch_for_each_notebook(monkeypatch, tmp_path):
    from alkit import batch

    seen = []

    class Done:
        returncode, stdout, stderr = 0, "", ""

    monkeypatch.setattr(batch.subprocess, "run", lambda cmd, **kw: seen.append(kw["env"]) or Done())
    monkeypatch.delenv("ALKIT_DRAW_ONLY", raising=False)
    nb, params = batch.notebooks_for("paper", only=["02"])[0]
    batch.run_notebook(nb, params, tmp_path / "out.ipynb", "paper", 10, root=tmp_path, draw_only=True)
    batch.run_notebook(nb, params, tmp_path / "out.ipynb", "paper", 10, root=tmp_path)
    assert seen[0][batch.DRAW_ONLY_ENV] == "1" and batch.DRAW_ONLY_ENV not in seen[1]
    assert batch.DRAW_ONLY_ENV == experiment.DRAW_ONLY_ENV
    assert "--draw-only" in (ROOT / "Makefile").read_text().split("figures: setup", 1)[1].split("\n\n")[0]


# ------------------------------------------------------------------------------------ saying it is partial


def test_the_setting_line_says_partial_with_runs_and_cycles(tmp_path):
    exp = make_exp(tmp_path)  # 2 arms x 3 seeds x 4 cycles = 24 cycles
    partial = [rec("random", s, c, 0.5) for s in (0, 1, 2) for c in range(2)]
    assert analysis.setting(exp, partial).endswith(" · 3 seeds · PARTIAL: 3 of 6 runs started, 6 of 24 cycles")
    full = [rec(a, s, c, 0.5) for a in ARMS for s in (0, 1, 2) for c in range(4)]
    assert "PARTIAL" not in analysis.setting(exp, full)
    stopped = [r for r in full if not (r["arm"] == "vaal" and r["seed"] == 2 and r["cycle"] > 1)]
    stopped[-1]["stopped"] = True  # the stopping rule ended vaal seed 2 after cycle 1: finished, not partial
    assert "PARTIAL" not in analysis.setting(exp, stopped) and coverage(exp, stopped)["cycles_expected"] == 22
    # the figure subtitle puts the note on its own line
    assert "<br>PARTIAL: 3 of 6" in plots.curves(partial, title="t", ytitle="y", subtitle=analysis.setting(exp, partial)).layout.title.subtitle.text


def test_the_partial_note_lists_missing_arms_and_unfinished_seeds(tmp_path):
    exp = make_exp(tmp_path)
    rows = [rec("random", s, c, 0.5) for s in (0, 1, 2) for c in range(3 if s == 2 else 2)]
    note = analysis.partial_note(exp, rows)
    assert note.startswith("**Partial results**: 3 of 6 runs started, 7 of 24 cycles (0 finished).")
    assert "- No record yet (left out of every figure and table): `vaal`." in note
    assert ("- `random` under way: seeds 0, 1: cycles 0-1 of 0-3 (100\u2013200 of 100\u2013400 labels); "
            "seed 2: cycles 0-2 of 0-3 (100\u2013300 of 100\u2013400 labels).") in note
    assert analysis.partial_note(exp, [rec(a, s, c, 0.5) for a in ARMS for s in (0, 1, 2) for c in range(4)]) == ""


# ------------------------------------------------------------------------- statistics over common label counts


def test_aubc_uses_only_the_label_counts_every_seed_of_every_arm_has():
    # random seed 0: 0.5, 0.6, 0.7 (a run ahead); seed 1: 0.5, 0.6 (under way); vaal seed 0: 0.7, 0.7
    rows = [rec("random", 0, 0, 0.5), rec("random", 0, 1, 0.6), rec("random", 0, 2, 0.7),
            rec("random", 1, 0, 0.5), rec("random", 1, 1, 0.6), rec("vaal", 0, 0, 0.7), rec("vaal", 0, 1, 0.7)]
    out = {r["arm"]: r for r in analysis.aubc(rows)}
    assert out["random"]["aubc"] == pytest.approx(0.55) and out["random"]["std"] == pytest.approx(0.0)  # 100-200 only
    assert out["vaal"]["aubc"] == pytest.approx(0.7)
    assert analysis.grid_note(rows) == ("The areas under the budget curve use 100\u2013200 labels only (2 label counts): "
                                        "those every seed of every arm has; 1 more label count on disk for some seeds "
                                        "are left out of them.")
    assert analysis.grid_note([r for r in rows if r["cycle"] < 2]) == ""  # a shared grid: nothing to say


def test_paired_comparison_uses_the_label_counts_both_runs_of_each_paired_seed_have():
    # vaal is +0.02 over random at every shared point, but +0.50 at 400 labels where only seed 0 of vaal got
    rows = [*(rec("random", s, c, 0.5) for s in (0, 1) for c in range(3)),
            *(rec("vaal", s, c, 0.52) for s in (0, 1) for c in range(3)), rec("vaal", 0, 3, 1.0),
            *(rec("alone", s, c, 0.9) for s in (5,) for c in range(3))]
    d = analysis.compare_seeds(rows, "vaal", "random")
    assert d["seeds"] == [0, 1] and d["labels"] == [100, 200, 300] and d["labels_dropped"] == 1
    assert d["diffs"] == pytest.approx([0.02, 0.02])
    assert "+2.00 points over 100\u2013300 labels only (the label counts every compared seed has)" in analysis.describe_comparison(d)
    v = analysis.versus(rows, "vaal", "random")
    assert v["after"]["labels"] == [200, 300] and v["after"]["mean"] == pytest.approx(0.02)
    missing = analysis.versus(rows, "tavaal", "random")
    assert analysis.describe_versus(missing) == "not compared yet: no records of tavaal."
    assert analysis.compare_seeds(rows, "alone", "random")["n"] == 0  # no seed in common: nothing paired


def test_partial_curves_name_their_seed_counts_and_leave_out_arms_without_records():
    rows = [rec("random", s, c, 0.5) for s in (0, 1, 2) for c in range(3 if s == 0 else 2)]
    fig = plots.curves(rows, title="t", ytitle="y", order=["random", "vaal"])
    assert [t.name for t in fig.data if t.showlegend is not False] == ["random (mean of 1\u20133 seeds)"]
    assert not [t for t in fig.data if t.legendgroup == "vaal"]
    table = analysis.curve_markdown(rows, ["random", "vaal"], study={100: 55.0})
    assert "| random | 300 | 50.00 | 0.00 | 1 | 50.00 / – / – | – |" in table and "vaal" not in table
    assert table.splitlines()[0].endswith("| seed 0 / 1 / 2 | study |")
    hist = plots.class_histograms([{"arm": "random", "seed": s, "cycle": c, "labelled_class_counts": [1] * 10,
                                    "selected_class_counts": [1] * 10} for s in (0, 1) for c in range(2 if s else 3)],
                                  arms=["random", "vaal"])
    assert [a.text for a in hist.layout.annotations] == ["random"]
    assert list(hist.data[0].x) == ["start", "1", "2", "3*"]  # "*": fewer seeds so far, said in the subtitle
    assert "(* fewer seeds so far)" in hist.layout.title.subtitle.text


# ------------------------------------------------------------------------------------------ empty experiment


def test_an_empty_experiment_draws_nothing_and_says_so(monkeypatch, tmp_path):
    exp = make_exp(tmp_path)
    no_training(monkeypatch)
    log = []
    assert run_experiment(exp, log=log.append, train=False) == []
    assert len(log) == 6 and all(line.endswith(": no cycle on disk") for line in log)
    assert incomplete_lines(exp, []) == log
    assert analysis.setting(exp, []).endswith("PARTIAL: 0 of 6 runs started, 0 of 24 cycles")
    assert analysis.partial_note(exp, []).startswith("**Nothing of this notebook has run yet** in the `paper` profile")
    assert analysis.aubc([]) == [] and analysis.describe_best_aubc([], []).startswith("- No area under")
    assert analysis.curve_markdown([], ["random"]) == ""
    shown = plots.show(plots.curves([], "disc_loss", title="Discriminator loss", ytitle="y", chance=1.0), tmp_path / "fig" / "disc")
    assert "nothing to draw yet" in shown.data and not (tmp_path / "fig").exists()
    assert plots.show(plots.confusion_slider({}), tmp_path / "fig" / "c").data.startswith("*Test confusion per cycle")


# ---------------------------------------------------------------------- notebooks on partial and empty results


def _partial_copy(stem: str, dest: Path) -> None:
    """The committed smoke results of ``stem``, cut down: the first arm keeps seed 0 whole, every other
    run keeps cycle 0 of seed 0 only, and the second arm has no record at all."""
    src = ROOT / "results" / "smoke" / stem
    shutil.copytree(src, dest / "smoke" / stem)
    params = __import__("yaml").safe_load((ROOT / "params" / "smoke" / f"{stem}.yaml").read_text())
    arms = list(params["arms"])
    for path in (dest / "smoke" / stem).rglob("records.jsonl"):
        arm, seed = path.parent.parent.name, path.parent.name
        lines = path.read_text().splitlines(keepends=True)
        if arm == arms[1] or seed != "seed0":
            path.unlink()
        elif arm != arms[0]:
            path.write_text("".join(lines[:1]))


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.parametrize("state", ["partial", "empty"])
@pytest.mark.parametrize("stem", ["01_vae_latent_space", "02_vaal_vs_random", "03_three_class_start",
                                  "04_discriminator_only", "05_latent_acquisition"])
def test_notebooks_finish_on_partial_and_empty_results_without_training(stem, state, tmp_path, monkeypatch):
    papermill = pytest.importorskip("papermill")
    import yaml

    results = tmp_path / "results"
    if state == "partial":
        _partial_copy(stem, results)
    else:
        results.mkdir()
    before = sorted(p.relative_to(results) for p in results.rglob("records.jsonl"))
    monkeypatch.setenv("ALKIT_DRAW_ONLY", "1")
    monkeypatch.setenv("ALKIT_QUIET", "1")
    values = yaml.safe_load((ROOT / "params" / "smoke" / f"{stem}.yaml").read_text())
    values.update(results_root=str(results), figures_root=str(tmp_path / "figures"))
    out = tmp_path / f"{stem}.ipynb"
    papermill.execute_notebook(str(ROOT / "notebooks" / f"{stem}.ipynb"), str(out), parameters=values,
                               cwd=str(ROOT), progress_bar=False, kernel_name="python3")
    nb = json.loads(out.read_text())
    assert sorted(p.relative_to(results) for p in results.rglob("records.jsonl")) == before  # nothing trained
    text = "\n".join("".join(o.get("data", {}).get("text/markdown", "")) + "".join(o.get("text", ""))
                     for c in nb["cells"] for o in c.get("outputs", []))
    figures = list((tmp_path / "figures").rglob("*.png"))
    if state == "empty":
        assert "Nothing of this notebook has run yet" in text and not figures
    else:
        assert "**Partial results**" in text and "no cycle on disk" in text and figures
        assert not re.search(r"\bnan\b", text, re.IGNORECASE)


def test_batch_draw_only_leaves_oracle_sessions_out(monkeypatch, capsys):
    from alkit import batch

    ran = []
    monkeypatch.setattr(batch, "run_notebook", lambda nb, *a, **k: ran.append(nb.name) or
                        {"notebook": nb.name, "status": "ok", "seconds": 0.0, "runs_trained": 0, "log_tail": ""})
    monkeypatch.setattr(batch, "_merge_runtimes", lambda report, rows: rows)
    assert batch.main(["--profile", "paper", "--draw-only", "--only", "05", "06"]) == 0
    assert ran == ["05_latent_acquisition.ipynb"] and "06_label_your_own.ipynb: skipped" in capsys.readouterr().out


def test_executed_notebooks_keep_no_timestamps_so_an_unchanged_rerun_changes_no_file(tmp_path):
    """``python -m alkit.batch`` strips papermill's and nbclient's timestamps, durations and paths
    (:func:`alkit.batch.strip_volatile`): two runs with the same outputs write the same bytes."""
    from alkit import batch

    def executed(stamp: str) -> dict:
        cell = {"cell_type": "code", "execution_count": 1, "source": "1 + 1", "id": "a1",
                "outputs": [{"output_type": "execute_result", "execution_count": 1, "metadata": {}, "data": {"text/plain": "2"}}],
                "metadata": {"tags": ["parameters"], "execution": {"iopub.execute_input": stamp, "shell.execute_reply": stamp},
                             "papermill": {"duration": 0.1, "start_time": stamp, "end_time": stamp, "exception": False,
                                           "status": "completed"}}}
        injected = {"cell_type": "code", "execution_count": 2, "source": "profile = 'smoke'", "outputs": [],
                    "id": stamp[-3:-1] + "f00d", "metadata": {"tags": ["injected-parameters"]}}  # papermill: a new id per run
        return {"nbformat": 4, "nbformat_minor": 5, "cells": [cell, injected],
                "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                             "papermill": {"duration": 5.0, "start_time": stamp, "end_time": stamp, "exception": None,
                                           "input_path": f"/{stamp}/nb.ipynb", "output_path": f"/{stamp}/nb.ipynb",
                                           "parameters": {"profile": "smoke"}, "version": "2.6.0"}}}

    first, second = tmp_path / "first.ipynb", tmp_path / "second.ipynb"
    first.write_text(json.dumps(executed("2026-01-01T00:00:00Z")))
    second.write_text(json.dumps(executed("2026-06-30T12:34:56Z")))
    assert batch.strip_volatile(first) and batch.strip_volatile(second)
    assert first.read_bytes() == second.read_bytes()
    assert not batch.strip_volatile(first)  # nothing left to strip: the file is not rewritten
    nb = json.loads(first.read_text())
    assert nb["metadata"]["papermill"] == {"exception": None, "parameters": {"profile": "smoke"}, "version": "2.6.0"}
    assert nb["cells"][0]["metadata"] == {"tags": ["parameters"], "papermill": {"exception": False, "status": "completed"}}
    assert nb["cells"][0]["outputs"][0]["data"] == {"text/plain": ["2"]}  # outputs untouched (nbformat's line lists)
    assert nb["cells"][1]["id"] == "injected-parameters"


def test_committed_notebooks_carry_no_volatile_metadata():
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text())
        for meta in [nb["metadata"]] + [c["metadata"] for c in nb["cells"]]:
            stamps = {"execution"} & set(meta) | set(meta.get("papermill", {})) & {"start_time", "end_time", "duration",
                                                                                   "input_path", "output_path"}
            assert not stamps, f"{path.name}: volatile metadata {sorted(stamps)}: run python -m alkit.batch (it strips them)"


def test_an_executed_copy_in_another_folder_keeps_its_markdown_links_working(tmp_path):
    """``notebooks/cpu/02_*.ipynb`` is written from ``notebooks/02_*.ipynb``: :func:`alkit.batch.rebase_links`
    rewrites the relative targets of its Markdown cells so they open the same files; links with a scheme, absolute
    paths, anchors and code cells stay, and a copy in the source's own folder (``smoke``) is not touched."""
    from alkit import batch

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "method.md").write_text("# Method\n")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "a.png").write_bytes(b"png")
    source, copy = tmp_path / "notebooks", tmp_path / "notebooks" / "cpu"
    copy.mkdir(parents=True)
    md = ("See [docs/method.md](../docs/method.md#statistics), <img src=\"../figures/a.png\">, "
          "[web](https://example.org/x.md), [top](#question), [root](/abs.md).")
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
          "cells": [{"cell_type": "markdown", "id": "m1", "metadata": {}, "source": md},
                    {"cell_type": "code", "id": "c1", "metadata": {}, "execution_count": None, "outputs": [],
                     "source": "x = '[a](../docs/method.md)'"}]}
    (copy / "02.ipynb").write_text(json.dumps(nb))
    (source / "02.ipynb").write_text(json.dumps(nb))
    assert not batch.rebase_links(source / "02.ipynb", source)  # the smoke copy is the source: unchanged
    assert batch.rebase_links(copy / "02.ipynb", source)
    out = json.loads((copy / "02.ipynb").read_text())
    text = "".join(out["cells"][0]["source"])
    assert text == ("See [docs/method.md](../../docs/method.md#statistics), <img src=\"../../figures/a.png\">, "
                    "[web](https://example.org/x.md), [top](#question), [root](/abs.md).")
    assert "".join(out["cells"][1]["source"]) == "x = '[a](../docs/method.md)'"
    assert (copy / "../../docs/method.md").resolve().is_file() and (copy / "../../figures/a.png").resolve().is_file()
