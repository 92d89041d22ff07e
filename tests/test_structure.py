"""The layout is a contract: a file's path says what it may touch. These tests keep it true."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FEATURES = sorted(p for p in (ROOT / "app" / "features").iterdir() if p.is_dir() and (p / "__init__.py").exists())
SLICE_FILES = ("sql.py", "view.py", "commands.py", "routes.py")


def imports(path: Path) -> set[str]:
    """Every module a file imports, as dotted names resolved against the app package."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def names_used(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
    }


@pytest.mark.parametrize("feature", FEATURES, ids=lambda p: p.name)
def test_a_feature_is_four_files_with_one_job_each(feature: Path) -> None:
    for name in SLICE_FILES:
        assert (feature / name).exists(), f"{feature.name}/ lacks {name}: a slice is sql, view, commands, routes"
    name = feature.name

    view = imports(feature / "view.py")
    assert not any(m.startswith(("flask", "sqlite3")) for m in view), (
        f"{name}/view.py imports {sorted(m for m in view if m.startswith(('flask', 'sqlite3')))}: "
        "views are pure functions model -> HTML (no request, no store)"
    )
    assert f"app.features.{name}.sql" not in view and "store" not in names_used(feature / "view.py"), (
        f"{name}/view.py reads the store: pass what it needs in the model instead"
    )

    sql = imports(feature / "sql.py")
    assert not any(m.startswith(("flask", "markupsafe", "app.patterns")) or m.endswith(".view") for m in sql), (
        f"{name}/sql.py imports HTML or request code: sql.py holds named queries only"
    )

    commands = imports(feature / "commands.py")
    assert not any(
        m.endswith(".view") or m.endswith(".routes") for m in commands if m.startswith(f"app.features.{name}")
    ), f"{name}/commands.py imports the view or routes: commands validate, write and publish"


@pytest.mark.parametrize("feature", FEATURES, ids=lambda p: p.name)
def test_features_meet_only_through_the_belt(feature: Path) -> None:
    others = {f.name for f in FEATURES} - {feature.name}
    for path in feature.rglob("*.py"):
        for module in imports(path):
            for other in others:
                assert not module.startswith(f"app.features.{other}"), (
                    f"{path.relative_to(ROOT)} imports {module}: features meet through the store, "
                    "the bus and the belt, never through each other's internals"
                )


def test_features_use_only_the_belts_public_surface() -> None:
    for feature in FEATURES:
        for path in feature.rglob("*.py"):
            for module in imports(path):
                if module.startswith("app.belt."):
                    submodule = module.split(".")[2]
                    assert submodule in {"shape"} or (
                        module.count(".") == 2 and module.split(".")[2] in dir(__import__("app.belt", fromlist=["*"]))
                    ), (
                        f"{path.relative_to(ROOT)} imports {module}: "
                        "import from app.belt (its __init__ is the public list)"
                    )


def test_no_html_is_built_with_f_strings() -> None:
    """HTML from data goes through markupsafe: an f-string containing a tag is a bug waiting."""
    offenders = []
    for path in (ROOT / "app").rglob("*.py"):
        tree = ast.parse(path.read_text())
        reprs = {
            id(n)
            for f in ast.walk(tree)
            if isinstance(f, ast.FunctionDef) and f.name == "__repr__"
            for n in ast.walk(f)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr) and id(node) not in reprs:
                literal = "".join(
                    v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)
                )
                if "<" in literal and ">" in literal:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"f-strings building HTML: {offenders}; use app.belt.html(...)"
