"""Stage the book's source tree from executed chapters and build it with Jupyter Book.

The staged tree ``build/site/<profile>/`` holds ``_config.yml``, ``_toc.yml``, the
text pages of ``book/``, each chapter's *executed* notebook in place of its
markdown source, a generated status page and a local copy of MathJax. Jupyter
Book builds it with execution off, strictly (warnings are errors).
"""

from __future__ import annotations

import importlib.metadata
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from book_execute import BUILD, REPO, ExecutionRecord, is_notebook_source

MATHJAX_VERSION = "3.2.2"
#: Folder of the staged site that Sphinx copies into ``_static/`` (html_static_path).
MATHJAX_STATIC = "_mathjax_static"
#: MathJax files never loaded by the page (Node entry points, the SVG output,
#: and ``latest.js``, which would fetch MathJax from a CDN).
MATHJAX_SKIP = ("latest.js", "node-main.js", "tex-svg.js", "tex-svg-full.js", "tex-mml-svg.js",
                "mml-svg.js", "output/svg", "output/svg.js")
STATUS_PAGE = "book/status.md"


# -------------------------------------------------------------------------- MathJax


def mathjax_source(build: Path = BUILD) -> Path:
    """MathJax 3's ``es5/`` folder, installed with npm under ``build/npm`` if missing."""
    es5 = build / "npm" / "node_modules" / "mathjax" / "es5"
    if (es5 / "tex-mml-chtml.js").is_file():
        return es5
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            "MathJax is not installed and npm is missing: install Node.js (npm), "
            f"or unpack the npm package mathjax@{MATHJAX_VERSION} into {es5.parent}"
        )
    print(f"installing MathJax {MATHJAX_VERSION} into {build / 'npm'} (npm) ...", flush=True)
    (build / "npm").mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [npm, "install", "--prefix", str(build / "npm"), "--no-audit", "--no-fund",
         "--no-save", "--loglevel=error", f"mathjax@{MATHJAX_VERSION}"],
        check=True,
    )
    if not (es5 / "tex-mml-chtml.js").is_file():
        raise RuntimeError(f"npm did not install MathJax into {es5}")
    return es5


def _mathjax_skipped(relative: Path) -> bool:
    text = relative.as_posix()
    return any(text == skip or text.startswith(skip + "/") for skip in MATHJAX_SKIP)


def stage_mathjax(site: Path, build: Path = BUILD) -> None:
    """Copy MathJax into the staged site (once per version)."""
    target = site / MATHJAX_STATIC / "mathjax"
    stamp = target / ".version"
    if stamp.is_file() and stamp.read_text() == MATHJAX_VERSION:
        return
    source = mathjax_source(build)
    shutil.rmtree(target, ignore_errors=True)
    for path in source.rglob("*"):
        relative = path.relative_to(source)
        if path.is_dir() or _mathjax_skipped(relative):
            continue
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target / relative)
    stamp.write_text(MATHJAX_VERSION)


# ---------------------------------------------------------------------- status page


VERSIONED = ("powerlaw_lib", "torch", "numpy", "scipy", "matplotlib", "jupyter-book", "sphinx",
             "myst-nb", "sphinx-book-theme", "sphinxcontrib-bibtex", "papermill", "jupytext",
             "nbval", "ipykernel")


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def format_seconds(seconds: float) -> str:
    """``12.3 s``, ``4 min 05 s`` or ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def git_commit(repo: Path = REPO) -> str:
    """The commit the book is built from, e.g. "`1a2b3c4`" (+ a note when files differ)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True,
                              text=True, check=False).stdout.strip()

    commit = git("rev-parse", "--short=12", "HEAD")
    if not commit:
        return "unknown (not a git checkout)"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "powerlaw_lib", "book")
    return f"`{commit}`" + (" with uncommitted changes to the library or the chapters"
                            if dirty else "")


def stored_runs_read(record: ExecutionRecord, repo: Path = REPO) -> str:
    """How many stored runs a chapter with a grid read: "22 of 22" (or "—")."""
    sys.path.insert(0, str(repo))
    try:
        import inspect

        from powerlaw_lib.grids import CHAPTER_GRIDS
        from powerlaw_lib.store import ResultStore
    finally:
        sys.path.pop(0)
    grid = CHAPTER_GRIDS.get(record.chapter)
    if grid is None:
        return "—"
    results_dir = record.parameters.get("results_dir", "data/results")
    if not isinstance(results_dir, str) or results_dir.startswith("@"):
        return "fresh folder"
    accepted = inspect.signature(grid).parameters
    configs = grid(**{k: (tuple(v) if isinstance(v, list) else v)
                      for k, v in record.parameters.items() if k in accepted})
    store = ResultStore(repo / results_dir)
    return f"{len(configs) - len(store.missing(configs))} of {len(configs)}"


def status_page(records: list[ExecutionRecord], profile: str, params_file: Path | None) -> str:
    """Markdown of the status page: the commit, execution time and stored runs per chapter,
    and versions."""
    setting = (f"parameters from `{params_file.relative_to(REPO) if params_file.is_relative_to(REPO) else params_file}`"
               if params_file else "each chapter's default parameters")
    lines = [
        "# Execution status",
        "",
        f"Every chapter below was executed with papermill ({setting}; profile `{profile}`) "
        "before this book was built; *Reused* means the chapter's source, parameters, "
        "library code and the stored data it reads were unchanged since that execution. "
        "See {doc}`reproducibility` to rerun a chapter.",
        "",
        f"Built from commit {git_commit()}.",
        "",
        "| Chapter | Executed | Run time | Reused | Stored runs read | Parameters changed |",
        "| --- | --- | --: | :-: | --: | --- |",
    ]
    total = 0.0
    for record in records:
        total += record.seconds
        changed = ", ".join(f"`{k}={v!r}`" for k, v in record.parameters.items()) or "none"
        lines.append(
            f"| {{doc}}`{record.chapter}` | {record.executed_at} | "
            f"{format_seconds(record.seconds)} | {'yes' if record.reused else 'no'} | "
            f"{stored_runs_read(record)} | {changed} |"
        )
    lines += [
        f"| **Total** | | **{format_seconds(total)}** | | | |",
        "",
        "## Software",
        "",
        "| Package | Version |",
        "| --- | --- |",
        f"| Python | {platform.python_version()} |",
    ]
    lines += [f"| {name} | {_version(name)} |" for name in VERSIONED]
    lines += [
        f"| MathJax (served locally) | {MATHJAX_VERSION} |",
        "",
        f"Machine: {platform.system()} {platform.machine()}, "
        f"{_cpu_count()} CPU cores, no GPU used.",
        "",
    ]
    return "\n".join(lines)


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


# ----------------------------------------------------------------------------- stage


def _write_if_changed(path: Path, content: bytes) -> None:
    """Write only when the content differs (keeps mtimes for incremental tools)."""
    if path.is_file() and path.read_bytes() == content:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def stage_site(
    profile: str,
    records: list[ExecutionRecord],
    *,
    toc: Path,
    params_file: Path | None,
    config: Path = REPO / "_config.yml",
    book_dir: Path = REPO / "book",
    build: Path = BUILD,
) -> Path:
    """Create ``build/site/<profile>`` ready for ``jupyter-book build``.

    Returns
    -------
    Path
        The staged source folder.
    """
    site = build / "site" / profile
    wanted: dict[Path, bytes] = {
        Path("_config.yml"): config.read_bytes(),
        Path("_toc.yml"): toc.read_bytes(),
    }
    for path in sorted(book_dir.rglob("*")):
        relative = path.relative_to(book_dir.parent)
        if (
            path.is_dir()
            or path.suffix == ".ipynb"
            or any(part.startswith(".") or part == "__pycache__" for part in relative.parts)
            or relative.as_posix() == STATUS_PAGE
            or is_notebook_source(path)
        ):
            continue
        wanted[relative] = path.read_bytes()
    for record in records:
        wanted[Path("book") / f"{record.chapter}.ipynb"] = (REPO / record.notebook).read_bytes()
    wanted[Path(STATUS_PAGE)] = status_page(records, profile, params_file).encode()

    for relative, content in wanted.items():
        _write_if_changed(site / relative, content)
    # Remove what an earlier staging left behind (not the outputs nor MathJax).
    keep = {site / relative for relative in wanted}
    for path in sorted(site.rglob("*"), reverse=True):
        top = path.relative_to(site).parts[0]
        if top in ("_build", MATHJAX_STATIC):
            continue
        if path.is_file() and path not in keep:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    stage_mathjax(site, build)
    # Sphinx copies the static folder into _static/ (html_static_path, html_js_files,
    # html_css_files).
    for asset in sorted((book_dir / "static").iterdir()):
        _write_if_changed(site / MATHJAX_STATIC / asset.name, asset.read_bytes())
    return site


def mathjax_path_from_config(config: Path = REPO / "_config.yml") -> str:
    """``mathjax_path`` set in ``_config.yml`` (relative to ``_static``)."""
    data = yaml.safe_load(config.read_text()) or {}
    return data.get("sphinx", {}).get("config", {}).get("mathjax_path", "")


def build_html(site: Path, output: Path | None = None) -> Path:
    """Run ``jupyter-book build`` strictly (``-W -n --keep-going --all``).

    Parameters
    ----------
    site : Path
        The staged source folder.
    output : Path, optional
        Folder that receives ``_build/`` (default: the staged folder).

    Returns
    -------
    Path
        The folder holding ``index.html``.

    Raises
    ------
    RuntimeError
        When Sphinx reports a warning or an error.
    """
    command = [
        sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
        "build", str(site), "--builder", "html", "-W", "-n", "--keep-going", "--all",
    ]
    if output is not None:
        command += ["--path-output", str(output)]
    html = (output or site) / "_build" / "html"
    shutil.rmtree(html, ignore_errors=True)  # no page left over from an earlier build
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        log = build / "jupyter-book.log" if (build := site.parent.parent).is_dir() else None
        text = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)  # no colours
        if log is not None:
            log.write_text(text)
        warnings = [ln for ln in text.splitlines() if "WARNING" in ln or "ERROR" in ln]
        shown = "\n".join(warnings[:30]) or text[-3000:]
        raise RuntimeError(f"jupyter-book build failed (full log: {log}):\n{shown}")
    return html
