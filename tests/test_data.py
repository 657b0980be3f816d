"""Tests for alkit.data: IDX parsing, checksums, locate/download, and the fixed splits.

Known answers are planted: hand-built IDX bytes, the published Fashion-MNIST checksums and class
counts (6000 per class in train, 1000 in test), files truncated or corrupted in a known way.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from alkit import data as D
from alkit.data import DATASETS, Data, DataError, load_dataset, locate_files, read_idx, verify_file

FM = DATASETS["fashion_mnist"]
GZ = {role: f"{stem}.gz" for role, stem in FM["files"].items()}
# Published MD5s of the decompressed Fashion-MNIST files, independent of the table in alkit.data.
PUBLISHED_MD5 = {
    "train_images": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train_labels": "9018921c3c673c538a1fc5bad174d6f9",
    "test_images": "8181f5470baa50b63fa0f6fddb340f0a",
    "test_labels": "15d484375f8d13e6eb1aabb0c3f46965",
}


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No user data folder or cache leaks in; local URLs never go through a proxy."""
    monkeypatch.delenv("ALKIT_DATA", raising=False)
    monkeypatch.setenv("ALKIT_CACHE", str(tmp_path / "default-cache"))
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")


@pytest.fixture
def no_system_dir(monkeypatch, tmp_path):
    """Pretend the Debian package is absent, so locate_files must use the cache / download."""
    monkeypatch.setitem(FM, "system_dir", str(tmp_path / "no-system-dir"))


@pytest.fixture(scope="session")
def fmnist_raw(fmnist_dir) -> dict[str, bytes]:
    """Decompressed bytes of the four real files, read once per session."""
    return {role: gzip.decompress((fmnist_dir / name).read_bytes()) for role, name in GZ.items()}


@pytest.fixture(scope="session")
def fmnist_default(fmnist_dir) -> Data:
    """The default split (seed 0, 5000 validation, full pool and test), loaded once."""
    return load_dataset(data_dir=fmnist_dir, download=False)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    """``serve(folder) -> base URL`` of an http.server on 127.0.0.1 (free port) serving ``folder``."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _folder_with(tmp: Path, fmnist_dir: Path, roles, extra: dict[str, bytes] | None = None) -> Path:
    """A folder holding symlinks to the real files for ``roles`` plus ``extra`` {filename: bytes}."""
    tmp.mkdir(parents=True, exist_ok=True)
    for role in roles:
        (tmp / GZ[role]).symlink_to(fmnist_dir / GZ[role])
    for filename, payload in (extra or {}).items():
        (tmp / filename).write_bytes(payload)
    return tmp


def _idx_bytes(array: np.ndarray, code: int) -> bytes:
    """Hand-built IDX: 0x0000, type code, ndim, big-endian uint32 dims, big-endian data."""
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


# ----------------------------------------------------------------------------- read_idx, synthetic


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_decodes_hand_built_big_endian_file(tmp_path, compress):
    planted = np.array([[[1, -2], [300, -32768]], [[32767, 0], [7, 256]]], dtype=np.int16)
    payload = _idx_bytes(planted, 0x0B)
    path = tmp_path / ("x.idx.gz" if compress else "x.idx")
    path.write_bytes(gzip.compress(payload) if compress else payload)
    out = read_idx(path)
    assert out.shape == (2, 2, 2)
    assert out.dtype == np.int16 and out.dtype.isnative
    np.testing.assert_array_equal(out, planted)


def test_read_idx_reports_truncation_with_header_size(tmp_path):
    path = tmp_path / "short-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 3, 2, 2) + b"\x01" * 5)
    with pytest.raises(DataError) as err:
        read_idx(path)
    assert str(err.value) == f"{path}: truncated: header says 3x2x2 = 12 bytes, found 5"


def test_read_idx_reports_extra_bytes(tmp_path):
    path = tmp_path / "long-idx1-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 1]) + struct.pack(">I", 4) + b"\x00" * 6)
    with pytest.raises(DataError, match=r"wrong size: header says 4 = 4 bytes, found 6"):
        read_idx(path)


@pytest.mark.parametrize("magic", [b"\x00\x01\x08\x01", b"\x00\x00\x07\x01", b"\x00\x00\x08\x00", b"PK"])
def test_read_idx_rejects_bad_magic(tmp_path, magic):
    path = tmp_path / "not-idx"
    path.write_bytes(magic + b"\x00" * 12)
    with pytest.raises(DataError) as err:
        read_idx(path)
    assert str(path) in str(err.value)
    assert "IDX" in str(err.value)


def test_read_idx_missing_file_names_it(tmp_path):
    with pytest.raises(DataError, match="nope-idx1-ubyte.gz: no such file"):
        read_idx(tmp_path / "nope-idx1-ubyte.gz")


# ----------------------------------------------------------------------------- real files


def test_real_files_shapes_labels_and_checksums(fmnist_dir, fmnist_raw):
    for role, payload in fmnist_raw.items():
        assert hashlib.md5(payload).hexdigest() == PUBLISHED_MD5[role] == FM["md5"][role]
    paths = locate_files(data_dir=fmnist_dir, download=False)
    assert paths == {role: fmnist_dir / name for role, name in GZ.items()}

    x_train, y_train = read_idx(paths["train_images"]), read_idx(paths["train_labels"])
    x_test, y_test = read_idx(paths["test_images"]), read_idx(paths["test_labels"])
    assert x_train.shape == (60000, 28, 28) and y_train.shape == (60000,)
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    assert {a.dtype for a in (x_train, y_train, x_test, y_test)} == {np.dtype(np.uint8)}
    assert np.bincount(y_train, minlength=11).tolist() == [6000] * 10 + [0]
    assert np.bincount(y_test, minlength=11).tolist() == [1000] * 10 + [0]
    assert x_train.max() == 255 and x_train.min() == 0


def test_default_search_finds_system_dir(fmnist_dir, tmp_path):
    paths = locate_files(cache_dir=tmp_path / "cache", download=False)
    assert all(p.parent == fmnist_dir for p in paths.values())


def test_decompressed_files_are_accepted(fmnist_dir, fmnist_raw, tmp_path):
    folder = _folder_with(
        tmp_path / "d", fmnist_dir, ["train_images", "train_labels", "test_images"],
        {"t10k-labels-idx1-ubyte": fmnist_raw["test_labels"]},
    )
    paths = locate_files(data_dir=folder, download=False)
    assert paths["test_labels"] == folder / "t10k-labels-idx1-ubyte"
    np.testing.assert_array_equal(
        read_idx(paths["test_labels"]), read_idx(fmnist_dir / GZ["test_labels"])
    )


def test_truncated_real_file_is_rejected_with_size_and_checksum(fmnist_dir, fmnist_raw, tmp_path):
    short = fmnist_raw["train_images"][:1000]
    folder = _folder_with(
        tmp_path / "d", fmnist_dir, ["train_labels", "test_images", "test_labels"],
        {GZ["train_images"]: gzip.compress(short)},
    )
    bad = folder / GZ["train_images"]
    with pytest.raises(DataError) as err:
        read_idx(bad)
    assert str(err.value) == (
        f"{bad}: truncated: header says 60000x28x28 = 47040000 bytes, found 984"
    )
    with pytest.raises(DataError) as err:
        locate_files(data_dir=folder, download=False)
    msg = str(err.value)
    assert msg.startswith(f"{bad}: checksum mismatch")
    assert PUBLISHED_MD5["train_images"] in msg and hashlib.md5(short).hexdigest() in msg
    assert "truncated" in msg


def test_flipped_byte_is_rejected_by_checksum(fmnist_dir, fmnist_raw, tmp_path):
    labels = bytearray(fmnist_raw["test_labels"])
    labels[8 + 123] ^= 0x01  # one label changed; the IDX structure is still valid
    folder = _folder_with(
        tmp_path / "d", fmnist_dir, ["train_images", "train_labels", "test_images"],
        {GZ["test_labels"]: gzip.compress(bytes(labels))},
    )
    bad = folder / GZ["test_labels"]
    assert read_idx(bad).shape == (10000,)  # structurally fine: only the checksum can tell
    with pytest.raises(DataError) as err:
        locate_files(data_dir=folder, download=False)
    assert str(err.value) == (
        f"{bad}: checksum mismatch: expected md5 {PUBLISHED_MD5['test_labels']} of the "
        f"decompressed bytes, got {hashlib.md5(bytes(labels)).hexdigest()}"
    )
    with pytest.raises(DataError, match="checksum mismatch"):
        load_dataset(data_dir=folder, download=False)


def test_flipped_byte_in_gzip_stream_is_rejected(fmnist_dir, tmp_path):
    packed = bytearray((fmnist_dir / GZ["test_labels"]).read_bytes())
    packed[len(packed) // 2] ^= 0xFF
    bad = tmp_path / GZ["test_labels"]
    bad.write_bytes(bytes(packed))
    with pytest.raises(DataError) as err:
        read_idx(bad)
    assert str(err.value).startswith(f"{bad}: corrupt gzip stream")
    with pytest.raises(DataError, match="corrupt gzip stream"):
        verify_file(bad, PUBLISHED_MD5["test_labels"])


def test_explicit_dir_missing_file_is_named_without_fallback(fmnist_dir, tmp_path, monkeypatch):
    folder = _folder_with(tmp_path / "d", fmnist_dir, ["train_images", "train_labels", "test_images"])
    with pytest.raises(DataError) as err:
        locate_files(data_dir=folder)
    assert str(folder) in str(err.value) and "t10k-labels-idx1-ubyte.gz" in str(err.value)
    assert "train-images" not in str(err.value)
    monkeypatch.setenv("ALKIT_DATA", str(folder))  # the environment variable is just as explicit
    with pytest.raises(DataError, match=r"\$ALKIT_DATA.*t10k-labels-idx1-ubyte.gz"):
        load_dataset()


def test_unknown_dataset_and_missing_mnist(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'cifar10'; known: fashion_mnist, mnist"):
        locate_files("cifar10")
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz.*for mnist"):
        locate_files("mnist", data_dir=tmp_path)


# ----------------------------------------------------------------------------- download


def _assert_clean_cache(cache: Path, expect: set[str]):
    assert {p.name for p in cache.iterdir()} == expect  # no leftover .part files


def test_download_over_http_into_empty_cache(fmnist_dir, fmnist_raw, tmp_path, serve, no_system_dir):
    base = serve(fmnist_dir)
    cache_root = tmp_path / "cache"
    paths = locate_files(cache_dir=cache_root, base_urls=[base])
    cache = cache_root / "fashion_mnist"
    assert paths == {role: cache / name for role, name in GZ.items()}
    _assert_clean_cache(cache, set(GZ.values()))
    for role, path in paths.items():
        assert gzip.decompress(path.read_bytes()) == fmnist_raw[role]
    # Second call: everything is in the cache, so a dead URL is never touched.
    dead = (tmp_path / "nowhere").as_uri() + "/"
    assert locate_files(cache_dir=cache_root, base_urls=[dead]) == paths


def test_download_from_file_url_after_a_dead_mirror(fmnist_dir, tmp_path, no_system_dir, capfd):
    dead = (tmp_path / "nowhere").as_uri() + "/"
    paths = locate_files(cache_dir=tmp_path / "cache", base_urls=[dead, fmnist_dir.as_uri()])
    assert all(p.parent == tmp_path / "cache" / "fashion_mnist" for p in paths.values())
    err = capfd.readouterr().err
    assert "nowhere/train-images-idx3-ubyte.gz" in err and fmnist_dir.as_uri() in err


def test_download_failure_lists_every_url(tmp_path, no_system_dir):
    urls = [(tmp_path / "a").as_uri(), (tmp_path / "b").as_uri()]
    with pytest.raises(DataError) as err:
        locate_files(cache_dir=tmp_path / "cache", base_urls=urls)
    msg = str(err.value)
    assert "could not download" in msg and "a/train-images" in msg and "b/train-images" in msg


def test_download_disabled_names_missing_files(fmnist_dir, tmp_path, no_system_dir):
    cache = tmp_path / "cache" / "fashion_mnist"
    _folder_with(cache, fmnist_dir, ["train_images", "train_labels", "test_images"])
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte.gz .*download=False"):
        locate_files(cache_dir=tmp_path / "cache", download=False)


def test_wrong_file_from_server_is_rejected_and_deleted(fmnist_dir, tmp_path, serve, no_system_dir):
    cache = tmp_path / "cache" / "fashion_mnist"
    _folder_with(cache, fmnist_dir, ["train_images", "train_labels", "test_images"])
    served = tmp_path / "served"
    served.mkdir()
    wrong = (fmnist_dir / GZ["train_labels"]).read_bytes()  # a real IDX file, but the wrong one
    (served / GZ["test_labels"]).write_bytes(wrong)
    base = serve(served)
    with pytest.raises(DataError) as err:
        locate_files(cache_dir=tmp_path / "cache", base_urls=[base])
    msg = str(err.value)
    assert msg.startswith(f"{cache / GZ['test_labels']}: download from {base}{GZ['test_labels']}")
    assert "rejected and deleted" in msg
    assert PUBLISHED_MD5["test_labels"] in msg and PUBLISHED_MD5["train_labels"] in msg
    _assert_clean_cache(cache, {GZ["train_images"], GZ["train_labels"], GZ["test_images"]})


# ----------------------------------------------------------------------------- splits


def test_default_split_sizes_disjoint_and_typed(fmnist_default, fmnist_raw):
    d = fmnist_default
    assert d.describe() == {
        "name": "fashion_mnist", "n_pool": 55000, "n_val": 5000, "n_test": 10000,
        "num_classes": 10, "image_shape": (1, 28, 28), "dtype": "float32", "device": "cpu",
        "split_seed": 0,
    }
    assert d.class_names[0] == "T-shirt/top" and d.class_names[9] == "Ankle boot"
    assert len(np.intersect1d(d.pool_ids, d.val_ids)) == 0
    assert np.array_equal(np.sort(np.concatenate([d.pool_ids, d.val_ids])), np.arange(60000))
    assert np.array_equal(d.test_ids, np.arange(10000))
    for x, y in ((d.x_pool, d.y_pool), (d.x_val, d.y_val), (d.x_test, d.y_test)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.device.type == "cpu" and x.shape[1:] == (1, 28, 28)
        assert 0.0 <= x.min().item() and x.max().item() == 1.0
    # Each tensor row is the raw image / label its id points at.
    images = np.frombuffer(fmnist_raw["train_images"], np.uint8, offset=16).reshape(-1, 28, 28)
    labels = np.frombuffer(fmnist_raw["train_labels"], np.uint8, offset=8)
    assert np.array_equal(d.y_pool.numpy(), labels[d.pool_ids])
    assert np.array_equal(d.y_val.numpy(), labels[d.val_ids])
    for i in (0, 1234, 54999):
        expected = torch.from_numpy(images[d.pool_ids[i]].astype(np.float32) / 255.0)
        assert torch.equal(d.x_pool[i, 0], expected)
    # The documented recipe: the first 5000 of the seed-0 permutation are validation.
    perm = np.random.default_rng(0).permutation(60000)
    assert np.array_equal(d.val_ids, perm[:5000]) and np.array_equal(d.pool_ids, perm[5000:])


def test_split_is_deterministic_per_seed(fmnist_dir, fmnist_default):
    again = load_dataset(data_dir=fmnist_dir, val_size=5000, pool_size=3000, test_size=500)
    same = load_dataset(data_dir=fmnist_dir, val_size=5000, pool_size=3000, test_size=500)
    other = load_dataset(data_dir=fmnist_dir, split_seed=1, pool_size=3000, test_size=500)
    assert np.array_equal(again.pool_ids, same.pool_ids) and torch.equal(again.x_pool, same.x_pool)
    assert np.array_equal(again.test_ids, same.test_ids)
    assert not np.array_equal(again.pool_ids, other.pool_ids)
    assert not np.array_equal(again.val_ids, other.val_ids)
    assert not np.array_equal(again.test_ids, other.test_ids)
    # Subsets: drawn from the seed's full pool / test set, validation untouched.
    assert np.array_equal(again.val_ids, fmnist_default.val_ids)
    assert len(again.pool_ids) == 3000 and len(np.unique(again.pool_ids)) == 3000
    assert np.isin(again.pool_ids, fmnist_default.pool_ids).all()
    assert len(again.test_ids) == 500 and np.all(np.diff(again.test_ids) > 0)
    assert again.describe()["n_pool"] == 3000 and again.describe()["n_test"] == 500
    assert torch.equal(again.y_test, fmnist_default.y_test[torch.from_numpy(again.test_ids)])


def test_oversized_requests_are_clear_errors(fmnist_dir):
    with pytest.raises(DataError, match="pool_size=55001 is larger than the 55000 points available"):
        load_dataset(data_dir=fmnist_dir, pool_size=55001)
    with pytest.raises(DataError, match="test_size=10001 is larger than the 10000"):
        load_dataset(data_dir=fmnist_dir, test_size=10001)
    with pytest.raises(DataError, match="val_size"):
        load_dataset(data_dir=fmnist_dir, val_size=60000)


def test_second_load_reads_no_files(fmnist_dir, fmnist_default, monkeypatch):
    def no_reading(path):
        raise AssertionError(f"{path} was read again")

    monkeypatch.setattr(D, "_read_bytes", no_reading)
    d = load_dataset(data_dir=fmnist_dir, pool_size=100, test_size=100)
    assert d.describe()["n_pool"] == 100
    locate_files(data_dir=fmnist_dir)  # checksums remembered too


def test_data_to_and_shape_check(fmnist_small):
    moved = fmnist_small.to("cpu")
    assert moved is not fmnist_small and torch.equal(moved.x_val, fmnist_small.x_val)
    assert fmnist_small.to("auto").device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert fmnist_small.describe()["n_pool"] == 2000
    with pytest.raises(DataError, match="pool images, labels and ids disagree"):
        Data("x", torch.zeros(3, 1, 28, 28), torch.zeros(2, dtype=torch.long),
             torch.zeros(0, 1, 28, 28), torch.zeros(0), torch.zeros(0, 1, 28, 28), torch.zeros(0),
             pool_ids=np.arange(3))
