"""Tests of the book machinery: parameter checks, toc/config sanity, offline HTML check."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import book_execute  # noqa: E402
from book_execute import (  # noqa: E402
    FRESH_TMPDIR,
    Chapter,
    chapter_parameters,
    execution_hash,
    load_params_file,
    parse_override,
    resolve_entry,
    substitute_fresh_tmpdirs,
    toc_entries,
)
from book_offline import offline_problems, page_resources  # noqa: E402
from book_render_check import unrendered_tables  # noqa: E402

from powerlaw_lib.notebook import (  # noqa: E402
    ANY,
    parse_may_be_empty,
    parse_parameters_source,
    read_may_be_empty,
    read_parameter_defaults,
    record_defaults,
    validate_parameters,
)

DEFAULTS = {"seeds": [0, 1, 2], "epochs": 50, "lr": 1e-3, "name": "mnist", "scale": None,
            "shape": (28, 28), "verbose": False, "betas": [1.0, 2.0]}

CHAPTER_TEMPLATE = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# Tiny

```{{code-cell}} ipython3
:tags: [parameters]

from powerlaw_lib.notebook import check_parameters, record_defaults

seeds = [0, 1, 2]   # training seeds
epochs = 50         # epochs per run
lr = 1e-3
offset = -1
label: str = "x"
derived = len("abc")  # not a literal: any override accepted

record_defaults()
```

```{{code-cell}} ipython3
check_parameters(globals())
```

```{{code-cell}} ipython3
print(seeds, epochs, lr, type(lr).__name__){extra}
```
"""


# ------------------------------------------------------------ parameter validation


def test_unknown_name_is_rejected_with_suggestion():
    with pytest.raises(ValueError, match=r"unknown parameter 'epoch' \(did you mean 'epochs'\?\)"):
        validate_parameters(DEFAULTS, {"epoch": 2})


@pytest.mark.parametrize(
    "values, message",
    [
        ({"epochs": "2"}, r"'epochs' must be int \(default 50\); got str '2'"),
        ({"epochs": 2.5}, r"'epochs' must be int"),
        ({"epochs": True}, r"'epochs' must be int"),
        ({"lr": "fast"}, r"'lr' must be int or float"),
        ({"name": 3}, r"'name' must be str"),
        ({"verbose": 1}, r"'verbose' must be bool"),
        ({"seeds": 0}, r"'seeds' must be a list"),
        ({"seeds": [0, "1"]}, r"'seeds' must hold int items"),
        ({"seeds": []}, r"'seeds' must not be empty"),
        ({"shape": ()}, r"'shape' must not be empty"),
    ],
)
def test_bad_values_are_rejected(values, message):
    with pytest.raises(ValueError, match=message):
        validate_parameters(DEFAULTS, values, chapter="tiny")


def test_every_problem_is_listed_in_one_error():
    with pytest.raises(ValueError) as info:
        validate_parameters(DEFAULTS, {"epoch": 1, "seeds": [], "name": 3}, chapter="tiny")
    text = str(info.value)
    assert text.startswith("invalid parameters for tiny:")
    assert text.count("\n  - ") == 3


def test_valid_overrides_pass_and_ints_become_floats():
    checked = validate_parameters(
        DEFAULTS,
        {"seeds": (4,), "epochs": 1, "lr": 1, "scale": "anything", "shape": [14, 14],
         "betas": [1, 5]},
    )
    assert checked["seeds"] == (4,)
    assert checked["lr"] == 1.0 and isinstance(checked["lr"], float)
    assert checked["betas"] == [1.0, 5.0] and all(isinstance(b, float) for b in checked["betas"])
    assert checked["scale"] == "anything" and checked["shape"] == [14, 14]


def test_empty_default_sequence_allows_empty_override():
    assert validate_parameters({"extra": []}, {"extra": []}) == {"extra": []}


def test_may_be_empty_allows_only_the_named_lists_to_be_empty():
    checked = validate_parameters(DEFAULTS, {"betas": []}, may_be_empty=["betas"])
    assert checked == {"betas": []}
    with pytest.raises(ValueError, match=r"'seeds' must not be empty"):
        validate_parameters(DEFAULTS, {"betas": [], "seeds": []}, may_be_empty=["betas"])
    with pytest.raises(ValueError, match=r"may_be_empty names 'beta', which is not a parameter"):
        validate_parameters(DEFAULTS, {}, may_be_empty=["beta"])


def test_may_be_empty_is_read_from_the_record_defaults_call():
    source = 'extra = [1.0]  # ([] for none)\nrecord_defaults(may_be_empty=["extra"])\n'
    assert parse_may_be_empty(source) == {"extra"}
    assert parse_may_be_empty("x = [1]\nrecord_defaults()\n") == frozenset()
    with pytest.raises(ValueError, match=r"must be a literal list of parameter names"):
        parse_may_be_empty("names = ['x']\nrecord_defaults(may_be_empty=names)\n")
    with pytest.raises(ValueError, match=r"must be a literal list of parameter names"):
        parse_may_be_empty("record_defaults(may_be_empty='x')\n")


def test_choices_restrict_values():
    with pytest.raises(ValueError, match=r"'name' must be one of \['mnist', 'fashion'\]"):
        validate_parameters(DEFAULTS, {"name": "cifar"}, choices={"name": ["mnist", "fashion"]})


def test_parameters_source_is_parsed_with_literal_defaults():
    source = "import os\nseeds = [0, 1]  # c\nlr: float = 1e-4\nn = -3\npath = os.getcwd()\n"
    assert parse_parameters_source(source) == {"seeds": [0, 1], "lr": 1e-4, "n": -3, "path": ANY}


# ------------------------------------------------------------------ chapter files


@pytest.fixture
def tiny_chapter(tmp_path):
    def make(extra: str = "") -> Chapter:
        path = tmp_path / "tiny.md"
        path.write_text(CHAPTER_TEMPLATE.format(extra=extra))
        return Chapter(name="tiny", source=path)

    return make


def test_defaults_are_read_from_the_myst_source(tiny_chapter):
    defaults = read_parameter_defaults(tiny_chapter().source)
    assert defaults == {"seeds": [0, 1, 2], "epochs": 50, "lr": 1e-3, "offset": -1,
                        "label": "x", "derived": ANY}


def test_script_side_checks_file_and_command_line_overrides(tiny_chapter):
    chapter = tiny_chapter()
    params = chapter_parameters(chapter, {"seeds": [0], "lr": 1}, [("epochs", "2"),
                                                                   ("label", "3")])
    assert params == {"seeds": [0], "lr": 1.0, "epochs": 2, "label": "3"}
    with pytest.raises(ValueError, match="unknown parameter 'epoch'"):
        chapter_parameters(chapter, None, [("epoch", "2")])
    with pytest.raises(ValueError, match="'seeds' must not be empty"):
        chapter_parameters(chapter, {"seeds": []})


def test_command_line_values_are_yaml_except_for_strings():
    assert parse_override("[0, 1]", [0]) == [0, 1]
    assert parse_override("2", 50) == 2
    assert parse_override("1e-3", 0.1) == 1e-3  # YAML 1.1 reads this as text
    assert parse_override("fast", 0.1) == "fast"  # left for the type check to reject
    assert parse_override("007", "name") == "007"


def test_params_file_sections_may_be_empty(tmp_path):
    path = tmp_path / "p.yml"
    path.write_text("a:\n  # comment only\nb:\n  x: 1\n")
    assert load_params_file(path) == {"a": {}, "b": {"x": 1}}
    path.write_text("a: [1, 2]\n")
    with pytest.raises(ValueError, match="section 'a' must map parameter names"):
        load_params_file(path)


def test_hash_follows_source_and_parameters(tiny_chapter):
    chapter = tiny_chapter()
    first = execution_hash(chapter, {"epochs": 1})
    assert execution_hash(chapter, {"epochs": 1}) == first
    assert execution_hash(chapter, {"epochs": 2}) != first
    chapter.source.write_text(chapter.source.read_text() + "\n% edited\n")
    assert execution_hash(chapter, {"epochs": 1}) != first


def test_hash_follows_the_stored_data_but_not_hidden_folders(tiny_chapter, tmp_path):
    chapter = tiny_chapter()
    root = tmp_path / "repo"
    (root / "powerlaw_lib").mkdir(parents=True)
    (root / "powerlaw_lib" / "m.py").write_text("x = 1\n")
    results = root / "data" / "results"
    results.mkdir(parents=True)
    (results / "a.json").write_text('{"acc": 0.9}')
    first = execution_hash(chapter, {}, root=root)
    (results / ".checkpoints").mkdir()
    (results / ".checkpoints" / "a.json").write_text("{}")       # a checkpoint: no change
    assert execution_hash(chapter, {}, root=root) == first
    (results / "a.json").write_text('{"acc": 0.8}')               # a replaced result
    second = execution_hash(chapter, {}, root=root)
    assert second != first
    (root / "data" / "audits" / "superseded").mkdir(parents=True)
    (root / "data" / "audits" / "superseded" / "b.json").write_text("{}")
    assert execution_hash(chapter, {}, root=root) != second        # a new (archived) audit
    (root / "benchmarks").mkdir()
    (root / "benchmarks" / "results.json").write_text("{}")
    assert execution_hash(chapter, {}, root=root) != second


def test_fresh_tmpdir_marker_becomes_a_new_empty_folder(tmp_path):
    first = substitute_fresh_tmpdirs({"out": FRESH_TMPDIR, "n": 1}, "tiny", "quick", tmp_path)
    assert first["n"] == 1 and Path(first["out"]).is_dir()
    assert not any(Path(first["out"]).iterdir())
    second = substitute_fresh_tmpdirs({"out": FRESH_TMPDIR}, "tiny", "quick", tmp_path)
    assert second["out"] != first["out"] and not Path(first["out"]).exists()


def test_papermill_alone_stops_in_the_check_cell(tiny_chapter, tmp_path):
    """Direct papermill (no script): bad overrides fail in the second code cell."""
    import jupytext
    import papermill
    from papermill.exceptions import PapermillExecutionError

    notebook = jupytext.read(tiny_chapter().source)
    run = dict(kernel_name="python3", progress_bar=False, cwd=str(REPO),
               extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
    with pytest.raises(PapermillExecutionError) as info:
        papermill.execute_notebook(notebook, str(tmp_path / "bad.ipynb"),
                                   parameters={"epoch": 2, "seeds": [], "label": 3}, **run)
    assert info.value.ename == "ValueError"
    assert "unknown parameter 'epoch'" in info.value.evalue
    assert "'seeds' must not be empty" in info.value.evalue
    assert "'label' must be str" in info.value.evalue
    assert "check_parameters" in notebook.cells[info.value.cell_index - 1].source  # after inject

    done = papermill.execute_notebook(notebook, str(tmp_path / "good.ipynb"),
                                      parameters={"seeds": [7], "lr": 1}, **run)
    printed = "".join(o.get("text", "") for o in done.cells[-1].outputs)
    assert printed.strip() == "[7] 50 1.0 float"


def test_an_empty_list_the_cell_declares_passes_both_checks(tiny_chapter, tmp_path):
    import jupytext
    import papermill

    chapter = tiny_chapter()
    chapter.source.write_text(chapter.source.read_text().replace(
        "record_defaults()", 'record_defaults(may_be_empty=["seeds"])'))
    assert chapter_parameters(chapter, {"seeds": []}) == {"seeds": []}
    done = papermill.execute_notebook(
        jupytext.read(chapter.source), str(tmp_path / "empty.ipynb"), parameters={"seeds": []},
        kernel_name="python3", progress_bar=False, cwd=str(REPO),
        extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
    printed = "".join(o.get("text", "") for o in done.cells[-1].outputs)
    assert printed.strip() == "[] 50 0.001 float"


def test_record_defaults_refuses_may_be_empty_names_it_does_not_assign():
    with pytest.raises(ValueError, match=r"names \['no_such_parameter'\], which the"):
        record_defaults(may_be_empty=["no_such_parameter"])


# ------------------------------------------------------------------ toc and config


def _config() -> dict:
    return yaml.safe_load((REPO / "_config.yml").read_text())


def test_every_toc_entry_exists():
    entries = toc_entries(REPO / "_toc.yml")
    assert entries[0] == "book/intro"
    missing = [entry for entry in entries if resolve_entry(entry, REPO) is None]
    assert not missing, f"_toc.yml lists files that do not exist: {missing}"


def test_no_notebook_file_inside_book():
    assert not list((REPO / "book").rglob("*.ipynb")), "executed notebooks belong in build/"


def test_config_is_strict_offline_and_executes_nothing():
    config = _config()
    assert config["only_build_toc_files"] is True
    assert config["execute"]["execute_notebooks"] == "off"
    assert int(config["execute"]["timeout"]) > 0
    for bib in config["bibtex_bibfiles"]:
        assert (REPO / bib).is_file()
    mathjax = config["sphinx"]["config"]["mathjax_path"]
    assert not mathjax.startswith(("http:", "https:", "//"))


def _existing_chapters() -> list[Chapter]:
    """The toc's notebook chapters and the draft chapters (book/*.md not yet in the toc)."""
    chapters = []
    for entry in toc_entries(REPO / "_toc.yml"):
        path = resolve_entry(entry, REPO)
        if path is not None and book_execute.is_notebook_source(path):
            chapters.append(Chapter(name=path.stem, source=path))
    listed = {c.name for c in chapters}
    chapters += [Chapter(name=p.stem, source=p) for p in sorted((REPO / "book").glob("*.md"))
                 if book_execute.is_notebook_source(p) and p.stem not in listed]
    return chapters


@pytest.mark.parametrize("params_file", ["quick.yml", "paper.yml"])
def test_params_files_match_the_chapters(params_file):
    sections = load_params_file(REPO / "params" / params_file)
    for chapter in _existing_chapters():
        chapter_parameters(chapter, sections.get(chapter.name), origin=params_file)


def test_chapters_follow_the_parameter_convention():
    import jupytext

    for chapter in _existing_chapters():
        cells = [c for c in jupytext.read(chapter.source).cells if c.cell_type == "code"]
        tagged = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
        if not tagged:
            continue
        index = tagged[0]
        last_line = cells[index].source.rstrip().splitlines()[-1]
        assert last_line.startswith("record_defaults(") and last_line.endswith(")"), chapter.name
        assert "check_parameters(globals()" in cells[index + 1].source, chapter.name


def test_lists_documented_as_possibly_empty_are_declared_so():
    """A comment "([] for none)" promises an empty override works: both checks must allow it."""
    import jupytext

    for chapter in _existing_chapters():
        cells = [c for c in jupytext.read(chapter.source).cells
                 if "parameters" in c.metadata.get("tags", [])]
        if not cells:
            continue
        documented = {line.split("=")[0].strip() for line in cells[0].source.splitlines()
                      if "[] for none" in line}
        declared = read_may_be_empty(chapter.source)
        assert documented == declared, chapter.name
        for name in declared:
            assert chapter_parameters(chapter, {name: []}) == {name: []}, (chapter.name, name)


# --------------------------------------------------------------------- offline HTML


def test_offline_check_flags_remote_and_missing_resources(tmp_path):
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "local.js").write_text("")
    (tmp_path / "_static" / "theme.css").write_text(
        "@font-face { src: url('https://fonts.example.org/a.woff2'); }\n"
        "body { background: url(data:image/png;base64,AAAA); }"
    )
    (tmp_path / "index.html").write_text(
        '<html><head><script src="_static/local.js"></script>'
        '<script src="https://cdn.example.org/mathjax.js"></script>'
        '<link rel="stylesheet" href="//cdn.example.org/x.css">'
        '<link rel="canonical" href="https://example.org/book/">'
        '<script src="_static/gone.js"></script></head>'
        '<body><a href="https://arxiv.org/abs/2012.04729">paper</a></body></html>'
    )
    problems = offline_problems(tmp_path)
    assert sorted(problems) == sorted([
        "index.html: remote https://cdn.example.org/mathjax.js",
        "index.html: remote //cdn.example.org/x.css",
        "index.html: missing _static/gone.js",
        "_static/theme.css: remote https://fonts.example.org/a.woff2",
    ])


def test_links_are_not_resources():
    assert page_resources('<a href="https://example.org">x</a><img src="fig.png">') == ["fig.png"]


def test_built_book_opens_offline_if_built():
    html = REPO / "_build" / "html"
    if not (html / "index.html").is_file():
        pytest.skip("no built book in _build/html")
    assert offline_problems(html) == []


# --------------------------------------------------------------------- rendered Markdown


def test_raw_markdown_tables_are_flagged_and_rendered_ones_are_not(tmp_path):
    (tmp_path / "raw.html").write_text(
        "<p>| | paper | code | |—|—|—| | epochs | 50 | 50 |</p>"   # smart-quoted delimiter row
        "<p>| a | b |\n|:---|---:|</p>")
    (tmp_path / "fine.html").write_text(
        "<table><tr><td>|---|</td></tr></table><p>|x| is the norm of x, a -- b</p>")
    problems = unrendered_tables(tmp_path)
    assert len(problems) == 2 and all(p.startswith("raw.html: raw Markdown table") for p in problems)


def test_built_book_renders_its_tables_if_built():
    html = REPO / "_build" / "html"
    if not (html / "index.html").is_file():
        pytest.skip("no built book in _build/html")
    assert unrendered_tables(html) == []


def test_a_failed_execution_never_overwrites_the_last_good_notebook(tiny_chapter, tmp_path):
    from book_execute import ChapterError, ExecutionRecord, execute_chapter

    chapter = tiny_chapter(extra="\nassert epochs != 13, 'the failing setting'")
    out = tmp_path / "executed"
    good = execute_chapter(chapter, {"epochs": 2}, profile="p", timeout=120, out_root=out)
    notebook = out / "p" / "tiny.ipynb"
    before = notebook.read_bytes()
    with pytest.raises(ChapterError, match="failed notebook: .*tiny.failed.ipynb") as info:
        execute_chapter(chapter, {"epochs": 13}, profile="p", timeout=120, out_root=out)
    assert "last good execution is untouched" in str(info.value)
    assert notebook.read_bytes() == before                     # the good notebook is intact
    assert ExecutionRecord.load(out / "p" / "tiny.json").hash == good.hash
    assert (out / "p" / "tiny.failed.ipynb").exists()
    assert not (out / "p" / ".tiny.running.ipynb").exists()
    execute_chapter(chapter, {"epochs": 3}, profile="p", timeout=120, out_root=out)
    assert not (out / "p" / "tiny.failed.ipynb").exists()      # cleared by a success


def test_force_is_accepted_before_and_after_the_build_command():
    from book import parser

    assert parser().parse_args(["--force", "build"]).force is True
    assert parser().parse_args(["build", "--force"]).force is True
    assert parser().parse_args(["build"]).force is False


@pytest.mark.parametrize("name,value,field", [("epochs", "-3", "epochs"),
                                              ("optimizer", "sgd", "optimizer"),
                                              ("precision", "fp16", "precision"),
                                              ("width", "0", "hidden")])
def test_values_runconfig_rejects_stop_before_the_kernel(name, value, field):
    chapter = Chapter(name="shallow", source=REPO / "book" / "shallow.md")
    with pytest.raises(ValueError, match=rf"shallow \(parameters file\): .*RunConfig\.{field}"):
        chapter_parameters(chapter, None, [(name, value)])
    assert chapter_parameters(chapter, None, [("epochs", "3")]) == {"epochs": 3}


@pytest.mark.parametrize("name", ["shallow", "deep", "alpha_sweep", "local_learning", "audit"])
def test_a_chapters_parameter_defaults_are_its_grid_functions_defaults(name):
    """Where a chapter exists for a grid, the two may never drift apart."""
    import inspect

    from powerlaw_lib.grids import CHAPTER_GRIDS

    source = REPO / "book" / f"{name}.md"
    if not source.exists():
        pytest.skip(f"no chapter book/{name}.md yet")
    defaults = read_parameter_defaults(source)
    grid = inspect.signature(CHAPTER_GRIDS[name]).parameters
    from powerlaw_lib.grids import CHAPTER_AUDITS
    from powerlaw_lib.sweep import CHAPTER_ONLY_PARAMETERS, PREVIEW_PARAMETER, audit_parameters

    shared = sorted(set(defaults) & set(grid))
    assert shared, "the chapter passes none of its grid's parameters"
    # every other parameter is one of the few a chapter has beyond its grid's, or one of
    # its audits' (with the audit function's defaults)
    audit = set(audit_parameters(name))
    assert (set(defaults) - set(grid) - audit) | {PREVIEW_PARAMETER} == CHAPTER_ONLY_PARAMETERS
    if name in ("deep", "alpha_sweep"):                # the long grids can be previewed
        assert defaults[PREVIEW_PARAMETER] is False
    if audit:
        signature = inspect.signature(CHAPTER_AUDITS[name]).parameters
        for p in audit:
            default = signature[p].default
            assert defaults[p] == (list(default) if isinstance(default, tuple) else default), p
    for p in shared:
        default = grid[p].default
        expected = list(default) if isinstance(default, tuple) else default
        assert defaults[p] == expected, f"{name}: parameter {p}"


def test_the_status_page_names_the_commit_and_the_stored_runs_each_chapter_read():
    from book_execute import ExecutionRecord
    from book_site import status_page

    records = [ExecutionRecord("shallow", "book", "h", {}, 9.5, "2026-12-02 01:00", "nb"),
               ExecutionRecord("stringer", "book", "h", {}, 20.0, "2026-12-02 01:00", "nb"),
               ExecutionRecord("shallow", "quick", "h", {"results_dir": "@fresh_tmpdir",
                                                         "seeds": [0]}, 5.0, "x", "nb")]
    page = status_page(records, "book", None)
    assert "Built from commit `" in page
    rows = [l for l in page.splitlines() if l.startswith("| {doc}")]
    assert "| 22 of 22 |" in rows[0]           # the shallow grid, all stored
    assert "| — |" in rows[1]                  # no grid
    assert "| fresh folder |" in rows[2]


def test_draft_chapters_join_the_numbered_part_of_a_generated_toc(tmp_path):
    from book_execute import toc_with_drafts

    # the book's toc without its audit chapter, which then comes back as a draft
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    numbered = next(p for p in toc["parts"] if p.get("numbered"))
    numbered["chapters"] = [c for c in numbered["chapters"] if c["file"] != "book/audit"]
    without = tmp_path / "without_audit.yml"
    without.write_text(yaml.safe_dump(toc, sort_keys=False))
    before = without.read_text()
    out = toc_with_drafts(without, ["audit"], tmp_path / "toc.yml")
    entries = toc_entries(out)
    numbered = next(p for p in yaml.safe_load(out.read_text())["parts"] if p.get("numbered"))
    files = [c["file"] for c in numbered["chapters"]]
    assert files[-1] == "book/audit"                          # numbered, after the others
    assert set(toc_entries(without)) < set(entries)           # nothing dropped
    assert without.read_text() == before                      # the toc itself unchanged
    with pytest.raises(FileNotFoundError, match="nosuch"):
        toc_with_drafts(without, ["nosuch"], tmp_path / "t2.yml")
    with pytest.raises(ValueError, match="shallow"):
        toc_with_drafts(without, ["shallow"], tmp_path / "t3.yml")


def test_make_test_validates_every_draft_chapter_with_quick_parameters():
    """Every chapter source not in _toc.yml is a draft that `make test` validates, and each
    draft has a quick section."""
    makefile = (REPO / "Makefile").read_text()
    drafts = next(line.split(":=")[1].split() for line in makefile.splitlines()
                  if line.startswith("DRAFTS"))
    listed = {Path(e).name for e in toc_entries(REPO / "_toc.yml")}
    sources = {p.stem for p in (REPO / "book").glob("*.md")
               if book_execute.is_notebook_source(p)}
    assert set(drafts) == sources - listed
    assert "--drafts $(DRAFTS)" in makefile
    quick = load_params_file(REPO / "params" / "quick.yml")
    assert all(name in quick for name in drafts)


def test_glue_number_formats_numbers_and_shows_a_dash_for_nan(monkeypatch):
    import powerlaw_lib.notebook as notebook

    glued = {}
    monkeypatch.setattr(notebook, "glue", lambda name, value, display=False: glued.update({name: value}))
    notebook.glue_number("gain", 10.8139, "+.1f")
    notebook.glue_number("missing", float("nan"), "+.1f")
    notebook.glue_number("alpha", np.float64(1.58850), ".2f")
    notebook.glue_number("verdict", "is not", "+.1f")
    assert glued == {"gain": "+10.8", "missing": notebook.NOT_MEASURED, "alpha": "1.59",
                     "verdict": "is not"}


def test_the_provisional_notice_shows_only_while_runs_are_missing(monkeypatch):
    import IPython.display

    from powerlaw_lib import experiments

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs: shown.extend(objs))
    experiments.show_provisional_notice(1, 3)
    assert len(shown) == 1 and shown[0].data.startswith(":::{warning}")
    assert "1 of its grid's 3 runs" in shown[0].data
    experiments.show_provisional_notice(3, 3)                      # complete: nothing shown
    assert len(shown) == 1
