"""ARCHITECTURE.md stays in step with the package: every module of alkit/ on its layer map, no stale names, and
the map's layers are the import-linter contract's (pyproject.toml), which `make test` checks with lint-imports."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def layer_map() -> list[list[str]]:
    """The map's lines, bottom layer first: each a list of module paths relative to alkit/ (``engine/phase.py``)."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    block = re.search(r"## Layers.*?```\n(.*?)```", text, flags=re.S).group(1)
    lines = []
    for line in block.splitlines():
        names = []
        for item in re.sub(r"^\d+\s+", "", line).split(" · "):
            package = re.match(r"^(\w+)/ \((.*)\)$", item.strip())
            if package:
                names += [f"{package.group(1)}/{m}" for m in re.findall(r"\b(\w+\.py)\b", package.group(2))]
            else:
                names += re.findall(r"\b(\w+\.py)\b", item)
        lines.append(names)
    return lines


def test_every_module_is_on_the_map_and_no_stale_name():
    on_map = {name for line in layer_map() for name in line}
    modules = {p.relative_to(ROOT / "alkit").as_posix() for p in (ROOT / "alkit").rglob("*.py")}
    missing, stale = sorted(modules - on_map), sorted(on_map - modules)
    assert not missing and not stale, (
        "ARCHITECTURE.md's layer map is out of step with alkit/: "
        f"missing (add them to their layer's line): {missing or 'none'}; "
        f"stale (no such module any more: rename or remove): {stale or 'none'}")


def test_the_map_s_layers_are_the_import_linter_contract_s():
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contract = next(c for c in conf["contracts"] if c["type"] == "layers")
    expected = [sorted(n.strip() for n in layer.split("|")) for layer in reversed(contract["layers"])]
    drawn = [sorted({name.split("/")[0].removesuffix(".py") for name in line} - {"__init__"}) for line in layer_map()]
    assert drawn == expected, (
        "ARCHITECTURE.md's layers (bottom first) differ from pyproject.toml's layers contract (reversed): "
        + "; ".join(f"line {i + 1}: map {d} vs contract {e}" for i, (d, e) in enumerate(zip(drawn, expected)) if d != e)
        + (f"; {len(drawn)} lines vs {len(expected)} layers" if len(drawn) != len(expected) else ""))
