"""The package layers: imports point down (mtf_env < agents < benchmarks), no import cycles, a standalone env.

The import graph is read with ``ast`` from the source files: module-level and
function-level imports alike, relative imports resolved. A module's layer is that of the
longest prefix in :data:`LAYERS` that names it (extend the table to split a package into
finer layers).
"""
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Our packages, walked for imports.
PACKAGES = ("mtf_env", "agents", "benchmarks")
#: Module prefix -> layer number; a module may import only from its own layer or lower ones.
LAYERS: dict[str, int] = {
    "mtf_env": 0,                  # the simulator
    "mtf_env.transitions": 1,      # logged data: format, collection, loading
    "mtf_env.dataset": 1,
    "mtf_env.dataset_io": 1,
    "mtf_env.dataset_collect": 1,
    "mtf_env.dataset_merge": 1,
    "agents": 2,                   # policies, agents, estimators
    "benchmarks.evaluation": 3,    # the evaluation library
    "benchmarks.suites": 4,        # suites, plots and speed benchmarks
    "benchmarks.speed": 4,
    "benchmarks": 5,               # the command line (benchmarks.cli) and the package root
}


def layer_of(module: str) -> int | None:
    """Layer of a module (the longest matching prefix of LAYERS wins); None for modules outside our packages."""
    best: tuple[int, int] | None = None
    for prefix, layer in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > best[0]:
                best = (len(prefix), layer)
    return None if best is None else best[1]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def find_modules(root: Path, packages=PACKAGES) -> dict[str, Path]:
    """Module name -> source file of every module of ``packages`` under ``root``."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            found[module_name(path, root)] = path
    return found


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """Modules of ``known`` that ``module`` imports anywhere in its file (``from P import name`` may name a module)."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()

    def add(name: str) -> None:
        # the longest known module that is ``name`` or contains it (``import a.b.c`` imports a, a.b and a.b.c)
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            candidate = ".".join(parts[:i])
            if candidate in known:
                out.add(candidate)
                return

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                full = f"{target}.{alias.name}"
                if full in known:
                    out.add(full)
                else:
                    add(target)
    out.discard(module)
    return out


def import_graph(root: Path = ROOT, packages=PACKAGES) -> dict[str, set[str]]:
    modules = find_modules(root, packages)
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``"a -> b (layer x -> y)"`` for every import of a higher layer."""
    bad = []
    for module, targets in sorted(graph.items()):
        here = layer_of(module)
        for target in sorted(targets):
            there = layer_of(target)
            if here is not None and there is not None and there > here:
                bad.append(f"{module} -> {target} (layer {here} -> {there})")
    return bad


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    colour = {m: 0 for m in graph}  # 0 unseen, 1 on the stack, 2 done
    for start in sorted(graph):
        if colour[start]:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        colour[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour.get(child, 2) == 1:
                return path[path.index(child):] + [child]
            elif colour.get(child, 2) == 0:
                colour[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph[child]))))
    return None


def test_imports_point_down_the_layers():
    bad = upward_imports(import_graph())
    assert not bad, "imports from a lower layer to a higher one:\n  " + "\n  ".join(bad)


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checks_catch_an_upward_import_and_a_cycle(tmp_path):
    """A function-level upward import and a relative-import cycle in a fake tree are both reported."""
    files = {
        "mtf_env/__init__.py": "",
        "mtf_env/a.py": "def f():\n    from agents.x import g\n",
        "mtf_env/b.py": "from . import c\n",
        "mtf_env/c.py": "def h():\n    from .b import thing\n",
        "agents/__init__.py": "",
        "agents/x.py": "import mtf_env.b\n",
        "benchmarks/__init__.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path)
    assert upward_imports(graph) == ["mtf_env.a -> agents.x (layer 0 -> 2)"]
    assert find_cycle(graph) in (["mtf_env.b", "mtf_env.c", "mtf_env.b"], ["mtf_env.c", "mtf_env.b", "mtf_env.c"])
    assert layer_of("benchmarks.evaluation.ab") == 3 and layer_of("benchmarks.cli.ab") == 5 and layer_of("numpy") is None


def test_the_env_runs_without_torch_or_the_agents():
    code = textwrap.dedent("""
        import sys
        import gymnasium as gym
        import mtf_env
        env = gym.make("ShortVideoMTF-v0")
        env.reset(seed=0)
        env.step(env.action_space.sample())
        loaded = sorted(m for m in ("torch", "agents", "benchmarks", "d3rlpy") if m in sys.modules)
        assert not loaded, f"the env imported {loaded}"
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("module", ["mtf_env.dataset", "mtf_env.rollout", "mtf_env.ple", "mtf_env.impressions"])
def test_simulator_modules_import_without_torch(module):
    code = f"import sys, {module}; loaded = [m for m in ('torch', 'agents', 'd3rlpy') if m in sys.modules]; " \
           "assert not loaded, loaded"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_module_is_in_the_architecture_map():
    """docs/architecture.md names every module (a newcomer's map must not miss a new one)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    missing = []
    for name, path in find_modules(ROOT).items():
        if path.name == "__init__.py":
            continue
        parent = path.parent.name
        spellings = (f"`{path.name}`", f"`{parent}/{path.name}`", f"`{path.stem}`")
        if not any(s in text for s in spellings):
            missing.append(name)
    assert not missing, f"docs/architecture.md does not name: {missing}"
