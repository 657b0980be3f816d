"""The kind of CPU decides the cost table and whether bf16 pays: alkit.cpu, ``alkit plan --costs auto`` and the
warnings of ``alkit plan`` / ``alkit run`` when runs ask for bf16 on a CPU without a bf16 unit."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from alkit import costplan, cpu
from alkit.cli import _warn_bf16, main
from alkit.experiment import load_experiment
from alkit.jobs import plan

ROOT = Path(__file__).resolve().parent.parent
CPU = sorted((ROOT / "params" / "cpu").glob("*.yaml"))
BENCH = ROOT / "benchmarks" / "results"


@pytest.mark.parametrize("flags, kind", [
    ({"fma", "avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, "amx_bf16"),
    ({"fma", "avx2", "avx512f", "avx512_bf16"}, "avx512_bf16"),
    ({"fma", "avx2", "avx512f"}, "avx512f"),
    ({"fma", "avx2"}, "avx2"),
    ({"avx2"}, "other"),  # AVX2 without FMA: no fused multiply-add unit to count on
    ({"sse2"}, "other"),
    (set(), "unknown"),
])
def test_a_cpu_is_the_kind_of_its_fastest_unit(flags, kind):
    assert cpu.cpu_kind(flags) == kind
    assert cpu.native_bf16(kind) is (None if kind == "unknown" else kind in ("amx_bf16", "avx512_bf16"))


def test_this_cpu_has_a_kind_and_a_model_name():
    assert cpu.cpu_kind() in (*cpu.KINDS, "other", "unknown")
    assert cpu.cpu_model()


def test_the_bf16_warning_fires_only_without_a_bf16_unit():
    line = cpu.bf16_warning(3, "avx2")
    assert line.startswith("warning: 3 runs left to train with bf16 autocast") and "\n" not in line
    assert "bench_cpu_avx2.json" in line and "bf16: false" in line
    assert cpu.bf16_warning(1, "avx2").startswith("warning: 1 run left")
    assert cpu.bf16_warning(0, "avx2") is None
    assert cpu.bf16_warning(3, "avx512_bf16") is None and cpu.bf16_warning(3, "amx_bf16") is None
    assert cpu.bf16_warning(3, "unknown") is None  # no flags (not Linux): nothing known, nothing said


def test_the_committed_cost_tables_say_their_kind_and_what_bf16_costs_there():
    """The warning's claim, held to the measurement: with AVX2 only, bf16 + channels_last is slower than fp32 for every
    model measured; with AVX-512-BF16 it is faster."""
    assert costplan.costs_kind(BENCH / "bench_cpu.json") == "avx512_bf16"
    assert costplan.costs_kind(BENCH / "bench_cpu_avx2.json") == "avx2"
    for name, faster in (("bench_cpu.json", True), ("bench_cpu_avx2.json", False)):
        rows = json.loads((BENCH / name).read_text())["rows"]
        ms = {(r["model"], r["options"]): r["ms_per_iteration"] for r in rows}
        pairs = [(ms[m, "fp32"], ms[m, "bf16+cl"]) for m, o in ms if o == "fp32" and (m, "bf16+cl") in ms]
        assert len(pairs) >= 4
        assert all((b < f) is faster for f, b in pairs), name


def _table(path: Path, kind: str | None = None, flags: list[str] | None = None) -> Path:
    machine = {"kind": kind} if kind else {"flags_used": flags or []}
    path.write_text(json.dumps({"machine": machine, "rows": [
        {"model": m, "options": o, "ms_per_iteration": ms} for m, o, ms in (
            ("classifier", "bf16+cl", 20.0), ("classifier_large", "bf16+cl", 50.0), ("vae32_s2", "bf16+cl", 80.0),
            ("m2vaal32k3_s1", "bf16+cl", 100.0), ("classifier", "fp32", 30.0))]}))
    return path


def test_auto_costs_take_the_table_of_this_kind(tmp_path):
    _table(tmp_path / "bench_cpu.json", flags=["avx2", "avx512_bf16", "avx512f", "fma"])  # no "kind": from its flags
    _table(tmp_path / "bench_cpu_avx2.json", kind="avx2")
    assert costplan.default_costs(tmp_path, "avx512_bf16") == tmp_path / "bench_cpu.json"
    assert costplan.default_costs(tmp_path, "avx2") == tmp_path / "bench_cpu_avx2.json"
    assert costplan.default_costs(tmp_path, "amx_bf16") == tmp_path / "bench_cpu.json"  # none: the first, and a warning
    (tmp_path / "broken.json").write_text("{")
    assert costplan.costs_kind(tmp_path / "broken.json") == "unknown"
    assert costplan.costs_kind(tmp_path / "missing.json") == "unknown"


def test_plan_warns_of_another_kinds_table_and_of_bf16_without_a_unit(tmp_path):
    exps = [load_experiment(p, results_root=str(tmp_path / "r")) for p in CPU]
    exps = [e for e in exps if not e.oracle]
    table = _table(tmp_path / "t.json", kind="avx512_bf16")
    rows = costplan.plan_costs(exps, costplan.load_costs(table))
    assert costplan.machine_warnings(exps, rows, table, kind="avx512_bf16") == []
    assert costplan.machine_warnings(exps, rows, table, kind="unknown") == []
    lines = costplan.machine_warnings(exps, rows, table, kind="avx2")
    assert len(lines) == 2 and all(line.startswith("warning: ") for line in lines)
    assert "measured on a CPU whose fastest unit is avx512_bf16, this one's is avx2" in lines[0]
    assert "bench_cpu_avx2.json" in lines[0]
    trained = sum(1 for r in rows if r.left_s > 0)  # every cpu run asks for bf16; copied ones (04 of 03) cost nothing
    assert 0 < trained < len(rows) and lines[1].startswith(f"warning: {trained} runs left to train with bf16")


def test_plan_prints_its_table_and_the_warnings_on_stderr(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(costplan, "cpu_kind", lambda: "avx2")
    table = _table(tmp_path / "t.json", kind="avx512_bf16")
    assert main(["plan", str(CPU[1]), "--costs", str(table), "--results-root", str(tmp_path / "r")]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == f"costs: {table}" and out.splitlines()[-1].startswith("total left")
    assert [line.split(":")[0] for line in err.splitlines()] == ["warning", "warning"]


def test_run_warns_once_of_bf16_runs_left_on_a_cpu_without_it(tmp_path, capsys, monkeypatch):
    exp = load_experiment(ROOT / "params" / "cpu" / "02_vaal_vs_random.yaml", results_root=str(tmp_path))
    tasks = plan([exp])
    monkeypatch.setattr(cpu, "cpu_kind", lambda flags=None: "avx2")
    _warn_bf16(tasks, [], force=False)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"warning: {len(tasks)} runs left to train with bf16")
    _warn_bf16(tasks, ["cuda"], force=False)  # a GPU's runs: nothing to say
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(cpu, "cpu_kind", lambda flags=None: "avx512_bf16")
    _warn_bf16(tasks, [], force=False)
    assert capsys.readouterr().err == ""


def test_m2_with_the_large_classifier_is_priced_by_its_own_row(tmp_path):
    """Notebook 05's M2 + ~3M CNN: the m2large row where the table has one, else M2's row + the larger CNN's step."""
    exp = load_experiment(ROOT / "params" / "cpu" / "05_latent_acquisition.yaml", results_root=str(tmp_path))
    base = json.loads(_table(tmp_path / "t.json", kind="avx2").read_text())
    costs = costplan.load_costs(tmp_path / "t.json")
    approx = costplan.run_cost(exp, "random", 0, costs, overhead=0.0)
    assert approx.projected_s[1] == pytest.approx(200 * (100.0 + 50.0 - 50.0) / 1000)  # task ms is the large CNN's
    base["rows"].append({"model": "m2large32k3_s1", "options": "bf16+cl", "ms_per_iteration": 400.0})
    (tmp_path / "t.json").write_text(json.dumps(base))
    own = costplan.run_cost(exp, "random", 0, costplan.load_costs(tmp_path / "t.json"), overhead=0.0)
    assert own.projected_s[0] == pytest.approx(1000 * 0.4) and own.projected_s[1] == pytest.approx(200 * 0.4)


def _bench_cpu():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_cpu", ROOT / "benchmarks" / "bench_cpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("argv, line", [
    (["--options", "fast"], "error: --options: 'fast' is not an option set"),
    (["--models", "resnet"], "error: --models: 'resnet' is not a model"),
    (["--threads-check", "resnet"], "error: --threads-check: 'resnet' is not a model"),
    (["--threads-check", "classifier", "--threads-options", "fast"], "error: --threads-options: 'fast' is not an option set"),
    (["--threads-check", "classifier", "--threads-repeats", "0"], "error: --threads-repeats: 0; allowed: an integer >= 1"),
])
def test_bench_cpu_refuses_a_bad_flag_before_timing_anything(argv, line, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        _bench_cpu().main(argv + ["--tiny", "--out", str(tmp_path / "t.json")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith(line) and err.count("\n") == 1
    assert not (tmp_path / "t.json").exists()


def test_bench_cpu_threads_check_joins_the_table(tmp_path, capsys):
    """One 2-thread process against two 1-thread processes (tiny sizes): medians and each trial, with the option set
    asked for; --append keeps the table's rows and other models' threads, and replaces this model's."""
    table = tmp_path / "t.json"
    table.write_text(json.dumps({"rows": [{"model": "classifier", "options": "fp32", "ms_per_iteration": 5.0}],
                                 "threads": {"vae32_s2": {"ratio_two_1thread_over_one_2thread": 0.9},
                                             "classifier": {"ratio_two_1thread_over_one_2thread": 0.0}}}))
    _bench_cpu().main(["--tiny", "--threads-check", "classifier", "--threads-options", "channels_last",
                       "--out", str(table), "--append"])
    out = json.loads(table.read_text())
    assert out["rows"] == [{"model": "classifier", "options": "fp32", "ms_per_iteration": 5.0}]
    assert out["threads"]["vae32_s2"] == {"ratio_two_1thread_over_one_2thread": 0.9}
    got = out["threads"]["classifier"]
    assert got["options"] == "channels_last" and len(got["trials_one_2thread_it_per_s"]) == 1
    assert len(got["trials_two_1thread_it_per_s"]) == 1
    assert got["ratio_two_1thread_over_one_2thread"] == pytest.approx(
        got["two_1thread_it_per_s"] / got["one_2thread_it_per_s"]) and got["ratio_two_1thread_over_one_2thread"] > 0
    assert capsys.readouterr().out.startswith("threads classifier")
