"""The house's numbers: modules, import edges, upward imports, cycles, sizes, long functions, duplicates.

``python scripts/house_metrics.py [--root DIR]`` reads ``DIR/alkit`` as text (nothing is imported) and
prints one line per number, so a before/after comparison is two runs of one command::

    git worktree add /tmp/before e612f13 && python scripts/house_metrics.py --root /tmp/before

* import edges: distinct (importer, imported) pairs of alkit modules, every ``import`` counted wherever it
  stands (module level or inside a function, as import-linter counts them); ``from . import x`` is an edge
  to the submodule ``x`` when there is one, ``from .x import y`` to ``x`` (or to ``x.y`` when it is a module).
* hidden imports: ``import`` statements inside a function (all of them, and those of alkit modules).
* upward imports: edges against the ``layers`` contract of *this* checkout's ``pyproject.toml`` (the
  layers as ``ARCHITECTURE.md`` draws them), applied to ``DIR``'s modules: an importer in a lower layer
  than what it imports. Modules of ``DIR`` in no layer are listed, not judged.
* cycles: strongly connected groups of more than one module in the edge graph.
* functions > 60 lines: ``def`` bodies (decorators and docstring included) longer than 60 lines.
* duplicates pairs: the first line of the ``duplicates`` command over ``DIR/alkit`` (where it is installed).
"""
from __future__ import annotations

import argparse
import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
LONG = 60


def modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module of the ``alkit`` package under ``root``."""
    out = {}
    for path in sorted((root / "alkit").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    if node.level:
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))
    return node.module or ""


def imports(mods: dict[str, Path]) -> tuple[set[tuple[str, str]], int, int]:
    """(edges between alkit modules, imports inside functions, of which of alkit modules)."""
    edges, hidden, hidden_own = set(), 0, 0
    for mod, path in mods.items():
        tree = ast.parse(path.read_text())
        in_function = set()
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                in_function |= {id(n) for n in ast.walk(fn) if n is not fn}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(mod, path.name == "__init__.py", node)
                targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target for a in node.names]
            else:
                continue
            own = [t for t in targets if t.split(".")[0] == "alkit"]
            if id(node) in in_function:
                hidden += 1
                hidden_own += bool(own)
            for t in own:
                while t not in mods and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t != mod:
                    edges.add((mod, t))
    return edges, hidden, hidden_own


def layers(pyproject: Path) -> list[list[str]]:
    """The first ``layers`` contract's layers, top first, each a list of module names (``|`` / ``:`` split)."""
    conf = tomllib.loads(pyproject.read_text()).get("tool", {}).get("importlinter", {})
    for contract in conf.get("contracts", []):
        if contract.get("type") == "layers":
            prefix = contract["containers"][0] + "." if contract.get("containers") else ""
            return [[prefix + name.strip().strip("()") for name in layer.replace(":", "|").split("|")]
                    for layer in contract["layers"]]
    return []


def layer_of(mod: str, stack: list[list[str]]) -> int | None:
    """Index of the layer (0 = top) holding ``mod`` or a package above it; None: in no layer."""
    for i, layer in enumerate(stack):
        if any(mod == name or mod.startswith(name + ".") for name in layer):
            return i
    return None


def cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    graph: dict[str, list[str]] = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def long_functions(mods: dict[str, Path]) -> list[tuple[int, str]]:
    out = []
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                if node.end_lineno - start + 1 > LONG:
                    out.append((node.end_lineno - start + 1, f"{mod}.{node.name}"))
    return sorted(out, reverse=True)


def duplicates(root: Path) -> str:
    if not shutil.which("duplicates"):
        return "n/a (no duplicates command on this machine)"
    proc = subprocess.run(["duplicates", "--repo", str(root / "alkit"), "--most", "1", "--seconds", "120"],
                          capture_output=True, text=True)
    return proc.stdout.splitlines()[0] if proc.stdout else "n/a"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=HERE, help="checkout to measure (default: this one)")
    ap.add_argument("--verbose", "-v", action="store_true", help="list the upward imports, cycles and long functions")
    args = ap.parse_args(argv)
    mods = modules(args.root)
    edges, hidden, hidden_own = imports(mods)
    stack = layers(HERE / "pyproject.toml")
    where = {m: layer_of(m, stack) for m in mods}
    upward = sorted((a, b) for a, b in edges if None not in (where[a], where[b]) and where[a] > where[b])
    loops = cycles(edges)
    sizes = sorted(((len(p.read_text().splitlines()), m) for m, p in mods.items()), reverse=True)
    longs = long_functions(mods)
    print(f"modules: {len(mods)}")
    print(f"import edges: {len(edges)}")
    print(f"imports inside functions: {hidden} ({hidden_own} of alkit modules)")
    unplaced = [m for m in mods if where[m] is None and m != "alkit"]  # the root package is the container
    print(f"upward imports: {len(upward)}" + (f" (modules in no layer: {', '.join(unplaced)})"
                                              if unplaced else ""))
    print(f"cycles: {len(loops)} ({sum(map(len, loops))} modules)")
    print(f"lines: {sum(s for s, _ in sizes)} total; largest: " + ", ".join(f"{m} {s}" for s, m in sizes[:5]))
    print(f"modules over 500 lines: {sum(s > 500 for s, _ in sizes)}")
    print(f"functions > {LONG} lines: {len(longs)}")
    print(f"duplicates: {duplicates(args.root)}")
    if args.verbose:
        for a, b in upward:
            print(f"  upward: {a} -> {b}")
        for group in loops:
            print(f"  cycle: {' <-> '.join(group)}")
        for n, name in longs:
            print(f"  long: {name} {n}")


if __name__ == "__main__":
    main()
