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
