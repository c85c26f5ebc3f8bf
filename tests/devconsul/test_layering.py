"""The dev agent's modules import each other in one direction only.

Layers, bottom to top: the shared vocabulary (codec, config, errors, timers,
timings, version), the servers' state (state/), the simulated agents (node/),
the HTTP endpoints (http/), and what wires them together (cluster, cli, the
package itself). A module may import its own layer or a lower one, never a
higher one, and no set of modules may import each other in a cycle.

Imports are read with ast from the source, so imports under TYPE_CHECKING and
inside functions count too: a cycle hidden there is still a cycle to a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tuggle_agent.devconsul

PACKAGE = "tuggle_agent.devconsul"
ROOT = Path(tuggle_agent.devconsul.__file__).parent

BASE, STATE, NODE, HTTP, TOP = range(5)
LAYER_NAMES = {BASE: "base", STATE: "state", NODE: "node", HTTP: "http", TOP: "top"}
BASE_MODULES = {"codec", "config", "errors", "timers", "timings", "version"}
PACKAGE_LAYERS = {"state": STATE, "node": NODE, "http": HTTP}
TOP_MODULES = {"", "cluster", "cli"}  # "" is the package's __init__


def module_files() -> dict[str, Path]:
    """Dotted name relative to the package ("state.kv", "" for __init__) -> file."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = module_files()


def _name(module: str) -> str:
    return f"{PACKAGE}.{module}" if module else PACKAGE


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute dotted name an ImportFrom refers to."""
    if not node.level:
        return node.module or ""
    package = _name(module) if path.name == "__init__.py" else _name(module).rsplit(".", 1)[0]
    parts = package.split(".")
    base = parts[: len(parts) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _local(name: str) -> str | None:
    """`name` relative to the package if it is one of its modules, else None."""
    if name == PACKAGE:
        return ""
    if name.startswith(PACKAGE + "."):
        rest = name[len(PACKAGE) + 1 :]
        if rest in MODULES:
            return rest
    return None


def imports_of(module: str, path: Path) -> set[str]:
    """The package's modules that `module` imports, anywhere in its source."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, path, node)
            # `from . import kv` imports the module kv; `from .kv import KV` imports kv.
            names = [
                f"{base}.{alias.name}" if _local(f"{base}.{alias.name}") is not None else base for alias in node.names
            ]
        else:
            continue
        found.update(local for name in names if (local := _local(name)) is not None)
    found.discard(module)
    return found


GRAPH = {module: imports_of(module, path) for module, path in MODULES.items()}


def layer_of(module: str) -> int | None:
    if module in BASE_MODULES:
        return BASE
    if module in TOP_MODULES:
        return TOP
    return PACKAGE_LAYERS.get(module.split(".")[0])


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path (first == last), or None."""
    done: set[str] = set()
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> list[str] | None:
        stack.append(node)
        on_stack.add(node)
        for dep in sorted(graph.get(node, ())):
            if dep in on_stack:
                return [*stack[stack.index(dep) :], dep]
            if dep not in done and (cycle := visit(dep)):
                return cycle
        stack.pop()
        on_stack.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done and (cycle := visit(start)):
            return cycle
    return None


def test_the_import_reader_sees_relative_typing_and_package_imports():
    # Guards against a vacuous pass: edges known to exist must be found.
    assert {"http.server", "node.agent", "state.datacenter"} <= GRAPH["cluster"]
    assert "node.agent" in GRAPH["http.request"]  # only imported under TYPE_CHECKING
    assert {"http.kv", "http.agent"} <= GRAPH["http.server"]  # `from . import kv, agent as ...`
    assert "cluster" in GRAPH[""]


def test_find_cycle_reports_a_cycle_and_accepts_a_dag():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(_name(m) for m in cycle)


def test_every_module_has_a_layer():
    unplaced = sorted(_name(m) for m in MODULES if layer_of(m) is None)
    assert not unplaced, f"place these modules in a layer (see this test's docstring): {unplaced}"


@pytest.mark.parametrize("package", ["state", "node"])
def test_state_and_agents_never_import_endpoints(package):
    offenders = {
        _name(module): sorted(_name(dep) for dep in deps if dep.split(".")[0] == "http")
        for module, deps in GRAPH.items()
        if module.split(".")[0] == package
    }
    offenders = {module: deps for module, deps in offenders.items() if deps}
    assert not offenders, f"{package}/ modules import HTTP endpoint modules: {offenders}"


def test_imports_only_go_down_the_layers():
    upward = [
        f"{_name(module)} ({LAYER_NAMES[layer_of(module)]}) imports {_name(dep)} ({LAYER_NAMES[layer_of(dep)]})"
        for module, deps in sorted(GRAPH.items())
        for dep in sorted(deps)
        if layer_of(module) is not None and layer_of(dep) is not None and layer_of(dep) > layer_of(module)
    ]
    assert not upward, "imports going up a layer:\n" + "\n".join(upward)
