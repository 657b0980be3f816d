"""Result files: the git commit stamp and atomic writes."""
import subprocess

import pytest

from alkit.results import atomic_write_text, git_commit, read_records, write_records


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_git_commit_dirty_only_for_code_not_for_run_outputs(tmp_path):
    repo = tmp_path / "repo"
    for d in ("alkit", "notebooks", "results", "figures"):
        (repo / d).mkdir(parents=True)
        (repo / d / "f.txt").write_text("a\n")
    _git(repo, "init", "-q")
    _git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    _git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x")
    sha = git_commit(repo / "alkit")
    assert len(sha) == 40 and not sha.endswith("-dirty")
    for d in ("notebooks", "results", "figures"):  # what a run writes
        (repo / d / "f.txt").write_text("b\n")
    assert git_commit(repo / "alkit") == sha
    (repo / "alkit" / "f.txt").write_text("b\n")  # the code that produced it
    assert git_commit(repo / "alkit") == sha + "-dirty"
    assert git_commit(tmp_path) == "unknown"  # outside any repository


def test_git_commit_outside_a_checkout_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ALKIT_GIT_COMMIT", "abc123")  # the device kit's copy of the tree has no .git
    assert git_commit(tmp_path) == "abc123"


def test_atomic_write_leaves_no_partial_file(tmp_path):
    path = tmp_path / "sub" / "records.jsonl"
    write_records(path, [{"cycle": 0, "acc": 0.5}, {"cycle": 1, "acc": float("nan")}])
    recs = read_records(path)
    assert [r["cycle"] for r in recs] == [0, 1]
    atomic_write_text(path, "")
    assert read_records(path) == []
    assert [p.name for p in path.parent.iterdir()] == ["records.jsonl"]  # no temp files left behind


def test_environment_names_the_cpu_and_torchs_kernels():
    """CPU results reproduce bit for bit only on the same kind of CPU: each run records which it was."""
    import platform

    import torch

    from alkit.results import environment

    env = environment()
    assert env["cpu"] and isinstance(env["cpu"], str)
    if platform.system() == "Linux":
        with open("/proc/cpuinfo") as fh:
            assert env["cpu"] in fh.read()
    assert env["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["cpu_kind"] in ("amx_bf16", "avx512_bf16", "avx512f", "avx2", "other", "unknown")
    assert env["torch_cpu_capability"] in ("DEFAULT", "NO AVX", "AVX", "AVX2", "AVX512", "ZVECTOR", "VSX", "SVE256", "SVE")
    assert env["cpu_count"] >= 1 and env["torch_threads"] >= 1


@pytest.mark.parametrize("umask, mode", [(0o002, 0o664), (0o022, 0o644), (0o077, 0o600)])
def test_written_files_get_the_users_umask_not_mkstemps_0600(tmp_path, umask, mode):
    """Results, figures, latent codes and learner states all go through atomic_write_bytes; in a group
    folder on a cluster (umask 002) the group must be able to read them."""
    import os
    import stat

    from alkit.results import atomic_write_bytes, file_mode

    old = os.umask(umask)
    try:
        assert file_mode() == mode and os.umask(umask) == umask  # reading the umask leaves it as it was
        atomic_write_bytes(tmp_path / "run" / "records.jsonl", b"{}\n")
        atomic_write_bytes(tmp_path / "run" / "records.jsonl", b"{}\n{}\n")  # a rewrite too
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "run" / "records.jsonl").stat().st_mode) == mode
