"""The engine's layers point one way, and the app uses only their public faces.

Layers, lowest first (``engine/__init__.py`` and the README say the same):
base (``errors``, ``device``) < ``method`` < ``data``, ``models`` < ``rundir``
< ``steps`` < ``readers`` < ``cli``. Every import counts, lazy ones inside
functions included: a module may import its own layer or a lower one.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "engine"

LAYERS = {"errors": 0, "device": 0, "method": 1, "data": 2, "models": 2, "rundir": 3, "steps": 4, "readers": 5,
          "cli": 6, "__main__": 6}
#: What the app may import: the faces of the lower layers, and each reader by name.
APP_FACES = {"engine.errors", "engine.method", "engine.data", "engine.models", "engine.rundir", "engine.steps"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every ``engine`` module ``path`` imports (line, dotted name), relative imports resolved."""
    tree = ast.parse(path.read_text())
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "engine"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "engine":
                continue
            if node.module is None or target in {"engine", "engine.readers", "engine.method", "engine.rundir",
                                                  "engine.steps", "engine.data", "engine.models"}:
                # "from engine.readers import explain": each name may be a module of that package
                found += [(node.lineno, f"{target}.{a.name}" if (ROOT / target.replace(".", "/") / f"{a.name}.py").exists()
                           else target) for a in node.names]
            else:
                found.append((node.lineno, target))
    return found


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "engine" or len(parts) < 2:
        return None
    return LAYERS[parts[1]]


def engine_files() -> list[Path]:
    return sorted(p for p in ENGINE.rglob("*.py"))


def test_every_engine_module_belongs_to_a_layer():
    for path in engine_files():
        name = module_name(path)
        if name == "engine":
            continue
        assert name.split(".")[1] in LAYERS, f"{path.relative_to(ROOT)} is in no layer; add it to LAYERS and the docs"


def test_no_engine_module_imports_a_higher_layer():
    wrong = []
    for path in engine_files():
        own = layer_of(module_name(path))
        if own is None:
            continue
        for line, target in imports_of(path):
            theirs = layer_of(target)
            if theirs is not None and theirs > own:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target} (layer {theirs} > {own})")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """The checker itself can fail: a method module importing the run directory is caught, lazy or not."""
    fake = ENGINE / "method" / "_probe_upward.py"
    fake.write_text("def f():\n    from ..rundir.store import RunStore\n    return RunStore\n")
    try:
        hits = [t for _, t in imports_of(fake)]
        assert hits == ["engine.rundir.store"]
        assert layer_of(hits[0]) > layer_of(module_name(fake))
    finally:
        fake.unlink()


def test_app_imports_only_public_faces():
    wrong = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        for line, target in imports_of(path):
            allowed = target in APP_FACES or (target.startswith("engine.readers.") and target.count(".") == 2)
            if not allowed:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not wrong, "app/ reaches engine internals:\n" + "\n".join(wrong)


def test_engine_never_imports_streamlit_or_plotly():
    for path in engine_files():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in {"streamlit", "plotly"} for n in names), path


@pytest.mark.parametrize("face", ["engine.method", "engine.rundir", "engine.steps"])
def test_light_faces_load_neither_torch_nor_faiss(face):
    code = (f"import sys, {face}; "
            "heavy = [m for m in ('torch', 'faiss') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing {face} loaded {out.stdout.strip()}"


def test_layer_docs_agree():
    """The package docstring and the README's layout name every sub-package in the same order."""
    import engine

    order = ["method", "data", "rundir", "steps", "readers"]
    doc = engine.__doc__
    positions = [doc.index(f"{name}/") for name in order]
    assert positions == sorted(positions), "engine/__init__.py lists the layers out of order"
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    positions = [layout.index(f"{name}/") for name in order]
    assert positions == sorted(positions), "README's layout lists the layers out of order"


def test_readme_and_docstring_name_every_module_of_the_layers():
    """A newcomer goes from the README's layout to the file holding a rule in one step."""
    import re

    import engine

    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):readme.index("## Docker")]
    for package in ("method", "rundir", "steps", "readers"):
        for path in sorted((ENGINE / package).glob("*.py")):
            if path.stem == "__init__":
                continue
            assert f"{path.stem}.py" in layout, f"README's layout does not name {package}/{path.name}"
            assert re.search(rf"\b{path.stem}\b", engine.__doc__), f"engine/__init__.py does not name {path.stem}"


def test_checkpoint_is_state_in_state_out():
    """No callback into Run: the checkpoint module knows neither Run nor the state's fields."""
    text = (ENGINE / "steps" / "checkpoint.py").read_text()
    assert [t for _, t in imports_of(ENGINE / "steps" / "checkpoint.py")] == ["engine.errors", "engine.rundir.store"]
    for field in ("Run.", "Run)", "phase_epoch", "best_holdout", "opt_student", "numpy_rng", "weight_net"):
        assert field not in text, field
