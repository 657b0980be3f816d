"""The benchmark scripts keep working (tiny sizes; the numbers themselves are not checked here)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def test_bench_pipeline_runs(fmnist_dir):
    out = _run("benchmarks/bench_pipeline.py", "--device", "cpu", "--steps", "2", "--pool-size", "1500",
               "--vae-width", "8", "--labelled", "300")
    assert "ratio" in out and "joint" in out


def test_bench_selection_runs():
    out = _run("benchmarks/bench_selection.py", "--smoke")
    for name in ("alg1", "alg2", "coreset", "kernel_norm_exact", "kernel_norm_approx", "bald", "random"):
        assert name in out


def test_bench_gpu_runs_on_cpu_tiny(fmnist_dir, tmp_path):
    """bench_gpu.py at CPU test sizes: every learner x pipeline timed, concurrency measured, the paper
    profile projected (880 trainings of 8,593 iterations; 790 distinct configurations; 781 and 691 before
    notebook 05 gained typiclust, probcover and badge: 3 arms x 3 seeds x 11 trainings)."""
    import json

    out = tmp_path / "bench_gpu.json"
    text = _run("benchmarks/bench_gpu.py", "--device", "cpu", "--tiny", "--out", str(out))
    res = json.loads(out.read_text())
    learners = {"classifier", "vaal", "tavaal", "m2", "m2_vaal", "m2_large"}
    assert set(res["single"]) == learners
    for by_pipeline in res["single"].values():
        assert set(by_pipeline) == {"reference", "default", "fast"}
        assert all(m["ms_per_iteration"] > 0 for m in by_pipeline.values())
        assert by_pipeline["default"]["speed"]["speed_bf16"] is False and by_pipeline["fast"]["speed"]["speed_bf16"]
    assert {n for by_n in res["concurrency"]["default"].values() for n in by_n} == {"1", "2"}
    for proj in res["projection"].values():
        assert (proj["trainings"], proj["trainings_distinct"], proj["iterations"]) == (880, 790, 880 * 8593)
        assert proj["minutes"] > 0 and not proj["unmeasured"] and len(proj["per_experiment"]) == 5
    assert res["git_commit"] and res["environment"]["torch"] and "projected minutes" in text
