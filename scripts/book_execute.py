"""Execute the book's chapters with papermill, skipping those that have not changed.

A chapter is a MyST-markdown notebook listed in ``_toc.yml`` (a page whose front
matter has a ``kernelspec``). It is converted with jupytext, executed by papermill
with its parameters and written, with its figures, to
``build/executed/<profile>/<chapter>.ipynb`` (and ``<chapter>_figures/``), next to
a record ``<chapter>.json`` (hash, parameters, run time) that exists only after a
successful run.

Caching: a chapter is re-executed only when its source, its parameters, the
library code (``powerlaw_lib/**/*.py``) or the stored data the chapters read
(`STORED_DATA`: results, audits, diagnostics, benchmark figures) changed since its
last successful run.

Parameters files (``params/*.yml``) map a chapter name to its parameter overrides.
Sections for chapters that the toc does not list are ignored. The string value
``"@fresh_tmpdir"`` is replaced by a new empty folder under ``build/tmp/`` at each
execution (the hash uses the marker, not the folder), so results are recomputed.
"""

from __future__ import annotations

import datetime as dt
import base64
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the library, also when it is not pip-installed
    sys.path.insert(0, str(REPO))

from powerlaw_lib.notebook import (  # noqa: E402
    ANY,
    read_may_be_empty,
    read_parameter_defaults,
    validate_parameters,
)

BUILD = REPO / "build"
EXECUTED = BUILD / "executed"
FRESH_TMPDIR = "@fresh_tmpdir"
#: Bump to invalidate every cached execution (e.g. when the execution settings change).
CACHE_VERSION = 1
SOURCE_SUFFIXES = (".md", ".ipynb", ".rst")


class ChapterError(RuntimeError):
    """A chapter failed to execute; the message says where to look."""


# ---------------------------------------------------------------------------- toc


def toc_entries(toc_path: Path) -> list[str]:
    """Every ``file``/``root`` entry of a jb-book ``_toc.yml``, in reading order."""
    toc = yaml.safe_load(Path(toc_path).read_text()) or {}
    entries: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("root", "file"):
                if isinstance(node.get(key), str):
                    entries.append(node[key])
            for key in ("parts", "chapters", "sections"):
                walk(node.get(key))
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return entries


def toc_with_drafts(toc_path: Path, drafts: list[str], out_path: Path,
                    root: Path = REPO) -> Path:
    """Write to `out_path` the toc of `toc_path` with the draft chapters ``book/<name>``
    appended to the chapters of its first numbered part (so their figures are numbered),
    and return `out_path`. Drafts are chapters written ahead of their stored runs: `make
    test` executes and builds them with the quick parameters, `make book` leaves them out
    until they join `_toc.yml`. A draft must exist and not be in the toc already."""
    toc = yaml.safe_load(Path(toc_path).read_text()) or {}
    listed = set(toc_entries(toc_path))
    for name in drafts:
        entry = f"book/{name}"
        if entry in listed:
            raise ValueError(f"draft chapter {name!r} is already in {toc_path}")
        if resolve_entry(entry, root) is None:
            raise FileNotFoundError(f"draft chapter {name!r}: no file {entry}.md in {root}")
    parts = toc.get("parts") or []
    part = next((p for p in parts if p.get("numbered")), parts[0] if parts else None)
    if part is None:
        raise ValueError(f"{toc_path} has no parts to add draft chapters to")
    part.setdefault("chapters", []).extend({"file": f"book/{name}"} for name in drafts)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text("# generated: " + f"{Path(toc_path).name} with the draft chapters "
                        + ", ".join(drafts) + "\n" + yaml.safe_dump(toc, sort_keys=False))
    return out_path


def resolve_entry(entry: str, root: Path = REPO) -> Path | None:
    """The source file of a toc entry (``book/intro`` -> ``book/intro.md``), or None."""
    base = root / entry
    if base.suffix in SOURCE_SUFFIXES and base.is_file():
        return base
    for suffix in SOURCE_SUFFIXES:
        candidate = base.with_name(base.name + suffix)
        if candidate.is_file():
            return candidate
    return None


def front_matter(path: Path) -> dict[str, Any]:
    """The YAML front matter of a markdown file (empty dict when absent)."""
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    if end < 0:
        return {}
    meta = yaml.safe_load(text[3:end])
    return meta if isinstance(meta, dict) else {}


def is_notebook_source(path: Path) -> bool:
    """Whether a page is a notebook (executed) rather than plain text."""
    if path.suffix == ".ipynb":
        return True
    return path.suffix == ".md" and "kernelspec" in front_matter(path)


@dataclass(frozen=True)
class Chapter:
    """A notebook page of the book: its name (file stem) and its source."""

    name: str
    source: Path


def toc_chapters(toc_path: Path, root: Path = REPO) -> list[Chapter]:
    """The notebook pages listed in the toc, in reading order."""
    chapters = []
    for entry in toc_entries(toc_path):
        path = resolve_entry(entry, root)
        if path is None:
            raise FileNotFoundError(f"{toc_path}: entry {entry!r} matches no file in {root}")
        if is_notebook_source(path):
            chapters.append(Chapter(name=path.stem, source=path))
    return chapters


# --------------------------------------------------------------------- parameters


def load_params_file(path: Path | None) -> dict[str, dict[str, Any]]:
    """Read a parameters file: ``chapter name -> {parameter: value}``.

    A section that holds only comments (YAML null) counts as empty.
    """
    if path is None:
        return {}
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of chapter names to parameters")
    sections: dict[str, dict[str, Any]] = {}
    for chapter, section in data.items():
        if section is None:
            section = {}
        if not isinstance(section, dict):
            raise ValueError(
                f"{path}: section {chapter!r} must map parameter names to values, "
                f"got {type(section).__name__}"
            )
        sections[str(chapter)] = section
    return sections


def parse_override(raw: str, default: Any) -> Any:
    """Value of a command-line ``-p name value``.

    Read as YAML (``[0, 1]``, ``2``, ``true``, ``null``), except where the default is a
    string (kept as typed) and for numbers YAML leaves as text (``1e-3``).
    """
    if isinstance(default, str):
        return raw
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        for number in (int, float):
            try:
                return number(raw)
            except ValueError:
                continue
    return value


def _plain(value: Any) -> Any:
    """Tuples as lists (papermill writes lists; YAML and JSON have no tuples)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def chapter_parameters(
    chapter: Chapter,
    section: dict[str, Any] | None = None,
    overrides: list[tuple[str, str]] | None = None,
    *,
    origin: str = "parameters file",
) -> dict[str, Any]:
    """Merge and check a chapter's overrides (file section, then ``-p`` pairs).

    Raises
    ------
    ValueError
        When a name is not a parameter of the chapter or a value has the wrong
        type (see :func:`powerlaw_lib.notebook.validate_parameters`).
    """
    defaults = read_parameter_defaults(chapter.source)
    values = dict(section or {})
    for name, raw in overrides or []:
        values[name] = parse_override(raw, defaults.get(name, ANY))
    if values and not defaults:
        raise ValueError(
            f"{chapter.name}: {origin} sets {sorted(values)} but the chapter has no cell "
            "tagged 'parameters'"
        )
    checked = validate_parameters(defaults, values, chapter=f"{chapter.name} ({origin})",
                                  may_be_empty=read_may_be_empty(chapter.source))
    check_grid_parameters(chapter.name, {**defaults, **checked}, origin)
    return _plain(checked)


def check_grid_parameters(name: str, parameters: dict[str, Any], origin: str) -> None:
    """Build the chapter's grid (`powerlaw_lib.grids.CHAPTER_GRIDS`) from its parameters.

    A value every type check passes but `RunConfig` rejects (negative epochs, an unknown
    optimizer or precision, width 0, ...) stops here, before any kernel starts, with
    RunConfig's message naming the field. Chapters without a grid are left alone.
    """
    import inspect

    from powerlaw_lib.grids import CHAPTER_GRIDS

    grid = CHAPTER_GRIDS.get(name)
    if grid is None:
        return
    accepted = inspect.signature(grid).parameters
    try:
        grid(**{k: v for k, v in parameters.items() if k in accepted and v is not ANY})
    except (ValueError, TypeError) as error:
        raise ValueError(f"{name} ({origin}): {error}") from None


# -------------------------------------------------------------------------- hashing


def library_files(root: Path = REPO) -> list[Path]:
    """The library's Python files, in a stable order."""
    return sorted((root / "powerlaw_lib").rglob("*.py"))


#: Stored data that chapters read (relative to the repository root): a new or replaced
#: result, audit, diagnostic or benchmark figure re-executes the chapters on the next
#: build. Hidden folders (checkpoints, locks, failure records) are left out.
STORED_DATA = ("data/results", "data/audits", "data/diagnostics", "benchmarks/results.json")


def stored_data_files(root: Path = REPO) -> list[Path]:
    """The JSON files of `STORED_DATA` under `root`, in a stable order."""
    files: list[Path] = []
    for name in STORED_DATA:
        path = root / name
        candidates = [path] if path.is_file() else sorted(path.rglob("*.json"))
        files += [f for f in candidates
                  if not any(part.startswith(".") for part in f.relative_to(root).parts)]
    return files


def execution_hash(chapter: Chapter, parameters: dict[str, Any], root: Path = REPO) -> str:
    """Hash of what determines an execution: source, parameters, library code and the
    stored data (`stored_data_files`)."""
    digest = hashlib.sha256()
    digest.update(f"cache-version {CACHE_VERSION}\n".encode())
    digest.update(chapter.source.read_bytes())
    digest.update(json.dumps(parameters, sort_keys=True, default=repr).encode())
    for path in [*library_files(root), *stored_data_files(root)]:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


# ------------------------------------------------------------------------ execution


@dataclass
class ExecutionRecord:
    """What one successful execution of a chapter produced."""

    chapter: str
    profile: str
    hash: str
    parameters: dict[str, Any]
    seconds: float
    executed_at: str
    notebook: str
    figures: list[str] = field(default_factory=list)
    nbval_passed: bool = False  # the notebook reproduced its checked outputs under nbval
    reused: bool = False  # True when this build took the cached execution

    @classmethod
    def load(cls, path: Path) -> ExecutionRecord | None:
        try:
            data = json.loads(path.read_text())
            data.pop("reused", None)
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None

    def save(self, path: Path) -> None:
        data = asdict(self)
        data.pop("reused")
        path.write_text(json.dumps(data, indent=1, default=repr) + "\n")


def substitute_fresh_tmpdirs(
    parameters: dict[str, Any], chapter: str, profile: str, build: Path = BUILD
) -> dict[str, Any]:
    """Replace every ``"@fresh_tmpdir"`` value by a new empty folder under build/tmp.

    Folders left by earlier executions of the same chapter and profile are removed.
    """
    if FRESH_TMPDIR not in parameters.values():
        return dict(parameters)
    parent = build / "tmp" / profile
    parent.mkdir(parents=True, exist_ok=True)
    for old in parent.glob(f"{chapter}-*"):
        shutil.rmtree(old, ignore_errors=True)
    return {
        name: tempfile.mkdtemp(prefix=f"{chapter}-{name}-", dir=parent)
        if value == FRESH_TMPDIR
        else value
        for name, value in parameters.items()
    }


def extract_figures(notebook: Any, folder: Path) -> list[Path]:
    """Write the images of a notebook's outputs to ``folder`` (emptied first)."""
    shutil.rmtree(folder, ignore_errors=True)
    paths: list[Path] = []
    for index, cell in enumerate(notebook.cells):
        number = 0
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            for mime, suffix in (("image/png", ".png"), ("image/svg+xml", ".svg")):
                if mime not in data:
                    continue
                number += 1
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"cell{index:03d}-{number}{suffix}"
                content = data[mime]
                if suffix == ".png":
                    path.write_bytes(base64.b64decode(content))
                else:
                    path.write_text(content if isinstance(content, str) else "".join(content))
                paths.append(path)
    return paths


def _keep_failed(running: Path, failed: Path) -> Path | None:
    """Move a failed execution's notebook to `failed` (None when none was written)."""
    if not running.exists():
        return None
    os.replace(running, failed)
    return failed


def _last_good(notebook: Path) -> str:
    return (f"\n  the last good execution is untouched: {notebook}" if notebook.exists()
            else "")


def execute_chapter(
    chapter: Chapter,
    parameters: dict[str, Any],
    *,
    profile: str,
    timeout: int | None,
    force: bool = False,
    out_root: Path = EXECUTED,
    cwd: Path = REPO,
) -> ExecutionRecord:
    """Execute one chapter with papermill unless an identical run is cached.

    Parameters
    ----------
    chapter : Chapter
        The chapter to run.
    parameters : dict
        Checked overrides (see :func:`chapter_parameters`).
    profile : str
        Name of the output folder under ``build/executed``.
    timeout : int or None
        Per-cell timeout in seconds (None: no limit).
    force : bool
        Execute even when the cache is valid.

    Raises
    ------
    ChapterError
        When a cell raises; the executed notebook shows the failing cell.
    """
    import jupytext
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out_dir = out_root / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    notebook_path = out_dir / f"{chapter.name}.ipynb"
    record_path = out_dir / f"{chapter.name}.json"
    digest = execution_hash(chapter, parameters)

    record = ExecutionRecord.load(record_path)
    if not force and record and record.hash == digest and notebook_path.is_file():
        record.reused = True
        return record

    # Execute into a temporary file: the last good notebook, its record and its figures stay
    # in place until this execution has succeeded; a failed one is kept beside them.
    running_path = out_dir / f".{chapter.name}.running.ipynb"
    failed_path = out_dir / f"{chapter.name}.failed.ipynb"
    notebook = jupytext.read(chapter.source)
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    actual = substitute_fresh_tmpdirs(parameters, chapter.name, profile, out_root.parent)
    started = time.perf_counter()
    try:
        executed = papermill.execute_notebook(
            notebook,
            str(running_path),
            parameters=actual,
            kernel_name="python3",
            cwd=str(cwd),
            progress_bar=False,
            log_output=False,
            start_timeout=120,
            execution_timeout=timeout,
            # keep the kernel's start-up notices (plain-TCP warning) out of the build log
            extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
        )
    except PapermillExecutionError as error:
        kept = _keep_failed(running_path, failed_path)
        raise ChapterError(
            f"{chapter.name}: cell {error.cell_index} (execution count {error.exec_count}) "
            f"raised {error.ename}: {error.evalue}\n  failed notebook: {kept}"
            + _last_good(notebook_path)
        ) from None
    except Exception as error:  # kernel death, timeout, ...
        kept = _keep_failed(running_path, failed_path)
        raise ChapterError(f"{chapter.name}: {type(error).__name__}: {error}"
                           + (f"\n  failed notebook: {kept}" if kept else "")
                           + _last_good(notebook_path)) from None
    os.replace(running_path, notebook_path)
    failed_path.unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    figures = extract_figures(executed, out_dir / f"{chapter.name}_figures")
    record = ExecutionRecord(
        chapter=chapter.name,
        profile=profile,
        hash=digest,
        parameters=parameters,
        seconds=round(seconds, 2),
        executed_at=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        notebook=str(notebook_path.relative_to(REPO) if notebook_path.is_relative_to(REPO)
                     else notebook_path),
        figures=[str(p.name) for p in figures],
    )
    record.save(record_path)
    return record
