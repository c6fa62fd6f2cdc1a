"""The shape of the code: layered packages that import only downward, no import cycle, small
modules and functions, the model kind told apart in one place, the loop's guarantees living
once, a README layout tree that names every system of the mission by an existing path, and
nothing that ruff's lint flags."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "aevb"
MODULES = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(
    ".__init__"): p for p in sorted(PACKAGE.rglob("*.py"))}
# The layers of aevb/, bottom first: a package imports only itself and the packages before it.
LAYERS = ("config", "data", "models", "run", "evaluation", "training", "architectures",
          "families", "regimes", "sweeps", "results")


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
            submodules = {f"{base}.{a.name}" for a in node.names} & set(MODULES)
            # `from aevb.models import losses` imports the module losses, not its package.
            found |= submodules if submodules else {base}
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


def _layer(name: str) -> int | None:
    parts = name.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 else None


def test_every_module_lives_in_a_layer():
    assert {name.split(".")[1] for name in MODULES if name != "aevb"} == set(LAYERS)


def _upward(graph: dict[str, set[str]]) -> list[str]:
    """The imports of `graph` (module -> modules it imports) that point up the layers."""
    return sorted(f"{name} -> {dep}" for name, deps in graph.items() if name != "aevb"
                  for dep in deps if dep != "aevb" and _layer(dep) > _layer(name))


def test_packages_import_only_packages_below_them():
    assert _upward({name: _imports(name, path) for name, path in MODULES.items()}) == []


def test_the_layer_check_sees_an_upward_import():
    assert _upward({"aevb.models.vae": {"aevb.families.vae", "aevb.models.layers"},
                    "aevb.families.vae": {"aevb.models.vae"}}) == [
        "aevb.models.vae -> aevb.families.vae"]


def test_import_graph_of_aevb_has_no_cycle():
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    assert graph["aevb.regimes"] >= {"aevb.regimes.joint", "aevb.regimes.layerwise",
                                     "aevb.regimes.pretrain"}
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


def _ruff(*paths: str | Path) -> subprocess.CompletedProcess:
    """ruff's default rules (the version constraints.txt pins) under pyproject.toml's settings."""
    return subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache",
                           "--output-format=concise", "--config", str(REPO / "pyproject.toml"),
                           *map(str, paths)], cwd=REPO, capture_output=True, text=True,
                          check=False)


def test_ruff_finds_nothing_in_the_repository():
    result = _ruff(".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_lint_sees_an_unused_import_and_an_undefined_name(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\nX = undefined_name\n")
    found = _ruff(bad).stdout
    assert "F401" in found and "F821" in found, found


KIND_MODULES = {"aevb.families.vae", "aevb.families.autoencoder"}


def test_only_the_families_tell_model_kinds_apart():
    """No module outside the families compares `model.kind` or reaches into one family's
    module: the registry (`families.get(kind)`) is the only way in. Layer-wise training, the
    stacked autoencoder's own regime, may use the autoencoder family's stack layout."""
    compares = [name for name, path in MODULES.items()
                if not name.startswith("aevb.families")
                and re.search(r"model\.kind\s*(==|!=|in)\s*[\"'(]", path.read_text())]
    assert compares == []
    allowed = {("aevb.regimes.layerwise", "aevb.families.autoencoder")}
    reaches = sorted((name, dep) for name, path in MODULES.items()
                     if not name.startswith("aevb.families")
                     for dep in _imports(name, path) & KIND_MODULES)
    assert [r for r in reaches if r not in allowed] == []


def test_the_loop_owns_the_non_finite_stop_the_cadence_the_keys_and_the_cursor():
    raising = [name for name, path in MODULES.items() if "NonFiniteLossError(" in
               path.read_text().replace("class NonFiniteLossError(", "")]
    assert raising == ["aevb.training.loop"]
    cadence = [name for name, path in MODULES.items()
               if re.search(r"%\s*[\w.]*every[\w.]*\s*==\s*0", path.read_text())]
    assert cadence == ["aevb.training.phase"]
    regimes = {name: path.read_text() for name, path in MODULES.items()
               if name.startswith("aevb.regimes")}
    # A round's key is the loop's: no regime folds an epoch, round or step into a key.
    folds = [name for name, text in regimes.items()
             if re.search(r"fold_in\([^()]*,\s*(e|r|f|s|epoch|round_|step)\)", text)]
    assert folds == []
    offsets = [name for name, text in regimes.items()
               if re.search(r"log_offset|step_offset", text)]
    assert offsets == []


def test_one_module_names_the_files_of_a_workdir():
    names = (r"(join|open)\([^)]*[\"'](config\.json|summary(\.stale)?\.json|metrics\.jsonl|"
             r"checkpoints|tensorboard|profile)[\"']")
    others = [name for name, path in MODULES.items() if re.search(names, path.read_text())]
    assert others == []
    defined = MODULES["aevb.run.files"].read_text()
    assert all(f'"{name}"' in defined for name in ("config.json", "summary.json", ".lock",
                                                    "metrics.jsonl", "checkpoints"))


# ----------------------------------------------------------------------------- the README

SYSTEMS = ("undercomplete", "stacked", "tied", "denoising", "sparse", "layer-wise",
           "pretraining", "VAE", "IWAE", "conv", "M1", "M2", "sweep")


def _layout_lines() -> list[tuple[str, str]]:
    """(path, description) of each line of the README's layout tree: the first fenced block
    after its '## Layout' heading."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("\n## Layout"):]
    block = section.split("```")[1].split("\n", 1)[1]
    lines = [line.strip() for line in block.splitlines() if line.strip()]
    return [(line.split()[0], line[len(line.split()[0]):].strip()) for line in lines]


def test_every_path_in_the_readme_layout_exists():
    missing = [path for path, _ in _layout_lines() if not (REPO / path).exists()]
    assert _layout_lines() and missing == []


def test_the_readme_layout_names_every_system_of_the_mission():
    lines = _layout_lines()
    unnamed = [s for s in SYSTEMS
               if not any(s.lower() in f"{path} {text}".lower() for path, text in lines)]
    assert unnamed == []
