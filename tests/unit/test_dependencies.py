"""Every third-party module the product imports (gateway/, signaling/, callin_sdk/) is installed by its runtime
dependencies (pyproject.toml `dependencies`, and what they require in turn), not only by the test or bench extras:
`make demo` installs no extras, so a module found only through them breaks the demo on a fresh machine."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("gateway", "signaling", "callin_sdk")
OPTIONAL = {"uvloop"}  # the `fast` extra: imported only when installed (signaling/cli.py falls back to asyncio)


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=~!;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _runtime_closure() -> set[str]:
    """The distributions `pip install .` brings: the project's dependencies and theirs, without extras' own."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [_name(r) for r in project["dependencies"]]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [_name(r) for r in requires if "extra ==" not in r]
    return seen


def _imported_top_levels() -> set[str]:
    found: set[str] = set()
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - set(PRODUCT) - OPTIONAL


def test_every_module_the_product_imports_comes_with_its_runtime_dependencies():
    providers = metadata.packages_distributions()
    runtime = _runtime_closure()
    missing = {}
    for module in sorted(_imported_top_levels()):
        dists = {d.lower().replace("_", "-") for d in providers.get(module, [])}
        if not dists & runtime:
            missing[module] = sorted(dists) or ["(not installed)"]
    assert not missing, f"imported by the product but not installed by pyproject.toml's dependencies: {missing}"
