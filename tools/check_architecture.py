"""Architecture rules of ntk_dist that import-linter does not express, checked over the AST.

- no import cycle between modules of the package (imports inside functions count too:
  a cycle hidden behind a local import is still a cycle);
- no private name (``_x``) imported from another module of the package, and no
  ``module._x`` attribute taken from an imported package module;
- no module longer than ``MAX_LINES`` lines.

Usage: ``python tools/check_architecture.py [PACKAGE_DIR]``; prints each violation and
the three counts, and exits 1 when any count is not 0. The layer order itself is the
import-linter contract in ``pyproject.toml`` (``lint-imports``).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_LINES = 500


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, here: str, is_pkg: bool) -> str:
    if not node.level:
        return node.module or ""
    base = here.split(".") if is_pkg else here.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def scan(root: Path):
    """Per module: the package modules it imports, its private imports, its length."""
    modules = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    pkg = root.name
    graph: dict[str, set[str]] = {m: set() for m in modules}
    private: list[str] = []
    long: list[str] = []
    for name, path in modules.items():
        text = path.read_text()
        if (n := text.count("\n")) > MAX_LINES:
            long.append(f"{path}: {n} lines (> {MAX_LINES})")
        tree = ast.parse(text, str(path))
        aliases: dict[str, str] = {}  # local name -> package module it refers to
        for node in ast.walk(tree):
            targets: list[tuple[str, str | None]] = []
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == pkg:
                        targets.append((a.name, None))
                        aliases[a.asname or a.name] = a.name
            elif isinstance(node, ast.ImportFrom):
                src = _resolve(node, name, path.name == "__init__.py")
                if src.split(".")[0] != pkg:
                    continue
                for a in node.names:
                    sub = f"{src}.{a.name}"
                    if sub in modules:  # ``from pkg.layer import module``
                        targets.append((sub, None))
                        aliases[a.asname or a.name] = sub
                    else:
                        targets.append((src, a.name))
            for target, imported in targets:
                if target in modules and target != name:
                    graph[name].add(target)
                if imported and imported.startswith("_") and not imported.startswith("__"):
                    private.append(f"{path}:{node.lineno}: imports {imported} from {target}")
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                private.append(f"{path}:{node.lineno}: uses {aliases[node.value.id]}.{node.attr}")
    return graph, private, long


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0] if argv else Path(__file__).resolve().parents[1] / "ntk_dist")
    graph, private, long = scan(root)
    # A package's __init__ re-exporting its children is not a cycle of the code.
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    cyc = cycles(graph)
    for c in cyc:
        print("import cycle: " + " -> ".join(c))
    for line in private + long:
        print(line)
    print(
        f"import cycles: {len(cyc)}, private cross-module names: {len(private)}, "
        f"modules over {MAX_LINES} lines: {len(long)}"
    )
    return 1 if cyc or private or long else 0


if __name__ == "__main__":
    raise SystemExit(main())
