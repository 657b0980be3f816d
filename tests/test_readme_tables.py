"""scripts/readme_tables.py prints the README's accuracy tables from the committed records, numbers unchanged."""
import importlib.util
import json
import statistics
from pathlib import Path

from alkit.results import load_results

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "scripts" / "readme_tables.py")
readme_tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_tables)


def test_side_by_side_matches_the_records():
    arms = ["m2_vaal", "m2_vaal_random"]
    out = readme_tables.side_by_side("cpu", "03_three_class_start", arms).splitlines()
    rows = [r for r in load_results(ROOT / "results" / "cpu" / "03_three_class_start") if r["arm"] in arms]
    assert out[0].startswith("| labels | `m2_vaal` seeds ") and out[0].endswith("| the study |")
    assert len(out) == 2 + len({r["n_labelled"] for r in rows})
    first = out[2].split(" | ")  # 500 labels: the study's 27.25 % and both arms' shared cycle 0
    start = sorted((r for r in rows if r["arm"] == "m2_vaal" and r["n_labelled"] == 500), key=lambda r: r["seed"])
    acc = [100 * r["test_acc"] for r in start]
    assert first[0] == "| 500" and first[-1] == "27.25 |" and first[1] == first[3]
    assert first[1] == " / ".join(f"{v:.2f}" for v in acc)
    assert first[2] == f"{statistics.mean(acc):.2f} ± {statistics.stdev(acc):.2f}" and len(start) >= 3


def test_side_by_side_marks_a_missing_seed(tmp_path, monkeypatch):
    src = ROOT / "results" / "cpu" / "03_three_class_start" / "m2_vaal" / "seed0" / "records.jsonl"
    first_two = [json.loads(line) for line in src.read_text().splitlines()[:2]]
    for arm, seed, cycles in (("a", 0, 1), ("a", 1, 2), ("b", 0, 1)):  # seed 0 of arm a lacks the second cycle
        run = tmp_path / "results" / "cpu" / "x" / arm / f"seed{seed}"  # no config.json: the arm is its folder's
        run.mkdir(parents=True)
        (run / "records.jsonl").write_text("".join(json.dumps({**r, "seed": seed}) + "\n" for r in first_two[:cycles]))
    monkeypatch.setattr(readme_tables, "ROOT", tmp_path)
    out = readme_tables.side_by_side("cpu", "x", ["a", "b"]).splitlines()
    assert out[0] == "| labels | `a` seeds 0 / 1 | mean ± sd | `b` seeds 0 | mean ± sd | the study |"
    a0, a1 = (f"{100 * r['test_acc']:.2f}" for r in first_two)
    assert out[2].split(" | ")[1:3] == [f"{a0} / {a0}", f"{float(a0):.2f} ± 0.00"]
    assert out[3].split(" | ")[1:5] == [f"– / {a1}", a1, "–", "–"] and out[3].endswith("| – |")


def test_means_matches_side_by_side(tmp_path, monkeypatch):
    src = ROOT / "results" / "cpu" / "03_three_class_start" / "m2_vaal" / "seed0" / "records.jsonl"
    first_two = [json.loads(line) for line in src.read_text().splitlines()[:2]]
    for arm, seed, cycles in (("a", 0, 1), ("a", 1, 2), ("b", 0, 1)):
        run = tmp_path / "results" / "cpu" / "x" / arm / f"seed{seed}"
        run.mkdir(parents=True)
        (run / "records.jsonl").write_text("".join(json.dumps({**r, "seed": seed}) + "\n" for r in first_two[:cycles]))
    monkeypatch.setattr(readme_tables, "ROOT", tmp_path)
    out = readme_tables.means("cpu", "x", ["a", "b"]).splitlines()
    a0, a1 = (f"{100 * r['test_acc']:.2f}" for r in first_two)
    assert out[0] == "| labels | `a` mean ± sd (seeds) | `b` mean ± sd (seeds) | the study |"
    assert out[2].split(" | ")[1:3] == [f"{a0} ± 0.00 (2)", f"{a0} (1)"]
    assert out[3].split(" | ")[1:3] == [f"{a1} (1)", "–"] and len(out) == 4
