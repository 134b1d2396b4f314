"""The packages import only downwards: cli -> benchmark -> pipeline/tune -> track/export/evaluate -> train -> models
-> score/split -> data -> io/defaults/errors. Every import counts, a function's lazy one too."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "recvae"
# Lower number = lower layer; a module may import its own layer and those below it.
LAYERS = {
    "defaults": 0, "errors": 0, "io": 0, "environment": 0,
    "data": 1, "split": 2, "score": 2, "models": 3, "train": 4,
    "evaluate": 5, "export": 5, "track": 5, "pipeline": 6, "tune": 6, "benchmark": 7, "cli": 8, "__main__": 9,
}


def _layer_of(module: str) -> str:
    return module.split(".")[1]


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("recvae."):
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("recvae."):
                    yield node.lineno, alias.name


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_package_has_a_layer():
    top = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in SOURCES}
    assert top <= set(LAYERS), top - set(LAYERS)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_downwards_only(path):
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    upward = [f"line {line}: {module}" for line, module in _imports(path) if LAYERS[_layer_of(module)] > LAYERS[own]]
    assert not upward, f"{path.relative_to(PACKAGE)} imports from a higher layer: {upward}"


def test_an_upward_import_is_caught(tmp_path):
    fake = tmp_path / "model.py"
    fake.write_text("def f():\n    from recvae.train.trainer import Trainer\n")
    assert [m for _, m in _imports(fake) if LAYERS[_layer_of(m)] > LAYERS["models"]] == ["recvae.train.trainer"]
