"""The package's shape: commands on top, the library in stages below them, imports running one way.

Read from the source with `ast` (not from the kernel bundle's own reading), lazy imports inside
functions included: a cycle through a lazy import is still a cycle in the design.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
# A stage imports only from itself and from stages of a lower rank.
RANKS = {"common": 0, "data": 1, "models": 1, "inference": 2, "training": 3, "submission": 3,
         "mnist": 4, "kaggle": 4}
MAX_COMMAND_LINES = 150


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package modules `path` imports, eagerly or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in modules}
    return found - {module_name(path)}


def graph() -> dict[str, set[str]]:
    files = [p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts]
    modules = {module_name(p) for p in files}
    return {module_name(p): imports_of(p, modules) for p in files}


def stage(module: str) -> str | None:
    """The stage a library module belongs to; None for a command (src.<verb>) or the package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in RANKS) else None


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for dep in sorted(g.get(node, ())):
            if state.get(dep) == "open":
                return path[path.index(dep):] + [dep] if dep in path else [node, dep]
            if dep not in state:
                found = visit(dep, path + [dep])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(g):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_no_import_cycle():
    assert find_cycle(graph()) is None


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_stages_import_only_downwards_and_never_a_command():
    g = graph()
    wrong = []
    for module, deps in g.items():
        here = stage(module)
        for dep in deps:
            there = stage(dep)
            if dep == "src":
                continue
            if there is None:   # a command: nothing imports one, another command neither
                wrong.append(f"{module} imports the command {dep}")
            elif here is not None and here != there and RANKS[there] >= RANKS[here]:
                wrong.append(f"{module} ({here}) imports {dep} ({there}), not a stage below it")
    assert not wrong, "\n".join(wrong)


def test_the_top_level_holds_only_short_commands():
    for path in sorted(SRC.glob("*.py")):
        if path.name == "__init__.py":
            continue
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert "main" in defined, f"{path.name}: a top-level module is a command with a main()"
        assert 'if __name__ == "__main__":' in text, path.name
        assert len(text.splitlines()) <= MAX_COMMAND_LINES, f"{path.name}: a command stays short"


@pytest.mark.parametrize("name", sorted(RANKS))
def test_every_stage_is_a_package(name):
    assert (SRC / name / "__init__.py").is_file()
    assert any(p.name != "__init__.py" for p in (SRC / name).glob("*.py"))
