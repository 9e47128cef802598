"""Packaging: what the wheel holds, and dependencies that match what embedkit imports."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python >= 3.11")
REPO = Path(__file__).resolve().parents[1]
# import name → distribution name, where they differ
DISTRIBUTION = {
    "PIL": "pillow",
    "sklearn": "scikit-learn",
    "faiss": "faiss-cpu",
    "scvi": "scvi-tools",
}
# imported only where needed, with a message naming the extra that installs them
OPTIONAL = {
    "anndata": "the anndata extra, for .h5ad output",
    "scanpy": "the cell-lines extra, for cell-line embeddings from expression",
    "scvi-tools": "the scvi extra, for scVI cell-line embeddings",
    "copairs": "the copairs extra, for evaluate map",
}
# declared although embedkit never imports them, each for a reason
DECLARED_FOR_OTHERS = {
    "torchvision": "timm's image models need it",
    "imagecodecs": "tifffile's LZW/Deflate codecs for real microscopy TIFFs",
}


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    for stop in "<>=!~[; ":
        requirement = requirement.split(stop)[0]
    return requirement.strip().lower().replace("_", "-")


def _third_party_imports() -> dict[str, Path]:
    stdlib = set(sys.stdlib_module_names)
    found: dict[str, Path] = {}
    for path in (REPO / "embedkit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in stdlib and top not in ("embedkit", "__future__"):
                    found.setdefault(top, path)
    return found


def test_every_module_embedkit_imports_is_declared_and_nothing_else_is():
    project = _project()
    core = {_name(r) for r in project["dependencies"]}
    extras = {_name(r) for reqs in project["optional-dependencies"].values() for r in reqs}
    assert set(OPTIONAL) <= extras
    imported = {
        DISTRIBUTION.get(m, m).lower().replace("_", "-"): p
        for m, p in _third_party_imports().items()
    }
    undeclared = {d: str(p) for d, p in imported.items() if d not in core | set(OPTIONAL)}
    assert not undeclared, f"imported but not declared: {undeclared}"
    unused = core - set(imported) - set(DECLARED_FOR_OTHERS)
    assert not unused, f"declared core dependencies embedkit never imports: {unused}"
    assert "torch-geometric" not in core


def test_optional_imports_fail_with_the_extra_to_install():
    """anndata is an extra: writing .h5ad without it names the command that installs it."""
    text = (REPO / "embedkit" / "h5ad.py").read_text()  # where io.write_table writes .h5ad
    assert "pip install 'embedkit[anndata]'" in text


@pytest.mark.slow
def test_the_wheel_ships_the_zoo_and_not_the_train_recipes(tmp_path):
    source = tmp_path / "src"  # build a copy: pip writes build/ into the source tree
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", ".venv")
    for name in ("embedkit", "train", "pyproject.toml", "README.md"):
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("embedkit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.startswith(("train/", "zoo/", "tests/"))]
    for card in (REPO / "embedkit" / "zoo").glob("*.card.json"):
        model = card.name.removesuffix(".card.json")
        for file in (f"{model}.card.json", f"{model}/config.json", f"{model}/model.safetensors"):
            assert f"embedkit/zoo/{file}" in names, file
    assert "embedkit/data/example_molecules.csv" in names
