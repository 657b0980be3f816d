"""Dataclass configs that reject unknown keys, and YAML loading.

Every component owns its defaults as a dataclass; overrides come from one
place (a YAML file or a notebook's ``parameters`` cell) and pass through
:func:`from_dict`, which fails loudly on a key the dataclass does not know.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

T = TypeVar("T")

#: ``$ALKIT_DRAW_ONLY`` set to 1 (``python -m alkit.batch --draw-only``, ``make figures DRAW_ONLY=1``): notebooks
#: draw what is on disk, train nothing (:func:`alkit.experiment.draw_only` reads it, :mod:`alkit.batch` sets it)
DRAW_ONLY_ENV = "ALKIT_DRAW_ONLY"
#: the folder of the notebook being executed (python -m alkit.batch sets it): its links to figure pages start there
NOTEBOOK_DIR_ENV = "ALKIT_NOTEBOOK_DIR"


class ConfigError(ValueError):
    """A configuration names an unknown key or holds a value of the wrong kind."""


def show(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for one-line error messages.

    Built piece by piece and stopped at the limit, so a huge value, or one that a YAML alias makes look huge
    (a "billion laughs" list of lists sharing one list), costs no more than ``limit`` characters to show: the
    message of issue 47 that printed a whole expanded value never ended. Small values read as ``repr``."""
    if isinstance(value, str) and len(value) > limit:  # a long path: its start and its end (the file's name)
        head = limit // 3
        return repr(value[:head] + "..." + value[-(limit - head - 6):])
    out: list[str] = []
    used = [0]

    def emit(text: str) -> None:
        out.append(text)
        used[0] += len(text)

    def walk(v: Any, depth: int) -> None:
        if used[0] > limit:
            return
        if isinstance(v, (dict, list, tuple)) and depth > 8:
            emit("...")
        elif isinstance(v, dict):
            emit("{")
            for i, (k, x) in enumerate(v.items()):
                if used[0] > limit:
                    break
                emit(", " if i else "")
                walk(k, depth + 1)
                emit(": ")
                walk(x, depth + 1)
            emit("}")
        elif isinstance(v, (list, tuple)):
            emit("[" if isinstance(v, list) else "(")
            for i, x in enumerate(v):
                if used[0] > limit:
                    break
                emit(", " if i else "")
                walk(x, depth + 1)
            emit("]" if isinstance(v, list) else ",)" if len(v) == 1 else ")")
        elif isinstance(v, str):
            emit(repr(v[: limit + 1]) if len(v) > limit else repr(v))
        else:
            try:
                emit(repr(v)[: limit + 1])
            except ValueError:  # an int of more than 4,300 digits
                emit(f"<{type(v).__name__} too long to show>")

    walk(value, 0)
    text = "".join(out)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def from_dict(cls: type[T], values: Mapping[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from ``values``; unknown keys raise :class:`ConfigError`.

    Nested dataclass fields are built recursively from nested mappings, so
    ``{"initial": {"n": 50}}`` fills ``cls.initial`` of type ``InitialSet``.
    ``where`` prefixes error messages (e.g. the YAML file and key path).
    """
    if values is not None and not isinstance(values, Mapping):
        raise ConfigError(f"{where or cls.__name__}: {show(values)} is {_kind(values)}; allowed: {_allowed(cls)}")
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in values if k not in fields]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(str(k)[:100], list(fields), n=1)
            hints.append(show(k, 60) + (f" (did you mean {close[0]!r}?)" if close else ""))
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
            raise ConfigError(f"{sub}: {show(value)} is {_kind(value)}; allowed: {_allowed(tp)}")
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
        raise ConfigError(f"{where}: {show(value)} is not a finite number; allowed: {allowed}")
    if name in RANGES and not RANGES[name][0](value):
        raise ConfigError(f"{where}: {show(value)} is out of range; allowed: {RANGES[name][1]}")


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
        raise ConfigError(f"{where}: {show(value)} is not allowed; allowed: {COMPONENT_RULE}")
    return value


#: the longest name of one folder (Linux, macOS: NAME_MAX bytes) and the longest results root alkit accepts
#: (PATH_MAX is 4096 bytes; a run folder adds profile, name, arm and file names below the root: up to ~400)
NAME_MAX, ROOT_MAX = 255, 3600


def check_results_root(value: Any, where: str = "results_root") -> str:
    """``value`` if it can name a results root, else a :class:`ConfigError` naming ``where`` (``--results-root``
    or the parameter file's ``results_root``): not empty ('' would read as the current folder), no NUL byte,
    every folder name at most :data:`NAME_MAX` bytes and the whole path at most :data:`ROOT_MAX` bytes (a longer
    one fails deep in a run with ``File name too long``). Only the text is checked; what is on disk, when a run
    is about to write there (:func:`alkit.results.check_writable`)."""
    text = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{where}: {show(value)} is empty; allowed: a folder path (default: results)")
    if "\0" in text:
        raise ConfigError(f"{where}: {show(value)} holds a NUL byte; allowed: a folder path")
    long = next((p for p in text.split(os.sep) if len(os.fsencode(p)) > NAME_MAX), None)
    if long is not None:
        raise ConfigError(f"{where}: {show(text)}: the folder name {show(long, 40)} is {len(os.fsencode(long))} bytes "
                          f"long; allowed: folder names of at most {NAME_MAX} bytes")
    if len(os.fsencode(os.path.abspath(text))) > ROOT_MAX:
        raise ConfigError(f"{where}: {show(text)} is {len(os.fsencode(os.path.abspath(text)))} bytes long as an "
                          f"absolute path; allowed: at most {ROOT_MAX} bytes")
    return value


def check_keys(cls: type, values: Mapping[str, Any] | None, where: str) -> None:
    """The checks of :func:`from_dict` on a part of ``cls``'s keys (a ``base:`` or one arm, before they are merged):
    unknown keys, the kind and the range of each value given, so an error names the place it is written."""
    if values is not None and not isinstance(values, Mapping):
        raise ConfigError(f"{where}: {show(values)} is {_kind(values)}; allowed: {_allowed(cls)}")
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    known = {k: v for k, v in (values or {}).items() if k in fields}
    if len(known) < len(values or {}):
        from_dict(cls, values, where)  # raises: unknown key(s), with hints
    hints = typing.get_type_hints(cls)
    for name, value in known.items():
        tp, sub = hints.get(name), f"{where}.{name}"
        if not _fits(value, tp):
            raise ConfigError(f"{sub}: {show(value)} is {_kind(value)}; allowed: {_allowed(tp)}")
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


#: what a parameter file may be: its size, its nesting depth and its number of values once YAML aliases are
#: expanded (a parameter file holds a few hundred values, 4 levels deep; issue 47: a file nested 10,000 deep
#: was a RecursionError, a 1 KB "billion laughs" alias a hang)
YAML_MAX_BYTES, YAML_MAX_DEPTH, YAML_MAX_NODES = 1_000_000, 50, 10_000


class _Refused(Exception):
    """Raised inside the YAML loader; :func:`load_yaml` turns it into a :class:`ConfigError` naming the file."""


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, stricter: a mapping that gives one key twice (YAML keeps the last one silently: a
    duplicated arm or ``base:`` would drop the first), and nesting deeper than :data:`YAML_MAX_DEPTH`, are
    refused while the file is read."""

    depth = 0

    def compose_node(self, parent, index):
        self.depth += 1
        try:
            if self.depth > YAML_MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1
                raise _Refused(f"line {line}: nested deeper than {YAML_MAX_DEPTH} levels; allowed: at most "
                               f"{YAML_MAX_DEPTH} (a parameter file needs about 4)")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _Refused(f"line {line}: key {show(key, 60)} is given twice in one mapping (first on line "
                               f"{seen[key]}); allowed: each key once (YAML would keep only the last, silently)")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node, depth: int, memo: dict, active: set) -> tuple[int, int]:
    """(values, levels) of ``node`` with every alias expanded; :class:`_Refused` past :data:`YAML_MAX_NODES`
    values or :data:`YAML_MAX_DEPTH` levels, or for an alias inside what it names. Each node is counted once
    (memo), so a billion-laughs file is refused after a few thousand steps."""
    key = id(node)
    if depth > YAML_MAX_DEPTH:
        raise _Refused(f"nested deeper than {YAML_MAX_DEPTH} levels once its aliases (*name) are expanded; allowed: "
                       f"at most {YAML_MAX_DEPTH}")
    if key in active:
        raise _Refused(f"line {node.start_mark.line + 1}: an alias refers to a list or mapping that holds it (a "
                       "recursive alias); allowed: aliases of complete values")
    if key not in memo:
        active.add(key)
        children = node.value if isinstance(node, yaml.SequenceNode) else \
            [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else []
        size, height = 1, 0
        for child in children:
            n, h = _expanded_size(child, depth + 1, memo, active)
            size, height = size + n, max(height, h)
            if size > YAML_MAX_NODES:
                raise _Refused(f"more than {YAML_MAX_NODES:,} values once its aliases (*name) are expanded; allowed: "
                               f"at most {YAML_MAX_NODES:,} (a parameter file holds a few hundred)")
        active.discard(key)
        memo[key] = (size, height + 1)
    size, height = memo[key]
    if depth + height > YAML_MAX_DEPTH:
        raise _Refused(f"nested deeper than {YAML_MAX_DEPTH} levels once its aliases (*name) are expanded; allowed: "
                       f"at most {YAML_MAX_DEPTH}")
    return memo[key]


def safe_yaml(text: str):
    """``yaml.safe_load(text)``, stricter (:class:`_StrictLoader`, :func:`_expanded_size`); raises :class:`_Refused`
    or :class:`yaml.YAMLError`."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, 0, {}, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; a missing file, one that is not a YAML mapping, or one that :func:`safe_yaml` refuses
    (duplicate keys, too deep, too many values once aliases are expanded) is one :class:`ConfigError`."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a parameter file; allowed: a YAML file such as "
                          f"{path / '02_vaal_vs_random.yaml'} (every file of the folder: {path / '*.yaml'})")
    if not path.is_file():
        if path.exists():  # a FIFO or a device (/dev/zero): reading it would wait or never end
            raise ConfigError(f"{path}: not a regular file (a FIFO, device or socket); allowed: a YAML parameter file")
        raise ConfigError(f"parameter file not found: {path}")
    try:
        size = path.stat().st_size
        if size > YAML_MAX_BYTES:
            raise ConfigError(f"{path}: {size:,} bytes; allowed: a parameter file of at most {YAML_MAX_BYTES:,} bytes")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text (YAML) file: byte 0x{exc.object[exc.start]:02x} at offset {exc.start} "
                          "is not UTF-8; allowed: a YAML parameter file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the parameter file ({exc.strerror or exc})") from None
    try:
        data = safe_yaml(text)
    except _Refused as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: a value YAML cannot build (an int of 5,000 digits)
        first = " ".join(str(exc).split())
        raise ConfigError(f"{path}: not valid YAML: {first if len(first) <= 300 else first[:297] + '...'}") from None
    except RecursionError:  # a safety net: nesting is refused long before Python's recursion limit
        raise ConfigError(f"{path}: nested too deeply; allowed: at most {YAML_MAX_DEPTH} levels") from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty; allowed: a YAML mapping with at least name and arms "
                          "(see params/smoke/*.yaml)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data
