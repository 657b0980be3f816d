"""The device kit: run alkit on a GPU machine that has no network and returns at most 8 files.

Three steps, each one command (the ``.sh`` files beside this one call these subcommands):

- ``prepare`` (here): copy the four MD5-verified Fashion-MNIST files into the kit folder
  (``.devkit/``, git-ignored, carried to the machine), optionally download wheels of packages the
  GPU image lacks, and print the travelling size and the exact device-tool call.
- ``snapshot`` / ``pack`` (there, from ``run.sh``): hash every file under the results root before
  the run; afterwards put every new or changed file into one ``.tar.gz`` cut into parts, plus a
  manifest with the SHA-256 of each part and of each file.
- ``unpack`` (here): check the manifest's hashes, join the parts and extract into the results root,
  refusing anything but regular files under ``results/``; print which runs and cycles arrived.

Limits it encodes (/work/.library/device/README.md): the tree that travels (tracked +
untracked-not-ignored files + ``shared/`` + carried paths) is at most 64 MiB; what comes back from
``$OUT`` is at most 8 files, 16 MiB each, 64 MiB together, named with letters, digits, '.', '_',
'-' only. Standard library only: the GPU machine runs it with its own ``python3`` (3.12).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path, PurePosixPath

MIB = 1 << 20
TRAVEL_MAX = 64 * MIB          # working tree + carried paths
OUT_FILES_MAX = 8              # files back from $OUT
OUT_FILE_MAX = 16 * MIB        # each
OUT_TOTAL_MAX = 64 * MIB       # together
COMMAND_MAX = 2000             # characters of one device command
SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")

MANIFEST = "manifest.json"
ARCHIVE = "results.tar.gz"
LOG = "run.log"
LOG_MAX = 1 * MIB              # run.log keeps the last MiB of alkit's output
FORMAT = "alkit-devkit-1"
ARC_ROOT = "results"           # archive members are results/<path under the results root>

FMNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
# What `python -m alkit run` imports; all are in the GPU image (KINDS.md, "Python packages already there").
RUN_NEEDS = ("torch", "numpy", "pyyaml", "tqdm")
WHEEL_PLATFORMS = ("manylinux_2_39_x86_64", "manylinux_2_35_x86_64", "manylinux_2_34_x86_64",
                   "manylinux_2_31_x86_64", "manylinux_2_28_x86_64", "manylinux_2_27_x86_64",
                   "manylinux_2_24_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                   "manylinux1_x86_64")


class KitError(Exception):
    """A refusal: printed as one ``error:`` line, exit status 1."""


def mib(n: int) -> str:
    return f"{n / MIB:.1f} MiB"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            h.update(block)
    return h.hexdigest()


def repo_root(start: Path) -> Path:
    out = subprocess.run(["git", "-C", str(start), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if out.returncode != 0:
        raise KitError(f"{start} is not inside a git checkout: {out.stderr.strip()}")
    return Path(out.stdout.strip())


def _files_under(path: Path):
    """Regular files under ``path`` (itself if a file); symbolic links are not followed (they travel as links)."""
    if path.is_symlink() or path.is_file():
        yield path
        return
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            yield Path(dirpath) / name


# ----------------------------------------------------------------------------- travelling size


def travelling_size(repo: Path, carry: list[str]) -> dict:
    """Bytes that travel to the device: tracked + untracked-not-ignored files, ``shared/``, carried paths.

    Each file counted once, by its size in the working tree (a tracked file deleted here travels
    not at all). Returns ``{"tracked", "untracked", "shared", "carried": {path: bytes}, "total"}``.
    """
    def git_list(*args: str) -> list[str]:
        out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", *args], capture_output=True)
        if out.returncode != 0:
            raise KitError(f"git ls-files failed in {repo}: {out.stderr.decode().strip()}")
        return [p for p in out.stdout.decode().split("\0") if p]

    seen: set[str] = set()

    def count(rels) -> int:
        total = 0
        for rel in rels:
            if rel in seen:
                continue
            p = repo / rel
            if p.is_symlink() or p.is_file():
                seen.add(rel)
                total += p.lstat().st_size
        return total

    sizes = {"tracked": count(git_list("--cached")), "untracked": count(git_list("--others", "--exclude-standard"))}
    shared = repo / "shared"
    sizes["shared"] = count(str(p.relative_to(repo)) for p in _files_under(shared)) if shared.is_dir() else 0
    sizes["carried"] = {}
    for c in carry:
        p = repo / c
        if not p.exists():
            raise KitError(f"carried path {c} does not exist in {repo}")
        sizes["carried"][c] = count(str(q.relative_to(repo)) for q in _files_under(p))
    sizes["total"] = sizes["tracked"] + sizes["untracked"] + sizes["shared"] + sum(sizes["carried"].values())
    return sizes


def tree_size(root: Path, skip: list[Path]) -> int:
    """Bytes of every file under ``root`` except ``.git`` and ``skip`` (on the device: what arrived)."""
    skip = {s.resolve() for s in skip}
    total = 0
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git" and (Path(dirpath) / d).resolve() not in skip]
        total += sum((Path(dirpath) / f).lstat().st_size for f in files)
    return total


# ----------------------------------------------------------------------------- prepare (here)


def copy_data(kit: Path, source: str | None) -> int:
    """Copy the four verified Fashion-MNIST files into ``kit/data``; check the copies as the device will."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from alkit.data import locate_files  # here alkit is importable (.venv); the device never runs prepare

    paths = locate_files("fashion_mnist", data_dir=source, download=source is None)
    dest = kit / "data"
    dest.mkdir(parents=True, exist_ok=True)
    for src in paths.values():
        if src.name not in FMNIST_FILES:
            raise KitError(f"{src}: expected one of the .gz files {', '.join(FMNIST_FILES)} (decompressed files are 4x larger)")
        target = dest / src.name
        if not (target.is_file() and target.stat().st_size == src.stat().st_size and sha256_file(target) == sha256_file(src)):
            shutil.copyfile(src, target)
    stray = sorted(p.name for p in dest.iterdir() if p.name not in FMNIST_FILES)
    if stray:
        raise KitError(f"{dest} holds files other than the four Fashion-MNIST files: {', '.join(stray)}")
    locate_files("fashion_mnist", data_dir=dest, download=False)  # the device's lookup: $ALKIT_DATA=<kit>/data
    return sum(p.stat().st_size for p in dest.iterdir())


def download_wheels(kit: Path, specs: list[str]) -> list[str]:
    """``pip download`` x86-64 / CPython 3.12 wheels (no dependencies) into ``kit/wheels``; their Requires-Dist."""
    import zipfile

    dest = kit / "wheels"
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
           "--implementation", "cp", *[a for p in WHEEL_PLATFORMS for a in ("--platform", p)], "-d", str(dest), *specs]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise KitError(f"pip download {' '.join(specs)} failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
    notes, names = [], {}
    for whl in sorted(dest.glob("*.whl")):
        name = whl.name.split("-")[0].lower().replace("_", "-")
        names.setdefault(name, []).append(whl.name)
        with zipfile.ZipFile(whl) as z:
            meta = next((n for n in z.namelist() if n.endswith(".dist-info/METADATA")), None)
            lines = z.read(meta).decode().splitlines() if meta else []
        reqs = [line.split(":", 1)[1].strip() for line in lines
                if line.startswith("Requires-Dist:") and "extra ==" not in line]
        notes.append(f"  {whl.name} ({mib(whl.stat().st_size)})" + (f"; needs: {', '.join(reqs)}" if reqs else ""))
    twice = {n: w for n, w in names.items() if len(w) > 1}
    if twice:
        raise KitError(f"two versions of one package in {dest} stop the whole install; keep one: "
                       + "; ".join(", ".join(w) for w in twice.values()))
    return notes


def git_commit_here(repo: Path) -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from alkit.results import git_commit

    return git_commit(repo)


def device_command(params: list[str], extra: list[str]) -> str:
    return " ".join(["bash scripts/device/run.sh \"$OUT\"", *params, *map(shlex.quote, extra)])


def cmd_prepare(args) -> int:
    repo = repo_root(Path(args.repo or Path(__file__).resolve().parent))
    kit = Path(args.kit)
    kit = kit if kit.is_absolute() else repo / kit
    try:
        kit_rel = kit.resolve().relative_to(repo.resolve()).as_posix()
    except ValueError:
        raise KitError(f"the kit folder {kit} must be inside the checkout {repo}: only paths of the repo can be carried")
    ignored = subprocess.run(["git", "-C", str(repo), "check-ignore", "-q", kit_rel + "/"]).returncode == 0
    if not ignored:
        raise KitError(f"{kit_rel}/ is not git-ignored: add /{kit_rel}/ to .gitignore (a carried path must be ignored)")
    kit.mkdir(parents=True, exist_ok=True)

    data_bytes = copy_data(kit, args.data_dir)
    print(f"data: 4 Fashion-MNIST files, MD5 verified, in {kit_rel}/data ({mib(data_bytes)}); the device reads them as $ALKIT_DATA")
    if args.wheel:
        print("wheels:")
        print("\n".join(download_wheels(kit, args.wheel)))
    else:
        old = sorted((kit / "wheels").glob("*.whl")) if (kit / "wheels").is_dir() else []
        if old:
            print(f"wheels: {len(old)} already in {kit_rel}/wheels, carried: {', '.join(w.name for w in old)}")
        else:
            print(f"wheels: none needed: the GPU image has {', '.join(RUN_NEEDS)}, all that `alkit run` imports "
                  "(--wheel NAME==VERSION adds one)")
    commit = git_commit_here(repo)
    (kit / "commit.txt").write_text(commit + "\n")
    print(f"commit: {commit} (written to {kit_rel}/commit.txt; run.sh exports it as ALKIT_GIT_COMMIT, "
          "the device has no .git)")

    sizes = travelling_size(repo, [kit_rel])
    line = (f"travelling size: {mib(sizes['total'])} of {mib(TRAVEL_MAX)} (tracked {mib(sizes['tracked'])}, "
            f"untracked {mib(sizes['untracked'])}, shared/ {mib(sizes['shared'])}, carried {kit_rel} "
            f"{mib(sizes['carried'][kit_rel])})")
    print(line)
    if sizes["total"] > TRAVEL_MAX:
        raise KitError(f"{line}: over the device's limit by {mib(sizes['total'] - TRAVEL_MAX)}; "
                       "commit less (results of finished chunks are small; learners/ stay ignored) or carry less")
    command = device_command(args.params or ["params/paper/*.yaml"], args.run_args)
    if len(command) > COMMAND_MAX:
        raise KitError(f"the device command is {len(command)} characters (at most {COMMAND_MAX})")
    print("device tool call (run):")
    print(f"  carry: {json.dumps([kit_rel])}")
    print("  timeout_s: 600")
    print(f"  command: {command}")
    return 0


# ----------------------------------------------------------------------------- snapshot + pack (there)


def hash_tree(root: Path) -> dict[str, str]:
    """``{posix path under root: sha256}`` of every regular file under ``root`` (links are skipped)."""
    out = {}
    if root.is_dir():
        for p in _files_under(root):
            if p.is_file() and not p.is_symlink() and not (p.name.startswith(".") and p.name.endswith(".lock")):
                out[p.relative_to(root).as_posix()] = sha256_file(p)  # run locks (alkit.results.run_lock) stay
    return out


def cmd_snapshot(args) -> int:
    Path(args.file).write_text(json.dumps(hash_tree(Path(args.results_root))))
    return 0


def cmd_tree_size(args) -> int:
    """On the device (no .git): every file that arrived. In a checkout (a dry run here): what would travel."""
    here = Path(".").resolve()
    if (here / ".git").exists():
        kit = Path(args.kit).resolve()
        carry = [kit.relative_to(here).as_posix()] if kit.is_dir() and here in kit.parents else []
        n = travelling_size(here, carry)["total"]
        print(f"travelling size (this checkout + {', '.join(carry) or 'nothing carried'}): {mib(n)} of {mib(TRAVEL_MAX)}")
    else:
        n = tree_size(here, [Path(s) for s in args.skip])
        print(f"travelling size (every file that arrived, $OUT aside): {mib(n)} of {mib(TRAVEL_MAX)}")
    return 0


def cmd_pack(args) -> int:
    """Pack new or changed files of the results root into ``outdir``: parts + manifest (+ run.log)."""
    root, outdir = Path(args.results_root), Path(args.outdir)
    before = json.loads(Path(args.snapshot).read_text())
    after = hash_tree(root)
    changed = sorted(p for p, h in after.items() if before.get(p) != h)
    links = sorted(p.relative_to(root).as_posix() for p in _files_under(root) if p.is_symlink()) if root.is_dir() else []
    files = [{"path": p, "bytes": (root / p).stat().st_size, "sha256": after[p],
              "status": "changed" if p in before else "new"} for p in changed]
    manifest = {
        "format": FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "results_root": str(root),
        "alkit_exit": args.alkit_exit, "prepared_commit": args.commit, "files": files,
        "deleted": sorted(set(before) - set(after)), "links_skipped": links, "parts": [],
    }
    outdir.mkdir(parents=True, exist_ok=True)
    if any(outdir.iterdir()):
        raise KitError(f"{outdir} is not empty: parts of two packs would mix")

    n_log = 0
    if args.log and Path(args.log).is_file():
        data = Path(args.log).read_bytes()
        (outdir / LOG).write_bytes(data[-LOG_MAX:])
        n_log = min(len(data), LOG_MAX)

    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / ARCHIVE
        with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
            for f in files:
                tar.add(root / f["path"], arcname=f"{ARC_ROOT}/{f['path']}", recursive=False)
        size = archive.stat().st_size
        part_max = OUT_FILE_MAX
        n_parts = max(1, -(-size // part_max))
        room_files = OUT_FILES_MAX - 1 - (1 if n_log else 0)
        room_bytes = OUT_TOTAL_MAX - n_log - 256 * 1024  # the manifest's share
        if n_parts > room_files or size > room_bytes:
            big = sorted(files, key=lambda f: -f["bytes"])[:5]
            manifest["error"] = (f"packed results {mib(size)} exceed what comes back ({room_files} parts of "
                                 f"{mib(part_max)}, {mib(room_bytes)} together)")
            (outdir / MANIFEST).write_text(json.dumps(manifest, indent=1))
            raise KitError(manifest["error"] + "; largest: " + ", ".join(f"{f['path']} {mib(f['bytes'])}" for f in big)
                           + "; nothing packed: run fewer parameter files per chunk")
        manifest["archive_sha256"] = sha256_file(archive)
        manifest["archive_bytes"] = size
        with open(archive, "rb") as src:
            for i in range(n_parts):
                name = f"{ARCHIVE}.{i:02d}"
                chunk = src.read(part_max)
                (outdir / name).write_bytes(chunk)
                manifest["parts"].append({"name": name, "bytes": len(chunk), "sha256": hashlib.sha256(chunk).hexdigest()})
    (outdir / MANIFEST).write_text(json.dumps(manifest, indent=1))
    check_outdir(outdir)
    unknown = _unknown_commits(root, changed)
    print(f"packed {len(files)} new or changed files ({mib(sum(f['bytes'] for f in files))}) into {n_parts} part(s), "
          f"{mib(size)}, + {MANIFEST}" + (f" + {LOG}" if n_log else "") + f" in {outdir}")
    if unknown:
        print(f"note: {len(unknown)} new config.json record git_commit 'unknown' (no .git here); "
              f"the prepared commit was {args.commit or 'not given'}")
    return 0


def _unknown_commits(root: Path, changed: list[str]) -> list[str]:
    out = []
    for p in changed:
        if p.endswith("config.json"):
            try:
                if json.loads((root / p).read_text()).get("git_commit") == "unknown":
                    out.append(p)
            except (OSError, ValueError):
                pass
    return out


def check_outdir(outdir: Path) -> None:
    """What the device tool brings back: at most 8 files, 16 MiB each, 64 MiB together, safe names."""
    files = [p for p in outdir.rglob("*") if not p.is_dir()]
    if len(files) > OUT_FILES_MAX:
        raise KitError(f"{outdir} holds {len(files)} files; at most {OUT_FILES_MAX} come back")
    total = 0
    for p in files:
        rel = p.relative_to(outdir)
        if p.is_symlink() or not p.is_file():
            raise KitError(f"{rel} is not a plain file and would not come back")
        if len(rel.parts) > 3 or not all(SAFE_NAME.match(part) for part in rel.parts):
            raise KitError(f"{rel}: names must be letters, digits, '.', '_', '-' and at most 2 folders deep")
        if p.stat().st_size > OUT_FILE_MAX:
            raise KitError(f"{rel} is {mib(p.stat().st_size)}; at most {mib(OUT_FILE_MAX)} a file comes back")
        total += p.stat().st_size
    if total > OUT_TOTAL_MAX:
        raise KitError(f"{outdir} holds {mib(total)}; at most {mib(OUT_TOTAL_MAX)} come back")


# ----------------------------------------------------------------------------- unpack (here)


def _member_target(name: str) -> str:
    """The path under the results root for archive member ``name``; refuses anything outside ``results/``."""
    if "\\" in name or "\0" in name:
        raise KitError(f"archive member {name!r}: odd characters")
    p = PurePosixPath(name)
    if p.is_absolute():
        raise KitError(f"archive member {name!r} is an absolute path")
    if any(part in ("..", "") for part in name.split("/")) or ".." in p.parts:
        raise KitError(f"archive member {name!r} climbs out with '..' or has empty parts")
    if len(p.parts) < 2 or p.parts[0] != ARC_ROOT:
        raise KitError(f"archive member {name!r} is not under {ARC_ROOT}/")
    return PurePosixPath(*p.parts[1:]).as_posix()


def _cycles(path: Path) -> list[dict]:
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass
    return rows


def cmd_unpack(args) -> int:
    indir, root = Path(args.indir), Path(args.results_root)
    mpath = indir / MANIFEST
    if not mpath.is_file():
        raise KitError(f"no {MANIFEST} in {indir}")
    manifest = json.loads(mpath.read_text())
    if manifest.get("format") != FORMAT:
        raise KitError(f"{mpath}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    if manifest.get("error"):
        raise KitError(f"the device refused to pack: {manifest['error']}")
    wanted = {f["path"]: f for f in manifest["files"]}

    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / ARCHIVE
        with open(archive, "wb") as out:
            for part in manifest["parts"]:
                if not SAFE_NAME.match(part["name"]):
                    raise KitError(f"manifest names an odd part {part['name']!r}")
                p = indir / part["name"]
                if not p.is_file():
                    raise KitError(f"part {part['name']} is missing from {indir}")
                data = p.read_bytes()
                if len(data) != part["bytes"] or hashlib.sha256(data).hexdigest() != part["sha256"]:
                    raise KitError(f"part {part['name']}: size or SHA-256 differs from the manifest (damaged or tampered)")
                out.write(data)
        if manifest["parts"] and sha256_file(archive) != manifest.get("archive_sha256"):
            raise KitError("the joined archive's SHA-256 differs from the manifest")

        staged = Path(tmp) / "staged"
        plan = []  # (target relative to root, staged file)
        if manifest["parts"]:
            with tarfile.open(archive, "r:gz") as tar:
                members = tar.getmembers()
                for m in members:  # check every member before writing anything
                    rel = _member_target(m.name)
                    if not m.isreg():
                        raise KitError(f"archive member {m.name!r} is not a regular file (links and devices are refused)")
                    if rel not in wanted:
                        raise KitError(f"archive member {m.name!r} is not listed in the manifest")
                for m in members:
                    rel = _member_target(m.name)
                    dest = staged / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(m) as src, open(dest, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    if sha256_file(dest) != wanted[rel]["sha256"]:
                        raise KitError(f"{rel}: SHA-256 differs from the manifest")
                    plan.append((rel, dest))
        missing = sorted(set(wanted) - {rel for rel, _ in plan})
        if missing:
            raise KitError(f"the manifest lists files the archive lacks: {', '.join(missing[:5])}")

        root.mkdir(parents=True, exist_ok=True)
        root_real = root.resolve()
        before = {}
        for rel, src in plan:
            target = root / rel
            real = target.parent.resolve() / target.name
            if root_real not in real.parents:
                raise KitError(f"{rel} would land outside {root} (a link in the way?)")
            if target.is_symlink():
                raise KitError(f"{target} is a symbolic link; refusing to write through it")
            if target.name == "records.jsonl":
                here, there = _cycles(target), _cycles(src)
                if there[:len(here)] != here and not args.force:  # records only grow: an older pack, or another history
                    raise KitError(f"{rel}: the {len(here)} records here are not the first records of the "
                                   f"{len(there)} that arrived (an older pack, or a run recomputed there); "
                                   "nothing written (--force replaces them)")
                before[rel] = len(here)
        for rel, src in plan:
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp_target = target.with_name(target.name + ".devkit-tmp")
            shutil.copyfile(src, tmp_target)
            os.replace(tmp_target, target)

    print(f"unpacked {len(plan)} files into {root} (alkit exit status there: {manifest.get('alkit_exit')}, "
          f"prepared commit {manifest.get('prepared_commit') or '?'})")
    for rel in sorted(before):
        rows = _cycles(root / rel)
        run = rel.rsplit("/", 1)[0]
        if not rows:
            print(f"  {run}: no records")
            continue
        new = len(rows) - before[rel]
        last = rows[-1]
        print(f"  {run}: cycles {rows[0].get('cycle')}-{last.get('cycle')} ({new:+d} new), "
              f"{last.get('n_labelled')} labels, test_acc {last.get('test_acc', float('nan')):.4f}")
    others = len(plan) - len(before)
    if others:
        print(f"  + {others} other files (config.json, latent codes, views, learners/ ...)")
    log = indir / LOG
    if log.is_file():  # alkit's own summary (runs finished, cycles left, time left), when it printed one
        summary = [line for line in log.read_text(errors="replace").splitlines()
                   if line.startswith(("runs:", "cycles:", "estimated"))]
        for line in summary[-3:]:
            print(f"  there: {line}")
    if manifest.get("deleted"):
        print(f"  note: {len(manifest['deleted'])} files were deleted there and are left here: {', '.join(manifest['deleted'][:5])}")
    return 0


# ----------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devkit.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="data (+ wheels) into the kit folder; print travelling size and the device call")
    p.add_argument("params", nargs="*", help="parameter files for the printed command (default params/paper/*.yaml)")
    p.add_argument("--repo", help="the checkout (default: the one holding this script)")
    p.add_argument("--kit", default=os.environ.get("DEVKIT", ".devkit"), help="kit folder inside the checkout (default .devkit)")
    p.add_argument("--data-dir", help="Fashion-MNIST source folder (default: alkit's lookup: $ALKIT_DATA, Debian package, cache)")
    p.add_argument("--wheel", action="append", default=[], metavar="NAME==VERSION", help="download this wheel (repeatable)")
    p.add_argument("--run-arg", dest="run_args", action="append", default=[], metavar="ARG",
                   help="append ARG to the printed run.sh command (repeatable; default none: run.log then holds a "
                        "line per run start, cycle (with its seconds), give-up and end), e.g. --run-arg=--jobs=2")
    p.set_defaults(func=cmd_prepare)
    p = sub.add_parser("size", help="travelling size of a checkout with carried paths")
    p.add_argument("--repo", default=".")
    p.add_argument("--carry", action="append", default=[])
    p.set_defaults(func=lambda a: print(json.dumps(travelling_size(repo_root(Path(a.repo)), a.carry))) or 0)
    p = sub.add_parser("tree-size", help="bytes of the tree that arrived (on the device)")
    p.add_argument("--skip", action="append", default=[])
    p.add_argument("--kit", default=os.environ.get("DEVKIT", ".devkit"))
    p.set_defaults(func=cmd_tree_size)
    p = sub.add_parser("snapshot", help="hash every file under the results root")
    p.add_argument("results_root")
    p.add_argument("file")
    p.set_defaults(func=cmd_snapshot)
    p = sub.add_parser("pack", help="new or changed results into parts + manifest")
    p.add_argument("results_root")
    p.add_argument("snapshot")
    p.add_argument("outdir")
    p.add_argument("--log")
    p.add_argument("--alkit-exit", type=int)
    p.add_argument("--commit")
    p.set_defaults(func=cmd_pack)
    p = sub.add_parser("unpack", help="verify and extract a pack into the results root")
    p.add_argument("indir")
    p.add_argument("--results-root", default=os.environ.get("ALKIT_RESULTS", "results"))
    p.add_argument("--force", action="store_true", help="replace records even where they would lose or change cycles")
    p.set_defaults(func=cmd_unpack)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
