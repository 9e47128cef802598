"""`train/` imports one way: no cycle among its modules, `embedkit` never imports `train`,
and no train module re-exports another's names (no shims). Read from the source with `ast`,
so imports under `TYPE_CHECKING` and inside functions count too."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _imports(path: Path, package: str) -> set[str]:
    """The modules of `package` (and `package.name` candidates) that `path` imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found |= {n for n in names if n == package or n.startswith(package + ".")}
    return found


def _train_modules() -> dict[str, Path]:
    return {
        "train" if p.stem == "__init__" else f"train.{p.stem}": p
        for p in sorted((REPO / "train").glob("*.py"))
    }


def test_train_modules_import_one_way():
    modules = _train_modules()
    graph = {
        name: {m for m in _imports(path, "train") if m in modules and m not in (name, "train")}
        for name, path in modules.items()
    }
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as err:
        pytest.fail(f"import cycle in train/: {' -> '.join(err.args[1])}")
    assert set(order) == set(modules)


def test_embedkit_never_imports_train():
    offenders = sorted(
        str(p.relative_to(REPO)) for p in (REPO / "embedkit").rglob("*.py") if _imports(p, "train")
    )
    assert offenders == []


def _defined(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_no_train_module_re_exports_names_it_does_not_define():
    for name, path in _train_modules().items():
        tree = ast.parse(path.read_text())
        exported: set[str] = set()
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
            ):
                exported |= {ast.literal_eval(e) for e in node.value.elts}
        foreign = sorted(exported - _defined(tree))
        assert not foreign, f"{name} re-exports {foreign}; import them from their own module"
