"""Dataclass configs that reject unknown keys, and YAML loading.

Every component owns its defaults as a dataclass; overrides come from one
place (a YAML file or a notebook's ``parameters`` cell) and pass through
:func:`from_dict`, which fails loudly on a key the dataclass does not know.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

T = TypeVar("T")

#: ``$ALKIT_DRAW_ONLY`` set to 1 (``python -m alkit.batch --draw-only``, ``make figures DRAW_ONLY=1``): notebooks
#: draw what is on disk, train nothing (:func:`alkit.experiment.draw_only` reads it, :mod:`alkit.batch` sets it)
DRAW_ONLY_ENV = "ALKIT_DRAW_ONLY"


class ConfigError(ValueError):
    """A configuration names an unknown key or holds a value of the wrong kind."""


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def from_dict(cls: type[T], values: Mapping[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from ``values``; unknown keys raise :class:`ConfigError`.

    Nested dataclass fields are built recursively from nested mappings, so
    ``{"initial": {"n": 50}}`` fills ``cls.initial`` of type ``InitialSet``.
    ``where`` prefixes error messages (e.g. the YAML file and key path).
    """
    if values is not None and not isinstance(values, Mapping):
        raise ConfigError(f"{where or cls.__name__}: {values!r} is {_kind(values)}; allowed: {_allowed(cls)}")
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in values if k not in fields]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(str(k), list(fields), n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(
            f"{where or cls.__name__}: unknown key(s) {', '.join(hints)}; "
            f"known keys of {cls.__name__}: {', '.join(sorted(fields))}"
        )
    required = [f.name for f in dataclasses.fields(cls) if f.init and f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING and f.name not in values]
    if required:
        raise ConfigError(f"{where or cls.__name__}: missing key(s) {', '.join(map(repr, required))}; "
                          f"required keys of {cls.__name__}: "
                          + ", ".join(f.name for f in dataclasses.fields(cls) if f.init and f.default is dataclasses.MISSING
                                      and f.default_factory is dataclasses.MISSING))
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        tp = hints.get(name)
        # a file's keys read "file.yaml: base", nested keys "name.arms.a.budget"
        sub = f"{where}: {name}" if where.endswith((".yaml", ".yml")) else f"{where}.{name}" if where else name
        if not _fits(value, tp):
            raise ConfigError(f"{sub}: {value!r} is {_kind(value)}; allowed: {_allowed(tp)}")
        check_range(name, value, sub)
        if _is_dataclass_type(tp) and isinstance(value, Mapping):
            value = from_dict(tp, value, sub)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


#: ranges of numeric keys, by name, wherever they appear (run config, learner and strategy parameters):
#: key -> (test, the allowed values in words). Every float must also be finite (YAML's .inf and .nan are
#: refused for every key): a non-finite rate, probability or threshold only fails later, in training
#: (FloatingPointError, torch's RuntimeError) or never (a NaN threshold makes a stopping rule never fire).
RANGES: dict[str, tuple] = {
    **{k: (lambda v: 0 <= v < 1, "a number in [0, 1)") for k in ("dropout", "momentum", "disc_holdout")},
    **{k: (lambda v: v > 0, "a number > 0") for k in ("lr", "lr_vae", "lr_disc", "bandwidth")},
    **{k: (lambda v: 0 <= v <= 1, "a number in [0, 1]") for k in ("stop_disc_acc", "ranker_detach_after")},
    "lr_drop_every": (lambda v: 0 < v <= 1, "a number in (0, 1] (a share of the iterations), or null"),
    **{k: (lambda v: v >= 0, "a number >= 0") for k in ("weight_decay", "beta", "alpha", "adversary_weight",
                                                           "ranker_weight", "ranker_margin", "ridge")},
    **{k: (lambda v: v >= 1, "an integer >= 1") for k in (
        "pool_size", "test_size", "epochs", "iterations", "batch_size", "val_every", "patience", "vae_steps",
        "disc_steps", "latent_dim", "width", "vae_width", "hidden", "disc_hidden", "ranker_interm")},
    **{k: (lambda v: v >= 0, "an integer >= 0") for k in ("val_size", "latent_sample", "split_seed", "seed")},
}


def check_range(name: str, value: Any, where: str) -> None:
    """A :class:`ConfigError` for a non-finite number, or a value of a :data:`RANGES` key outside its range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if isinstance(value, float) and not math.isfinite(value):
        allowed = RANGES[name][1] if name in RANGES else "a finite number"
        raise ConfigError(f"{where}: {value!r} is not a finite number; allowed: {allowed}")
    if name in RANGES and not RANGES[name][0](value):
        raise ConfigError(f"{where}: {value!r} is out of range; allowed: {RANGES[name][1]}")


#: what a name that becomes a folder (profile, experiment name, arm) may hold, in words
COMPONENT_RULE = ("a plain folder name: letters, digits, '_', '-', '+' and '.', not starting with '.' or '-', "
                  "at most 100 characters (no '/', '\\', '..', absolute paths or control characters)")


def safe_component(value: Any, where: str) -> str:
    """``value`` if it is a safe single path component (:data:`COMPONENT_RULE`), else a :class:`ConfigError`.

    Profile, experiment name and arm name become ``<results root>/<profile>/<name>/<arm>/``: a name
    like ``../../elsewhere`` or ``/tmp/x`` would make a run write outside its results root.
    """
    ok = (isinstance(value, str) and 0 < len(value) <= 100 and value[0] not in ".-"
          and all(c.isalnum() or c in "_-+." for c in value) and value.isprintable())
    if not ok:
        raise ConfigError(f"{where}: {value!r} is not allowed; allowed: {COMPONENT_RULE}")
    return value


def check_keys(cls: type, values: Mapping[str, Any] | None, where: str) -> None:
    """The checks of :func:`from_dict` on a part of ``cls``'s keys (a ``base:`` or one arm, before they are merged):
    unknown keys, the kind and the range of each value given, so an error names the place it is written."""
    if values is not None and not isinstance(values, Mapping):
        raise ConfigError(f"{where}: {values!r} is {_kind(values)}; allowed: {_allowed(cls)}")
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    known = {k: v for k, v in (values or {}).items() if k in fields}
    if len(known) < len(values or {}):
        from_dict(cls, values, where)  # raises: unknown key(s), with hints
    hints = typing.get_type_hints(cls)
    for name, value in known.items():
        tp, sub = hints.get(name), f"{where}.{name}"
        if not _fits(value, tp):
            raise ConfigError(f"{sub}: {value!r} is {_kind(value)}; allowed: {_allowed(tp)}")
        check_range(name, value, sub)
        if _is_dataclass_type(tp) and isinstance(value, Mapping):
            check_keys(tp, value, sub)


def _fits(value: Any, tp: Any) -> bool:
    """Whether ``value`` (as YAML gives it) is of the annotated type ``tp``; types not listed here pass.

    ``bool`` is no integer here (YAML's ``true`` for a count is a mistake) and an integer is a float.
    """
    if tp is None or tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, t) for t in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if tp is dict or origin is dict:
        return isinstance(value, Mapping)
    if tp is list or origin is list:
        (item,) = typing.get_args(tp) or (None,)
        return isinstance(value, (list, tuple)) and all(_fits(v, item) for v in value)
    if _is_dataclass_type(tp):
        return isinstance(value, (Mapping, tp))
    return True


_KINDS = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
          tuple: "a list", dict: "a mapping", type(None): "null"}


def _kind(value: Any) -> str:
    return next((k for t, k in _KINDS.items() if type(value) is t), f"a {type(value).__name__}")


def _allowed(tp: Any) -> str:
    """``tp`` in words: ``int | None`` -> "an integer or null"."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_allowed(t) for t in typing.get_args(tp))
    if tp is dict or origin is dict:
        return "a mapping (key: value)"
    if tp is list or origin is list:
        (item,) = typing.get_args(tp) or (None,)
        return "a list" + (f" of {_allowed(item).split(' ', 1)[1]}s" if item in _KINDS else "")
    if _is_dataclass_type(tp):
        return f"a mapping of {tp.__name__} keys ({', '.join(f.name for f in dataclasses.fields(tp) if f.init)})"
    if tp is bool:
        return "true, false"
    return _KINDS.get(tp, getattr(tp, "__name__", str(tp)))


def to_dict(obj: Any) -> Any:
    """Plain-Python (JSON-able) view of a dataclass config, recursively."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; a missing file or non-mapping top level is a :class:`ConfigError`."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a parameter file; allowed: a YAML file such as "
                          f"{path / '02_vaal_vs_random.yaml'} (every file of the folder: {path / '*.yaml'})")
    if not path.is_file():
        raise ConfigError(f"parameter file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text (YAML) file: byte 0x{exc.object[exc.start]:02x} at offset {exc.start} "
                          "is not UTF-8; allowed: a YAML parameter file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the parameter file ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())
        raise ConfigError(f"{path}: not valid YAML: {first}") from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty; allowed: a YAML mapping with at least name and arms "
                          "(see params/smoke/*.yaml)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data
