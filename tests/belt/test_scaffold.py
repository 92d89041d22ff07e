"""app.belt.scaffold and the developer's commands: `flask orion new` writes an app whose own
suite passes; `gen feature | pattern | recipe` grow it; `routes` and `doctor` read it.

The generated app's suite runs with this repo's virtualenv (`python -m pytest` inside the new
folder): its own `make test` would create a venv and pip-install the same pinned
requirements, which is slow and needs the network. Instead the test checks that those files
are this repo's, byte for byte, and that make accepts the generated Makefile (`make -n`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.belt import scaffold

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path, db: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A command in ``cwd`` with this venv's Python, clear of the outer test's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORION_", "FLASK_", "PYTEST_"))}
    env["ORION_DB"] = str(db or cwd / "data" / "cli.sqlite")  # the CLI boots the app: keep its files aside
    env["ORION_TENANCY"] = "off"
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def flask(*args: str, cwd: Path, db: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run("-m", "flask", "orion", *args, cwd=cwd, db=db)


@pytest.fixture(scope="module")
def new_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("scaffold")
    target = folder / "myapp"
    done = flask("new", str(target), cwd=ROOT, db=folder / "data" / "source.sqlite")
    assert done.returncode == 0, done.stderr
    assert f"wrote {len(list(p for p in target.rglob('*') if p.is_file()))} files into {target}" in done.stdout
    assert "next: cd" in done.stdout
    return target


def test_new_writes_this_repos_files(new_app: Path) -> None:
    for rel in (
        "requirements.txt",
        "requirements-dev.txt",
        "gunicorn.conf.py",
        "wsgi.py",
        ".flaskenv",
        "app/belt/live.py",
        "app/features/todos/routes.py",
        "tests/conftest.py",
        "scripts/install_datastar.py",
    ):
        assert (new_app / rel).read_bytes() == (ROOT / rel).read_bytes(), rel
    assert os.access(new_app / ".ci" / "run", os.X_OK)
    # The Datastar client came along, verified, and make sees it as up to date.
    assert (new_app / "app/static/datastar.js").read_bytes() == (ROOT / "app/static/datastar.js").read_bytes()
    # The composition root is the minimal one, with the marker `gen feature` needs.
    init = (new_app / "app/__init__.py").read_text()
    assert "WORKSPACE = [todos]" in init and "DIRECTORY" not in init and 'mode="local"' in init
    # Only the core patterns are installed; the others wait in the catalogue, CSS included.
    assert sorted(p.stem for p in (new_app / "app/patterns").glob("*.py")) == ["__init__", "forms", "nav", "toast"]
    catalogue = new_app / "app/belt/catalogue"
    for name in ("presence", "combobox", "tabs", "modal", "inline_edit"):
        assert (catalogue / "patterns" / f"{name}.py").exists() and (catalogue / "patterns" / f"{name}.css").exists()
    assert "@import" not in (new_app / "app/static/orion.css").read_text()
    recipes = {p.stem for p in (ROOT / "app/recipes").glob("*.py")} - {"__init__"}
    assert recipes <= {p.stem for p in (catalogue / "recipes").glob("*.py")}


def test_the_generated_makefile_runs_without_this_repos_extra_folders(new_app: Path) -> None:
    makefile = (new_app / "Makefile").read_text()
    for folder in scaffold.NOT_COPIED:
        assert not re.search(rf"\b{folder}\b", makefile), folder
        assert not (new_app / folder).exists()
    assert re.search(r"^run: ", makefile, re.M) and re.search(r"^test: ", makefile, re.M)
    if shutil.which("make"):
        dry = subprocess.run(
            ["make", "-n", "run", "test", "check"], cwd=new_app, capture_output=True, text=True, check=False
        )
        assert dry.returncode == 0, dry.stderr
        assert "pip install --quiet -r requirements.txt" in dry.stdout
        assert "python -m pytest" in dry.stdout


def test_new_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(scaffold.ScaffoldError, match="is not empty"):
        scaffold.new_app(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.timeout(300)
def test_the_new_app_grows_a_feature_and_its_own_suite_passes(new_app: Path) -> None:
    done = flask("gen", "feature", "notes", cwd=new_app)
    assert done.returncode == 0, done.stderr
    assert "wrote app/features/notes/routes.py" in done.stdout
    assert "wrote tests/features/test_notes.py" in done.stdout
    assert "registered notes in app/__init__.py" in done.stdout
    init = (new_app / "app/__init__.py").read_text()
    assert "from app.features import notes, todos" in init and "WORKSPACE = [todos, notes]" in init

    again = flask("gen", "feature", "notes", cwd=new_app)
    assert again.returncode == 1 and "refusing to overwrite app/features/notes/__init__.py" in again.stderr
    assert (new_app / "app/__init__.py").read_text() == init  # registering is idempotent

    pattern = flask("gen", "pattern", "combobox", cwd=new_app)
    assert pattern.returncode == 0, pattern.stderr
    assert (new_app / "app/patterns/combobox.py").exists()
    assert '@import url("patterns/combobox.css");' in (new_app / "app/static/orion.css").read_text()
    missing = flask("gen", "pattern", "combobx", cwd=new_app)
    assert missing.returncode == 1 and "Did you mean 'combobox'?" in missing.stderr

    recipe = flask("gen", "recipe", "redis_bus", cwd=new_app)
    assert recipe.returncode == 0, recipe.stderr
    assert "it needs redis: already pinned in requirements.txt (redis==" in recipe.stdout
    assert (new_app / "app/recipes/redis_bus.py").exists()

    routes = flask("routes", cwd=new_app)
    assert routes.returncode == 0, routes.stderr
    notes = ("\n" + routes.stdout).split("\nnotes\n", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"page\s+GET\s+/notes\s+notes\.index", notes)
    assert re.search(r"live\s+GET\s+/notes/live\s+notes\.live\n\s+region #notes-list  topics: notes", notes)
    assert re.search(r"command\s+POST\s+/notes\s+notes\.add  audit: notes\.add", notes)

    doctor = flask("doctor", cwd=new_app)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "All good." in doctor.stdout

    suite = run("-m", "pytest", "-v", "-p", "no:cacheprovider", cwd=new_app, timeout=240)
    assert suite.returncode == 0, suite.stdout[-4000:] + suite.stderr[-2000:]
    assert "tests/features/test_notes.py::test_an_added_item_reaches_every_open_page PASSED" in suite.stdout
    assert "tests/features/test_todos_live.py::test_two_viewers_see_a_command_change_over_brotli PASSED" in suite.stdout


def test_gen_feature_refuses_a_composition_root_without_its_marker(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("def create_app():\n    ...\n")
    with pytest.raises(scaffold.ScaffoldError, match=r"has no `WORKSPACE = \[...\]` list"):
        scaffold.gen_feature("notes", root=tmp_path)
    assert not (tmp_path / "app" / "features").exists()  # nothing written


@pytest.mark.parametrize("name", ["Notes", "class", "sql", "json", "2do", "my-notes"])
def test_gen_feature_refuses_names_that_cannot_be_a_slice(tmp_path: Path, name: str) -> None:
    with pytest.raises(scaffold.ScaffoldError, match=repr(name)):
        scaffold.gen_feature(name, root=tmp_path)


def test_registering_keeps_the_composition_root_readable() -> None:
    multi = "from app.features import (\n    todos,\n)\n\nWORKSPACE = [\n    todos,\n]\n"
    once = scaffold.register_feature(multi, "notes")
    assert "WORKSPACE = [\n    todos, notes,\n]" in once
    assert "from app.features import notes, todos" in once
    assert scaffold.register_feature(once, "notes") == once
    bare = scaffold.register_feature("import os\n\nWORKSPACE: list = []\n", "notes")
    assert bare == "import os\nfrom app.features import notes\n\nWORKSPACE: list = [notes]\n"


def test_gen_pattern_in_this_repo_says_it_is_installed_already() -> None:
    with pytest.raises(scaffold.ScaffoldError, match="already installed"):
        scaffold.gen_pattern("presence")
    assert {"presence", "combobox", "tabs", "modal", "inline_edit"} <= set(scaffold.patterns_available())
