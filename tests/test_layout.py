"""Data flows one way: attacks import only the core, no library imports the CLI, and every command shares one
error handler (no command module catches InputError itself)."""

from __future__ import annotations

import ast
from pathlib import Path

import robustaudit

SRC = Path(robustaudit.__file__).parent
ATTACKS_MAY_IMPORT = {"attacks", "ops", "oracle", "models", "threat", "types", "errors", "results", "validate",
                      "interpret", "extras"}


def imports(path: Path) -> set[str]:
    """The robustaudit sub-packages/modules a file imports (first component after `robustaudit.`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("robustaudit."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("robustaudit.")}
    return found


def test_attacks_import_only_the_core() -> None:
    for path in (SRC / "attacks").rglob("*.py"):
        extra = imports(path) - ATTACKS_MAY_IMPORT
        assert not extra, f"{path.relative_to(SRC)} imports {extra}"


def test_no_library_module_imports_the_cli() -> None:
    for path in SRC.rglob("*.py"):
        if "cli" not in path.relative_to(SRC).parts and path.name != "__main__.py":
            assert "cli" not in imports(path), f"{path.relative_to(SRC)} imports the CLI"


def test_commands_leave_errors_to_the_one_handler() -> None:
    for path in (SRC / "cli").glob("*.py"):
        if path.name != "common.py":
            assert "except InputError" not in path.read_text(), path.name
