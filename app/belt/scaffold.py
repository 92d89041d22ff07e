"""Scaffolding: what ``flask orion new`` and ``flask orion gen ...`` write, and where from.

orion is vendored: what these commands write is the user's code from then on, so they copy
real files rather than render a framework's templates. A new app is this repo's own files,
listed once in ``SKELETON`` below; the few files that cannot be copied as they are (a
minimal ``app/__init__.py``, the README, the slice ``gen feature`` writes) live in
``app/belt/templates/``.

**The catalogue.** Patterns beyond the core ones and recipes are not part of a new app until
asked for (``gen pattern``, ``gen recipe``); their source must still travel with the app,
because a vendored app has no orion to download from. In the orion repo the originals are
the installed ones themselves (``app/patterns/``, ``app/static/patterns/``, ``app/recipes/``:
each tested where it runs); ``new`` packs those a new app does not install into
``app/belt/catalogue/``, which is where ``gen`` copies from.

Every generator refuses to overwrite a file unless told to (``force``) and reports what it
wrote.
"""

from __future__ import annotations

import ast
import hashlib
import keyword
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path

#: The project this belt lives in (what ``gen`` writes into, what ``new`` copies from).
ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = Path(__file__).parent / "templates"
CATALOGUE = "app/belt/catalogue"
#: The patterns every app has: the belt's commands render toasts and field errors, and the
#: example slice renders the nav bar.
CORE_PATTERNS = ("toast", "forms", "nav")
#: Folders of this repo a new app does not get (and Makefile targets that use them).
NOT_COPIED = ("bench", "deploy", "systemd")
_SKIP = ("__pycache__", ".pyc", ".sqlite", ".sqlite-wal", ".sqlite-shm")


class ScaffoldError(Exception):
    """A generator refused: the message says why and what to do instead."""


@dataclass(frozen=True)
class Entry:
    """One file or folder of a new app: ``path`` in the new app, copied from ``source``."""

    path: str
    why: str
    source: str | None = None  # default: the same path in the source project
    template: bool = False  # source is in app/belt/templates/, with __NAME__ filled in
    optional: bool = False  # copied only when present (and, for datastar.js, verified)
    transform: Callable[[str, Context], str] | None = None


@dataclass
class Context:
    name: str  # the new app's folder name
    patterns: tuple[str, ...] = CORE_PATTERNS  # the patterns installed in app/patterns/


@dataclass
class Written:
    """What a generator did: files written, files it left alone, and what to tell the user."""

    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _makefile(text: str, ctx: Context) -> str:
    """Drop what serves folders a new app does not have (bench/, deploy/): their targets, a
    recipe's commented section about them, and their names where a line lists them."""
    folders = "|".join(NOT_COPIED)
    names = re.compile(rf"\b(?:{folders})\b")
    dropped: set[str] = set()
    kept = []
    for block in re.split(r"\n(?=[^\s#])", text):  # a target and its recipe form one block
        target = re.match(r"^([\w./-]+)\s*:(?!=)", block)
        if target and (target.group(1) in NOT_COPIED or re.search(rf"\b(?:{folders})[/.]", block)):
            dropped.add(target.group(1))
            continue
        lines: list[str] = []
        skipping = False
        for line in block.split("\n"):
            if line.startswith("#") and lines:  # a comment inside a recipe opens a section
                skipping = bool(names.search(line))
            elif not line.strip():  # ...which a blank line closes
                skipping = False
            if not skipping:
                lines.append(line)
        kept.append("\n".join(lines))
    words = "|".join(map(re.escape, sorted(dropped | set(NOT_COPIED))))
    return re.sub(rf"(?<=\S) (?:{words})(?=[ \n])", "", "\n".join(kept))


def _pyproject(text: str, ctx: Context) -> str:
    return re.sub(r'^name = ".*"$', f'name = "{_slug(ctx.name)}"', text, count=1, flags=re.M)


def _stylesheet(text: str, ctx: Context) -> str:
    """Keep the @import lines of the patterns the new app installs; drop the others."""

    def keep(line: str) -> bool:
        found = _IMPORT.match(line)
        return found is None or found.group(1) in ctx.patterns

    return "".join(line for line in text.splitlines(keepends=True) if keep(line))


_IMPORT = re.compile(r'^@import url\("patterns/([\w-]+)\.css"\);\s*$')

#: Everything ``flask orion new`` writes, in order. Folders are copied whole (caches left out).
SKELETON: tuple[Entry, ...] = (
    Entry("app/__init__.py", "create_app(): the boot liturgy, minimal", "app_init.py.tmpl", template=True),
    Entry("app/belt", "the core: one module per seam, plus these generators and their templates"),
    Entry("app/features/__init__.py", "the slices' package"),
    Entry("app/features/todos", "the example slice: a shared list kept live in every open page"),
    *(Entry(f"app/patterns/{p}.py", "a core pattern") for p in ("__init__", *CORE_PATTERNS)),
    Entry("app/static/orion.css", "the stylesheet", transform=_stylesheet),
    Entry("app/static/orion-dev.js", "the debug panel (development only)"),
    Entry("migrations", "the belt's own tables (_orion_*)"),
    Entry("scripts/install_datastar.py", "installs the Datastar client, hash-verified"),
    # After the script, so that make sees an installed client as up to date.
    Entry("app/static/datastar.js", "the Datastar client (when this project has it, verified)", optional=True),
    Entry("Makefile", "make run, make test, make check", transform=_makefile),
    Entry("requirements.txt", "runtime dependencies, pinned"),
    Entry("requirements-dev.txt", "test and lint dependencies, pinned"),
    Entry("requirements-otlp.txt", "the OTLP recipe's SDK, pinned (installed into .cache/otlp by make test)"),
    Entry("gunicorn.conf.py", "one gevent worker, never preloaded"),
    Entry("wsgi.py", "gunicorn's entry point"),
    Entry(".flaskenv", "the flask CLI finds create_app (never wsgi.py)"),
    Entry(".gitignore", "data/, the venv, the installed client"),
    Entry("pyproject.toml", "ruff and mypy settings", transform=_pyproject),
    Entry("pytest.ini", "pytest settings (warnings are errors)"),
    Entry(".ci/run", "CI: install what the suite needs, then make test"),
    Entry("README.md", "how to run, test and grow the app", "README.md.tmpl", template=True),
    Entry("tests/__init__.py", "the tests' package"),
    Entry("tests/conftest.py", "a real gunicorn/gevent server per test, and the leak check"),
    Entry("tests/support/__init__.py", "test helpers"),
    Entry("tests/support/server.py", "LiveServer"),
    Entry("tests/support/sse.py", "a real SSE client (brotli, gzip)"),
    Entry("tests/support/redis.py", "a real redis-server for the Redis bus recipe's tests"),
    Entry("tests/test_structure.py", "the import rules every slice follows"),
    Entry("tests/features/__init__.py", "slice tests"),
    Entry("tests/features/test_todos_live.py", "the one loop, end to end over real sockets"),
    Entry("tests/e2e/__init__.py", "browser tests"),
    Entry("tests/e2e/conftest.py", "Playwright with Debian's Chromium: pages, two browsers at once"),
)


# -- new -------------------------------------------------------------------------------------


def new_app(target: Path, *, source: Path = ROOT, force: bool = False) -> Written:
    """Write a new, runnable app into ``target`` (which must be empty, unless ``force``)."""
    target = target.resolve()
    if target.exists() and not target.is_dir():
        raise ScaffoldError(f"{target} is a file; give a folder for the new app.")
    if target.exists() and any(target.iterdir()) and not force:
        raise ScaffoldError(
            f"{target} is not empty: choose a new folder, or pass --force to write orion's files over "
            "the ones already there (other files are left alone)."
        )
    if source.resolve() == target or source.resolve() in target.parents:
        raise ScaffoldError(f"{target} is inside the project it would copy ({source}); choose a folder outside it.")
    ctx = Context(name=target.name)
    done = Written()
    templates = source / "app" / "belt" / "templates"
    for entry in SKELETON:
        src = templates / entry.source if entry.template and entry.source else source / (entry.source or entry.path)
        if not src.exists():
            if entry.optional:
                continue
            raise ScaffoldError(f"{src} is missing from {source}: it is in the manifest (app/belt/scaffold.py).")
        if entry.path == "app/static/datastar.js" and not _datastar_ok(source, src):
            done.notes.append("The Datastar client was not copied (not verified); `make setup` installs it.")
            continue
        for file, rel in _files(src, entry.path):
            if rel.startswith(CATALOGUE + "/"):
                continue  # rebuilt below from everything the source knows
            if entry.template:
                _write_text(target / rel, fill(file.read_text(), name=ctx.name), done)
            elif entry.transform is not None:
                _write_text(target / rel, entry.transform(file.read_text(), ctx), done)
            else:
                _copy(file, target / rel, done)
    for rel, file in _catalogue(source):
        _copy(file, target / CATALOGUE / rel, done)
    for package in ("", "patterns", "recipes"):
        init = target / CATALOGUE / package / "__init__.py"
        if init.parent.exists() and not init.exists():
            doc = f'"""The catalogue{": " + package if package else ""}: what `flask orion gen` copies from."""\n'
            _write_text(init, doc, done)
    return done


def _datastar_ok(source: Path, client: Path) -> bool:
    expected = read_constant(source / "scripts" / "install_datastar.py", "FILE_SHA256")
    return expected is not None and hashlib.sha256(client.read_bytes()).hexdigest() == expected


def read_constant(path: Path, name: str) -> str | None:
    """A module-level string constant of a Python file, read without importing it."""
    if not path.exists():
        return None
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                return node.value.value
    return None


def _files(src: Path, rel: str) -> Iterator[tuple[Path, str]]:
    if src.is_file():
        yield src, rel
        return
    for file in sorted(src.rglob("*")):
        if file.is_file() and not any(part in _SKIP or file.name.endswith(_SKIP) for part in file.parts):
            yield file, f"{rel}/{file.relative_to(src).as_posix()}"


def _catalogue(source: Path) -> Iterator[tuple[str, Path]]:
    """(path in the catalogue, file) for every pattern and recipe a new app does not install."""
    for name, files in patterns_available(source).items():
        if name not in CORE_PATTERNS:
            for file in files:
                yield f"patterns/{file.name}", file
    for name, file in recipes_available(source).items():
        yield f"recipes/{name}.py", file
    for readme in (source / "app" / "recipes" / "README.md", source / CATALOGUE / "recipes" / "README.md"):
        if readme.exists():
            yield "recipes/README.md", readme
            break


def _copy(src: Path, dst: Path, done: Written) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    shutil.copymode(src, dst)
    done.files.append(dst)


def _write_text(dst: Path, text: str, done: Written) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(text)
    done.files.append(dst)


def fill(template: str, *, name: str) -> str:
    """A template with its placeholders filled: ``__NAME__`` (the identifier), ``__URL__``
    (hyphenated), ``__TITLE__`` (for people) and ``__SIGNAL__`` (a Datastar signal name).

    >>> fill("__NAME__ at /__URL__: __TITLE__ (__SIGNAL__)", name="reading_list")
    'reading_list at /reading-list: Reading list (readingListTitle)'
    """
    head, *rest = name.split("_")
    signal = head + "".join(part.capitalize() for part in rest) + "Title"
    return (
        template.replace("__NAME__", name)
        .replace("__URL__", name.replace("_", "-"))
        .replace("__TITLE__", name.replace("_", " ").capitalize())
        .replace("__SIGNAL__", signal)
    )


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "orion-app"


# -- gen feature -----------------------------------------------------------------------------

FEATURE_FILES = {
    "app/features/__NAME__/__init__.py": "feature/__init__.py.tmpl",
    "app/features/__NAME__/sql.py": "feature/sql.py.tmpl",
    "app/features/__NAME__/view.py": "feature/view.py.tmpl",
    "app/features/__NAME__/commands.py": "feature/commands.py.tmpl",
    "app/features/__NAME__/routes.py": "feature/routes.py.tmpl",
    "app/features/__NAME__/migrations/0001_create___NAME__.sql": "feature/0001_create.sql.tmpl",
    "tests/features/test___NAME__.py": "feature/test_feature.py.tmpl",
}
#: Names a slice cannot take: its own modules, and what its routes.py already imports.
_RESERVED = {"sql", "view", "commands", "routes", "bp", "app", "belt", "tests", "features", "patterns", "recipes"}


def check_feature_name(name: str) -> None:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name) or name in _RESERVED:
        raise ScaffoldError(
            f"{name!r} cannot name a slice: use a lowercase plural noun that is a Python identifier, "
            f"e.g. 'notes' or 'reading_list' (and none of {sorted(_RESERVED)})."
        )
    if name in sys.stdlib_module_names:
        raise ScaffoldError(
            f"{name!r} is a module of Python's standard library; pick another noun (e.g. '{name}_items')."
        )


def gen_feature(name: str, *, root: Path = ROOT, force: bool = False) -> Written:
    """Write the slice ``name`` (four files, a migration, a test) and register it."""
    check_feature_name(name)
    init = root / "app" / "__init__.py"
    text = init.read_text() if init.exists() else ""
    registered = register_feature(text, name, where=init)  # refuses before anything is written
    targets = {root / fill(rel, name=name): TEMPLATES / tmpl for rel, tmpl in FEATURE_FILES.items()}
    _refuse_existing([t for t in targets if t.exists()], force, root)
    done = Written()
    for target, template in targets.items():
        _write_text(target, fill(template.read_text(), name=name), done)
    tests_init = root / "tests" / "features" / "__init__.py"
    if not tests_init.exists():
        _write_text(tests_init, "", done)
    if registered != text:
        init.write_text(registered)
        done.notes.append(f"registered {name} in app/__init__.py (WORKSPACE): its migrations run at boot.")
    else:
        done.notes.append(f"{name} was already registered in app/__init__.py.")
    url = name.replace("_", "-")
    done.notes.append(f"restart the server, then open /{url}; run its test: pytest tests/features/test_{name}.py")
    return done


def _refuse_existing(existing: list[Path], force: bool, root: Path) -> None:
    if existing and not force:
        names = ", ".join(str(p.relative_to(root)) for p in existing)
        raise ScaffoldError(f"refusing to overwrite {names}: they exist. Pass --force to replace them.")


def register_feature(text: str, name: str, *, where: Path | str = "app/__init__.py") -> str:
    """``text`` (an ``app/__init__.py``) with slice ``name`` imported and in ``WORKSPACE``.

    Idempotent; refuses when there is no ``WORKSPACE = [...]`` list to add to.

    >>> print(register_feature("from app.features import todos\\n\\nWORKSPACE = [todos]\\n", "notes"))
    from app.features import notes, todos
    <BLANKLINE>
    WORKSPACE = [todos, notes]
    <BLANKLINE>
    """
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise ScaffoldError(f"{where} does not parse ({exc}); fix it, then run the generator again.") from None
    workspace = next(
        (
            node.value
            for node in tree.body
            if isinstance(node, ast.Assign | ast.AnnAssign)
            and any(isinstance(t, ast.Name) and t.id == "WORKSPACE" for t in _targets(node))
            and isinstance(node.value, ast.List)
        ),
        None,
    )
    if workspace is None:
        raise ScaffoldError(
            f"{where} has no `WORKSPACE = [...]` list, the marker `gen feature` adds a slice to. Add one "
            "and loop over it in create_app() (register each slice's blueprint and migrate its MIGRATIONS), "
            f"or wire the slice by hand: `from app.features import {name}`, "
            f"`store.migrate({name!r}, {name}.MIGRATIONS)`, `app.register_blueprint({name}.bp)`."
        )
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement) in bytes
    starts = [0]
    for raw in text.encode().splitlines(keepends=True):
        starts.append(starts[-1] + len(raw))

    def offset(lineno: int, col: int) -> int:
        return starts[lineno - 1] + col

    listed = [e.id for e in workspace.elts if isinstance(e, ast.Name)]
    if name not in listed:
        if workspace.elts:
            last = workspace.elts[-1]
            at = offset(last.end_lineno or last.lineno, last.end_col_offset or 0)
            edits.append((at, at, f", {name}"))
        else:
            at = offset(workspace.end_lineno or workspace.lineno, (workspace.end_col_offset or 1) - 1)
            edits.append((at, at, name))
    imports = [
        node
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module == "app.features" and not node.level
    ]
    if not any(alias.name == name and alias.asname is None for node in imports for alias in node.names):
        if imports:
            node = imports[0]
            names = sorted({alias.name for alias in node.names if alias.asname is None} | {name})
            aliased = [f"{a.name} as {a.asname}" for a in node.names if a.asname]
            statement = f"from app.features import {', '.join(names + aliased)}"
            if len(statement) > 100:
                statement = "from app.features import (\n" + "".join(f"    {n},\n" for n in names + aliased) + ")"
            edits.append(
                (
                    offset(node.lineno, node.col_offset),
                    offset(node.end_lineno or node.lineno, node.end_col_offset or 0),
                    statement,
                )
            )
        else:
            after = max(
                (n.end_lineno or n.lineno for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)), default=0
            )
            at = starts[after] if after < len(starts) else len(text.encode())
            edits.append((at, at, f"from app.features import {name}\n"))
    data = text.encode()
    for start, end, replacement in sorted(edits, reverse=True):
        data = data[:start] + replacement.encode() + data[end:]
    result = data.decode()
    ast.parse(result)  # never leave the composition root unparseable
    return result


def _targets(node: ast.Assign | ast.AnnAssign) -> list[ast.expr]:
    return list(node.targets) if isinstance(node, ast.Assign) else [node.target]


# -- gen pattern / gen recipe ----------------------------------------------------------------


def patterns_available(root: Path = ROOT) -> dict[str, list[Path]]:
    """Every pattern this project can hand out: name -> its files (view functions, then CSS)."""
    found: dict[str, list[Path]] = {}
    for folder, css in (
        (root / CATALOGUE / "patterns", None),
        (root / "app" / "patterns", root / "app/static/patterns"),
    ):
        for py in sorted(folder.glob("*.py")) if folder.is_dir() else ():
            if py.stem == "__init__" or py.stem in found:
                continue
            sheet = (css or folder) / f"{py.stem}.css"
            found[py.stem] = [py, sheet] if sheet.exists() else [py]
    return found


def recipes_available(root: Path = ROOT) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in (root / CATALOGUE / "recipes", root / "app" / "recipes"):
        for py in sorted(folder.glob("*.py")) if folder.is_dir() else ():
            if py.stem != "__init__":
                found.setdefault(py.stem, py)
    return found


def _unknown(kind: str, name: str, available: list[str]) -> ScaffoldError:
    guess = get_close_matches(name, available, n=1)
    hint = f" Did you mean {guess[0]!r}?" if guess else ""
    return ScaffoldError(f"There is no {kind} {name!r}.{hint} Available: {', '.join(sorted(available)) or 'none'}.")


def gen_pattern(name: str, *, root: Path = ROOT, force: bool = False) -> Written:
    """Copy pattern ``name`` into app/patterns/ (and its CSS into app/static/patterns/)."""
    available = patterns_available(root)
    if name not in available:
        raise _unknown("pattern", name, list(available))
    files = available[name]
    py_target = root / "app" / "patterns" / f"{name}.py"
    css_target = root / "app" / "static" / "patterns" / f"{name}.css"
    targets = [(files[0], py_target)] + ([(files[1], css_target)] if len(files) > 1 else [])
    if all(src.resolve() == dst.resolve() for src, dst in targets):
        raise ScaffoldError(f"{name} is already installed: app/patterns/{name}.py is the copy this app uses.")
    _refuse_existing([dst for _, dst in targets if dst.exists()], force, root)
    done = Written()
    for src, dst in targets:
        _copy(src, dst, done)
    if len(targets) > 1:
        sheet = root / "app" / "static" / "orion.css"
        line = f'@import url("patterns/{name}.css");\n'
        text = sheet.read_text() if sheet.exists() else ""
        if line not in text:
            # @import must precede every rule: after the other imports, or at the very top.
            lines = text.splitlines(keepends=True)
            at = max((i + 1 for i, ln in enumerate(lines) if _IMPORT.match(ln)), default=0)
            sheet.write_text("".join(lines[:at]) + line + "".join(lines[at:]))
            done.notes.append(f"app/static/orion.css now imports patterns/{name}.css.")
    doc = _docstring(files[0])
    done.notes.append(f"use it: from app.patterns.{name} import ...  ({doc.splitlines()[0] if doc else name})")
    return done


def gen_recipe(name: str, *, root: Path = ROOT, force: bool = False) -> Written:
    """Copy recipe ``name`` into app/recipes/ and say which outside dependency it needs."""
    available = recipes_available(root)
    if name not in available:
        raise _unknown("recipe", name, list(available))
    src = available[name]
    dst = root / "app" / "recipes" / f"{name}.py"
    if src.resolve() == dst.resolve():
        raise ScaffoldError(f"{name} is already installed: app/recipes/{name}.py is the copy this app uses.")
    _refuse_existing([dst] if dst.exists() else [], force, root)
    done = Written()
    _copy(src, dst, done)
    init = dst.parent / "__init__.py"
    if not init.exists():
        _write_text(init, '"""Recipes: the glue from an outside dependency into a seam."""\n', done)
    done.notes.extend(recipe_needs(src, root))
    how = _how_to(_docstring(src))
    if how:
        done.notes.append("how to turn it on (from its docstring):\n" + how)
    return done


def recipe_needs(recipe: Path, root: Path = ROOT) -> list[str]:
    """The outside packages a recipe imports (through the belt modules it uses, too), each
    with its pinned line in requirements.txt or the line to add."""
    packages = _third_party(recipe, root, seen=set())
    if not packages:
        return ["it needs no package beyond requirements.txt: its dependency is a service (see its settings)."]
    pins = _pins(root / "requirements.txt")
    notes = []
    for package in sorted(packages):
        pin = pins.get(_DISTRIBUTIONS.get(package, package).lower())
        if pin:
            notes.append(f"it needs {package}: already pinned in requirements.txt ({pin}).")
        else:
            notes.append(f"it needs {package}: add a pinned line for it to requirements.txt, then `make setup`.")
    return notes


#: Import names whose distribution on PyPI is named otherwise.
_DISTRIBUTIONS = {"yaml": "pyyaml", "PIL": "pillow", "jwt": "pyjwt", "dateutil": "python-dateutil"}
#: What every orion app already depends on (requirements.txt): not worth a note.
_BASE = {"flask", "werkzeug", "markupsafe", "jinja2", "click", "gevent", "brotli", "gunicorn", "app"}


def _third_party(path: Path, root: Path, seen: set[Path]) -> set[str]:
    if path in seen or not path.exists():
        return set()
    seen.add(path)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        modules = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module]
            if isinstance(node, ast.ImportFrom) and node.module and not node.level
            else []
        )
        for module in modules:
            top = module.split(".")[0]
            if module.startswith("app.belt."):
                found |= _third_party(root / (module.replace(".", "/") + ".py"), root, seen)
            elif top not in sys.stdlib_module_names and top not in _BASE and top != "__future__":
                found.add(top)
    return found


def _pins(requirements: Path) -> dict[str, str]:
    pins = {}
    for line in requirements.read_text().splitlines() if requirements.exists() else ():
        found = re.match(r"^([A-Za-z0-9_.-]+)\s*[=<>~!]=", line.strip())
        if found:
            pins[found.group(1).lower().replace("_", "-")] = line.strip()
    return pins


def _how_to(doc: str, limit: int = 14) -> str:
    """The docstring after its summary line, up to ``limit`` lines: how to turn a recipe on."""
    body = doc.strip().split("\n\n", 1)[1] if "\n\n" in doc.strip() else ""
    lines = body.splitlines()[:limit]
    return "\n".join(f"    {line}" for line in lines)


def _docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text())) or ""
