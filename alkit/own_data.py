"""A run's data (:func:`load_data`: built-in by name, yours by path); your own images as a :class:`~alkit.data.Data`: an ``.npz`` in MedMNIST's layout, a folder of images, or arrays.

Three loaders, one result. Every image becomes ``(C, 28, 28)`` float32 in [0, 1] with C = 1 (grey) or 3
(colour): other sizes are resized (area averaging when shrinking, bilinear when enlarging), so every model
of alkit runs unchanged; its first and last layers take C channels (``in_channels``), so the model follows
the input. Labels are ``0 .. K-1``; ``-1`` marks a pool image nobody has labelled yet (only the folder
layout has those, and only the oracle session of notebook 06 can use them).

- :func:`load_npz`: MedMNIST's ``.npz`` (``train_images``, ``train_labels``, ``val_images``, ``val_labels``,
  ``test_images``, ``test_labels``; images (N, H, W) grey or (N, H, W, 3) RGB uint8, labels (N,) or (N, 1)).
  The train split is the pool, val validates, test tests. Optional ``class_names`` array in the file.
- :func:`load_folder`: one sub-folder per class of labelled images, plus ``unlabelled/`` (no labels) and,
  optionally, ``test/<class>/``. A seeded share of the labelled images (``val_fraction``, at least one per
  class that has two) validates; without ``test/`` the validation images also serve as the test set, and
  the result says so (``Data.name`` ends in ``(test = validation)``).
- :func:`from_arrays`: the same checks for arrays you hold in Python.

Every problem is a :class:`~alkit.data.DataError` naming the split, the shape or label and what is allowed.
"""
from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import numpy as np
import torch

from .data import Data, DataError, _subset, load_dataset

SIDE = 28  #: every image is resized to SIDE x SIDE: alkit's models are built for 28 x 28
#: the most pixels an image file may have: every image is shrunk to 28 x 28, and a larger one (a decompression
#: bomb: a small PNG of 50,000 x 50,000 pixels) would take gigabytes to decode before it is shrunk
MAX_PIXELS = 4096 * 4096
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
UNLABELLED = "unlabelled"
TEST = "test"


def is_own_dataset(name: str) -> bool:
    """True when ``dataset:`` names a file or folder rather than a built-in dataset."""
    text = str(name)
    return text.endswith(".npz") or "/" in text or "\\" in text or Path(text).expanduser().is_dir()


def load_data(cfg, device="cpu") -> Data:
    """The data of a run config ``cfg`` (:class:`alkit.loop.RunConfig`: ``dataset``, ``data_dir``, ``split_seed``,
    ``val_size``, ``pool_size``, ``test_size``): a built-in dataset by name (:func:`alkit.data.load_dataset`),
    or your own ``.npz`` / image folder by path (:func:`load_own`)."""
    if is_own_dataset(cfg.dataset):
        return load_own(cfg.dataset, device=device, split_seed=cfg.split_seed, val_size=cfg.val_size,
                        pool_size=cfg.pool_size, test_size=cfg.test_size)
    return load_dataset(
        cfg.dataset, data_dir=cfg.data_dir, device=device, split_seed=cfg.split_seed,
        val_size=cfg.val_size, pool_size=cfg.pool_size, test_size=cfg.test_size,
    )


def load_own(name: str, *, device="cpu", split_seed: int = 0, val_size: int | None = None,
             pool_size: int | None = None, test_size: int | None = None) -> Data:
    """``dataset: <path>`` of a run config: an ``.npz`` file or an image folder, split and subset as configured."""
    allowed = "allowed: a MedMNIST-style .npz file or a folder of class sub-folders; or one of the built-in names " \
              "fashion_mnist, mnist"
    if not str(name).strip():  # Path('') is the current folder
        raise DataError(f"dataset: {name!r} is empty; {allowed}")
    path = Path(name).expanduser()
    if not path.exists():
        raise DataError(f"dataset: {_cut(name)!r} does not exist; {allowed}")
    if not (path.is_file() or path.is_dir()):  # /dev/zero, a FIFO: reading would never end, or wait for a writer
        raise DataError(f"dataset: {_cut(name)!r} is a device, FIFO or socket, not a file or folder; {allowed}")
    data = load_npz(path) if path.is_file() else load_folder(path, seed=split_seed)
    return subset(data, seed=split_seed, val_size=val_size, pool_size=pool_size, test_size=test_size).to(device)


def to_images(images, what: str = "images") -> torch.Tensor:
    """(N, H, W), (N, H, W, C) or (N, C, H, W) with C in {1, 3}, uint8 or float in [0, 1] -> (N, C, 28, 28) float32."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[:, None]  # (N, 1, H, W)
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    elif not (x.ndim == 4 and x.shape[1] in (1, 3)):
        raise DataError(f"{what}: shape {x.shape} is not (N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1 or 3")
    if len(x) == 0:
        raise DataError(f"{what}: no images")
    if x.dtype == np.uint8:
        t = torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0)
    elif np.issubdtype(x.dtype, np.floating):
        bad = ~np.isfinite(x)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise DataError(f"{what}: {int(bad.sum())} pixel(s) are NaN or infinite (the first at index {where}); "
                            "allowed: finite floats in [0, 1], or uint8 0-255")
        if x.min() < 0 or x.max() > 1:
            raise DataError(f"{what}: float pixels must lie in [0, 1], found {x.min():.3g} .. {x.max():.3g}")
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    else:
        raise DataError(f"{what}: pixel type {x.dtype} is not uint8 (0-255) or float in [0, 1]")
    if t.shape[-2:] != (SIDE, SIDE):
        mode = "area" if min(t.shape[-2:]) >= SIDE else "bilinear"
        t = torch.nn.functional.interpolate(t, size=(SIDE, SIDE), mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))
        t = t.clamp_(0, 1)
    return t.contiguous()


def to_labels(labels, n: int, num_classes: int | None, what: str, unknown_ok: bool = False) -> torch.Tensor:
    """(N,) or (N, 1) integer labels in ``0 .. num_classes-1`` (``-1`` = unknown where allowed) -> int64 tensor."""
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{what}: labels of shape {y.shape}: one class per image expected ((N,) or (N, 1)); "
                        "multi-label data is not supported")
    if len(y) != n:
        raise DataError(f"{what}: {len(y)} labels for {n} images")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise DataError(f"{what}: labels must be integers, got {y.dtype}")
    low = -1 if unknown_ok else 0
    bad = (y < low) | ((y >= num_classes) if num_classes else False)
    if bad.any():
        allowed = f"{low} .. {num_classes - 1}" if num_classes else f">= {low}"
        raise DataError(f"{what}: label {int(y[bad][0])} out of range (allowed {allowed}{'; -1 = unknown' if unknown_ok else ''})")
    return torch.from_numpy(y.astype(np.int64))


def from_arrays(pool_images, pool_labels=None, *, val_images=None, val_labels=None, test_images=None, test_labels=None,
                class_names=None, name: str = "arrays", val_fraction: float = 0.2, seed: int = 0) -> Data:
    """A :class:`Data` from arrays: the pool (labels optional: ``None`` or ``-1`` = unknown), validation and test.

    Without validation arrays a seeded ``val_fraction`` of the labelled pool images validates (at least one
    per class that has two); without test arrays the validation set also tests (and ``name`` says so).
    ``class_names`` default to "0" .. "K-1" with K = 1 + the largest label seen. Errors: shapes that do not
    fit together (different channel counts), labels outside ``0 .. K-1``, a class with no labelled image.
    """
    x_pool = to_images(pool_images, f"{name}: pool images")
    known = [l for l in (pool_labels, val_labels, test_labels) if l is not None]
    k = len(class_names) if class_names is not None else _classes_of(known, name)
    if k < 2:
        raise DataError(f"{name}: need at least 2 classes, found {k} (give labels or class_names)")
    names = tuple(str(c) for c in class_names) if class_names is not None else tuple(str(i) for i in range(k))
    y_pool = (torch.full((len(x_pool),), -1, dtype=torch.int64) if pool_labels is None
              else to_labels(pool_labels, len(x_pool), k, f"{name}: pool", unknown_ok=True))
    if val_images is not None:
        x_val, y_val = to_images(val_images, f"{name}: val images"), None
        y_val = to_labels(val_labels, len(x_val), k, f"{name}: val")
    else:
        if val_labels is not None:
            raise DataError(f"{name}: val labels without val images")
        pick = _validation_pick(y_pool.numpy(), val_fraction, seed)
        if len(pick) == 0:
            raise DataError(f"{name}: no validation images: give val_images/val_labels or label some pool images")
        rest = np.setdiff1d(np.arange(len(x_pool)), pick)
        x_val, y_val = x_pool[pick], y_pool[pick]
        x_pool, y_pool = x_pool[rest], y_pool[rest]
    if test_images is not None:
        x_test = to_images(test_images, f"{name}: test images")
        y_test = to_labels(test_labels, len(x_test), k, f"{name}: test")
    else:
        x_test, y_test, name = x_val, y_val, f"{name} (test = validation)"
    channels = {p: x.shape[1] for p, x in (("pool", x_pool), ("val", x_val), ("test", x_test))}
    if len(set(channels.values())) != 1:
        raise DataError(f"{name}: every split needs the same number of channels, got {channels}")
    seen = torch.cat([y_pool[y_pool >= 0], y_val, y_test])
    empty = [names[c] for c in torch.nonzero(torch.bincount(seen, minlength=k) == 0).flatten().tolist()]
    if empty:
        raise DataError(f"{name}: class{'es' if len(empty) > 1 else ''} {', '.join(map(repr, empty))} "
                        "ha{} no labelled image in any split".format("ve" if len(empty) > 1 else "s"))
    return Data(name=name, x_pool=x_pool, y_pool=y_pool, x_val=x_val, y_val=y_val, x_test=x_test, y_test=y_test,
                pool_ids=np.arange(len(x_pool), dtype=np.int64), num_classes=k, class_names=names,
                val_ids=np.arange(len(x_val), dtype=np.int64), test_ids=np.arange(len(x_test), dtype=np.int64),
                split_seed=seed)


def _classes_of(labels: list, name: str) -> int:
    """K = 1 + the largest label of ``labels`` (arrays; -1 = unknown). A label that is no finite number, or a K
    larger than the number of labelled images (every class needs one: issue 47's npz with one label of 10^9
    made alkit build 10^9 class names), is a :class:`DataError`."""
    top, labelled = -1, 0
    for values in labels:
        y = np.asarray(values)
        if y.size == 0:
            continue
        if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
            raise DataError(f"{name}: labels must be integers, got {y.dtype}")
        if not np.isfinite(y).all():
            raise DataError(f"{name}: labels must be integers, found NaN or infinity")
        top, labelled = max(top, int(y.max())), labelled + int((y >= 0).sum())
    if top + 1 > labelled:
        raise DataError(f"{name}: label {top} would make {top + 1:,} classes, but only {labelled:,} images are "
                        f"labelled (every class needs at least one); allowed: labels 0 .. K-1 numbering the classes "
                        f"without gaps (K at most {labelled:,})")
    return top + 1


def _cut(text, limit: int = 80) -> str:
    text = str(text)
    head = limit // 3  # a long path: its start and its end (the file's name)
    return text if len(text) <= limit else text[:head] + "..." + text[-(limit - head - 3):]


def _validation_pick(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Seeded positions of about ``fraction`` of the labelled points of each class (one at least where a class has two)."""
    rng = np.random.default_rng([seed, 3])
    pick = []
    for c in np.unique(y[y >= 0]):
        idx = np.flatnonzero(y == c)
        n = min(len(idx) - 1, max(1, round(fraction * len(idx)))) if len(idx) >= 2 else 0
        pick.extend(rng.choice(idx, size=n, replace=False).tolist())
    return np.sort(np.array(pick, dtype=np.int64))


def load_npz(path: str | Path, class_names=None) -> Data:
    """A MedMNIST-layout ``.npz``: train -> pool, val -> validation, test -> test (see the module docstring)."""
    path = Path(path)
    with path.open("rb") as fh:
        head = fh.read(4)
    if head != b"PK\x03\x04":  # an .npz is a zip archive; np.load would take anything else for a pickle
        raise DataError(f"{path}: not an .npz file: it starts with {head!r}, not a zip archive's b'PK\\x03\\x04'; "
                        "allowed: a file written by numpy.savez / savez_compressed in MedMNIST's layout")
    try:
        f = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    with f:
        need = ["train_images", "train_labels", "val_images", "val_labels", "test_images", "test_labels"]
        missing = [k for k in need if k not in f.files]
        if missing:
            raise DataError(f"{path}: missing {', '.join(missing)} (MedMNIST layout: {', '.join(need)}; found "
                            f"{', '.join(f.files) or 'nothing'})")
        arrays = {}
        for k in need + (["class_names"] if class_names is None and "class_names" in f.files else []):
            try:
                arrays[k] = f[k]
            except ValueError:  # numpy refuses object arrays without allow_pickle (they would run code to load)
                raise DataError(f"{path}: {k} is stored as Python objects (dtype object), which alkit does not "
                                f"unpickle; allowed: a numeric array ({'integer labels' if 'labels' in k else 'uint8 or float images' if 'images' in k else 'strings, dtype <U'})") from None
            except (OSError, zipfile.BadZipFile, EOFError) as exc:
                raise DataError(f"{path}: {k} cannot be read ({exc}); the file may be truncated") from None
        if "class_names" in arrays:
            class_names = [str(c) for c in arrays.pop("class_names")]
    return from_arrays(arrays["train_images"], arrays["train_labels"], val_images=arrays["val_images"],
                       val_labels=arrays["val_labels"], test_images=arrays["test_images"],
                       test_labels=arrays["test_labels"], class_names=class_names, name=path.stem)


def read_image(path: Path) -> np.ndarray:
    """(H, W) grey or (H, W, 3) RGB uint8 from an image file (Pillow; palette and alpha images are converted)."""
    try:
        from PIL import Image  # optional (the notebooks extra): only image folders need it
    except ImportError:
        raise DataError("reading image folders needs Pillow: pip install 'alkit[notebooks]' (or pip install pillow)") from None
    try:
        with Image.open(path) as im:  # reads the header only: the size is known before any pixel is decoded
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise DataError(f"{path}: {w:,} x {h:,} pixels; allowed: at most {MAX_PIXELS:,} pixels (4096 x 4096) "
                                "per image: alkit shrinks every image to 28 x 28, so shrink it first (a larger one, "
                                "a decompression bomb, would take gigabytes to decode)")
            im = im.convert("L") if im.mode in ("1", "L", "I", "I;16", "F") else im.convert("RGB")
            return np.asarray(im, dtype=np.uint8)
    except DataError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own limit (over ~179 M pixels), raised by open
        raise DataError(f"{path}: {_cut(exc, 120)}; allowed: at most {MAX_PIXELS:,} pixels per image") from None
    except (OSError, ValueError, SyntaxError, MemoryError) as exc:  # Pillow's errors of broken files
        raise DataError(f"{path}: not a readable image ({_cut(exc, 120)})") from None


def _read_images(folder: Path, what: str) -> list[np.ndarray]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return [read_image(p) for p in files]


def _stack(images: list[np.ndarray], what: str) -> np.ndarray:
    """Images of one folder tree to one (N, H, W[, 3]) array: grey and RGB mixed -> all RGB; sizes must agree."""
    if any(im.ndim == 3 for im in images):
        images = [np.repeat(im[..., None], 3, axis=2) if im.ndim == 2 else im for im in images]
    sizes = {im.shape for im in images}
    if len(sizes) > 1:
        raise DataError(f"{what}: images of different sizes {sorted(sizes)[:4]}; resize them to one size first")
    return np.stack(images)


def load_folder(path: str | Path, *, val_fraction: float = 0.2, seed: int = 0) -> Data:
    """``path/<class>/*.png`` (labelled), ``path/unlabelled/*`` and optionally ``path/test/<class>/*`` (module docstring)."""
    root = Path(path)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in (UNLABELLED, TEST))
    if len(classes) < 2:
        raise DataError(f"{root}: need at least 2 class sub-folders of labelled images (besides {UNLABELLED}/ and "
                        f"{TEST}/), found {classes or 'none'}")
    images, labels = [], []
    for c, cname in enumerate(classes):
        ims = _read_images(root / cname, cname)
        if not ims:
            raise DataError(f"{root / cname}: class {cname!r} has no images ({', '.join(IMAGE_SUFFIXES)})")
        images += ims
        labels += [c] * len(ims)
    unl = _read_images(root / UNLABELLED, UNLABELLED) if (root / UNLABELLED).is_dir() else []
    all_images = _stack(images + unl, str(root))
    y = np.array(labels + [-1] * len(unl), dtype=np.int64)
    test = {}
    if (root / TEST).is_dir():
        t_images, t_labels = [], []
        for c, cname in enumerate(classes):
            ims = _read_images(root / TEST / cname, cname) if (root / TEST / cname).is_dir() else []
            t_images += ims
            t_labels += [c] * len(ims)
        extra = sorted(p.name for p in (root / TEST).iterdir() if p.is_dir() and p.name not in classes)
        if extra:
            raise DataError(f"{root / TEST}: class folders {extra} have no labelled counterpart in {root}")
        if t_images:
            test = {"test_images": _stack(t_images, str(root / TEST)), "test_labels": np.array(t_labels)}
    return from_arrays(all_images, y, class_names=classes, name=root.name, val_fraction=val_fraction, seed=seed, **test)


def subset(data: Data, *, seed: int = 0, val_size: int | None = None, pool_size: int | None = None,
           test_size: int | None = None) -> Data:
    """Seeded uniform subsets of the pool, validation and test (``None`` keeps a split whole).

    A ``pool_size`` or ``test_size`` larger than the split is a :class:`DataError`, as for the built-in
    datasets (a run would otherwise train on fewer images than its config says); a ``val_size`` at least
    the validation split keeps it whole (the default 5,000 is the built-in datasets' split).
    """
    parts = {}
    for part, size, stream in (("pool", pool_size, 1), ("val", val_size, 4), ("test", test_size, 2)):
        x, y = getattr(data, f"x_{part}"), getattr(data, f"y_{part}")
        ids = getattr(data, f"{part}_ids")
        if part != "val" and size is not None and size > len(x):
            raise DataError(f"{part}_size: {size} is larger than the {len(x)} {part} images of {data.name}; "
                            f"allowed: 1 .. {len(x)}, or null (all of them)")
        if size is not None and size < len(x):
            keep = _subset(len(x), size, f"{part}_size", [seed, stream])
            x, y, ids = x[torch.as_tensor(keep)], y[torch.as_tensor(keep)], ids[keep]
        parts.update({f"x_{part}": x, f"y_{part}": y, f"{part}_ids": ids})
    return dataclasses.replace(data, **parts)
