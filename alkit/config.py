"""Dataclass configs that reject unknown keys, and YAML loading.

Every component owns its defaults as a dataclass; overrides come from one
place (a YAML file or a notebook's ``parameters`` cell) and pass through
:func:`from_dict`, which fails loudly on a key the dataclass does not know.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


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
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        tp = hints.get(name)
        # a file's keys read "file.yaml: base", nested keys "name.arms.a.budget"
        sub = f"{where}: {name}" if where.endswith((".yaml", ".yml")) else f"{where}.{name}" if where else name
        if not _fits(value, tp):
            raise ConfigError(f"{sub}: {value!r} is {_kind(value)}; allowed: {_allowed(tp)}")
        if _is_dataclass_type(tp) and isinstance(value, Mapping):
            value = from_dict(tp, value, sub)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


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
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"parameter file not found: {path}")
    with path.open() as fh:
        try:
            data = yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data
