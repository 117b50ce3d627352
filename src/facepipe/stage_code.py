"""What each stage's code computes, as a fingerprint: a stage's output is stale when the
code that made it changed, so Snakemake (a rule parameter) and DVC (a dependency file)
both rerun it and what depends on it.

The fingerprint hashes the syntax trees of the stage's module and of every facepipe
module it imports, directly or not, with docstrings dropped: a change to what the code
does changes it; comments, docstrings and formatting do not (a rerun of training costs
hours). The command line (`cli`) is not part of it: the arguments it passes are in the
rule's command, which Snakemake and DVC track themselves."""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

from .fsutil import atomic_path

PACKAGE = "facepipe"
PACKAGE_DIR = Path(__file__).parent
STAGES = ("download", "frames", "detect", "filter", "train", "convert", "evaluate")
# Modules a stage runs without importing them: detect's worker processes start from this one.
ENTRY_MODULES = {"detect": ("detect", "_detect_worker")}
FINGERPRINT_DIR = Path("workflow/fingerprints")
# Modules stages import that never change what a stage writes: the typed settings carry
# params.yaml's values (dependencies by key), errors only stop a stage, hosts starts and
# joins training processes, and this module is the bookkeeping itself. A change to them
# reruns nothing.
NOT_OUTPUT_CODE = {"settings", "errors", "hosts", "stage_code"}


def module_path(module: str) -> Path | None:
    """The source file of a package module ("formats.dataset"), or None if there is none."""
    base = PACKAGE_DIR.joinpath(*module.split(".")) if module else PACKAGE_DIR
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(module: str) -> set[str]:
    """The package modules `module` imports anywhere (also inside functions), by name
    relative to the package ("formats.dataset")."""
    return set(_read(module, module_path(module))[0])


def _read(module: str, path: Path) -> tuple[frozenset[str], str]:
    """The modules `module` imports and its syntax tree without docstrings (dumped)."""
    return _parse(module, path, path.read_text())


# Every Snakemake run (and each cluster job's) fingerprints all stages, which share most
# modules: each source text is parsed once.
@functools.cache
def _parse(module: str, path: Path, text: str) -> tuple[frozenset[str], str]:
    tree = ast.parse(text, filename=str(path))
    imports = frozenset(_imported_modules(tree, module, path))
    return imports, ast.dump(_without_docstrings(tree))


def _imported_modules(tree: ast.Module, module: str, path: Path) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name.removeprefix(PACKAGE + ".") for alias in node.names
                     if alias.name.startswith(PACKAGE + ".")]
            found.update(names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                base = ".".join(parts[:len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            elif node.module == PACKAGE or (node.module or "").startswith(PACKAGE + "."):
                base = node.module.removeprefix(PACKAGE).lstrip(".")
            else:
                continue
            found.add(base)
            # `from . import detect` and `from .formats import dataset` import modules by name.
            found.update(f"{base}.{alias.name}".lstrip(".") for alias in node.names)
    return {name for name in found if module_path(name) is not None}


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value,
                                                                                                  str):
                node.body = node.body[1:] or [ast.Pass()]
    return tree


def modules(stage: str) -> dict[str, Path]:
    """Every package module the stage runs, its own and all it imports, by name (but
    NOT_OUTPUT_CODE)."""
    todo, found = list(ENTRY_MODULES.get(stage, (stage,))), {}
    while todo:
        name = todo.pop()
        if name in found or name in NOT_OUTPUT_CODE:
            continue
        found[name] = module_path(name)
        todo += _read(name, found[name])[0]
    return dict(sorted(found.items()))


def fingerprint(stage: str, found: dict[str, Path] | None = None) -> str:
    """The hash of the stage's modules (`found`, when the caller has them already)."""
    digest = hashlib.sha256()
    for name, path in (found or modules(stage)).items():
        digest.update(f"{name}\0{_read(name, path)[1]}\0".encode())
    return digest.hexdigest()[:16]


def fingerprints() -> dict[str, str]:
    return {stage: fingerprint(stage) for stage in STAGES}


def fingerprint_text(stage: str) -> str:
    """What a stage's fingerprint file holds: the fingerprint, then the modules it covers."""
    found = modules(stage)
    names = ", ".join(f"{PACKAGE}.{name}".rstrip(".") for name in found)
    return f"{fingerprint(stage, found)}\n# {stage}: the syntax trees of {names}\n"


def write_fingerprints(folder: str | Path = FINGERPRINT_DIR) -> list[Path]:
    """Bring the fingerprint files up to date; a file is rewritten only when the code's
    fingerprint changed, so its modification time marks a real change."""
    folder, changed = Path(folder), []
    folder.mkdir(parents=True, exist_ok=True)
    for stage in STAGES:
        path, text = folder / f"{stage}.txt", fingerprint_text(stage)
        if not path.is_file() or path.read_text() != text:
            with atomic_path(path) as tmp:
                tmp.write_text(text)
            changed.append(path)
    return changed


def source_files(root: str | Path = ".") -> list[str]:
    """The source files of every stage (DVC's dependencies of the stage that writes the
    fingerprint files): relative to `root`, the project, when the package lives in it
    (this repository's src/), else absolute."""
    root = Path(root).resolve()
    paths = {path.resolve() for stage in STAGES for path in modules(stage).values()}
    return sorted(str(path.relative_to(root)) if path.is_relative_to(root) else str(path) for path in paths)
