"""The shape of the code (docs/architecture.md): layers, no private API of a dependency, docs kept
in the repository, the project's folders found from the settings only.

Each test names the offending file:line, so a failure says what to change.
"""
from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP_PACKAGES = ("portal", "registry", "importers", "workflows")
SETTINGS = ROOT / "registry" / "infra" / "settings.py"

# Every third-party distribution the code may import (pyproject.toml and what they bring along).
DEPENDENCIES = {
    "flask", "werkzeug", "flask_limiter", "limits", "redis", "sqlalchemy", "psycopg", "psycopg_pool",
    "pybloom_live", "bitarray", "gunicorn", "alembic", "python_calamine", "openpyxl",
    "charset_normalizer", "flask_wtf", "wtforms", "flask_login", "flask_babel", "babel", "rq",
    "chinese_calendar", "segno", "orjson", "hiredis", "jinja2", "itsdangerous", "click", "markupsafe",
}
# Underscore names that are documented public API of the standard library.
STDLIB_PUBLIC = {
    "_asdict", "_replace", "_fields", "_make", "_field_defaults",  # collections.namedtuple
    "_exit",  # os._exit
}


def python_files(*folders: str) -> list[Path]:
    files: list[Path] = []
    for folder in folders:
        path = ROOT / folder
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return files


def parsed(files: list[Path]) -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))) for path in files]


def where(path: Path, node: ast.AST | int) -> str:
    line = node if isinstance(node, int) else node.lineno
    return f"{path.relative_to(ROOT)}:{line}"


def is_private(name: str) -> bool:
    """A single-underscore name (`_x`, `_Class__x`); not a dunder, not the gettext alias `_`."""
    return name.startswith("_") and not name.endswith("__") and name.strip("_") != ""


MANGLED = re.compile(r"^_[A-Za-z][A-Za-z0-9]*__[A-Za-z0-9_]+$")
DOTTED = re.compile(r"^[A-Za-z_][\w]*(?:\.(?:[A-Za-z_]\w*|<locals>))+$")


def names_private_api(text: str) -> bool:
    """A string naming a dependency's private object, as `flask_limiter._extension.Limiter.__x`."""
    if not DOTTED.match(text):
        return False
    top, *rest = text.split(".")
    return top in DEPENDENCIES and any(is_private(part) for part in rest)


# --- layers ---------------------------------------------------------------------------------------
def test_layers_hold_portal_workflows_importers_registry():
    """import-linter's `layers` contract in pyproject.toml; imports inside functions count too."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    command = str(lint_imports) if lint_imports.exists() else shutil.which("lint-imports")
    assert command, "lint-imports is not installed: `pip install -e '.[test]'`"
    result = subprocess.run(
        [command, "--no-cache", "--no-logo", str(ROOT / "pyproject.toml")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- no private API of a dependency ---------------------------------------------------------------
def defined_private_names(trees: list[tuple[Path, ast.Module]]) -> set[str]:
    """Every `_name` our own code defines: functions, classes, module and class globals, names
    bound anywhere, parameters, attributes set on `self`/`cls`, import aliases and `__slots__`."""
    names: set[str] = set()
    for _path, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.alias) and node.asname:
                names.add(node.asname)
            elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                  and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                names.add(node.attr)
            elif isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets):
                names.update(c.value for c in ast.walk(node.value)
                             if isinstance(c, ast.Constant) and isinstance(c.value, str))
    return {name for name in names if is_private(name)}


def private_api_uses(trees: list[tuple[Path, ast.Module]]) -> list[str]:
    ours = defined_private_names(trees) | STDLIB_PUBLIC
    found: list[str] = []
    for path, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                top, *rest = node.module.split(".")
                if top in DEPENDENCIES:
                    if any(is_private(part) for part in rest):
                        found.append(f"{where(path, node)}: imports private module {node.module}")
                    for alias in node.names:
                        if is_private(alias.name):
                            found.append(f"{where(path, node)}: imports {alias.name} from {node.module}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    top, *rest = alias.name.split(".")
                    if top in DEPENDENCIES and any(is_private(part) for part in rest):
                        found.append(f"{where(path, node)}: imports private module {alias.name}")
            elif isinstance(node, ast.Attribute) and is_private(node.attr):
                if MANGLED.match(node.attr):
                    found.append(f"{where(path, node)}: name-mangled private attribute .{node.attr}")
                elif node.attr not in ours:
                    verb = "sets" if isinstance(node.ctx, (ast.Store, ast.Del)) else "uses"
                    found.append(f"{where(path, node)}: {verb} .{node.attr}, which our code never defines")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MANGLED.match(node.value):
                found.append(f"{where(path, node)}: name-mangled private name {node.value!r}")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and names_private_api(node.value):
                found.append(f"{where(path, node)}: names private {node.value!r}")
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) >= 2
                  and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
                  and is_private(node.args[1].value) and node.args[1].value not in ours):
                found.append(f"{where(path, node)}: {node.func.id}(…, {node.args[1].value!r}), "
                             "which our code never defines")
    return found


def test_no_private_api_of_a_dependency():
    trees = parsed(python_files(*APP_PACKAGES, "bench", "wsgi.py"))
    found = private_api_uses(trees)
    assert not found, "private API of a dependency (use its public API instead):\n" + "\n".join(found)


@pytest.mark.parametrize("source, expected", [
    ("from flask.globals import _cv_request", "imports _cv_request from flask.globals"),
    ("from flask.sansio.scaffold import _sentinel", "imports _sentinel from flask.sansio.scaffold"),
    ("from flask_limiter._extension import Limiter", "imports private module flask_limiter._extension"),
    ("import flask_limiter._extension", "imports private module flask_limiter._extension"),
    ("def f(headers):\n    headers._list.append(1)", "uses ._list, which our code never defines"),
    ("def f(ctx, s):\n    ctx._session = s", "sets ._session, which our code never defines"),
    ("def f(limiter):\n    return limiter._Limiter__check", "name-mangled private attribute ._Limiter__check"),
    ("CHECKS = ['_Limiter__evaluate_limits']", "name-mangled private name '_Limiter__evaluate_limits'"),
    ("def f(r):\n    return getattr(r, '_parsed')", "getattr(…, '_parsed'), which our code never defines"),
    ("SKIP = {'flask_limiter._extension.Limiter.__inject_headers'}",
     "names private 'flask_limiter._extension.Limiter.__inject_headers'"),
])
def test_the_private_api_check_sees(source, expected):
    """The check itself: each way private API came in before is named with its line."""
    found = private_api_uses([(ROOT / "portal" / "example.py", ast.parse(source))])
    assert any(expected in line for line in found), found
    assert all(line.startswith("portal/example.py:") for line in found)


def test_the_private_api_check_allows_our_own_underscore_names():
    source = (
        "class Store:\n"
        "    def __init__(self, client):\n"
        "        self._client = client\n"
        "    def _key(self, n):\n"
        "        return n\n"
        "def probe(store, n):\n"
        "    return store._client.get(store._key(n))\n"
        "from flask_babel import _\n"
    )
    assert private_api_uses([(ROOT / "portal" / "example.py", ast.parse(source))]) == []


# --- docs in the repository; folders from the settings -------------------------------------------
DOC_REFERENCE = re.compile(r'docs/([\w-]+\.md)(?:,\s*"([^"]+)")?')
SPEC_REFERENCE = re.compile(r"\bSPEC(?:\.md)?\b")


def test_code_refers_to_docs_in_the_repository():
    """Never to a SPEC.md outside it; every `docs/x.md, "Section"` names a file and heading that exist."""
    this_file = Path(__file__).resolve()
    found: list[str] = []
    for path in python_files(*APP_PACKAGES, "bench", "tests", "migrations", "wsgi.py"):
        if path == this_file:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if SPEC_REFERENCE.search(line):
                found.append(f"{where(path, number)}: refers to the spec outside the repository; "
                             "point to docs/architecture.md or docs/contract.md")
            for doc, section in DOC_REFERENCE.findall(line):
                target = ROOT / "docs" / doc
                if not target.exists():
                    found.append(f"{where(path, number)}: docs/{doc} does not exist")
                elif section and not any(
                        heading.lstrip("#").strip().startswith(section)
                        for heading in target.read_text(encoding="utf-8").splitlines()
                        if heading.startswith("#")):
                    found.append(f'{where(path, number)}: docs/{doc} has no section "{section}"')
    assert not found, "\n".join(found)


PROJECT_FOLDERS = {"templates", "translations", "migrations", "alembic.ini"}


def is_dunder_file(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "__file__"


def root_lookups(path: Path, tree: ast.Module) -> list[str]:
    found: list[str] = []
    for node in ast.walk(tree):
        # Path(__file__)…parent.parent, Path(__file__)…parents[n], os.path.dirname(os.path.dirname(__file__))
        if isinstance(node, ast.Attribute) and node.attr in ("parent", "parents"):
            inner = node.value
            climbs = 1 if node.attr == "parent" else 2
            while isinstance(inner, (ast.Attribute, ast.Call)):
                if isinstance(inner, ast.Attribute) and inner.attr == "parent":
                    climbs += 1
                inner = inner.value if isinstance(inner, ast.Attribute) else (
                    inner.args[0] if inner.args else inner.func)
            if is_dunder_file(inner) and climbs >= 2:
                found.append(f"{where(path, node)}: finds the repository from __file__; "
                             "import ROOT or TEMPLATES_DIR, TRANSLATIONS_DIR, MIGRATIONS_DIR, "
                             "ALEMBIC_INI from registry.infra.settings")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "dirname"
              and node.args and isinstance(node.args[0], ast.Call)
              and isinstance(node.args[0].func, ast.Attribute) and node.args[0].func.attr == "dirname"):
            found.append(f"{where(path, node)}: finds the repository by dirname(dirname(…)); "
                         "import it from registry.infra.settings")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and node.value.strip("./") in PROJECT_FOLDERS):
            found.append(f"{where(path, node)}: names the project folder {node.value!r}; "
                         "take its path from registry.infra.settings")
    return list(dict.fromkeys(found))


def test_project_folders_are_found_from_the_settings_only():
    found: list[str] = []
    for path, tree in parsed(python_files(*APP_PACKAGES, "bench", "wsgi.py")):
        if path != SETTINGS:
            found.extend(root_lookups(path, tree))
    assert not found, "\n".join(found)


@pytest.mark.parametrize("source", [
    "from pathlib import Path\nT = Path(__file__).parent.parent / 'templates'",
    "from pathlib import Path\nT = Path(__file__).resolve().parents[1]",
    "import os\nT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))",
    "app = Flask(__name__, template_folder='../templates')",
])
def test_the_folder_check_sees(source):
    assert root_lookups(ROOT / "portal" / "example.py", ast.parse(source))
