#!/usr/bin/env python
"""Execute the book's chapters with papermill and build the HTML book.

Commands (run from anywhere; relative paths may also be given from the repository root):

  book.py build [--params FILE] [--drafts NAME ...]
      Execute every chapter in _toc.yml (cached) with its defaults, or with the
      overrides of FILE, then build the HTML strictly into _build/html. --drafts adds
      chapters not yet in the toc; with --params params/preview.yml, the chapters of
      grids still running render provisionally from their stored runs.
  book.py chapter NAME [--params FILE] [-p NAME VALUE ...] [--cached]
      Execute one chapter (of the toc, or a draft book/NAME.md) again; writes
      build/executed/<profile>/NAME.ipynb and NAME_figures/. The profile is the stem of
      FILE ("book" without FILE).
  book.py validate [--params params/quick.yml] [--drafts NAME ...]
      Execute every chapter with the quick parameters, rerun the notebooks with
      pytest --nbval-lax (cells marked "# NBVAL_CHECK_OUTPUT" must reproduce
      their output), build the HTML strictly into build/site/quick/_build/html
      and check that it opens offline. --drafts adds chapters not yet in the toc
      (written ahead of their stored runs) to the numbered chapters.
  book.py params NAME
      Show a chapter's parameters cell (names, defaults, what they mean).
  book.py check-offline DIR
      List remote or missing resources of built HTML.

Options common to every command: --toc FILE (default _toc.yml), --force
(build/validate: ignore cached executions), --timeout SECONDS (per cell; default from
_config.yml execute.timeout, 0 = no limit).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import yaml

from book_execute import (
    REPO,
    Chapter,
    ChapterError,
    ExecutionRecord,
    chapter_parameters,
    execute_chapter,
    load_params_file,
    toc_chapters,
    toc_with_drafts,
)
from book_offline import offline_problems
from book_render_check import unrendered_tables
from book_site import build_html, format_seconds, stage_site

DEFAULT_PROFILE = "book"
VALIDATE_PARAMS = REPO / "params" / "quick.yml"


def _rel(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def config_timeout(config: Path = REPO / "_config.yml") -> int | None:
    """Per-cell timeout from ``_config.yml`` (``execute.timeout``; <= 0: none)."""
    data = yaml.safe_load(config.read_text()) or {}
    timeout = (data.get("execute") or {}).get("timeout", 0)
    return int(timeout) if timeout and int(timeout) > 0 else None


def profile_of(params_file: Path | None) -> str:
    return params_file.stem if params_file else DEFAULT_PROFILE


def run_chapters(
    chapters: list[Chapter],
    params_file: Path | None,
    *,
    overrides: list[tuple[str, str]] | None = None,
    force: bool,
    timeout: int | None,
) -> list[ExecutionRecord]:
    """Check every chapter's parameters, then execute the chapters in order.

    Raises
    ------
    SystemExit
        With a readable message on bad parameters or a failing chapter.
    """
    origin = " and ".join(
        ([_rel(params_file)] if params_file else []) + (["-p"] if overrides else [])
    ) or "defaults"
    try:  # every parameter problem is reported before anything runs
        sections = load_params_file(params_file)
        known = {chapter.name for chapter in toc_chapters(REPO / "_toc.yml")} | {c.name for c in chapters}
        for extra in sorted(set(sections) - known):
            print(f"note: {_rel(params_file)} has a section {extra!r} for no chapter in the toc "
                  "(ignored)")
        parameters = {
            chapter.name: chapter_parameters(
                chapter, sections.get(chapter.name), overrides, origin=origin
            )
            for chapter in chapters
        }
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None

    profile = profile_of(params_file)
    records, failures = [], []
    for chapter in chapters:
        print(f"{chapter.name}: ", end="", flush=True)
        try:
            record = execute_chapter(
                chapter, parameters[chapter.name], profile=profile, timeout=timeout, force=force
            )
        except ChapterError as error:
            print("FAILED")
            failures.append(str(error))
            continue
        if record.reused:
            print(f"unchanged since {record.executed_at} (ran {format_seconds(record.seconds)}),"
                  f" reused {record.notebook}")
        else:
            print(f"executed in {format_seconds(record.seconds)} -> {record.notebook}"
                  + (f" ({len(record.figures)} figures)" if record.figures else ""))
        records.append(record)
    if failures:
        raise SystemExit("error: chapter execution failed:\n" + "\n".join(failures))
    return records


def _build_site(records, *, profile, toc, params_file, output=None) -> Path:
    started = time.perf_counter()
    try:
        site = stage_site(profile, records, toc=toc, params_file=params_file)
        html = build_html(site, output)
    except (RuntimeError, subprocess.CalledProcessError) as error:
        raise SystemExit(f"error: {error}") from None
    problems = offline_problems(html)
    if problems:
        raise SystemExit("error: the HTML does not open offline:\n  " + "\n  ".join(problems))
    raw = unrendered_tables(html)
    if raw:
        raise SystemExit("error: Markdown printed as text instead of rendered:\n  " + "\n  ".join(raw))
    print(f"HTML built strictly in {format_seconds(time.perf_counter() - started)} "
          f"(no remote resources): {_rel(html / 'index.html')}")
    return html


# ------------------------------------------------------------------------- commands


def command_build(args) -> None:
    if args.drafts:
        args.toc = toc_with_drafts(args.toc, args.drafts, REPO / "build" / "toc_drafts.yml")
        print(f"building with the draft chapter(s) {', '.join(args.drafts)}")
    chapters = toc_chapters(args.toc)
    records = run_chapters(chapters, args.params, force=args.force, timeout=args.timeout)
    profile = profile_of(args.params)
    html = _build_site(records, profile=profile, toc=args.toc, params_file=args.params,
                       output=REPO)
    total = sum(record.seconds for record in records)
    print("\nChapter execution times:")
    for record in records:
        print(f"  {record.chapter:<20} {format_seconds(record.seconds):>12}"
              + ("  (reused)" if record.reused else ""))
    print(f"  {'total':<20} {format_seconds(total):>12}")
    print(f"\nOpen file://{html / 'index.html'}")


def command_chapter(args) -> None:
    chapters = {chapter.name: chapter for chapter in toc_chapters(args.toc)}
    if args.name not in chapters and (REPO / "book" / f"{args.name}.md").is_file():
        draft_toc = toc_with_drafts(args.toc, [args.name], REPO / "build" / "toc_drafts.yml")
        chapters = {chapter.name: chapter for chapter in toc_chapters(draft_toc)}
        print(f"{args.name}: a draft chapter (not in {_rel(args.toc)})")
    if args.name not in chapters:
        raise SystemExit(f"error: no chapter {args.name!r} in {_rel(args.toc)}; "
                         f"chapters: {', '.join(chapters) or 'none'}")
    overrides = [tuple(pair) for pair in args.parameter or []]
    records = run_chapters([chapters[args.name]], args.params, overrides=overrides,
                           force=not args.cached, timeout=args.timeout)
    record = records[0]
    print(f"executed notebook: {record.notebook}")
    if record.figures:
        folder = Path(record.notebook).with_name(f"{record.chapter}_figures")
        print(f"figures: {folder}/ ({len(record.figures)} files)")


def command_validate(args) -> None:
    started = time.perf_counter()
    params = args.params or VALIDATE_PARAMS
    if args.drafts:
        args.toc = toc_with_drafts(args.toc, args.drafts, REPO / "build" / "toc_validate.yml")
        print(f"validating with the draft chapter(s) {', '.join(args.drafts)}")
    chapters = toc_chapters(args.toc)
    records = run_chapters(chapters, params, force=args.force, timeout=args.timeout)
    unchecked = [record for record in records if args.force or not record.nbval_passed]
    notebooks = [str(REPO / record.notebook) for record in unchecked]
    if len(unchecked) < len(records):
        print(f"nbval: {len(records) - len(unchecked)} notebook(s) unchanged since they passed")
    if notebooks:
        print(f"nbval: re-running {len(notebooks)} notebook(s), comparing marked outputs ...",
              flush=True)
        nbval_started = time.perf_counter()
        command = [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-q",
                   "-p", "no:cacheprovider", "--rootdir", str(REPO),
                   "-o", "addopts=", *notebooks]
        if args.timeout:
            command[4:4] = ["--nbval-cell-timeout", str(args.timeout)]
        result = subprocess.run(command, cwd=REPO)
        if result.returncode != 0:
            raise SystemExit("error: nbval found differences or errors (see above)")
        print(f"nbval passed in {format_seconds(time.perf_counter() - nbval_started)}")
        for record in unchecked:
            record.nbval_passed = True
            record.save(REPO / Path(record.notebook).with_suffix(".json"))
    profile = profile_of(params)
    _build_site(records, profile=profile, toc=args.toc, params_file=params)
    print(f"validate finished in {format_seconds(time.perf_counter() - started)}")


def command_params(args) -> None:
    import jupytext

    chapters = {chapter.name: chapter for chapter in toc_chapters(args.toc)}
    if args.name not in chapters:
        raise SystemExit(f"error: no chapter {args.name!r} in {_rel(args.toc)}")
    notebook = jupytext.read(chapters[args.name].source)
    for cell in notebook.cells:
        if "parameters" in cell.metadata.get("tags", []):
            print(cell.source)
            return
    print(f"{args.name} has no parameters cell")


def command_check_offline(args) -> None:
    problems = offline_problems(args.dir)
    if problems:
        raise SystemExit("\n".join(problems))
    print(f"{args.dir}: no remote or missing resources")


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split("\n\n", 1)[1])
    main.add_argument("--toc", type=Path, default=REPO / "_toc.yml", help="table of contents")
    main.add_argument("--force", action="store_true", help="ignore cached executions")
    main.add_argument("--timeout", type=int, default=None,
                      help="per-cell timeout in seconds (0: none; default from _config.yml)")
    commands = main.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="execute every chapter and build _build/html")
    build.add_argument("--params", type=Path, help="parameters file (default: chapter defaults)")
    build.add_argument("--force", action="store_true", default=argparse.SUPPRESS,
                       help="ignore cached executions (also accepted before the command)")
    build.add_argument("--drafts", nargs="*", default=[], metavar="NAME",
                       help="draft chapters (book/NAME.md, not yet in the toc) to build as well, "
                            "e.g. with --params params/preview.yml while their grids run")
    build.set_defaults(run=command_build)

    chapter = commands.add_parser("chapter", help="execute one chapter")
    chapter.add_argument("name", help="chapter name (file name without .md)")
    chapter.add_argument("--params", type=Path, help="parameters file, e.g. params/quick.yml")
    chapter.add_argument("-p", "--parameter", nargs=2, action="append",
                         metavar=("NAME", "VALUE"), help="override one parameter (YAML value)")
    chapter.add_argument("--cached", action="store_true",
                         help="reuse the last execution if nothing changed (default: rerun)")
    chapter.set_defaults(run=command_chapter)

    validate = commands.add_parser("validate", help="quick execution + nbval + strict build")
    validate.add_argument("--params", type=Path, default=None,
                          help=f"parameters file (default {_rel(VALIDATE_PARAMS)})")
    validate.add_argument("--drafts", nargs="*", default=[], metavar="NAME",
                          help="draft chapters (book/NAME.md, not yet in the toc) to execute "
                               "and build as well")
    validate.set_defaults(run=command_validate)

    params = commands.add_parser("params", help="show a chapter's parameters cell")
    params.add_argument("name")
    params.set_defaults(run=command_params)

    offline = commands.add_parser("check-offline", help="check built HTML for remote resources")
    offline.add_argument("dir", type=Path)
    offline.set_defaults(run=command_check_offline)
    return main


def _existing_file(path: Path, what: str) -> Path:
    """``path`` as given (relative to the working directory) or relative to the repository."""
    for candidate in (path, REPO / path):
        if candidate.is_file():
            return candidate.resolve()
    raise SystemExit(f"error: {what} {path} does not exist")


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.toc = _existing_file(args.toc, "table of contents")
    if getattr(args, "params", None) is not None:
        args.params = _existing_file(args.params, "parameters file")
    if args.timeout is None:
        args.timeout = config_timeout()
        if args.command == "validate" and args.timeout:
            args.timeout = min(args.timeout, 600)
    elif args.timeout <= 0:
        args.timeout = None
    try:
        args.run(args)
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
