"""Fashion-MNIST / MNIST: IDX reader, checksummed locate/download, fixed splits as device tensors.

Data: Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, https://arxiv.org/abs/1708.07747,
https://github.com/zalandoresearch/fashion-mnist) and MNIST (LeCun et al. 1998), both four IDX
files (http://yann.lecun.com/exdb/mnist/ describes the format): 60,000 training and 10,000 test
images of 28x28 uint8 pixels with labels 0..9.

Pipeline, each step a plain function:

- :func:`read_idx` parses one IDX file (gzip or raw) with numpy only.
- :func:`locate_files` finds the four files (explicit ``data_dir`` / ``$ALKIT_DATA``, else the
  Debian package folder, else the cache, downloading into the cache what is missing) and checks
  every file by the MD5 of its *decompressed* bytes, so a recompressed copy (Debian's) passes and a
  corrupted one fails loudly.
- :func:`load_dataset` splits the 60k training set by a seeded permutation into validation and pool,
  and returns a :class:`Data` of float tensors in [0, 1] on the requested device.

Caching, measured on this machine (2 CPU cores, Fashion-MNIST): decompressing all four ``.gz`` files
takes ~0.30 s (train images 0.25 s) and MD5 of the decompressed bytes adds ~0.07 s. Reading the data
needs the decompression anyway, so hashing is done on the same bytes (one decompression per file per
process); a verified ``(path, size, mtime)`` is remembered in process memory, and the decoded uint8
arrays are kept in an LRU cache, so a second :func:`load_dataset` in the same process only re-draws
the split. No on-disk sidecar: it would save ~0.07 s per process and could go stale.

Every problem raises :class:`DataError`, whose message names the file and what was expected.
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.client
import os
import struct
import sys
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .results import file_mode

__all__ = [
    "DATASETS",
    "Data",
    "DataError",
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "load_dataset",
    "locate_files",
    "read_idx",
    "verify_file",
]


class DataError(RuntimeError):
    """A data file is missing, unreadable, malformed or fails its checksum; the message names it."""


FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
MNIST_CLASSES = tuple(str(d) for d in range(10))

# Role -> file stem; on disk a file is "<stem>.gz" or the decompressed "<stem>".
_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

DATASETS: dict[str, dict] = {
    "fashion_mnist": {
        "files": _FILES,
        # MD5 of the DECOMPRESSED bytes (zalandoresearch/fashion-mnist README lists the same
        # files; Debian's dataset-fashion-mnist recompressed them, so .gz checksums would differ).
        "md5": {
            "train_images": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train_labels": "9018921c3c673c538a1fc5bad174d6f9",
            "test_images": "8181f5470baa50b63fa0f6fddb340f0a",
            "test_labels": "15d484375f8d13e6eb1aabb0c3f46965",
        },
        "base_urls": (
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
        "system_dir": "/usr/share/datasets/fashion-mnist",
        "class_names": FASHION_MNIST_CLASSES,
        "sizes": {"train": 60000, "test": 10000},
    },
    "mnist": {
        "files": _FILES,
        # MD5 of the DECOMPRESSED bytes, as listed by several independent public download scripts
        # (e.g. those keeping both "archive" and "extracted" MD5s next to torchvision's .gz list);
        # the decompressed sizes they give (47040016, 60008, 7840016, 10008 bytes) match the IDX
        # headers. For reference, torchvision's MD5s of the original .gz files are
        # f68b3c2dcbeaaa9fbdd348bbdeb94873, d53e105ee54ea40749a09fcbcd1e9432,
        # 9fb629c4189551a2d022fa330f9573f3, ec29112dd5afa0611ce80d1b7f02629c (train images,
        # train labels, test images, test labels). Not checked against a local copy here:
        # MNIST is not installed on the development machine.
        "md5": {
            "train_images": "6bbc9ace898e44ae57da46a324031adb",
            "train_labels": "a25bea736e30d166cdddb491f175f624",
            "test_images": "2646ac647ad5339dbf082846283269ea",
            "test_labels": "27ae3e4e09519cfbb04c329615203637",
        },
        "base_urls": (
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        "system_dir": "/usr/share/datasets/mnist",
        "class_names": MNIST_CLASSES,
        "sizes": {"train": 60000, "test": 10000},
    },
}

# IDX type code -> numpy dtype; multi-byte types are big-endian on disk.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_DOWNLOAD_TIMEOUT_S = 60


# ----------------------------------------------------------------------------- reading


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic (the suffix is not trusted)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise DataError(
            f"{path}: corrupt gzip stream ({exc}); expected a complete gzip-compressed IDX file"
        ) from None


def _parse_idx(raw: bytes, path: Path) -> np.ndarray:
    """Decode IDX bytes: magic 0x00 0x00 <type code> <ndim>, ndim big-endian uint32 dims, data."""
    if len(raw) < 4:
        raise DataError(f"{path}: {len(raw)} bytes is too short for an IDX header (4-byte magic)")
    code, ndim = raw[2], raw[3]
    if raw[:2] != b"\x00\x00" or code not in _IDX_DTYPES or ndim == 0:
        codes = ", ".join(f"0x{c:02X} {d.name}" for c, d in _IDX_DTYPES.items())
        raise DataError(
            f"{path}: bad IDX magic 0x{raw[:4].hex()}: expected 0x0000, a type code ({codes}) "
            f"and ndim >= 1"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(
            f"{path}: truncated: header needs {header} bytes for {ndim} dimensions, found {len(raw)}"
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    found = len(raw) - header
    if found != expected:
        kind = "truncated" if found < expected else "wrong size"
        shape = "x".join(str(d) for d in dims)
        raise DataError(f"{path}: {kind}: header says {shape} = {expected} bytes, found {found}")
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    if dtype.byteorder == ">":
        array = array.astype(dtype.newbyteorder("="))
    return array


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzip-compressed or raw) into an array of the shape its header gives.

    Returns e.g. ``(60000, 28, 28)`` uint8 for ``train-images-idx3-ubyte`` or ``(60000,)`` uint8
    for labels. uint8 results are read-only views of the decompressed bytes (``.copy()`` to write).
    A bad magic, a short/long payload or a corrupt gzip stream raises :class:`DataError` naming the
    file, e.g. ``…: truncated: header says 60000x28x28 = 47040000 bytes, found 1234``.
    """
    path = Path(path)
    return _parse_idx(_read_bytes(path), path)


# ----------------------------------------------------------------------------- verification

# (resolved path, size, mtime_ns) -> md5 of decompressed bytes, for files that passed a check.
_VERIFIED: dict[tuple[str, int, int], str] = {}


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def verify_file(path: str | Path, expected_md5: str, *, raw: bytes | None = None) -> None:
    """Check that the MD5 of ``path``'s decompressed bytes is ``expected_md5``, else DataError.

    ``raw`` (the decompressed bytes, when the caller has them) avoids a second decompression.
    Passing checks are remembered per (path, size, mtime) for the life of the process.
    """
    path = Path(path)
    try:
        key = _stat_key(path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (expected md5 {expected_md5})") from None
    if _VERIFIED.get(key) == expected_md5:
        return
    if raw is None:
        raw = _read_bytes(path)
    actual = hashlib.md5(raw).hexdigest()
    if actual != expected_md5:
        try:  # say what is structurally wrong too, when the header tells
            _parse_idx(raw, path)
            detail = ""
        except DataError as exc:
            detail = "; " + str(exc).removeprefix(f"{path}: ")
        raise DataError(
            f"{path}: checksum mismatch: expected md5 {expected_md5} of the decompressed bytes, "
            f"got {actual}{detail}"
        )
    _VERIFIED[key] = actual


# ----------------------------------------------------------------------------- locating


def _spec(name: str) -> tuple[str, dict]:
    key = name.lower().replace("-", "_")
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return key, DATASETS[key]


def _find_in(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _cache_root(cache_dir: str | Path | None) -> Path:
    root = cache_dir if cache_dir is not None else os.environ.get("ALKIT_CACHE") or "~/.cache/alkit"
    return Path(root).expanduser()


def _download(filename: str, folder: Path, base_urls: list[str], expected_md5: str) -> Path:
    """Fetch ``filename`` into ``folder`` from the first base URL that answers; verify, then rename.

    The bytes go to a temporary file in ``folder`` and are renamed into place only after their
    decompressed MD5 matches, so an interrupted or wrong download never sits at the final path.
    Network errors move on to the next base URL; a wrong checksum is an error at once (a mirror
    serving wrong bytes is something to know about, not to retry around).
    """
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / filename
    failures = []
    for base in base_urls:
        url = base.rstrip("/") + "/" + filename
        fd, tmp_name = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=folder)
        tmp = Path(tmp_name)
        os.chmod(tmp, file_mode())  # a shared data folder: the user's umask, not mkstemp's 0600
        print(f"alkit.data: downloading {url} -> {dest}", file=sys.stderr, flush=True)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(
                url, timeout=_DOWNLOAD_TIMEOUT_S
            ) as response:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
        except (OSError, http.client.HTTPException) as exc:  # URLError/HTTPError are OSErrors
            tmp.unlink(missing_ok=True)
            failures.append(f"{url}: {exc}")
            continue
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        try:
            verify_file(tmp, expected_md5)
        except DataError as exc:
            tmp.unlink(missing_ok=True)
            reason = str(exc).removeprefix(f"{tmp}: ")
            raise DataError(f"{dest}: download from {url} rejected and deleted: {reason}") from None
        os.replace(tmp, dest)
        _VERIFIED[_stat_key(dest)] = expected_md5  # rename keeps size and mtime
        return dest
    raise DataError(f"{dest}: could not download from any base URL:\n  " + "\n  ".join(failures))


def _locate(name, data_dir, download, cache_dir, base_urls) -> tuple[str, dict, dict[str, Path]]:
    """Find (downloading if allowed) the four files; downloaded files are already verified."""
    key, spec = _spec(name)
    explicit = data_dir if data_dir is not None else (os.environ.get("ALKIT_DATA") or None)
    if explicit is not None:
        folder = Path(explicit).expanduser()
        where = "data_dir" if data_dir is not None else "$ALKIT_DATA"
        found = {role: _find_in(folder, stem) for role, stem in spec["files"].items()}
        missing = [spec["files"][role] for role, p in found.items() if p is None]
        if missing:
            raise DataError(
                f"{folder} ({where}): missing {', '.join(f'{m}.gz' for m in missing)} "
                f"(or the decompressed file) for {key}; an explicit folder must hold all four files"
            )
        return key, spec, found

    cache = _cache_root(cache_dir) / key
    folders = [Path(spec["system_dir"]), cache]
    paths: dict[str, Path] = {}
    for role, stem in spec["files"].items():
        for folder in folders:
            if (found := _find_in(folder, stem)) is not None:
                paths[role] = found
                break
    missing = [role for role in spec["files"] if role not in paths]
    if missing and not download:
        names = ", ".join(f"{spec['files'][r]}.gz" for r in missing)
        raise DataError(
            f"{cache}: missing {names} for {key} (also looked in {folders[0]}) and download=False; "
            f"pass data_dir=, set $ALKIT_DATA, or allow download"
        )
    urls = list(base_urls) if base_urls is not None else list(spec["base_urls"])
    for role in missing:
        stem = spec["files"][role]
        paths[role] = _download(f"{stem}.gz", cache, urls, spec["md5"][role])
    return key, spec, {role: paths[role] for role in spec["files"]}


def locate_files(
    name: str = "fashion_mnist",
    data_dir: str | Path | None = None,
    download: bool = True,
    cache_dir: str | Path | None = None,
    base_urls: list[str] | None = None,
) -> dict[str, Path]:
    """Paths of the four verified IDX files of ``name`` ("fashion_mnist" or "mnist").

    Keys: ``train_images``, ``train_labels``, ``test_images``, ``test_labels``. Each file may be
    ``<stem>.gz`` or the decompressed ``<stem>``. Search order:

    1. ``data_dir``, else ``$ALKIT_DATA``: must hold all four files; missing ones are an error
       (no fall-back, so a typo does not silently load other data);
    2. the Debian package folder (``/usr/share/datasets/fashion-mnist``; ``…/mnist`` for MNIST);
    3. the cache ``<cache_dir or $ALKIT_CACHE or ~/.cache/alkit>/<name>/``, where files still
       missing are downloaded (when ``download``) from ``base_urls`` (default: the canonical
       mirrors; any urllib URL, ``file://`` included), tried in turn.

    Every file is checked by the MD5 of its decompressed bytes (once per process per
    path/size/mtime); a mismatch raises :class:`DataError` with path, expected and actual MD5.
    """
    _, spec, paths = _locate(name, data_dir, download, cache_dir, base_urls)
    for role, path in paths.items():
        verify_file(path, spec["md5"][role])
    return paths


# ----------------------------------------------------------------------------- loading


@functools.lru_cache(maxsize=2)
def _verified_arrays(files: tuple[tuple[str, str, str, int, int], ...]) -> dict[str, np.ndarray]:
    """Decode and verify (role, path, md5, size, mtime_ns) files; one decompression per file.

    Size and mtime are part of the key so that a replaced file is read again. The arrays are
    read-only: they are shared by every caller.
    """
    arrays = {}
    for role, path_str, md5, _size, _mtime in files:
        path = Path(path_str)
        raw = _read_bytes(path)
        verify_file(path, md5, raw=raw)
        arrays[role] = _parse_idx(raw, path)
    return arrays


def _resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class Data:
    """One fixed split of an image-classification dataset, as tensors on one device.

    Images are ``(N, 1, 28, 28)`` float32 in [0, 1] (pixel / 255); labels ``(N,)`` int64.
    ``pool_ids`` / ``val_ids`` index the original 60k training set and ``test_ids`` the original
    10k test set, so any result can be traced back to the raw files.
    """

    name: str
    x_pool: torch.Tensor  # (P, 1, 28, 28) float32 in [0, 1]
    y_pool: torch.Tensor  # (P,) int64
    x_val: torch.Tensor  # (V, 1, 28, 28)
    y_val: torch.Tensor  # (V,)
    x_test: torch.Tensor  # (T, 1, 28, 28)
    y_test: torch.Tensor  # (T,)
    pool_ids: np.ndarray  # (P,) int64 index into the original training set
    num_classes: int = 10
    class_names: tuple[str, ...] = FASHION_MNIST_CLASSES
    val_ids: np.ndarray | None = None  # (V,) int64 index into the original training set
    test_ids: np.ndarray | None = None  # (T,) int64 index into the original test set
    split_seed: int | None = None

    def __post_init__(self):
        for part, ids in (("pool", self.pool_ids), ("val", self.val_ids), ("test", self.test_ids)):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            n = {x.shape[0], y.shape[0]} | ({len(ids)} if ids is not None else set())
            if len(n) != 1:
                raise DataError(f"{self.name}: {part} images, labels and ids disagree in length: {n}")
        if len(self.class_names) != self.num_classes:
            raise DataError(
                f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes"
            )

    @property
    def device(self) -> torch.device:
        return self.x_pool.device

    def to(self, device: str | torch.device) -> Data:
        """A copy with every tensor on ``device`` ("auto" = cuda if available); ids are shared."""
        device = _resolve_device(device)
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return dataclasses.replace(self, **moved)

    def describe(self) -> dict:
        """Sizes and placement, for logs and result records."""
        return {
            "name": self.name,
            "n_pool": int(self.x_pool.shape[0]),
            "n_val": int(self.x_val.shape[0]),
            "n_test": int(self.x_test.shape[0]),
            "num_classes": self.num_classes,
            "image_shape": tuple(self.x_pool.shape[1:]),
            "dtype": str(self.x_pool.dtype).removeprefix("torch."),
            "device": str(self.device),
            "split_seed": self.split_seed,
        }


def _subset(n_available: int, size: int | None, what: str, seed: list[int]) -> np.ndarray | None:
    """Positions of a uniform random subset of ``size`` out of ``n_available``, in order; or None."""
    if size is None:
        return None
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise DataError(f"{what} must be a positive integer or None, got {size!r}")
    if size > n_available:
        raise DataError(f"{what}={size} is larger than the {n_available} points available")
    return np.sort(np.random.default_rng(seed).choice(n_available, size=size, replace=False))


def _to_tensors(images: np.ndarray, labels: np.ndarray, ids: np.ndarray, device: torch.device):
    # uint8 crosses to the device (4x fewer bytes than float32); the conversion runs there.
    x = torch.from_numpy(images[ids]).to(device)  # (N, 28, 28) uint8
    x = x.unsqueeze(1).to(torch.float32).div_(255.0)  # (N, 1, 28, 28) in [0, 1]
    y = torch.from_numpy(labels[ids].astype(np.int64)).to(device)  # (N,)
    return x, y


def load_dataset(
    name: str = "fashion_mnist",
    *,
    data_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    split_seed: int = 0,
    val_size: int = 5000,
    pool_size: int | None = None,
    test_size: int | None = None,
    download: bool = True,
) -> Data:
    """Load ``name`` and split it: validation and pool from the 60k training set, plus the test set.

    The split is ``perm = np.random.default_rng(split_seed).permutation(60000)``; the first
    ``val_size`` ids are validation, the rest the pool (55,000 by default), both in permutation
    order (so ``pool_ids[:k]`` is itself a uniform random sample). ``pool_size`` keeps a uniform
    random subset of the pool (drawn from ``default_rng([split_seed, 1])``, permutation order kept)
    and ``test_size`` one of the 10k test set (``default_rng([split_seed, 2])``, original order),
    for quick CPU runs; validation does not depend on either. Files are found and verified as in
    :func:`locate_files`; decoded arrays stay cached in the process. ``device="auto"`` picks cuda
    when available.
    """
    key, spec, paths = _locate(name, data_dir, download, cache_dir=None, base_urls=None)
    files = tuple(
        (role, str(path.resolve()), spec["md5"][role], *_stat_key(path)[1:])
        for role, path in paths.items()
    )
    raw = _verified_arrays(files)
    images, labels = raw["train_images"], raw["train_labels"]
    n_train, n_test = spec["sizes"]["train"], spec["sizes"]["test"]
    for role, n in (("train_images", n_train), ("train_labels", n_train),
                    ("test_images", n_test), ("test_labels", n_test)):
        if raw[role].shape[0] != n:
            raise DataError(f"{paths[role]}: expected {n} items, found {raw[role].shape[0]}")

    if not isinstance(val_size, (int, np.integer)) or not 0 <= val_size < n_train:
        raise DataError(f"val_size must be an integer in [0, {n_train}), got {val_size!r}")
    perm = np.random.default_rng(split_seed).permutation(n_train)
    val_ids, pool_ids = perm[:val_size], perm[val_size:]
    keep = _subset(len(pool_ids), pool_size, "pool_size", [split_seed, 1])
    if keep is not None:
        pool_ids = pool_ids[keep]
    test_ids = _subset(n_test, test_size, "test_size", [split_seed, 2])
    if test_ids is None:
        test_ids = np.arange(n_test)

    dev = _resolve_device(device)
    x_pool, y_pool = _to_tensors(images, labels, pool_ids, dev)
    x_val, y_val = _to_tensors(images, labels, val_ids, dev)
    x_test, y_test = _to_tensors(raw["test_images"], raw["test_labels"], test_ids, dev)
    return Data(
        name=key,
        x_pool=x_pool, y_pool=y_pool,
        x_val=x_val, y_val=y_val,
        x_test=x_test, y_test=y_test,
        pool_ids=pool_ids.astype(np.int64),
        num_classes=len(spec["class_names"]),
        class_names=spec["class_names"],
        val_ids=val_ids.astype(np.int64),
        test_ids=test_ids.astype(np.int64),
        split_seed=split_seed,
    )
