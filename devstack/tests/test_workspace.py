"""Each workspace member declares the distributions it imports: it must install and run on
its own (a Docker image of one service), not only beside members that happen to pull them in."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = ("servicekit", "books", "orders", "workers", "devstack", "web")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(member: str) -> set[str]:
    project = tomllib.loads((ROOT / member / "pyproject.toml").read_text())["project"]
    return {normalized(re.split(r"[<>=!~\[; ]", spec)[0]) for spec in project["dependencies"]}


def imported(member: str) -> set[str]:
    """Top-level names the member's code imports (absolute imports only)."""
    names = set()
    for path in (ROOT / member / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.partition(".")[0])
    return names - set(sys.stdlib_module_names) - {"__future__", member}


@pytest.mark.parametrize("member", MEMBERS)
def test_a_member_declares_every_distribution_it_imports(member: str) -> None:
    providers = packages_distributions()
    dependencies = declared(member)
    undeclared = {
        name
        for name in imported(member)
        if not (
            normalized(name) in dependencies  # a workspace member, or named as it imports
            or {normalized(dist) for dist in providers.get(name, [])} & dependencies
        )
    }
    assert not undeclared, f"{member} imports {sorted(undeclared)} without declaring them"
