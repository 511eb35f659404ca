"""The package's layout: no import cycles, and task kinds decided in one module."""

import ast
import pathlib
import re

import lm_layers_explainer

ROOT = pathlib.Path(lm_layers_explainer.__file__).parent


def _modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(("lm_layers_explainer", *parts)).removesuffix(".__init__")
        found[name] = path
    return found


def _imports(name: str, path: pathlib.Path, modules) -> set[str]:
    """Package modules ``name`` imports anywhere (inside functions too), except imports
    guarded by ``if TYPE_CHECKING`` (never run)."""
    tree = ast.parse(path.read_text())
    guarded = {
        id(node)
        for branch in ast.walk(tree)
        if isinstance(branch, ast.If) and getattr(branch.test, "id", "") == "TYPE_CHECKING"
        for node in ast.walk(branch)
    }
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or id(node) in guarded:
            continue
        if node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        for candidate in [target] + [f"{target}.{alias.name}" for alias in node.names]:
            if candidate in modules and candidate != name and not candidate.startswith(name + "."):
                found.add(candidate)
    return found


def test_no_import_cycles_in_the_package():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert "lm_layers_explainer.models" in graph["lm_layers_explainer.base"]  # the graph is real

    def reaches(start, goal, seen):
        for nxt in graph[start] - seen:
            seen.add(nxt)
            if nxt == goal or reaches(nxt, goal, seen):
                return True
        return False

    cycles = [
        (a, b)
        for a in graph
        for b in graph[a]
        if not a.startswith(b + ".") and reaches(b, a, set())
    ]
    assert cycles == []


def test_only_the_task_module_branches_on_a_models_kind():
    branching = re.compile(r"\.kind\s*(==|!=|not in\b|in\b)")
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for path in ROOT.rglob("*.py")
        if path.name not in ("tasks.py", "base.py")  # base: the explainer's accepted kinds
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if branching.search(line)
    ]
    assert found == []


def _string_literals(node) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return set().union(*(_string_literals(e) for e in node.elts)) if node.elts else set()
    if isinstance(node, ast.BinOp):
        return _string_literals(node.left) | _string_literals(node.right)
    return set()


def test_what_an_attribution_method_needs_is_on_its_line_never_decided_by_its_name():
    """Capabilities are fields of the methods tables (teacher_forced, shares_forward,
    tunnelable, one_use_hooks, complete, ...): no module compares a method's name with a
    literal, or keeps a tuple of method names for a capability."""
    from lm_layers_explainer.attributions.layers import LAYER_METHODS
    from lm_layers_explainer.attributions.methods import METHODS

    names = set(METHODS) | set(LAYER_METHODS)
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                compared = set().union(*map(_string_literals, [node.left, *node.comparators]))
            elif isinstance(node, ast.Assign) and isinstance(node.value, (ast.Tuple, ast.List)):
                compared = _string_literals(node.value)
                compared = compared if len(compared) > 1 and compared <= names else set()
            else:
                continue
            if compared & names:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {sorted(compared & names)}")
    assert found == []
