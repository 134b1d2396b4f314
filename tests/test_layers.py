"""The packages import only downwards: cli -> benchmark -> pipeline/tune -> track/export/evaluate -> train -> models
-> score/split -> data -> io/defaults/errors. Every import counts, a function's lazy one too."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "recvae"
# Lower number = lower layer; a module may import its own layer and those below it.
LAYERS = {
    "defaults": 0, "errors": 0, "io": 0, "environment": 0, "_lazy": 0,
    "data": 1, "split": 2, "score": 2, "models": 3, "train": 4,
    "evaluate": 5, "export": 5, "track": 5, "pipeline": 6, "tune": 6, "latent": 6, "generative": 6, "benchmark": 7, "cli": 8,
    "__main__": 9,
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


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _long(path: Path, limit: int = 60) -> list[str]:
    """Functions over ``limit`` lines; the CLI's argparse builders (``_add_*``, ``build_parser``) may be longer."""
    return [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in _functions(path)
            if node.end_lineno - node.lineno + 1 > limit and not node.name.startswith("_add_") and node.name != "build_parser"]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_function_is_over_60_lines(path):
    assert not _long(path), f"{path.relative_to(PACKAGE)}: {_long(path)}"


def test_a_long_function_is_caught(tmp_path):
    fake = tmp_path / "long.py"
    fake.write_text("def f():\n" + "    x = 1\n" * 60 + "\n\ndef g():\n    return 1\n")
    assert _long(fake) == ["f (61 lines)"]


def _state_writes(path: Path) -> list[str]:
    """``global`` statements and assignments to a class's attribute inside functions."""
    found = []
    for function in _functions(path):
        for node in ast.walk(function):
            if isinstance(node, ast.Global):
                found.append(f"line {node.lineno}: global {', '.join(node.names)}")
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AugAssign) else []
            for target in targets:
                if (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                        and target.value.id[:1].isupper()):
                    found.append(f"line {node.lineno}: {target.value.id}.{target.attr} = ...")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_function_writes_module_or_class_state(path):
    """The library keeps no hidden state that one call leaves for the next (the models' old module-level
    fitter, installed by another package on import, was one)."""
    assert not _state_writes(path), f"{path.relative_to(PACKAGE)}: {_state_writes(path)}"


def test_writing_module_or_class_state_is_caught(tmp_path):
    fake = tmp_path / "state.py"
    fake.write_text("class A:\n    x = None\n\ndef use(f):\n    A.x = f\n\ndef count():\n    global N\n    N = 1\n")
    assert _state_writes(fake) == ["line 5: A.x = ...", "line 8: global N"]
