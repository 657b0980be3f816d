"""Shared pytest fixtures. Data fixtures: the real Fashion-MNIST files, skipped cleanly when absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# One intra-op thread in this process and in every process it starts (kernels, `python -m alkit`, workers).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

FMNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
_FMNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@pytest.fixture(scope="session")
def fmnist_dir() -> Path:
    """Folder with the four real Fashion-MNIST ``.gz`` files (Debian ``dataset-fashion-mnist``).

    Skips the requesting test, not the suite, when the package is not installed (CI installs it).
    """
    missing = [f for f in _FMNIST_FILES if not (FMNIST_SYSTEM_DIR / f).is_file()]
    if missing:
        pytest.skip(
            f"Fashion-MNIST not found in {FMNIST_SYSTEM_DIR} (missing {', '.join(missing)}); "
            "install the Debian package dataset-fashion-mnist to run this test"
        )
    return FMNIST_SYSTEM_DIR


@pytest.fixture(scope="session")
def fmnist_small(fmnist_dir):
    """A small, fixed Fashion-MNIST split on CPU for quick tests: 2000 pool, 1000 val, 1000 test."""
    from alkit.data import load_dataset

    return load_dataset(
        data_dir=fmnist_dir, device="cpu", split_seed=0, val_size=1000, pool_size=2000,
        test_size=1000, download=False,
    )


@pytest.fixture(scope="session")
def data():
    """A planted synthetic dataset (200 pool, 100 val, 100 test; class c lights rows 2c..2c+5), shared by the
    loop and strategy-contract tests; no test changes it (``Data.to`` copies)."""
    from helpers import synthetic_data

    return synthetic_data(pool=200)


@pytest.fixture(scope="session")
def micro_reference(tmp_path_factory, fmnist_dir) -> list[dict]:
    """The records (without timings) of ``helpers.MICRO``'s ``MICRO_ARMS`` runs trained one after another in one
    process with 1 torch thread: what concurrent, time-boxed, Ray and killed-and-resumed runs must reproduce.

    Trained once per pytest run: under xdist the first worker that asks trains it while holding a lock in the
    run's shared temp folder, and the others read its JSON (records read back from disk either way)."""
    import fcntl
    import json

    worker = os.environ.get("PYTEST_XDIST_WORKER")
    shared = tmp_path_factory.getbasetemp().parent if worker else tmp_path_factory.mktemp("micro_reference")
    cache = shared / "micro_reference.json"
    with open(shared / "micro_reference.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not cache.exists():
            cache.write_text(json.dumps(_train_micro_reference(shared / "micro_reference")))
    return json.loads(cache.read_text())


def _train_micro_reference(root: Path) -> list[dict]:
    import torch

    from helpers import records_without_timings, run_micro

    threads = torch.get_num_threads()
    try:
        summary = run_micro(root)
    finally:
        torch.set_num_threads(threads)
    assert summary.finished == summary.runs == 6 and summary.cycles_done == 12 and not summary.failed
    return records_without_timings(root)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny models: they gain nothing from intra-op threads, and on a shared
    2-core box the OpenMP hand-offs made test_generative ~8x slower (123 s vs 15 s); results do not depend on it.
    A module asks for it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)



@pytest.fixture(autouse=True)
def _one_ray_test_at_a_time(request):
    """Tests marked ``ray`` take a machine-wide lock: under ``pytest -n`` two Ray tests in two workers would
    otherwise start clusters side by side, and a local ``ray.init()`` may join the other test's cluster."""
    if request.node.get_closest_marker("ray") is None:
        yield
        return
    import fcntl
    import tempfile

    with open(Path(tempfile.gettempdir()) / "alkit-tests-ray.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


#: tests `make test-fast` leaves to `make test`: each over ~1.4 s on a quiet 2-core machine (pytest --durations,
#: 2026-12-02), mostly because it starts `python -m alkit` processes, trains several micro runs end to end,
#: or simulates thousands of null studies. A node id, or its prefix before "[" (every parameter).
#: The ``slow`` marker does the deselecting, so `-m slow` runs exactly these (plus the modules marked slow).
SLOW = (
    "tests/test_safety.py::test_two_alkit_runs_at_once_train_every_run_once_and_no_records_file_shrinks",
    "tests/test_safety.py::test_a_locked_run_is_skipped_and_said_so_and_wait_waits_for_it",
    "tests/test_safety.py::test_a_run_creates_no_file_outside_its_results_root",
    "tests/test_safety.py::test_a_finished_run_without_its_config_is_refused_then_repaired_and_never_dropped",
    "tests/test_safety.py::test_repair_refuses_records_of_another_config",
    "tests/test_safety.py::test_a_cut_off_last_records_line_is_one_error_line_and_repair_drops_it",
    "tests/test_jobs.py::test_two_workers_give_the_records_of_one",
    "tests/test_jobs.py::test_time_box_then_resume_gives_the_uninterrupted_records",
    "tests/test_jobs.py::test_a_time_limit_shorter_than_any_cycle_trains_nothing_and_exits_0",
    "tests/test_jobs.py::test_bad_run_options_are_one_error_line_before_anything_is_written",
    "tests/test_jobs.py::test_a_run_two_experiments_share_is_trained_once_and_copied",
    "tests/test_device_kit.py::test_dry_run_as_on_the_gpu_then_unpack",
    "tests/test_device_kit.py::test_prepare_counts_what_travels_and_prints_the_call",
    "tests/test_device_kit.py::test_prepare_refuses_a_tree_over_64_mib",
    "tests/test_fused.py::test_fused_group_of_three_runs_matches_the_unfused_runs",
    "tests/test_fused.py::test_probe_reads_each_runs_final_state_alone_and_fused",
    "tests/test_fused.py::test_killed_fused_group_resumes_to_the_uninterrupted_records",
    *(f"tests/test_fused.py::test_fused_phases_equal_separate_runs[{n}-20]" for n in ("m2", "m2_disc", "m2_vaal", "tavaal", "vaal")),
    "tests/test_cli.py::test_own_strategy_from_a_file_runs_through_the_cli",
    "tests/test_cli.py::test_unknown_arm_and_missing_file",
    "tests/test_cli.py::test_strategies_and_learners_are_listed",
    "tests/test_cli.py::test_bad_input_is_one_clear_line_and_exit_2",
    "tests/test_cli.py::test_own_data_is_checked_before_any_training",
    "tests/test_cli.py::test_oracle_sessions_are_left_to_their_notebook",
    # the contract of every strategy but two (random, entropy: the loop's plumbing and one scored strategy)
    *(f"tests/test_strategy_contract.py::test_strategy_contract[{s}]" for s in (
        "alg1", "alg2", "badge", "bald", "coreset", "kernel_norm_approx", "kernel_norm_exact", "least_confidence",
        "margin", "network_norm", "probcover", "typiclust", "vaal")),
    "tests/test_strategy_contract.py::test_readme_example_strategy_registers_and_keeps_the_contract",
    "tests/test_loop.py::test_two_cycle_end_to_end_on_real_fashion_mnist",
    "tests/test_statistics.py::test_holm_keeps_the_familywise_false_positive_rate",
    "tests/test_generative.py::test_discriminator_ranks_planted_cluster_first",
    "tests/test_plots.py::test_redrawing_the_same_figure_writes_identical_bytes_and_touches_nothing",
    "tests/test_coverage.py::test_loop_records_coverage_only_when_asked_and_changes_nothing_else",
    "tests/test_timebox.py::test_a_given_up_cycle_keeps_nothing_and_the_resumed_run_equals_the_uninterrupted_one",
)


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    """Mark :data:`SLOW`'s tests ``slow``; an entry naming no test of a collected file is an error (a renamed
    test would otherwise join the fast subset unnoticed)."""
    used, files = set(), {item.nodeid.split("::", 1)[0] for item in items}
    for item in items:
        for entry in SLOW:
            if item.nodeid == entry or item.nodeid.split("[", 1)[0] == entry:
                item.add_marker(pytest.mark.slow)
                used.add(entry)
    stale = [e for e in SLOW if e.split("::", 1)[0] in files and e not in used and not _filtered(config)]
    if stale:
        raise pytest.UsageError("tests/conftest.py SLOW names no collected test: " + ", ".join(stale))
    if getattr(config.option, "loadgroup", False):  # an xdist worker of --dist loadgroup (its own dist is "no")
        _units_for_loadgroup(items)


# ------------------------------------------------------------------------ make test's work units (pytest-xdist)

#: ``make test``'s order of work units under ``--dist loadgroup`` (longest first, so that no long unit starts
#: last and runs alone at the end): a unit's class is the first that matches one of its tests
HEAVY_FIRST = ("ray", "tests/test_benchmarks.py", "tests/test_notebooks.py", "notebooks", "nbval", "slow")
_UNITS_ENV = "ALKIT_TEST_UNITS"  # a folder: each xdist worker writes its tests' units there for the controller


def _units_for_loadgroup(items) -> None:
    """``make test``'s work units: each test is a unit of its own, except

    - a notebook's nbval cells: one unit, in order (they share its kernel);
    - the tests marked ``ray``: one unit (one Ray cluster at a time on the machine; see ``_one_ray_test_at_a_time``);
    - a file's tests that use a module- or session-scoped fixture the file defines: one unit (built once).

    Units are ordered by :data:`HEAVY_FIRST` (stable: a unit's tests stay together and in order). xdist's own
    ``xdist_group`` marker cannot carry this on pytest 9.2 (xdist 3.8 renames ``item._nodeid``, which pytest no
    longer reads), so the worker writes ``{node id: unit}`` for the controller's scheduler
    (:func:`pytest_xdist_make_scheduler`)."""
    def file(item) -> str:
        return item.nodeid.split("::", 1)[0]

    def unit(item) -> str:
        path = file(item)
        if path.endswith(".ipynb"):
            return path
        if item.get_closest_marker("ray") is not None:
            return "ray"
        defs = (d for ds in item._fixtureinfo.name2fixturedefs.values() for d in ds)
        if any(d.scope in ("module", "session") and d.baseid == path for d in defs):
            return path
        return item.nodeid

    def heavy(item, name: str) -> bool:
        if name in ("ray", "notebooks", "slow"):
            return item.get_closest_marker(name) is not None
        if name == "nbval":
            return file(item).endswith(".ipynb")
        return file(item) == name

    units = {item.nodeid: unit(item) for item in items}
    rank: dict[str, int] = {}
    for item in items:
        r = next((i for i, name in enumerate(HEAVY_FIRST) if heavy(item, name)), len(HEAVY_FIRST))
        rank[units[item.nodeid]] = min(rank.get(units[item.nodeid], r), r)
    items.sort(key=lambda item: rank[units[item.nodeid]])
    folder = os.environ.get(_UNITS_ENV)
    if folder:
        import json

        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        (Path(folder) / f"{worker}.json").write_text(json.dumps(units))


def pytest_configure(config):
    """The controller of ``--dist loadgroup`` gives its workers a folder for their units (:data:`_UNITS_ENV`)."""
    if config.getvalue("dist") == "loadgroup" and not hasattr(config, "workerinput"):
        import tempfile

        config._alkit_units = tempfile.mkdtemp(prefix="alkit-test-units-")
        os.environ[_UNITS_ENV] = config._alkit_units


def pytest_unconfigure(config):
    folder = getattr(config, "_alkit_units", None)
    if folder:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop(_UNITS_ENV, None)


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadgroup``: xdist's LoadGroupScheduling, its units read from the workers' ``{node id: unit}`` files
    (when the first test is scheduled: every worker has finished collecting by then)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    import json

    from xdist.scheduler import LoadGroupScheduling

    class Units(LoadGroupScheduling):
        units: dict | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.units is None:
                files = sorted(Path(os.environ[_UNITS_ENV]).glob("*.json"))
                self.units = json.loads(files[0].read_text()) if files else {}
            return self.units.get(nodeid, nodeid)

    return Units(config, log)


def _filtered(config) -> bool:
    """A -k or node-id selection collects part of a file: stale entries cannot be told from unselected ones."""
    return bool(config.getoption("keyword")) or any("::" in str(a) for a in config.args)
