"""One figure style for every chapter: colours per method, spectra, accuracy curves, maps.

Conventions
-----------
* Colours: each method declares its colour in the method registry (`powerlaw_lib.methods`),
  the same in every chapter; a method shown at several strengths β (SpecReg) uses shades of
  its colour (:func:`method_color`, :func:`config_color`); a few things that are not methods
  have colours in :data:`OTHER_COLORS`; exponent sweeps (Gerum et al. 2022) use
  :func:`alpha_color`.
* Spectra are drawn on log-log axes, rank ``n`` (1-based) against ``λ_n / Σλ``
  (Stringer et al. 2019; Nassar et al. 2020, eq. 2 and Fig. 1).
* Accuracies are passed as fractions in [0, 1] and drawn in percent.
* Every plotting function labels its axes (with units) unless the axes already have
  labels, and (re)draws the legend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colorbar import Colorbar
from matplotlib.colors import to_hex
from matplotlib.figure import Figure, FigureBase

from . import methods

if TYPE_CHECKING:
    from .config import RunConfig

__all__ = [
    "ACCURACY_LABEL",
    "EPSILON_LABEL",
    "OTHER_COLORS",
    "PAGE_WIDTH",
    "RANK_LABEL",
    "SPECREG_BETAS",
    "SpectrumArtists",
    "alpha_color",
    "apply_style",
    "label_axes",
    "config_color",
    "config_style",
    "figure_legend",
    "log_percent_axis",
    "method_color",
    "plot_accuracy_curve",
    "plot_mean_band",
    "plot_sensitivity_maps",
    "plot_spectrum",
    "page_figure",
    "plot_value_grid",
    "plot_weight_images",
]

#: Colours of what is not a training method (colour-blind-safe Okabe-Ito hues).
OTHER_COLORS: dict[str, str] = {
    "whitening": "#D55E00",  # vermillion: whitened network (Vanilla-Wh)
    "local rule": "#8C510A",  # brown: hidden layer learned by the Krotov-Hopfield rule
}
#: Marker of the local-learning networks (arch "kh"), distinct from every method's.
LOCAL_RULE_MARKER = "D"

#: The β values of Nassar et al. 2020 (§4.1), light to dark shades of the SpecReg blue.
SPECREG_BETAS: tuple[float, ...] = (1.0, 2.0, 5.0)

#: Default axis labels (with units).
EPSILON_LABEL = r"perturbation $\varepsilon$ ($L_\infty$, pixel units in [0, 1])"
ACCURACY_LABEL = "accuracy (%)"
RANK_LABEL = r"rank $n$"
_NORMALIZED_EIGENVALUE_LABEL = r"normalized eigenvalue $\lambda_n / \Sigma \lambda$"
_EIGENVALUE_LABEL = r"eigenvalue $\lambda_n$ (variance, squared activation units)"
#: Width of the book's text column, in inches at the figure resolution (`apply_style`:
#: 100 dpi, so 7 in is the column's 700 px at a 1280 px window): a figure this wide is shown
#: at its own size,
#: and its fonts at the sizes `apply_style` sets.
PAGE_WIDTH = 7.0


# --------------------------------------------------------------------------- style


def apply_style() -> None:
    """Set the book's matplotlib rcParams: readable fonts, no top/right spines.

    Figures are meant to be `PAGE_WIDTH` wide (`page_figure`) at 100 dpi, so that the page
    shows them at their own size and every text is at least 9 pt; notebooks display them at
    twice that resolution (retina PNG), for zooming and for the full-size image.
    Idempotent; call once at the top of a chapter.
    """
    try:  # crisp inline images: PNG at twice the figure dpi, shown at the figure's size
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("retina")
    except ImportError:  # pragma: no cover - outside IPython
        pass
    mpl.rcParams.update({
        "figure.dpi": 100,
        "savefig.dpi": 200,
        "savefig.bbox": "tight",
        "font.size": 10,
        "axes.titlesize": 10.5,
        "axes.labelsize": 10,
        "xtick.labelsize": 9,
        "ytick.labelsize": 9,
        "legend.fontsize": 9,
        "legend.frameon": False,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "lines.linewidth": 1.8,
        "image.cmap": "viridis",
        "figure.constrained_layout.use": True,
    })


def page_figure(nrows: int = 1, ncols: int = 1, height: float | None = None,
                width: float = PAGE_WIDTH, **subplots: Any) -> tuple[Figure, Any]:
    """`plt.subplots` for a figure as wide as the page's text column (`PAGE_WIDTH`).

    height: inches (default 2.8 per row); further keywords go to `plt.subplots`.
    """
    return plt.subplots(nrows, ncols, figsize=(width, height or 2.8 * nrows), **subplots)


def _shade(color: str, amount: float) -> str:
    """Mix ``color`` with white (``amount`` < 0) or black (``amount`` > 0); |amount| <= 1."""
    rgb = np.asarray(mpl.colors.to_rgb(color))
    target = np.zeros(3) if amount > 0 else np.ones(3)
    return to_hex(rgb + abs(amount) * (target - rgb))


def method_color(name: str, beta: float | None = None) -> str:
    """Colour of a method (registry name or label, any case) or of an entry of `OTHER_COLORS`.

    beta: strength (> 0), only for a method that `shades_by_beta` (SpecReg): the β values
    of Nassar et al. 2020 (1, 2, 5) map to light, medium and dark; other values are placed
    on a log scale between 0.5 and 10. Returns a hex colour.
    """
    key = str(name).lower()
    if key in OTHER_COLORS:
        method, base = None, OTHER_COLORS[key]
    else:
        try:
            method = methods.get(key)
        except ValueError:
            allowed = sorted({*methods.names(), *(m.label.lower() for m in methods.all_methods()),
                              *OTHER_COLORS})
            raise ValueError(f"name must be one of {allowed}, got {name!r}") from None
        base = method.color
    if beta is None:
        return base
    if method is None or not method.shades_by_beta:
        raise ValueError(f"beta is only defined for methods shaded by strength, got name={name!r}")
    if isinstance(beta, bool) or not np.isfinite(beta) or beta <= 0:
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
    position = np.clip((np.log(beta) - np.log(0.5)) / (np.log(10.0) - np.log(0.5)), 0.0, 1.0)  # 0 .. 1
    return _shade(base, -0.55 + 1.0 * position)  # light (β = 0.5) .. dark (β = 10)


#: Line styles of the strengths β of a method drawn at several β (with its shades).
BETA_LINESTYLES = {1.0: (0, (1, 1.2)), 2.0: (0, (4, 1.5)), 5.0: "-"}


def config_style(config: "RunConfig") -> dict[str, Any]:
    """Colour, marker and line style of a run's curve: the method's colour and marker; a
    method drawn at several β also gets a β-shaded colour and a β line style
    (`BETA_LINESTYLES`, dash-dot for other β), so curves differ without colour too."""
    if config.arch == "kh":
        return {"color": OTHER_COLORS["local rule"], "marker": LOCAL_RULE_MARKER}
    method = config.method
    style: dict[str, Any] = {"color": config_color(config), "marker": method.marker}
    if method.shades_by_beta:
        style["linestyle"] = BETA_LINESTYLES.get(config.beta, "-.")
    return style


def config_color(config: "RunConfig") -> str:
    """Colour of a run's method, shaded by its β when the method is shown at several β
    (a local-learning network: the colour of "local rule")."""
    if config.arch == "kh":
        return OTHER_COLORS["local rule"]
    method = config.method
    return method_color(method.name, beta=config.beta if method.shades_by_beta else None)


def alpha_color(alpha: float, alpha_range: tuple[float, float] = (0.5, 5.0)) -> str:
    """Colour of a target power-law exponent α in a sweep (Gerum et al. 2022): viridis over ``alpha_range``."""
    lo, hi = alpha_range
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"alpha_range must be (lo, hi) with lo < hi, got {alpha_range!r}")
    if not np.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha!r}")
    position = float(np.clip((alpha - lo) / (hi - lo), 0.0, 1.0))
    return to_hex(plt.get_cmap("viridis")(0.8 * position))  # stop before the pale yellow end


def label_axes(ax: Axes, xlabel: str, ylabel: str, title: str | None = None) -> Axes:
    """Set axis labels (and a title). Labels should carry units, e.g. ``"accuracy (%)"``."""
    for name, value in (("xlabel", xlabel), ("ylabel", ylabel)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)
    return ax


def figure_legend(fig: Figure, axes: Any, *, ncols: int = 3, remove_axes_legends: bool = True,
                  **legend_kwargs: Any) -> Any:
    """One legend below the panels of ``fig`` for every distinct label drawn on ``axes`` (an
    Axes or any array of them), in first-drawn order; the panels' own legends are removed.
    Returns the legend, or None when nothing is labelled."""
    def flat(items: Any):
        if isinstance(items, Axes):
            yield items
        else:
            for item in items:
                yield from flat(item)

    handles: dict[str, Any] = {}
    for ax in flat(axes):
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
        if remove_axes_legends and ax.get_legend() is not None:
            ax.get_legend().remove()
    if not handles:
        return None
    legend_kwargs.setdefault("handlelength", 3)
    return fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                      ncols=ncols, **legend_kwargs)


#: Leading digits of the minor ticks that :func:`log_percent_axis` labels (1, 2, 3, 5, 10, 20, ...).
LOG_MINOR_LABELS = (2, 3, 5)


#: A log axis whose view spans less than this factor labels every minor tick: it may hold
#: no power of ten, nor a 2, 3 or 5 times one (errors between 55 and 85 %).
LOG_NARROW_SPAN = 3.0


class _MinorLogFormatter(mpl.ticker.Formatter):
    """'%g' of a minor log tick whose leading digit is in LOG_MINOR_LABELS, else '' — or of
    every minor tick when the axis view spans less than LOG_NARROW_SPAN."""

    def __call__(self, value: float, pos: int | None = None) -> str:
        if value <= 0:
            return ""
        lo, hi = sorted(self.axis.get_view_interval()) if self.axis is not None else (0, 0)
        if lo > 0 and hi / lo < LOG_NARROW_SPAN:
            return f"{value:g}"
        leading = round(value / 10 ** np.floor(np.log10(value) + 1e-9))
        return f"{value:g}" if leading in LOG_MINOR_LABELS else ""


def log_percent_axis(ax: Axes) -> Axes:
    """Put the y axis of ``ax`` on a log scale labelled in plain numbers (2, 3, 10, not
    2×10⁰): for error rates in percent, where the last tenths of a point matter. Minor ticks
    are labelled only at 2, 3 and 5 times a power of ten, so labels never crowd, or all of
    them on a narrow axis (`LOG_NARROW_SPAN`), which would otherwise show no number."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(mpl.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(_MinorLogFormatter())
    return ax


def _label_if_unlabelled(ax: Axes, xlabel: str, ylabel: str) -> None:
    if not ax.get_xlabel():
        ax.set_xlabel(xlabel)
    if not ax.get_ylabel():
        ax.set_ylabel(ylabel)


def _as_array(name: str, values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    out = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return out


# --------------------------------------------------------------------------- spectra


@dataclass
class SpectrumArtists:
    """What :func:`plot_spectrum` drew (``None`` for the parts not requested).

    ``line``: the spectrum; ``fit``: the fitted power law; ``target``: the dashed
    ``1/n^α`` target; ``shade``: the unregularized ranks; ``star``: the
    effective-dimension marker.
    """

    line: Any
    fit: Any = None
    target: Any = None
    shade: Any = None
    star: Any = None


def plot_spectrum(ax: Axes, eigenvalues: Any, *, label: str, color: str | None = None, fit: Any = None,
                  target_alpha: float | None = None, tau: int | None = None,
                  effective_dim: int | None = None, normalize: bool = True,
                  **line_kwargs: Any) -> SpectrumArtists:
    """Log-log eigenspectrum, rank ``n`` against ``λ_n`` (normalized to sum 1 by default).

    Parameters
    ----------
    ax
        Axes to draw on (set to log-log).
    eigenvalues
        1-D spectrum in rank order (tensor or array). Non-positive values (rank-deficient
        or cross-validated spectra) cannot be shown on a log axis and are skipped.
    label
        Legend label of the spectrum.
    color
        Line colour (default: the next colour of the cycle).
    fit
        A ``spectrum.PowerLawFit`` of the same eigenvalues: drawn dotted (a darker shade
        of ``color``) over its ranks, labelled with its α (Stringer et al. 2019).
    target_alpha
        Draw the dashed target ``γ_n = κ n^-α`` (Nassar et al. 2020, eq. 2), anchored so
        that ``γ = λ`` at rank ``tau`` (or at rank 1 when ``tau`` is None).
    tau
        1-based rank; shades ranks ``1 .. tau`` (not regularized: the sum of eq. 2
        starts at ``n = τ``, where target and spectrum meet).
    effective_dim
        1-based rank where the cumulative variance reaches 90% (Nassar et al. 2020,
        §4.1): marked with a star on the spectrum.
    normalize
        Divide by the sum of all eigenvalues.
    **line_kwargs
        Passed to ``ax.plot`` for the spectrum line.

    Returns
    -------
    SpectrumArtists
    """
    lam = _as_array("eigenvalues", eigenvalues)
    if lam.ndim != 1 or lam.size == 0:
        raise ValueError(f"eigenvalues must be a non-empty 1-D array, got shape {lam.shape}")
    total = lam.sum()
    if normalize:
        if not total > 0:
            raise ValueError(f"eigenvalues must have a positive sum to be normalized, got {total}")
        lam = lam / total
    ranks = np.arange(1, lam.size + 1, dtype=np.float64)  # [w]
    positive = lam > 0
    (line,) = ax.plot(ranks[positive], lam[positive], color=color, label=label, **line_kwargs)
    color = line.get_color()
    ax.set_xscale("log")
    ax.set_yscale("log")
    artists = SpectrumArtists(line=line)

    def _check_rank(name: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= lam.size:
            raise ValueError(f"{name} must be an integer rank in 1 .. {lam.size}, got {value!r}")
        return int(value)

    if fit is not None:
        lo, hi = fit.ranks
        n_fit = np.arange(lo, hi + 1, dtype=np.float64)
        fit_values = fit.predict(n_fit) * (1.0 if normalize else total)
        (artists.fit,) = ax.plot(n_fit, fit_values, linestyle=(0, (1, 1.5)), color=_shade(color, 0.5),
                                 linewidth=2.2, label=rf"fit $\alpha$ = {fit.alpha:.3f} (ranks {lo}–{hi})")
    if tau is not None:
        tau = _check_rank("tau", tau)
        artists.shade = ax.axvspan(1, tau, color="0.85", alpha=0.5, linewidth=0,
                                   label=f"ranks 1–{tau}: not regularized")
    if target_alpha is not None:
        if isinstance(target_alpha, bool) or not np.isfinite(target_alpha) or target_alpha <= 0:
            raise ValueError(f"target_alpha must be a finite number > 0, got {target_alpha!r}")
        anchor = 1 if tau is None else tau
        if not lam[anchor - 1] > 0:
            raise ValueError(f"the eigenvalue at the anchor rank {anchor} must be positive, got {lam[anchor - 1]}")
        kappa = lam[anchor - 1] * anchor**target_alpha
        (artists.target,) = ax.plot(ranks, kappa * ranks**-target_alpha, linestyle="--", color=color,
                                    linewidth=1.2, alpha=0.8,
                                    label=rf"target $\propto n^{{-{target_alpha:g}}}$ (meets the spectrum at $n$ = {anchor})")
    if effective_dim is not None:
        effective_dim = _check_rank("effective_dim", effective_dim)
        (artists.star,) = ax.plot([effective_dim], [lam[effective_dim - 1]], marker="*", markersize=13,
                                  color=color, markeredgecolor="black", linestyle="none",
                                  label=f"90% variance at $n$ = {effective_dim}")
    _label_if_unlabelled(ax, RANK_LABEL, _NORMALIZED_EIGENVALUE_LABEL if normalize else _EIGENVALUE_LABEL)
    ax.legend()
    return artists


# --------------------------------------------------------------------------- accuracy


def plot_accuracy_curve(ax: Axes, eps: Any, acc_per_seed: Any, *, label: str, color: str | None = None,
                        percent: bool = True, **line_kwargs: Any) -> Any:
    """Accuracy against perturbation size: mean over seeds with a ±1 sd band.

    Nassar et al. 2020, Figs. 2-4 (mean ± sd over 3 seeds). With one seed there is
    no band.

    Parameters
    ----------
    ax
        Axes to draw on.
    eps
        ``[E]`` perturbation sizes (L∞, pixel units in [0, 1]), or noise levels.
    acc_per_seed
        ``[n_seeds, E]`` (or ``[E]`` for one seed) accuracies as fractions in [0, 1].
    label, color
        Legend label and colour (e.g. :func:`method_color`).
    percent
        Draw in percent (default) or as fractions.
    **line_kwargs
        Passed to ``ax.plot``.

    Returns
    -------
    matplotlib.lines.Line2D
        The mean line (the band, when drawn, is the ``PolyCollection`` added to ``ax``).

    Notes
    -----
    The band is the sample standard deviation (``ddof=1``) over seeds.
    """
    x = _as_array("eps", eps)
    acc = _as_array("acc_per_seed", acc_per_seed)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"eps must be a non-empty 1-D array, got shape {x.shape}")
    if acc.ndim == 1:
        acc = acc[None, :]
    if acc.ndim != 2 or acc.shape[1] != x.size or acc.shape[0] == 0:
        raise ValueError(f"acc_per_seed must have shape [n_seeds, {x.size}], got {acc.shape}")
    if np.any(acc < 0) or np.any(acc > 1):
        raise ValueError("acc_per_seed must hold fractions in [0, 1]")
    factor = 100.0 if percent else 1.0
    mean = acc.mean(axis=0) * factor  # [E]
    line_kwargs.setdefault("marker", "o")
    line_kwargs.setdefault("markersize", 4)
    (line,) = ax.plot(x, mean, color=color, label=label, **line_kwargs)
    if acc.shape[0] > 1:
        sd = acc.std(axis=0, ddof=1) * factor  # [E]
        ax.fill_between(x, mean - sd, mean + sd, color=line.get_color(), alpha=0.2, linewidth=0)
    _label_if_unlabelled(ax, EPSILON_LABEL, ACCURACY_LABEL if percent else "accuracy (fraction)")
    ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(5, steps=[1, 2, 2.5, 5, 10]))
    ax.xaxis.set_major_formatter(mpl.ticker.FormatStrFormatter("%g"))
    ax.legend()
    return line


def plot_mean_band(ax: Axes, x: Any, values: Sequence[Any], *, label: str,
                   color: str | None = None, scale: float = 1.0, **line_kwargs: Any) -> Any:
    """Mean over seeds at each x with a ±1 sd band, seeds allowed to differ between points.

    For sweeps over a parameter (e.g. the target exponent α* of Gerum et al. 2022), where a
    missing run leaves one point with fewer seeds. ``x`` is ``[P]``; ``values`` holds ``P``
    1-D arrays of per-seed values, each multiplied by ``scale`` (100 for percent). The band
    (sample sd, ``ddof=1``) is drawn where a point has two seeds or more. Returns the line.
    """
    xs = _as_array("x", x)
    if xs.ndim != 1 or xs.size == 0 or len(values) != xs.size:
        raise ValueError(f"x must be 1-D and values must hold one array per x, got {xs.shape} "
                         f"and {len(values)} arrays")
    arrays = [np.asarray(v, dtype=np.float64).ravel() * scale for v in values]
    if any(a.size == 0 for a in arrays):
        raise ValueError("every point needs at least one value")
    mean = np.array([a.mean() for a in arrays])
    sd = np.array([a.std(ddof=1) if a.size > 1 else np.nan for a in arrays])
    line_kwargs.setdefault("marker", "o")
    line_kwargs.setdefault("markersize", 4)
    (line,) = ax.plot(xs, mean, color=color, label=label, **line_kwargs)
    banded = np.isfinite(sd)
    if banded.any():
        ax.fill_between(xs, np.where(banded, mean - sd, mean), np.where(banded, mean + sd, mean),
                        color=line.get_color(), alpha=0.2, linewidth=0)
    return line


# --------------------------------------------------------------------------- sensitivity maps


def plot_sensitivity_maps(fig_or_axes: FigureBase | Sequence[Axes] | np.ndarray, maps: Any,
                          titles: Sequence[str], *, ncols: int | None = None, cmap: str = "RdBu_r",
                          colorbar_label: str = r"sensitivity $\partial\lambda_n/\partial x$ (per pixel)") -> tuple[np.ndarray, Colorbar]:
    """Image grid of sensitivity maps ``J_n = ∂λ_n/∂x`` (Nassar et al. 2020, eq. 9, Fig. 5).

    All maps share one symmetric diverging colour scale ``[-m, m]`` with
    ``m = max |J|`` and one colour bar, so zero is white and maps are comparable.

    Parameters
    ----------
    fig_or_axes
        A figure or subfigure (a grid of ``ncols`` columns is created on it) or at least
        ``n_maps`` axes.
    maps
        ``[n_maps, H, W]`` or ``[n_maps, C, H, W]`` (tensor or array); colour channels
        are summed (signed).
    titles
        ``n_maps`` titles.
    ncols
        Columns of the created grid (default ``min(n_maps, 8)``).
    cmap
        A diverging colormap.
    colorbar_label
        Label of the shared colour bar (with units).

    Returns
    -------
    (axes, colorbar)
        The axes used (``[n_maps]`` object array) and the shared colour bar.
    """
    m = _as_array("maps", maps)
    if m.ndim == 4:
        m = m.sum(axis=1)  # [n, H, W]
    if m.ndim != 3 or m.shape[0] == 0:
        raise ValueError(f"maps must have shape [n_maps, H, W] or [n_maps, C, H, W], got {np.shape(maps)}")
    n = m.shape[0]
    if isinstance(titles, str) or len(titles) != n:
        raise ValueError(f"titles must be a sequence of {n} strings, got {titles!r}")
    if isinstance(fig_or_axes, FigureBase):
        ncols = min(n, 8) if ncols is None else ncols
        if isinstance(ncols, bool) or not isinstance(ncols, (int, np.integer)) or ncols < 1:
            raise ValueError(f"ncols must be an integer >= 1, got {ncols!r}")
        nrows = -(-n // ncols)
        grid = fig_or_axes.subplots(nrows, ncols, squeeze=False)
        for ax in grid.ravel()[n:]:
            ax.set_visible(False)
        axes = grid.ravel()[:n]
        figure = fig_or_axes
    else:
        flat = np.asarray(fig_or_axes, dtype=object).ravel()
        if flat.size < n or not all(isinstance(ax, Axes) for ax in flat[:n]):
            raise ValueError(f"fig_or_axes must be a Figure or at least {n} Axes, got {flat.size} items")
        axes = flat[:n]
        figure = axes[0].figure
    vmax = float(np.abs(m).max())
    vmax = vmax if vmax > 0 else 1.0
    image = None
    for ax, image_data, title in zip(axes, m, titles):
        image = ax.imshow(image_data, cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():          # a thin neutral frame on all four sides
            spine.set_visible(True)
            spine.set_color("0.75")
            spine.set_linewidth(0.5)
    colorbar = figure.colorbar(image, ax=list(axes), shrink=0.8)
    colorbar.set_label(colorbar_label)
    return np.asarray(axes, dtype=object), colorbar


# --------------------------------------------------------------------------- value grids


def plot_value_grid(ax: Axes, values: Any, *, row_labels: Sequence[str], col_labels: Sequence[str],
                    xlabel: str, ylabel: str, colorbar_label: str, fmt: str = "{:.3f}",
                    cmap: str = "viridis") -> Colorbar:
    """Annotated heat map of a small table, e.g. a fitted α for several fit ranges.

    Parameters
    ----------
    ax
        Axes to draw on.
    values
        ``[R, C]`` finite values (NaN cells are left blank).
    row_labels, col_labels
        ``R`` and ``C`` tick labels (rows top to bottom).
    xlabel, ylabel, colorbar_label
        Axis and colour-bar labels, with units.
    fmt
        Format of the number printed in each cell.
    cmap
        Sequential colormap.

    Returns
    -------
    matplotlib.colorbar.Colorbar
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    v = np.asarray(values, dtype=np.float64)  # NaN allowed (blank cell), inf not
    if np.isinf(v).any():
        raise ValueError("values must not contain inf")
    if v.ndim != 2 or v.size == 0:
        raise ValueError(f"values must be a non-empty 2-D array, got shape {v.shape}")
    if len(row_labels) != v.shape[0] or len(col_labels) != v.shape[1]:
        raise ValueError(f"row_labels and col_labels must have {v.shape[0]} and {v.shape[1]} entries, "
                         f"got {len(row_labels)} and {len(col_labels)}")
    image = ax.imshow(v, cmap=cmap, aspect="auto")
    ax.set_xticks(range(v.shape[1]), [str(c) for c in col_labels])
    ax.set_yticks(range(v.shape[0]), [str(r) for r in row_labels])
    finite = v[np.isfinite(v)]
    middle = 0.5 * (finite.min() + finite.max()) if finite.size else 0.0
    for (i, j), value in np.ndenumerate(v):
        if np.isfinite(value):
            ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=9,
                    color="black" if value > middle else "white")
    for spine in ax.spines.values():
        spine.set_visible(False)
    label_axes(ax, xlabel, ylabel)
    colorbar = ax.figure.colorbar(image, ax=ax)
    colorbar.set_label(colorbar_label)
    return colorbar


def plot_weight_images(fig: FigureBase, weights: Any, titles: Sequence[str] | None = None, *,
                       ncols: int = 10) -> np.ndarray:
    """Learned weights of hidden units as images (Krotov & Hopfield 2019, Fig. 3).

    ``weights [units, C, H, W]``. One channel: a diverging map, symmetric per unit
    ([-max|W_μ|, max|W_μ|], white is zero; red positive, blue negative), as K&H show them.
    Three channels: each unit's weights shifted and scaled to [0, 1] as an RGB image.
    Returns the ``[units]`` axes used.
    """
    w = _as_array("weights", weights)
    if w.ndim != 4 or w.shape[1] not in (1, 3) or w.shape[0] == 0:
        raise ValueError(f"weights must have shape [units, 1 or 3, H, W], got {w.shape}")
    n = w.shape[0]
    if titles is not None and (isinstance(titles, str) or len(titles) != n):
        raise ValueError(f"titles must be None or a sequence of {n} strings")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    axes = np.array(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i >= n:
            continue
        if w.shape[1] == 1:
            m = float(np.abs(w[i]).max()) or 1.0
            ax.imshow(w[i, 0], cmap="RdBu_r", vmin=-m, vmax=m)
        else:
            lo, hi = float(w[i].min()), float(w[i].max())
            ax.imshow(np.transpose((w[i] - lo) / ((hi - lo) or 1.0), (1, 2, 0)))
        if titles is not None:
            ax.set_title(titles[i], fontsize=7, pad=2)
    return axes[:n]
