"""The one-way dependencies between the parts (stated in the README's layout section), checked on every
import statement, lazy ones inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SERVICE = ("nas.api", "nas.web", "nas.service", "nas.runner", "nas.cli", "nas.client")

# part -> module prefixes it never imports
RULES: dict[str, tuple[str, ...]] = {
    "search_spaces": ("nas", "workers", "latency_models"),
    "latency_models": ("nas", "workers"),
    "workers": ("nas",),
    "nas.db": ("nas.engine", *SERVICE),
    "nas.engine": SERVICE,
    "nas.client": ("nas.engine", "nas.db", "nas.api", "nas.runner", "nas.service", "torch", "ray", "transformers"),
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def module_files(part: str) -> list[Path]:
    base = REPO_ROOT / Path(*part.split("."))
    return sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]


@pytest.mark.parametrize("part", sorted(RULES))
def test_a_part_never_imports_what_it_must_not(part: str) -> None:
    files = module_files(part)
    assert files and all(f.is_file() for f in files), part
    broken = sorted(f"{path.relative_to(REPO_ROOT)} imports {name}" for path in files for name in imports_of(path)
                    if any(name == banned or name.startswith(banned + ".") for banned in RULES[part]))
    assert broken == []


def test_the_rule_catches_a_forbidden_import(tmp_path: Path) -> None:
    sneaky = tmp_path / "m.py"
    sneaky.write_text("def f():\n    from nas.service import submit_job\n")
    assert "nas.service" in imports_of(sneaky)
