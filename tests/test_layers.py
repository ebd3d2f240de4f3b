"""The import contract between our packages (the README's "Layers"), checked on the source.

Read from the bottom up: a package may import the ones listed for it, never one above it.

* ``mailsift.settings``: a leaf any layer may read;
* ``schemas`` (event records) and ``checks`` (the engine): nothing of ours, not even the
  settings;
* ``agents`` (stage logic): the two above and the settings; they reach the world only
  through the ports they own (``agents/ports.py``);
* ``sinks`` (Postgres, RabbitMQ, Redis): implement those ports;
* ``streams``: wires Faust to the handlers;
* ``mailsift`` (CLI, API, local stack, ``mailsift/compose.py``): composes everything.

An import of ours inside a function is allowed only with a comment (on its line or the
line above) saying why: otherwise it hides a dependency from this test's readers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

#: layer → the layers it may import
ALLOWED: dict[str, frozenset[str]] = {
    "mailsift.settings": frozenset(),
    "schemas": frozenset(),
    "checks": frozenset(),
    "agents": frozenset({"mailsift.settings", "schemas", "checks"}),
    "sinks": frozenset({"mailsift.settings", "schemas", "checks", "agents"}),
    "streams": frozenset({"mailsift.settings", "schemas", "checks", "agents", "sinks"}),
    "mailsift": frozenset({"mailsift.settings", "schemas", "checks", "agents", "sinks",
                           "streams"}),
}


def layer_of(module: str) -> str | None:
    """``mailsift.settings`` is a layer of its own; any other module is its package's."""
    if module == "mailsift.settings" or module.startswith("mailsift.settings."):
        return "mailsift.settings"
    top = module.split(".")[0]
    return top if top in ALLOWED else None


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(node: ast.Import | ast.ImportFrom, module: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:  # relative: resolve against the importing package
        base = module.split(".")[:-node.level] if node.level else []
        return [".".join([*base, node.module] if node.module else base)]
    return [node.module] if node.module else []


def _explained(lines: list[str], node: ast.stmt) -> bool:
    """A comment on one of the import's lines, or above the block of imports it is in."""
    end = node.end_lineno or node.lineno
    if any("#" in lines[i] for i in range(node.lineno - 1, end)):
        return True
    i = node.lineno - 2
    while i >= 0 and (lines[i].strip().startswith(("from ", "import ", ")"))
                      or not lines[i].strip() or lines[i].startswith(" " * 8)
                      and lines[i].strip().endswith((",", "("))):
        if "#" in lines[i]:
            return True
        i -= 1
    return i >= 0 and lines[i].strip().startswith("#")


def violations(root: Path) -> list[str]:
    """Every import against :data:`ALLOWED`, and every uncommented one inside a function."""
    found: list[str] = []
    for path in sorted(p for pkg in ALLOWED if "." not in pkg
                       for p in (root / pkg).rglob("*.py")):
        module = module_name(root, path)
        source = path.read_text()
        lines = source.splitlines()
        tree = ast.parse(source)
        own = layer_of(module)
        in_function: set[int] = set()
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                in_function |= {id(n) for n in ast.walk(fn)
                                if isinstance(n, ast.Import | ast.ImportFrom)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            where = f"{path.relative_to(root)}:{node.lineno}"
            for target in _imported(node, module):
                theirs = layer_of(target)
                if theirs is None or own is None:
                    continue
                if theirs != own and theirs not in ALLOWED[own]:
                    found.append(f"{where}: {own} imports {target} ({theirs})")
                if id(node) in in_function and not _explained(lines, node):
                        found.append(f"{where}: import of {target} inside a function, "
                                     "without a comment saying why")
    return found


def test_the_tree_keeps_the_contract() -> None:
    assert violations(REPO) == []


@pytest.mark.parametrize(("module", "source", "says"), [
    ("checks/bad.py", "from mailsift.settings import Settings\n",
     "checks imports mailsift.settings"),
    ("agents/bad.py", "import streams.stage\n", "agents imports streams.stage"),
    ("sinks/bad.py", "from streams.client import scan_records\n", "sinks imports streams"),
    ("schemas/bad.py", "from checks.model import Reason\n", "schemas imports checks"),
    ("streams/bad.py", "from mailsift.cli import main\n", "streams imports mailsift.cli"),
    ("agents/bad.py", "def f():\n    from checks import model\n", "inside a function"),
])
def test_a_wrong_way_import_fails_the_contract(tmp_path: Path, module: str, source: str,
                                               says: str) -> None:
    for pkg in ALLOWED:
        if "." not in pkg:
            (tmp_path / pkg).mkdir()
            (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "mailsift" / "settings.py").write_text("")
    (tmp_path / module).write_text(source)
    (found,) = violations(tmp_path)
    assert says in found, found


def test_a_commented_lazy_import_and_allowed_imports_pass(tmp_path: Path) -> None:
    for pkg in ALLOWED:
        if "." not in pkg:
            (tmp_path / pkg).mkdir()
            (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "streams" / "ok.py").write_text(
        "from agents import ports\nfrom mailsift.settings import Settings\n"
        "def f():\n    from sinks import postgres  # asyncpg is slow to import\n")
    assert violations(tmp_path) == []


def test_the_api_does_not_import_the_cli() -> None:
    """The HTTP API and the CLI are siblings: what both need (input parsing, results, the
    composition) lives in neutral modules of ``mailsift/``."""
    found = []
    for path in sorted((REPO / "mailsift" / "api").rglob("*.py")):
        module = module_name(REPO, path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                found += [f"{module}: {t}" for t in _imported(node, module)
                          if t.startswith("mailsift.cli")]
    assert found == []
