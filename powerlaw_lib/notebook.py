"""Chapter parameters: the convention shared by the book's chapters and scripts.

Every chapter of the book is a MyST-markdown notebook whose behaviour is set by a
*parameters cell* (the code cell tagged ``parameters``, as papermill expects).
A chapter's first two code cells look like this::

    ```{code-cell} ipython3
    :tags: [parameters]

    from powerlaw_lib.notebook import check_parameters, record_defaults

    seeds = [0, 1, 2]              # training seeds; one seed is 3x faster, no error bars
    epochs = 50                    # epochs per run; 1-2 epochs only exercise the code path
    results_dir = "data/results"   # result store, relative to the repository root

    record_defaults()
    ```

    ```{code-cell} ipython3
    check_parameters(globals())
    ```

Rules for the parameters cell
-----------------------------
* One plain assignment per parameter (``name = value`` or ``name: type = value``),
  with a literal value: number, string, bool, ``None``, list, tuple or dict. A
  trailing comment says what smaller or larger values mean.
* The cell ends with ``record_defaults()``: it snapshots the values assigned in
  this very cell, before papermill injects its overrides in the next cell. A list
  parameter for which an empty list means "none of these" is named there:
  ``record_defaults(may_be_empty=["decreasing_alphas"])`` (a literal list).
* Paths are relative to the repository root; resolve them with :func:`repo_path`.

What is checked
---------------
Before a chapter runs, ``scripts/book.py`` reads the defaults from the chapter's
source (:func:`read_parameter_defaults`) and rejects bad overrides with
:func:`validate_parameters`. Inside the notebook, :func:`check_parameters` runs
the same checks, so ``papermill`` used directly also stops in the second cell:

* an unknown name (a misspelt override) is an error;
* a value must have the type of its default: an ``int`` is accepted where the
  default is a ``float`` (and converted), a list where the default is a tuple and
  vice versa; a default of ``None`` accepts anything; ``bool`` is never taken
  for a number, nor a number for a ``bool``;
* the items of a sequence must have the type of the default's items (when the
  default's items share one type), and a sequence must not be empty unless its
  default is empty or the parameters cell names it in ``may_be_empty`` (an empty
  seed list would silently produce no result).
"""

from __future__ import annotations

import ast
import copy
import difflib
import linecache
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ANY",
    "check_parameters",
    "read_may_be_empty",
    "read_parameter_defaults",
    "record_defaults",
    "repo_path",
    "validate_parameters",
]

#: First line of the cell that papermill injects after the parameters cell.
PAPERMILL_INJECTED_MARKER = "# Parameters"


class _Any:
    """Marker for a default whose value cannot be read from source (not a literal)."""

    def __repr__(self) -> str:
        return "ANY"


#: Default that accepts any override (a non-literal default read from source).
ANY = _Any()


# --------------------------------------------------------------------------- paths


def repo_path(path: str | Path = ".") -> Path:
    """Absolute path of ``path`` taken relative to the repository root.

    Chapters run from different working directories (papermill, nbval, Jupyter),
    so relative paths in parameters are anchored at the repository root, the
    folder that holds ``powerlaw_lib/``. Absolute paths are returned unchanged.

    Parameters
    ----------
    path : str or Path
        Relative (to the repository root) or absolute path.

    Returns
    -------
    Path
        The absolute path.
    """
    path = Path(path).expanduser()
    if path.is_absolute():
        return path
    return Path(__file__).resolve().parents[1] / path


# ----------------------------------------------------------------- source parsing


def _assigned_names(source: str) -> list[str]:
    """Names assigned at the top level of ``source``, in order of appearance."""
    tree = ast.parse(source)
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target]
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name) and target.id not in names:
                names.append(target.id)
    return names


def parse_parameters_source(source: str) -> dict[str, Any]:
    """Defaults assigned in a parameters cell's source.

    Parameters
    ----------
    source : str
        Python source of the parameters cell. IPython magics (lines starting
        with ``%`` or ``!``) are ignored.

    Returns
    -------
    dict
        ``name -> default`` in order of appearance; a default that is not a
        Python literal is returned as :data:`ANY`.
    """
    lines = [ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    tree = ast.parse("\n".join(lines))
    defaults: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        try:
            default = ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            default = ANY
        for target in targets:
            if isinstance(target, ast.Name):
                defaults[target.id] = default
    return defaults


def parse_may_be_empty(source: str) -> frozenset[str]:
    """Names given to ``record_defaults(may_be_empty=[...])`` in a parameters cell's source.

    Raises
    ------
    ValueError
        When ``may_be_empty`` is not a literal list or tuple of names.
    """
    lines = [ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    for node in ast.parse("\n".join(lines)).body:
        call = node.value if isinstance(node, ast.Expr) else None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                and call.func.id == "record_defaults"):
            continue
        for keyword in call.keywords:
            if keyword.arg == "may_be_empty":
                try:
                    names = ast.literal_eval(keyword.value)
                except (ValueError, TypeError, SyntaxError):
                    names = None
                return _names_may_be_empty(names)
    return frozenset()


def _names_may_be_empty(names: Any) -> frozenset[str]:
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ValueError(
            f"record_defaults(may_be_empty=...) must be a literal list of parameter names; "
            f"got {names!r}"
        )
    return frozenset(names)


def _parameters_cell_source(notebook: Any) -> str | None:
    """Source of the notebook's cell tagged ``parameters`` (None when there is none)."""
    if isinstance(notebook, (str, Path)):
        import jupytext

        notebook = jupytext.read(Path(notebook))
    for cell in notebook.cells:
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get(
            "tags", []
        ):
            return cell.source
    return None


def read_parameter_defaults(notebook: Any) -> dict[str, Any]:
    """Read a chapter's parameter defaults from its parameters cell.

    Parameters
    ----------
    notebook : str, Path or nbformat.NotebookNode
        A chapter source (MyST markdown or any format jupytext reads, e.g.
        ``book/shallow.md``), an ``.ipynb`` path, or a notebook object.

    Returns
    -------
    dict
        ``name -> default`` (:data:`ANY` for non-literal defaults); empty when the
        notebook has no cell tagged ``parameters``.
    """
    source = _parameters_cell_source(notebook)
    return {} if source is None else parse_parameters_source(source)


def read_may_be_empty(notebook: Any) -> frozenset[str]:
    """The list parameters a chapter lets be empty (``record_defaults(may_be_empty=...)``).

    Parameters
    ----------
    notebook : str, Path or nbformat.NotebookNode
        As for :func:`read_parameter_defaults`.
    """
    source = _parameters_cell_source(notebook)
    return frozenset() if source is None else parse_may_be_empty(source)


# ---------------------------------------------------------------------- validation


def _type_name(value: Any) -> str:
    return type(value).__name__


def _item_type(default: list | tuple) -> type | None:
    """The common type of a default sequence's items, or None when mixed/empty."""
    kinds = {type(item) for item in default}
    if len(kinds) != 1:
        return None
    kind = kinds.pop()
    return kind if kind in (bool, int, float, str) else None


def _matches(kind: type, value: Any) -> bool:
    """Whether ``value`` is acceptable where the default has type ``kind``."""
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


def _coerce(kind: type, value: Any) -> Any:
    return float(value) if kind is float else value


def _check_one(name: str, default: Any, value: Any,
               may_be_empty: bool = False) -> tuple[Any, str | None]:
    """Check one override against its default; return (coerced value, problem)."""
    if default is None or default is ANY:
        return value, None
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            return value, (
                f"{name!r} must be a list (default {default!r}); got {_type_name(value)} {value!r}"
            )
        if len(value) == 0 and len(default) > 0 and not may_be_empty:
            return value, f"{name!r} must not be empty (default {default!r})"
        kind = _item_type(default)
        if kind is not None:
            bad = [item for item in value if not _matches(kind, item)]
            if bad:
                return value, (
                    f"{name!r} must hold {kind.__name__} items like its default {default!r}; "
                    f"got {bad[0]!r} ({_type_name(bad[0])})"
                )
            value = type(value)(_coerce(kind, item) for item in value)
        return value, None
    kind = type(default)
    if not _matches(kind, value):
        allowed = "int or float" if kind is float else kind.__name__
        return value, (
            f"{name!r} must be {allowed} (default {default!r}); got {_type_name(value)} {value!r}"
        )
    return _coerce(kind, value), None


def _unknown_message(name: str, known: Iterable[str]) -> str:
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown parameter {name!r}{hint}; known parameters: {', '.join(known) or 'none'}"


def validate_parameters(
    defaults: Mapping[str, Any],
    values: Mapping[str, Any],
    *,
    chapter: str = "chapter",
    choices: Mapping[str, Iterable[Any]] | None = None,
    may_be_empty: Iterable[str] = (),
) -> dict[str, Any]:
    """Check parameter overrides against a chapter's defaults.

    Parameters
    ----------
    defaults : Mapping
        ``name -> default`` as returned by :func:`read_parameter_defaults`.
    values : Mapping
        Overrides to check (names must be in ``defaults``).
    chapter : str
        Chapter name used in the error message.
    choices : Mapping, optional
        ``name -> allowed values`` for parameters restricted to a set.
    may_be_empty : iterable of str, optional
        List parameters that accept an empty list although their default is not
        empty (as read by :func:`read_may_be_empty`).

    Returns
    -------
    dict
        The overrides, ints converted to float where the default is a float.

    Raises
    ------
    ValueError
        One error listing every problem: unknown names, type mismatches, empty
        sequences, values outside ``choices``.
    """
    problems: list[str] = []
    checked: dict[str, Any] = {}
    may_be_empty = frozenset(may_be_empty)
    for name in sorted(may_be_empty - set(defaults)):
        problems.append(f"may_be_empty names {name!r}, which is not a parameter")
    for name, value in values.items():
        if name not in defaults:
            problems.append(_unknown_message(name, defaults))
            continue
        value, problem = _check_one(name, defaults[name], value, name in may_be_empty)
        if problem is None and choices and name in choices:
            allowed = list(choices[name])
            if value not in allowed:
                problem = f"{name!r} must be one of {allowed!r}; got {value!r}"
        if problem is not None:
            problems.append(problem)
        checked[name] = value
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ValueError(f"invalid parameters for {chapter}:\n{lines}")
    return checked


# ----------------------------------------------------------------- in the notebook


@dataclass
class _Record:
    defaults: dict[str, Any]
    history_index: int | None  # index of the parameters cell in IPython's input history
    may_be_empty: frozenset[str]  # list parameters that may be given as []


def _history_index() -> int | None:
    """Index of the running cell in IPython's input history ``_ih`` (None outside IPython)."""
    shell = _ipython()
    if shell is None:
        return None
    history = shell.user_ns.get("_ih")
    return len(history) - 1 if history else None


_record: _Record | None = None


def _ipython() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is always there in a kernel
        return None
    return get_ipython()


def _caller_source(frame: Any) -> str | None:
    """Source of the cell (or file) that ``frame`` executes, if it can be found."""
    lines = linecache.getlines(frame.f_code.co_filename, frame.f_globals)
    if lines:
        return "".join(lines)
    shell = _ipython()
    if shell is not None:
        history = shell.user_ns.get("_ih") or [""]
        return history[-1] or None
    return None


def record_defaults(*, may_be_empty: Iterable[str] = ()) -> None:
    """Snapshot the parameters assigned in the calling cell (its last line).

    Call it as the last line of the chapter's parameters cell. It records the
    names and values assigned in that cell, which :func:`check_parameters` later
    compares with the values papermill injects.

    Parameters
    ----------
    may_be_empty : iterable of str, optional
        List parameters for which ``[]`` is a meaningful override ("none of
        these"), although their default is not empty. Give a literal list: the
        scripts read it from the source before the chapter runs.

    Raises
    ------
    RuntimeError
        When the calling cell's source cannot be found.
    ValueError
        When ``may_be_empty`` is not a list of names or names no parameter of the cell.
    """
    global _record
    frame = sys._getframe(1)
    source = _caller_source(frame)
    if source is None:
        raise RuntimeError("record_defaults() could not read the parameters cell's source")
    names = _assigned_names(source)
    namespace = frame.f_globals
    defaults = {name: copy.deepcopy(namespace[name]) for name in names if name in namespace}
    empty_ok = _names_may_be_empty(may_be_empty if isinstance(may_be_empty, str)  # refused
                                   else list(may_be_empty))
    unknown = sorted(empty_ok - set(defaults))
    if unknown:
        raise ValueError(f"record_defaults(may_be_empty=...) names {unknown}, which the "
                         f"parameters cell does not assign")
    _record = _Record(defaults=defaults, history_index=_history_index(), may_be_empty=empty_ok)


def _injected_names(record: _Record) -> list[str]:
    """Names assigned by papermill's injected cell(s) run after the parameters cell."""
    shell = _ipython()
    current = _history_index()
    if shell is None or record.history_index is None or current is None:
        return []
    history = shell.user_ns["_ih"]
    names: list[str] = []
    for source in history[record.history_index + 1 : current]:
        if source.lstrip().startswith(PAPERMILL_INJECTED_MARKER):
            try:
                names.extend(n for n in _assigned_names(source) if n not in names)
            except SyntaxError:
                continue
    return names


def check_parameters(
    namespace: dict[str, Any],
    *,
    choices: Mapping[str, Iterable[Any]] | None = None,
) -> None:
    """Check the chapter's parameters after papermill's injection (second cell).

    Compares the current value of every parameter recorded by
    :func:`record_defaults` with its default, and reports names injected by
    papermill that the parameters cell does not define. Ints given for float
    parameters are converted in ``namespace``.

    Parameters
    ----------
    namespace : dict
        The notebook's global namespace: pass ``globals()``.
    choices : Mapping, optional
        ``name -> allowed values`` for parameters restricted to a set, e.g.
        ``{"dataset": ("mnist", "fashion_mnist")}``.

    Raises
    ------
    ValueError
        Listing every unknown name, type mismatch and empty sequence.
    RuntimeError
        When the parameters cell did not end with ``record_defaults()``.
    """
    record = _record
    if record is None:
        raise RuntimeError(
            "check_parameters() needs the parameters cell to end with record_defaults()"
        )
    defaults = record.defaults
    current = {name: namespace[name] for name in defaults if name in namespace}
    unknown = {name: namespace.get(name) for name in _injected_names(record) if name not in defaults}
    checked = validate_parameters(
        defaults, {**current, **unknown}, chapter="this chapter", choices=choices,
        may_be_empty=record.may_be_empty,
    )
    namespace.update(checked)
    changed = [name for name in defaults if not _same(checked[name], defaults[name])]
    if changed:
        listed = ", ".join(f"{name}={checked[name]!r}" for name in changed)
        print(f"Parameters changed from their defaults: {listed}")


def _same(a: Any, b: Any) -> bool:
    """Equality that never raises (arrays compare elementwise)."""
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - e.g. ambiguous truth value of an array
        return a is b


#: How far (fraction of the figure's width) drawn content may reach beyond the canvas.
MAX_FIGURE_OVERHANG = 0.03


def figure_overhang(fig: Any) -> float:
    """How much wider than its canvas ``fig`` is drawn (0.1 = 10 %; 0 when it fits).

    Figures are saved with a tight bounding box, so a legend or label that sticks out of
    the canvas widens the PNG, and the page then shrinks the whole figure, text included.
    """
    width = fig.get_tightbbox(fig.canvas.get_renderer()).width      # inches, everything drawn
    return max(0.0, width / fig.get_figwidth() - 1.0)


def glue_figure(name: str, fig: Any) -> None:
    """Glue a matplotlib figure for a numbered ``{glue:figure}`` with a caption.

    The figure is stored in the cell's output (not shown there) and closed, so it appears
    once, where the chapter's ``{glue:figure} name`` directive places it.

    Raises
    ------
    ValueError
        When the figure is drawn more than `MAX_FIGURE_OVERHANG` wider than its canvas
        (a legend or label sticks out; the page would shrink every text in it).
    """
    import matplotlib.pyplot as plt
    from myst_nb import glue as _glue

    overhang = figure_overhang(fig)
    if overhang > MAX_FIGURE_OVERHANG:
        width = fig.get_figwidth()
        plt.close(fig)
        raise ValueError(
            f"figure {name!r} is drawn {width * (1 + overhang):.1f} in wide on its {width:.1f} in "
            f"canvas: a legend or label sticks out, and the page would shrink the whole figure; "
            f"use fewer legend columns or shorter labels"
        )
    _glue(name, fig, display=False)
    plt.close(fig)


#: What a chapter's prose shows for a number that was not measured (NaN).
NOT_MEASURED = "–"


def glue_number(name: str, value: Any, spec: str) -> None:
    """Glue ``value`` formatted with ``spec`` (e.g. "+.1f"), or `NOT_MEASURED` when it is NaN.

    For numbers that a chapter run with fewer settings may lack (the CNN of a run with
    ``archs=["mlp"]``): the prose then reads "–" rather than "+nan". Refer to the value as
    ``{glue:text}`name``` (the format is applied here, not in the prose).
    """
    import math

    if isinstance(value, str):
        text = value
    else:
        number = float(value)
        text = NOT_MEASURED if math.isnan(number) else format(number, spec)
    glue(name, text, display=False)


def glue(name: str, value: Any, display: bool = False) -> None:
    """`myst_nb.glue` for chapter numbers, with numpy scalars turned into Python numbers.

    myst-nb formats `{glue:text}` values from their text form, and NumPy 2 prints scalars as
    ``np.float64(...)``, which the format spec cannot parse: a strict build then fails.
    """
    import numpy as np
    from myst_nb import glue as _glue

    if isinstance(value, np.generic):
        value = value.item()
    _glue(name, value, display=display)
