"""The device kit (scripts/device/): prepare here, run + pack there, unpack here.

The GPU machine returns at most 8 files of at most 16 MiB (64 MiB together) and receives at most
64 MiB; these tests check that the kit keeps to that, runs exactly as the GPU would (on CPU, micro
parameters, its own results root) and that unpack writes nothing it has not verified.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KIT = REPO / "scripts" / "device"
MIB = 1 << 20


def _devkit():
    spec = importlib.util.spec_from_file_location("devkit", KIT / "devkit.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


devkit = _devkit()


def bash(script: str, *args, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(KIT / script), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable, **(env or {})}, timeout=300)


def git(repo: Path, *args):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


def small_repo(tmp_path: Path) -> Path:
    """A checkout with 1,000 tracked bytes (+ .gitignore), 500 untracked, 1 MB ignored."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / ".gitignore").write_text("/.devkit/\n/ignored/\n")
    (repo / "tracked.txt").write_bytes(b"t" * 1000)
    git(repo, "add", ".gitignore", "tracked.txt")
    git(repo, "commit", "-q", "-m", "x")
    (repo / "untracked.txt").write_bytes(b"u" * 500)
    (repo / "ignored").mkdir()
    (repo / "ignored" / "big.bin").write_bytes(b"i" * 1_000_000)
    return repo


# ----------------------------------------------------------------------------- prepare


def test_prepare_counts_what_travels_and_prints_the_call(tmp_path, fmnist_dir):
    repo = small_repo(tmp_path)
    out = bash("prepare.sh", "--repo", repo, "--data-dir", fmnist_dir, "params/paper/02_vaal_vs_random.yaml")
    assert out.returncode == 0, out.stderr
    kit = repo / ".devkit"
    data = sum(p.stat().st_size for p in (kit / "data").iterdir())
    assert sorted(p.name for p in (kit / "data").iterdir()) == sorted(devkit.FMNIST_FILES)
    expected = 1000 + len("/.devkit/\n/ignored/\n") + 500 + data + (kit / "commit.txt").stat().st_size
    sizes = devkit.travelling_size(repo, [".devkit"])
    assert sizes["total"] == expected  # the ignored megabyte does not travel
    assert f"travelling size: {devkit.mib(expected)} of 64.0 MiB" in out.stdout
    assert 'carry: [".devkit"]' in out.stdout
    command = re.search(r"command: (.*)", out.stdout).group(1)
    assert command == 'bash scripts/device/run.sh "$OUT" params/paper/02_vaal_vs_random.yaml'
    assert "wheels: none needed" in out.stdout
    assert re.fullmatch(r"[0-9a-f]{40}\n", (kit / "commit.txt").read_text())


def test_prepare_refuses_a_tree_over_64_mib(tmp_path, fmnist_dir):
    repo = small_repo(tmp_path)
    with open(repo / "untracked_big.bin", "wb") as f:  # sparse: counted by size, costs no disk
        f.truncate(40 * MIB)
    out = bash("prepare.sh", "--repo", repo, "--data-dir", fmnist_dir)
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("error: travelling size:")


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="not a git checkout: nothing to measure")
def test_this_checkout_and_the_data_travel(fmnist_dir):
    sizes = devkit.travelling_size(REPO, [])
    data = sum((fmnist_dir / f).stat().st_size for f in devkit.FMNIST_FILES)
    assert sizes["total"] + data < devkit.TRAVEL_MAX, (
        f"tracked {devkit.mib(sizes['tracked'])} + untracked {devkit.mib(sizes['untracked'])} + data "
        f"{devkit.mib(data)} exceed what the GPU machine receives")


# ----------------------------------------------------------------------------- run there, unpack here

MICRO = """\
name: 02_vaal_vs_random
profile: devkit_test
seeds: [0]
base:
  pool_size: 300
  val_size: 200
  test_size: 200
  initial: {kind: random, n: 40}
  budget: 20
  cycles: 1
  device: cpu
  learner_params: {iterations: 4, batch_size: 32, val_every: 2}
arms:
  random: {learner: classifier, strategy: random, learner_params: {size: tiny}}
  vaal: {learner: vaal, strategy: vaal, learner_params: {classifier_size: tiny, vae_width: 4, latent_dim: 8, disc_hidden: 32, vae_steps: 1}}
"""


def test_dry_run_as_on_the_gpu_then_unpack(tmp_path, fmnist_dir):
    params = tmp_path / "micro.yaml"
    params.write_text(MICRO)
    kit = tmp_path / "kit"
    kit.mkdir()
    (kit / "data").symlink_to(fmnist_dir)
    results, out_dir, back = tmp_path / "results", tmp_path / "OUT", tmp_path / "results_here"
    env = {"DEVKIT": str(kit), "ALKIT_RESULTS": str(results)}

    # as the GPU runs it, but --jobs 2 (2 runs, 2 cores): the default 8 would spawn 8 workers here
    run = bash("run.sh", out_dir, params, "--jobs", 2, "--quiet", env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "travelling size" in run.stdout and "torch" in run.stdout
    assert "--time-limit 540 --results-root" in run.stdout  # the default limit, the kit's results root
    assert not (REPO / "results" / "devkit_test").exists()
    files = sorted(p for p in out_dir.rglob("*") if p.is_file())
    assert 2 <= len(files) <= 8
    for p in files:
        assert p.stat().st_size <= 16 * MIB and re.fullmatch(r"[A-Za-z0-9._-]+", p.name)
    manifest = json.loads((out_dir / "manifest.json").read_text())
    produced = {p.relative_to(results).as_posix() for p in results.rglob("*") if p.is_file()}
    locks = {p for p in produced if Path(p).name.startswith(".") and p.endswith(".lock")}
    assert len(locks) == 2  # each trained run's lock (alkit.results.run_lock) stays here, not packed
    produced -= locks
    assert {f["path"] for f in manifest["files"]} == produced
    assert "runs: 2/2 finished" in (out_dir / "run.log").read_text()

    un = bash("unpack.sh", out_dir, env={"ALKIT_RESULTS": str(back)})
    assert un.returncode == 0, un.stderr
    for rel in produced:
        assert (back / rel).read_bytes() == (results / rel).read_bytes(), rel
    assert "devkit_test/02_vaal_vs_random/vaal/seed0: cycles 0-1 (+2 new)" in un.stdout
    assert bash("unpack.sh", out_dir, env={"ALKIT_RESULTS": str(back)}).returncode == 0  # again: nothing lost

    again = bash("run.sh", tmp_path / "OUT2", params, "--jobs", 2, "--quiet", env=env)  # resume: nothing left to do
    assert again.returncode == 0 and json.loads((tmp_path / "OUT2" / "manifest.json").read_text())["files"] == []


# ----------------------------------------------------------------------------- pack / unpack refusals


def make_results(root: Path, cycles: int = 2) -> None:
    run = root / "p" / "n" / "arm" / "seed0"
    run.mkdir(parents=True, exist_ok=True)
    (run / "records.jsonl").write_text("".join(json.dumps({"cycle": c, "n_labelled": 10 * (c + 1), "test_acc": 0.5})
                                               + "\n" for c in range(cycles)))
    (run / "config.json").write_text("{}")


def pack(results: Path, out: Path, snapshot: dict | None = None) -> int:
    snap = out.parent / f"{out.name}.snapshot.json"
    snap.write_text(json.dumps(snapshot or {}))
    return devkit.main(["pack", str(results), str(snap), str(out), "--alkit-exit", "0"])


def unpack(indir: Path, root: Path, *extra) -> int:
    return devkit.main(["unpack", str(indir), "--results-root", str(root), *extra])


def test_pack_splits_into_parts_and_unpack_joins_them(tmp_path, monkeypatch):
    monkeypatch.setattr(devkit, "OUT_FILE_MAX", 256 * 1024)
    results = tmp_path / "res"
    make_results(results)
    (results / "p" / "n" / "arm" / "seed0" / "noise.bin").write_bytes(os.urandom(600 * 1024))  # incompressible
    assert pack(results, tmp_path / "out") == 0
    parts = sorted((tmp_path / "out").glob("results.tar.gz.*"))
    assert len(parts) == 3 and all(p.stat().st_size <= 256 * 1024 for p in parts)
    assert unpack(tmp_path / "out", tmp_path / "back") == 0
    assert (tmp_path / "back" / "p/n/arm/seed0/noise.bin").read_bytes() == (results / "p/n/arm/seed0/noise.bin").read_bytes()


def test_pack_refuses_more_than_comes_back(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(devkit, "OUT_FILE_MAX", 64 * 1024)
    results = tmp_path / "res"
    make_results(results)
    (results / "p" / "n" / "arm" / "seed0" / "noise.bin").write_bytes(os.urandom(7 * 64 * 1024))  # 8 parts > 7
    assert pack(results, tmp_path / "out") == 1
    assert capsys.readouterr().err.startswith("error: packed results")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["manifest.json"]  # the list comes back, no parts


def test_pack_takes_only_new_or_changed_files(tmp_path):
    results = tmp_path / "res"
    make_results(results, cycles=1)
    before = devkit.hash_tree(results)
    make_results(results, cycles=2)  # records grow, config.json unchanged
    assert pack(results, tmp_path / "out", before) == 0
    files = json.loads((tmp_path / "out" / "manifest.json").read_text())["files"]
    assert [(f["path"], f["status"]) for f in files] == [("p/n/arm/seed0/records.jsonl", "changed")]


def test_unpack_refuses_a_tampered_part(tmp_path, capsys):
    make_results(tmp_path / "res")
    assert pack(tmp_path / "res", tmp_path / "out") == 0
    part = tmp_path / "out" / "results.tar.gz.00"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    assert unpack(tmp_path / "out", tmp_path / "back") == 1
    assert "SHA-256 differs" in capsys.readouterr().err
    assert not (tmp_path / "back").exists()


def test_unpack_refuses_older_records(tmp_path, capsys):
    make_results(tmp_path / "res", cycles=1)
    assert pack(tmp_path / "res", tmp_path / "out") == 0
    make_results(tmp_path / "back", cycles=2)  # here already further than the pack
    assert unpack(tmp_path / "out", tmp_path / "back") == 1
    assert "not the first records" in capsys.readouterr().err
    assert unpack(tmp_path / "out", tmp_path / "back", "--force") == 0


def forged_pack(out: Path, member: tarfile.TarInfo, payload: bytes = b"x") -> None:
    """A pack whose hashes are all right but whose archive holds ``member``."""
    out.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        member.size = len(payload) if member.isreg() else 0
        tar.addfile(member, io.BytesIO(payload) if member.isreg() else None)
    blob = buf.getvalue()
    sha = hashlib.sha256(blob).hexdigest()
    (out / "results.tar.gz.00").write_bytes(blob)
    path = member.name.split("/", 1)[-1]
    (out / "manifest.json").write_text(json.dumps({
        "format": devkit.FORMAT, "files": [{"path": path, "bytes": 1, "sha256": hashlib.sha256(payload).hexdigest()}],
        "parts": [{"name": "results.tar.gz.00", "bytes": len(blob), "sha256": sha}], "archive_sha256": sha}))


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize("member, why", [
    (tarfile.TarInfo("results/../escaped.txt"), "'..'"),
    (tarfile.TarInfo("results/p/../../escaped.txt"), "'..'"),
    (tarfile.TarInfo("/tmp/escaped.txt"), "absolute"),
    (tarfile.TarInfo("elsewhere/escaped.txt"), "not under results/"),
    (_link("results/p/link", "/etc/passwd"), "not a regular file"),
    (_link("results/p/hard", "/etc/passwd", tarfile.LNKTYPE), "not a regular file"),
])
def test_unpack_refuses_paths_outside_results(tmp_path, capsys, member, why):
    forged_pack(tmp_path / "out", member)
    assert unpack(tmp_path / "out", tmp_path / "back") == 1
    assert why in capsys.readouterr().err
    assert not (tmp_path / "back").exists() and not (tmp_path / "escaped.txt").exists()
