"""Repository layout rules, checked statically: no import cycle, small files, self-contained references.

Nothing here trains: the time is reading the files and importing the package (for dotted names).
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fr_lightning"
MAX_LINES = 500
#: Files under fr_lightning/ allowed over MAX_LINES, each with the reason (keep this empty).
LONG_FILE_EXCEPTIONS: dict[str, str] = {}
#: Paths cited on purpose although they are gone from the working tree, each with the reason.
FROM_GIT_HISTORY: dict[str, str] = {
    "fr_lightning/data/streaming.py": "benchmarks/data_throughput.py loads the retired .frs reader with `git show`",
}

#: Where references are looked for: code, recipes, config fragments, docs.
SCANNED = ("fr_lightning/**/*.py", "tests/**/*.py", "benchmarks/**/*.py", "experiments/**/*.py",
           "recipes/**/*.yaml", "configs/**/*.yaml", "docs/**/*.md", "*.md", ".ci/*")
#: Specs that live outside the repository and must never be cited from it (spelled in two
#: pieces so this file does not cite them itself).
OUTSIDE = [name + ".md" for name in ("METHODS", "FORMATS", "DESIGN", "STYLE")] + [".." + "/shared"]


def _scanned_files() -> list[Path]:
    files = {p for pattern in SCANNED for p in ROOT.glob(pattern) if p.is_file() and "__pycache__" not in p.parts}
    return sorted(files - {Path(__file__).resolve()})


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, in functions and classes too; ``if TYPE_CHECKING:`` blocks excluded."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and _is_type_checking(node):
            found += _imports(node.orelse)
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    found += _imports([c for c in children if isinstance(c, (ast.stmt, ast.excepthandler))])
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the fr_lightning modules it imports (``from pkg import sub`` counts as ``pkg.sub``)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _imports(ast.parse(path.read_text(), str(path)).body):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
                continue
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert "fr_lightning.module" in graph and "fr_lightning.classifiers.base" in graph["fr_lightning.module"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_classifiers_import_nothing_from_methods_or_the_module() -> None:
    """A classifier is a part the module holds: it never reaches up into the module or the training methods."""
    graph = import_graph()
    assert "fr_lightning.classifiers.f2c" in graph
    upward = {
        f"{name} -> {target}"
        for name, targets in graph.items()
        if name == "fr_lightning.classifiers" or name.startswith("fr_lightning.classifiers.")
        for target in targets
        if target == "fr_lightning.module" or target == "fr_lightning.methods" or target.startswith("fr_lightning.methods.")
    }
    assert not upward, f"classifiers/ imports upward: {sorted(upward)}"


def test_no_file_under_the_package_exceeds_500_lines() -> None:
    too_long = {
        str(p.relative_to(ROOT)): n
        for p in sorted(PACKAGE.rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    unexpected = {k: v for k, v in too_long.items() if k not in LONG_FILE_EXCEPTIONS}
    assert not unexpected, f"files over {MAX_LINES} lines (split them): {unexpected}"
    stale = set(LONG_FILE_EXCEPTIONS) - set(too_long)
    assert not stale, f"remove from LONG_FILE_EXCEPTIONS (now short enough or gone): {sorted(stale)}"


# A path into the repository: starts a token, ends in a word character or "/". Placeholders
# ("configs/heads/<name>.yaml", "configs/data/*.yaml", "{...}") are left out.
PATH = re.compile(r"(?<![\w./-])((?:docs|recipes|configs)/[\w./-]*[\w/]|(?:fr_lightning|tests|benchmarks|experiments)/[\w/.-]*\.py)(?![<{*\w])")
DOTTED = re.compile(r"(?<![\w./-])(fr_lightning(?:\.\w+)+)")


def test_every_path_mentioned_exists() -> None:
    missing = [
        f"{f.relative_to(ROOT)}:{i}: {m.group(1)}"
        for f in _scanned_files()
        for i, line in enumerate(f.read_text(errors="replace").splitlines(), 1)
        for m in PATH.finditer(line)
        if not (ROOT / m.group(1)).exists() and m.group(1) not in FROM_GIT_HISTORY
    ]
    assert not missing, "references to paths that do not exist:\n" + "\n".join(missing)


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_every_dotted_name_in_docs_and_configs_resolves() -> None:
    texts = [p for p in _scanned_files() if p.suffix in (".md", ".yaml")]
    missing = [
        f"{f.relative_to(ROOT)}:{i}: {name}"
        for f in texts
        for i, line in enumerate(f.read_text().splitlines(), 1)
        for m in DOTTED.finditer(line)
        if not (name := m.group(1).removesuffix(".")).endswith((".py", ".yaml", ".md")) and not _resolves(name)
    ]
    assert not missing, "names that import or attribute lookup cannot find:\n" + "\n".join(missing)


@pytest.mark.parametrize("outside", OUTSIDE)
def test_nothing_cites_specs_outside_the_repository(outside: str) -> None:
    hits = [
        f"{f.relative_to(ROOT)}:{i}"
        for f in _scanned_files()
        for i, line in enumerate(f.read_text(errors="replace").splitlines(), 1)
        if outside in line
    ]
    assert not hits, f"{outside} is not in the repository; cite docs/ instead: {hits}"


def test_the_path_pattern_sees_references_and_skips_placeholders() -> None:
    line = "see docs/formats.md, recipes/arcface.yaml and configs/heads/<name>.yaml; fr_lightning/module.py."
    found = [m.group(1) for m in PATH.finditer(line)]
    assert found == ["docs/formats.md", "recipes/arcface.yaml", "configs/heads", "fr_lightning/module.py"]
    # A placeholder is cut back to the folder before it; output folders are not .py files.
    assert [m.group(1) for m in PATH.finditer("configs/data/*.yaml and experiments/out/runs")] == ["configs/data"]


def test_no_module_outside_the_cli_package_imports_it() -> None:
    """The command line sits on top: library packages never import ``fr_lightning.cli``."""
    graph = import_graph()
    assert "fr_lightning.cli.train" in graph and "fr_lightning.cli" in graph
    offenders = sorted(
        f"{name} imports {target}"
        for name, targets in graph.items()
        if not (name == "fr_lightning.cli" or name.startswith("fr_lightning.cli."))
        for target in targets
        if target == "fr_lightning.cli" or target.startswith("fr_lightning.cli.")
    )
    assert not offenders, "library modules importing the command line: " + "; ".join(offenders)


def test_the_cli_finder_sees_an_upward_import() -> None:
    """The check above reads function-level imports too (the old eval/ijb/model.py imported the CLI inside a function)."""
    tree = ast.parse("def load():\n    from fr_lightning.cli import cli_main\n")
    found = [n.module for n in _imports(tree.body) if isinstance(n, ast.ImportFrom)]
    assert found == ["fr_lightning.cli"]


def _explicit_imports(package: str) -> set[str]:
    """Submodules ``package/__init__.py`` imports by name (``from <package>.<sub> import ...``)."""
    init = PACKAGE / package.split(".", 1)[1].replace(".", "/") / "__init__.py"
    found = set()
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(package + "."):
            found.add(node.module.rpartition(".")[2])
    return found


def _component_files(package: str, skip: set[str]) -> set[str]:
    folder = PACKAGE / package.split(".", 1)[1].replace(".", "/")
    return {p.stem for p in folder.glob("*.py") if not p.stem.startswith("_") and p.stem not in skip}


@pytest.mark.parametrize("package, registry", [("fr_lightning.heads", "HEADS"), ("fr_lightning.backbones", "BACKBONES")])
def test_registries_and_explicit_imports_agree(package: str, registry: str) -> None:
    """Every component file is imported by name in the package ``__init__`` (no pkgutil scan), and
    what the registry holds is exactly what those imports bring in and re-export."""
    module = importlib.import_module(package)
    imported = _explicit_imports(package)
    files = _component_files(package, {"base"})
    assert files - imported == set(), f"{package}/__init__.py does not import {sorted(files - imported)}"
    entries = getattr(module, registry)
    homes = {obj.__module__.rpartition(".")[2] for obj in entries.values()}
    assert homes == files, f"{registry} has entries from {sorted(homes)}, the package has component files {sorted(files)}"
    exported = set(module.__all__)
    missing = sorted(obj.__name__ for obj in entries.values() if obj.__name__ not in exported or getattr(module, obj.__name__) is not obj)
    assert not missing, f"{package} does not re-export {missing} (add them to its imports and __all__)"
    for sub in files:  # a component file's own __all__ is re-exported whole
        names = getattr(importlib.import_module(f"{package}.{sub}"), "__all__", [])
        assert set(names) <= exported, f"{package}.{sub}.__all__ names {sorted(set(names) - exported)} that {package} does not re-export"


def test_the_methods_package_exports_every_registered_method() -> None:
    """``methods/__init__.py`` imports each method explicitly; the registry and the exports agree."""
    methods = importlib.import_module("fr_lightning.methods")
    in_package = {name: cls for name, cls in methods.METHODS.items() if cls.__module__.startswith("fr_lightning.methods.")}
    assert in_package, "no method registered from fr_lightning.methods"
    missing = sorted(cls.__name__ for cls in in_package.values() if getattr(methods, cls.__name__, None) is not cls)
    assert not missing, f"fr_lightning.methods does not re-export {missing}"
    assert {cls.__module__.rpartition(".")[2] for cls in in_package.values()} <= _explicit_imports("fr_lightning.methods")
