"""The library's layers, as the README lists them: no module imports from a layer above.

Every `from . import` / `from .x import` / `import powerlaw_lib.x` in `powerlaw_lib`,
including imports inside functions, is checked; imports under `if TYPE_CHECKING:` (type
hints only, never executed) are not.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "powerlaw_lib"

#: Bottom to top. A module may import from its own layer and the layers below.
LAYERS: list[tuple[str, set[str]]] = [
    ("foundations", {"validation", "hardware", "spectrum", "inference", "data", "models",
                     "attacks", "theory", "notebook", "executors", "__init__"}),
    ("penalties", {"regularizers", "local_learning"}),
    ("method registry", {"methods"}),
    ("configuration", {"config"}),
    ("runs", {"training", "local_training", "evaluation", "store", "model_cache", "audit",
              "audit_checks", "plotting"}),
    ("summaries", {"costs", "analysis", "tables", "claims"}),
    ("orchestration", {"experiments", "grids", "diagnostics", "sweep", "audits",
                       "alpha_analysis", "verdicts"}),
    ("command line", {"__main__"}),
]
LAYER_OF = {module: i for i, (_, modules) in enumerate(LAYERS) for module in modules}


def _top_module(path: Path) -> str:
    """The first-level module a file belongs to ('methods' for methods/spectral.py)."""
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path) -> set[str]:
    """First-level `powerlaw_lib` modules that `path` imports (type-checking blocks aside)."""
    return _imports_of(path.read_text(), path.relative_to(PACKAGE).with_suffix("").parts)


def _imports_of(source: str, parts: tuple[str, ...]) -> set[str]:
    """Imports of `source`, the module at `parts` (e.g. ("methods", "spectral"))."""
    package = list(parts[:-1])  # the package the file is in, relative to powerlaw_lib
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                names = ([node.module] if node.module else [a.name for a in node.names])
                for name in names:
                    full = [*base, *name.split(".")]
                    found.add(full[0] if full else "__init__")
            elif node.module and node.module.split(".")[0] == "powerlaw_lib":
                found.add(node.module.split(".")[1] if "." in node.module else "__init__")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("powerlaw_lib."):
                    found.add(a.name.split(".")[1])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return {m for m in found if m != parts[0]}


FILES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    modules = {_top_module(p) for p in FILES}
    assert modules == set(LAYER_OF), (modules ^ set(LAYER_OF))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_from_a_layer_above(path):
    here = LAYER_OF[_top_module(path)]
    upward = sorted(m for m in _imports(path) if LAYER_OF.get(m, -1) > here)
    assert not upward, (f"{path.relative_to(ROOT)} (layer '{LAYERS[here][0]}') imports "
                        f"{upward} from a layer above")


def test_the_checker_sees_upward_imports_and_skips_type_hints():
    source = ("from typing import TYPE_CHECKING\nfrom ..validation import is_int\n"
              "if TYPE_CHECKING:\n    from ..config import RunConfig\n"
              "def f():\n    from ..experiments import run\n    import powerlaw_lib.grids\n")
    assert _imports_of(source, ("methods", "toy")) == {"validation", "experiments", "grids"}


def test_the_readme_lists_the_same_layers():
    readme = (ROOT / "README.md").read_text()
    line = next(l for l in readme.splitlines() if l.startswith("| `powerlaw_lib/` |"))
    listed = re.search(r"\(layers, bottom to top: (.*)\)", line)
    assert listed, "README: the powerlaw_lib row must list the layers, bottom to top"
    layers = [set(re.findall(r"`([\w_]+)`", part)) for part in listed.group(1).split("→")]
    assert layers == [modules - {"__init__"} for _, modules in LAYERS]
