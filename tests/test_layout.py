"""The shape of the code: the import graph of `aevb/` has no cycle, modules and functions stay
small, the model kind is told apart in one place, and the loop's guarantees live once."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "aevb"
MODULES = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(
    ".__init__"): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path) -> set[str]:
    """The aevb modules `name` imports, at any depth of the file (function-level too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m in MODULES and m != name}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_import_graph_of_aevb_has_no_cycle():
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    assert graph["aevb.router"] >= {"aevb.train", "aevb.layerwise", "aevb.pretrain"}
    assert _find_cycle(graph) is None, " -> ".join(_find_cycle(graph))


def test_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_and_functions_are_small(name):
    source = MODULES[name].read_text()
    assert len(source.splitlines()) <= 400, f"{name}: {len(source.splitlines())} lines"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            assert length <= 80, f"{name}.{node.name}: {length} lines"


KIND_COMPARISON = re.compile(r"""(kind\s*[=!]=\s*["'])|(["']\s*[=!]=\s*[\w.]*model\.kind)""")


def test_only_the_families_tell_model_kinds_apart():
    offenders = [name for name, path in MODULES.items()
                 if not name.startswith("aevb.families")
                 and re.search(r"model\.kind\s*(==|!=|in)\s*[\"'(]", path.read_text())]
    assert offenders == []


def test_the_loop_owns_the_non_finite_stop_and_the_cadence():
    raising = [name for name, path in MODULES.items() if "NonFiniteLossError(" in
               path.read_text().replace("class NonFiniteLossError(", "")]
    assert raising == ["aevb.loop"]
    cadence = [name for name, path in MODULES.items()
               if re.search(r"%\s*[\w.]*every[\w.]*\s*==\s*0", path.read_text())]
    assert cadence == ["aevb.loop"]
