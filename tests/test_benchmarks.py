"""The benchmark scripts keep working (tiny sizes; the numbers themselves are not checked here)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # each script runs end to end in its own process (make test runs them, test-fast not)


def _run(*args: str, timeout: float = 300) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
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


def test_bench_cycle_overhead_runs_and_records_agree(fmnist_dir):
    """The script exits non-zero when the old and the new way give different records; here they agree."""
    out = _run("benchmarks/bench_cycle_overhead.py", "--smoke", "--strategies", "random,bald:1")
    assert "random" in out and "bald" in out and "False" not in out


#: one tiny CPU invocation of bench_gpu.py for the tests below (two, before: the second re-timed every learner's
#: unfused rate): every learner x pipeline timed, concurrency measured, fused K = 3 with every option for vaal and
#: m2_vaal (timing rows at test sizes are no claim; K = 3 costs a third of K = 9), ops at K = 9 (issue 25's goal),
#: FLOPs, the fused accuracy check on 2 seeds, the paper profile projected. The task CNN is the tests' tiny one:
#: the small CNN's layers, narrower, so the same ops are counted (39.8 -> 26.6 s alone on 2 cores). The fused grid
#: (K = 1, 3, 9, 27 x 4 options, 5 learners) is benchmarks/results/bench_fused_cpu.json.
BENCH_ARGS = ("--device", "cpu", "--tiny", "--task-size", "tiny", "--fuse-k", "3", "--fuse-options", "all",
              "--fuse-learners", "vaal,m2_vaal",
              "--ops-k", "9", "--ops-iters", "1", "--ops-learners", "classifier,tavaal",
              "--accuracy-iters", "2", "--accuracy-seeds", "0,1")


@pytest.fixture(scope="module")
def bench(fmnist_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_gpu") / "bench_gpu.json"
    text = _run("benchmarks/bench_gpu.py", *BENCH_ARGS, "--out", str(out), timeout=1500)
    return json.loads(out.read_text()), text


def test_bench_gpu_runs_on_cpu_tiny(bench):
    """bench_gpu.py at CPU test sizes: every learner x pipeline timed, concurrency measured, the paper
    profile projected (1,063 trainings of 8,593 iterations; 928 distinct configurations: 781 and 691 before
    notebook 05 gained typiclust, probcover and badge and 02-04 their same-learner random controls)."""
    res, text = bench
    learners = {"classifier", "vaal", "tavaal", "m2", "m2_vaal", "m2_large"}
    assert set(res["single"]) == learners
    for by_pipeline in res["single"].values():
        assert set(by_pipeline) == {"reference", "default", "fast"}
        assert all(m["ms_per_iteration"] > 0 for m in by_pipeline.values())
        assert by_pipeline["default"]["speed"]["speed_bf16"] is False and by_pipeline["fast"]["speed"]["speed_bf16"]
    assert {n for by_n in res["concurrency"]["default"].values() for n in by_n} == {"1", "2"}
    assert set(res["projection"]) == {"reference", "default", "fast", "best"}
    for proj in res["projection"].values():
        assert (proj["trainings"], proj["trainings_distinct"], proj["iterations"]) == (1063, 928, 1063 * 8593)
        assert proj["minutes"] > 0 and not proj["unmeasured"] and len(proj["per_experiment"]) == 5
    assert res["git_commit"] and res["environment"]["torch"] and "projected minutes" in text


def test_bench_gpu_fused_rows_flops_projection(bench):
    """The fused part of one tiny CPU invocation: fused rows per K and option, ops and FLOPs per
    model-iteration, the fused accuracy check and the projection at the best measured rates."""
    res, text = bench
    assert set(res["fused"]) == {"vaal", "m2_vaal"}
    for by_k in res["fused"].values():
        assert set(by_k) == {"3"}
        for K, by_opt in by_k.items():
            assert set(by_opt) == {"all"}
            assert all(m["aggregate_it_s"] > 0 and m["fused_k"] == int(K) for m in by_opt.values())
    for key in ("vaal", "m2_vaal"):
        assert res["flops_per_iteration"][key] > 0
        ops = res["ops_per_iteration"][key]
        assert ops["unfused"] > ops["kernels_unfused"] > 0 and set(ops["ratio"]) == {"9"}
        th = res["throughput"][key]
        assert th["today_it_s"] > 0 and th["fused_best_it_s"] > 0 and th["fused_best_tflop_s"] > 0
        assert th["fused_best_peak_share"] is None  # a CPU has no entry in the peak table
        acc = res["accuracy_fused"][key]
        assert len(acc["fused"]) == len(acc["unfused"]) == 2 and acc["detectable_95"] is not None
    best = res["projection"]["best"]
    assert best["minutes"] > 0 and not best["unmeasured"] and best["trainings"] == 1063
    # which rate is best (fused or not) is a timing, and CPU timings swing with the load: not asserted
    assert set(best["rate_source"]) >= {"vaal", "m2_vaal"}
    assert "fused runs" in text and "dispatched ops per model-iteration" in text and "fused vs unfused" in text


def test_fused_ops_per_model_iteration_goal(bench):
    """Issue 25's CPU goal: at K = 9, dispatched ops per model-iteration at most 1/5 of unfused, every op
    counted (views too), for four of the five fused learners (torch's default optimisers unfused; the fused
    engine's are multi-tensor); m2_large (about 20 s to count here) is in benchmarks/results/bench_fused_cpu.json.
    Measured there: classifier 0.187, vaal 0.177, tavaal 0.188, m2_vaal 0.180, m2_large 0.157."""
    res, _ = bench
    assert set(res["ops_per_iteration"]) == {"classifier", "vaal", "tavaal", "m2_vaal"}  # m2_large: the committed JSON
    assert set(res["fused"]) == {"vaal", "m2_vaal"}  # --ops-learners are counted, not timed
    for key, ops in res["ops_per_iteration"].items():
        assert ops["ratio"]["9"] <= 1 / 5, (key, ops)
        assert ops["kernels_ratio"]["9"] <= ops["ratio"]["9"], (key, ops)


def test_ops_are_counted_between_training_iterations_only(fmnist_dir):
    """One fit, counted from the end of iteration 0 to the end of iteration ``extra``: no validation, best-state
    copy or build falls inside, so 1 and 3 counted iterations give the same per-iteration count, and the
    FLOPs of an iteration are exactly its steps' (the former difference of two fits swung with whether a fit's
    last validation improved: m2_large unfused 377, 1433, 905, 905 ops)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_gpu

    device = torch.device("cpu")
    data = bench_gpu.make_data(device, True, 40)
    one, three = (bench_gpu.ops_per_iteration("classifier", [3], True, data, device, n) for n in (1, 3))
    assert one["unfused"] == three["unfused"] > one["kernels_unfused"] > 0
    assert one["fused"] == three["fused"] and one["ratio"]["3"] < 1
    assert bench_gpu.flops_per_iteration("classifier", True, data, device, 1) == \
        bench_gpu.flops_per_iteration("classifier", True, data, device, 3) > 0


def test_fidelity_tables_compare_the_right_runs(tmp_path):
    """benchmarks/fidelity.py: overlap, class distance and differences from the records of each pair of runs."""
    def write(folder: str, seed: int, selected: list[int], counts: list[int], acc: float, auc: float) -> None:
        run = tmp_path / folder / f"seed{seed}"
        run.mkdir(parents=True)
        rec = {"cycle": 0, "n_labelled": 1000, "test_acc": acc, "disc_auc_heldout": auc, "selected": selected,
               "selected_class_counts": counts, "seconds": {"train": 10.0}}
        (run / "records.jsonl").write_text(json.dumps(rec) + "\n")

    write("cpu/02_vaal_vs_random/vaal", 0, [1, 2, 3, 4], [4, 0], 0.80, 0.50)
    write("cpu_check/paper_schedule/vaal_paper", 0, [3, 4, 5, 6], [2, 2], 0.81, 0.40)
    write("cpu_check/training_noise/vaal", 1, [1, 2, 3, 9], [4, 0], 0.79, 0.55)
    out = _run("benchmarks/fidelity.py", "b", "--results", str(tmp_path))
    assert "| vaal: paper vs cpu | 0 / 0 | 0 | 1,000 | 80.00 | 81.00 | 0.500 | 0.400 | 0.500 | 0.500 |" in out
    assert "| vaal: noise | 0 / 1 | 0 | 1,000 | 80.00 | 79.00 | 0.500 | 0.550 | 0.750 | 0.000 |" in out
    assert "- vaal: paper vs cpu, cycle 0 (1 pair): test B − A +1.00 points" in out
    assert "m2_vaal: paper" not in out  # runs that are not on disk give no row
