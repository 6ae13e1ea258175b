"""Tests of powerlaw_lib.plotting: every function draws on an Agg figure with labelled axes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

from powerlaw_lib import plotting, spectrum  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


# --------------------------------------------------------------------------- colours and style


def test_every_method_has_a_distinct_colour():
    from powerlaw_lib import methods

    names = [*methods.names(), *plotting.OTHER_COLORS]
    colors = [plotting.method_color(name) for name in names]
    assert len(set(colors)) == len(names)
    # name or label, any case: the registry's colour
    assert plotting.method_color("SpecReg") == plotting.method_color("spectral") \
        == methods.get("spectral").color
    assert plotting.method_color("VANILLA") == methods.get("none").color


def test_specreg_shades_darken_with_beta_and_stay_blue():
    shades = [np.asarray(to_rgb(plotting.method_color("specreg", beta=b))) for b in plotting.SPECREG_BETAS]
    brightness = [s.sum() for s in shades]
    assert brightness[0] > brightness[1] > brightness[2]
    for s in shades:
        assert s[2] >= s[0]  # blue hue kept


@pytest.mark.parametrize("name, beta, match", [
    ("adam", None, "name must be one of"), ("vanilla", 1.0, "beta is only"), ("specreg", 0.0, "beta must"),
])
def test_method_color_rejects_bad_input(name, beta, match):
    with pytest.raises(ValueError, match=match):
        plotting.method_color(name, beta=beta)


def test_alpha_color_is_monotone_along_viridis():
    assert plotting.alpha_color(0.5) != plotting.alpha_color(5.0)
    assert plotting.alpha_color(100.0) == plotting.alpha_color(5.0)  # clipped
    with pytest.raises(ValueError, match="alpha_range"):
        plotting.alpha_color(1.0, alpha_range=(2.0, 1.0))


def test_apply_style_removes_top_and_right_spines():
    plotting.apply_style()
    fig, ax = plt.subplots()
    assert not ax.spines["top"].get_visible() and not ax.spines["right"].get_visible()
    assert matplotlib.rcParams["font.size"] >= 10


def test_label_axes_sets_labels_and_rejects_empty():
    fig, ax = plt.subplots()
    plotting.label_axes(ax, "x (units)", "y (units)", title="t")
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("x (units)", "y (units)", "t")
    with pytest.raises(ValueError, match="ylabel"):
        plotting.label_axes(ax, "x", "")


# --------------------------------------------------------------------------- spectra


def test_plot_spectrum_normalizes_and_draws_on_log_axes():
    lam = torch.tensor([4.0, 2.0, 1.0, 1.0, 0.0])  # last value not drawable on a log axis
    fig, ax = plt.subplots()
    art = plotting.plot_spectrum(ax, lam, label="net", color="C1")
    x, y = art.line.get_data()
    np.testing.assert_allclose(x, [1, 2, 3, 4])
    np.testing.assert_allclose(y, [0.5, 0.25, 0.125, 0.125])
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() and ax.get_ylabel()
    assert "net" in _legend_texts(ax)


@pytest.mark.parametrize("tau", [None, 10])
def test_target_line_passes_through_the_anchor_point(tau):
    rng = np.random.default_rng(0)
    lam = np.sort(rng.uniform(size=200) * np.arange(1, 201) ** -1.3)[::-1]
    fig, ax = plt.subplots()
    art = plotting.plot_spectrum(ax, lam, label="net", target_alpha=1.0, tau=tau)
    anchor = 1 if tau is None else tau
    x, y = art.target.get_data()
    normalized = lam / lam.sum()
    assert y[anchor - 1] == pytest.approx(normalized[anchor - 1])
    assert x[anchor - 1] == anchor
    np.testing.assert_allclose(np.diff(np.log(y)) / np.diff(np.log(x)), -1.0)  # slope -alpha
    assert (art.shade is None) == (tau is None)


def test_unregularized_ranks_are_shaded_up_to_tau():
    fig, ax = plt.subplots()
    art = plotting.plot_spectrum(ax, 1.0 / np.arange(1, 101), label="net", tau=10)
    x0, x1 = art.shade.get_x(), art.shade.get_x() + art.shade.get_width()  # a Rectangle in data x
    assert (x0, x1) == (pytest.approx(1), pytest.approx(10))
    assert "1–10" in " ".join(_legend_texts(ax))


def test_fit_line_and_effective_dimension_star():
    lam = 3.0 * np.arange(1, 801) ** -1.0
    fit = spectrum.fit_power_law(lam)
    fig, ax = plt.subplots()
    art = plotting.plot_spectrum(ax, lam, label="1/n", fit=fit, effective_dim=spectrum.effective_dimension(lam))
    x, y = art.fit.get_data()
    assert x[0] == 11 and x[-1] == 500
    np.testing.assert_allclose(y, (lam / lam.sum())[10:500], rtol=1e-9)
    sx, sy = art.star.get_data()
    d = spectrum.effective_dimension(lam)
    assert sx[0] == d and sy[0] == pytest.approx(lam[d - 1] / lam.sum())
    texts = " ".join(_legend_texts(ax))
    assert r"$\alpha$ = 1.000" in texts and f"$n$ = {d}" in texts


def test_unnormalized_spectrum_keeps_values_and_scales_the_fit():
    lam = 5.0 * np.arange(1, 600) ** -1.2
    fit = spectrum.fit_power_law(lam)
    fig, ax = plt.subplots()
    art = plotting.plot_spectrum(ax, lam, label="raw", fit=fit, normalize=False)
    np.testing.assert_allclose(art.line.get_data()[1], lam)
    np.testing.assert_allclose(art.fit.get_data()[1], lam[10:500], rtol=1e-9)
    assert "eigenvalue" in ax.get_ylabel()


@pytest.mark.parametrize("kwargs, match", [
    (dict(tau=0), "tau"), (dict(effective_dim=11), "effective_dim"), (dict(target_alpha=-1.0), "target_alpha"),
])
def test_plot_spectrum_rejects_bad_ranks_and_alpha(kwargs, match):
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match=match):
        plotting.plot_spectrum(ax, np.ones(10), label="x", **kwargs)


# --------------------------------------------------------------------------- accuracy curves


def test_accuracy_curve_with_several_seeds_has_a_one_sd_band():
    eps = np.array([0.0, 0.05, 0.1])
    acc = np.array([[0.98, 0.80, 0.40], [0.97, 0.70, 0.30], [0.99, 0.90, 0.50]])
    fig, ax = plt.subplots()
    line = plotting.plot_accuracy_curve(ax, eps, acc, label="SpecReg", color=plotting.method_color("specreg"))
    np.testing.assert_allclose(line.get_ydata(), 100 * acc.mean(axis=0))
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 1
    verts = bands[0].get_paths()[0].vertices
    sd = 100 * acc.std(axis=0, ddof=1)
    # the band spans mean - sd .. mean + sd at eps = 0.05
    at = verts[np.isclose(verts[:, 0], 0.05), 1]
    assert at.min() == pytest.approx(100 * acc.mean(axis=0)[1] - sd[1])
    assert at.max() == pytest.approx(100 * acc.mean(axis=0)[1] + sd[1])
    assert r"\varepsilon" in ax.get_xlabel() and "%" in ax.get_ylabel()
    assert _legend_texts(ax) == ["SpecReg"]


def test_accuracy_curve_with_one_seed_has_no_band():
    fig, ax = plt.subplots()
    plotting.plot_accuracy_curve(ax, [0.0, 0.1], [0.9, 0.5], label="vanilla")
    assert not [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert ax.get_xlabel() and ax.get_ylabel()


def test_accuracy_curve_keeps_existing_labels_and_checks_input():
    fig, ax = plt.subplots()
    plotting.label_axes(ax, "noise σ (pixel units in [0, 1])", "accuracy (%)")
    plotting.plot_accuracy_curve(ax, [0.0, 0.1], [[0.9, 0.5], [0.8, 0.4]], label="v")
    assert ax.get_xlabel().startswith("noise")
    with pytest.raises(ValueError, match="fractions"):
        plotting.plot_accuracy_curve(ax, [0.0, 0.1], [90.0, 50.0], label="v")
    with pytest.raises(ValueError, match="acc_per_seed must have shape"):
        plotting.plot_accuracy_curve(ax, [0.0, 0.1, 0.2], [[0.9, 0.5]], label="v")


# --------------------------------------------------------------------------- sensitivity maps


def test_sensitivity_maps_share_a_symmetric_scale_and_one_colorbar():
    maps = np.random.default_rng(0).normal(size=(5, 1, 28, 28))
    maps[2, 0, 3, 3] = -9.0  # the largest magnitude, negative
    fig = plt.figure()
    axes, colorbar = plotting.plot_sensitivity_maps(fig, maps, [f"n = {i + 1}" for i in range(5)], ncols=3)
    assert len(axes) == 5
    for ax in axes:
        assert ax.images[0].get_clim() == (-9.0, 9.0)
    assert colorbar.ax.get_ylabel()
    assert [ax.get_title() for ax in axes][2] == "n = 3"
    assert sum(ax.get_visible() for ax in fig.axes) == 5 + 1  # 5 maps + colour bar, 1 hidden


def test_sensitivity_maps_on_given_axes_sum_colour_channels():
    maps = torch.ones(2, 3, 4, 4)
    fig, axs = plt.subplots(1, 2)
    axes, _ = plotting.plot_sensitivity_maps(axs, maps, ["a", "b"])
    np.testing.assert_allclose(axes[0].images[0].get_array(), 3.0)
    with pytest.raises(ValueError, match="titles"):
        plotting.plot_sensitivity_maps(axs, maps, ["a"])
    with pytest.raises(ValueError, match="maps must have shape"):
        plotting.plot_sensitivity_maps(axs, np.ones((2, 4)), ["a", "b"])


# --------------------------------------------------------------------------- value grids


def test_value_grid_prints_every_value_and_labels_everything():
    values = np.array([[0.97, 1.01, np.nan], [0.95, 0.99, 1.02]])
    fig, ax = plt.subplots()
    colorbar = plotting.plot_value_grid(ax, values, row_labels=["2", "11"], col_labels=["100", "500", "1000"],
                                        xlabel="last rank", ylabel="first rank", colorbar_label="α")
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == sorted(["0.970", "1.010", "0.950", "0.990", "1.020"])  # NaN cell left blank
    assert ax.get_xlabel() == "last rank" and colorbar.ax.get_ylabel() == "α"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["2", "11"]
    with pytest.raises(ValueError, match="row_labels"):
        plotting.plot_value_grid(ax, values, row_labels=["2"], col_labels=["a", "b", "c"],
                                 xlabel="x", ylabel="y", colorbar_label="c")


def test_axis_labels_write_subscripts_and_powers_as_math_text():
    """No raw `_` or `^` outside $...$: readers see λₙ and n⁻¹, not λ_n and n^-1."""
    import inspect
    import re

    fig, ax = plt.subplots()
    art = plotting.plot_spectrum(ax, 1 / np.arange(1, 200), label="x", tau=10, target_alpha=1.0,
                                 fit=spectrum.fit_power_law(1 / np.arange(1, 200)), effective_dim=5)
    texts = [plotting.EPSILON_LABEL, plotting.RANK_LABEL, ax.get_ylabel(),
             *(t.get_text() for t in ax.get_legend().get_texts()),
             inspect.signature(plotting.plot_sensitivity_maps).parameters["colorbar_label"].default]
    for text in texts:
        outside_math = re.sub(r"\$[^$]*\$", "", text)
        assert "_" not in outside_math and "^" not in outside_math, text
    plt.close(fig)
    assert art.target is not None


def test_sensitivity_maps_can_fill_a_subfigure():
    import matplotlib.pyplot as plt

    from powerlaw_lib.plotting import plot_sensitivity_maps

    fig = plt.figure(layout="constrained")
    top, bottom = fig.subfigures(2, 1)
    axes, bar = plot_sensitivity_maps(top, np.ones((3, 1, 4, 4)), ["a", "b", "c"], ncols=3)
    assert len(axes) == 3 and all(ax.get_figure(root=False) is top for ax in axes)
    plt.close(fig)


def test_mean_band_draws_the_mean_and_a_band_only_where_seeds_allow():
    import matplotlib.pyplot as plt

    from powerlaw_lib.plotting import plot_mean_band

    fig, ax = plt.subplots()
    line = plot_mean_band(ax, [1.0, 2.0, 3.0], [[0.5, 0.7], [0.4], [0.2, 0.3, 0.4]],
                          label="slope", scale=100)
    np.testing.assert_allclose(line.get_ydata(), [60.0, 40.0, 30.0])
    (band,) = ax.collections
    top = band.get_paths()[0].vertices[:, 1]
    assert top.max() == pytest.approx(60 + 100 * np.std([0.5, 0.7], ddof=1))
    assert top.min() == pytest.approx(30 - 10.0)  # sd of (20, 30, 40) is 10
    with pytest.raises(ValueError, match="one array per x"):
        plot_mean_band(ax, [1.0, 2.0], [[0.5]], label="x")
    plt.close(fig)


def test_log_percent_axis_labels_ticks_as_plain_numbers():
    fig, ax = plt.subplots()
    ax.plot([1, 100], [0.5, 20.0])
    plotting.log_percent_axis(ax)
    fig.canvas.draw()
    assert ax.get_yscale() == "log"
    labels = {t.get_text() for t in ax.get_yticklabels(minor=False) + ax.get_yticklabels(minor=True)}
    assert {"1", "10", "2", "3", "5", "20"} <= labels
    assert not any("times" in t or "^" in t for t in labels)
    assert not labels & {"4", "6", "7", "8", "9", "40"}  # crowded neighbours stay unlabelled
    plt.close(fig)


def test_log_percent_axis_labels_every_minor_tick_of_a_narrow_axis():
    fig, ax = plt.subplots()
    ax.plot([1, 100], [55.0, 85.0])                      # no power of ten, nor 2, 3, 5 times one
    plotting.log_percent_axis(ax)
    fig.canvas.draw()
    labels = {t.get_text() for t in ax.get_yticklabels(minor=True)} - {""}
    assert {"60", "70", "80"} <= labels
    plt.close(fig)


def test_figure_legend_collects_each_label_once_and_clears_the_panels():
    fig, axes = plotting.page_figure(1, 2, layout="constrained")
    axes[0].plot([0, 1], label="a")
    axes[1].plot([0, 1], label="b")
    axes[1].plot([1, 0], label="a")                                 # the same label again
    for ax in axes:
        ax.legend()
    legend = plotting.figure_legend(fig, {"x": axes[0], "y": axes[1]}.values(), ncols=2)
    assert [t.get_text() for t in legend.get_texts()] == ["a", "b"]
    assert all(ax.get_legend() is None for ax in axes)
    assert plotting.figure_legend(fig, plt.figure().subplots()) is None   # nothing labelled


def test_a_figure_whose_legend_sticks_out_is_refused_before_it_reaches_the_page():
    from powerlaw_lib.notebook import MAX_FIGURE_OVERHANG, figure_overhang, glue_figure

    fig, axes = plotting.page_figure(1, 2, layout="constrained")
    for k in range(6):
        axes[0].plot([0, 1], [k, k], label=f"a rather long label for curve number {k}")
    plotting.figure_legend(fig, axes, ncols=2)
    assert figure_overhang(fig) <= MAX_FIGURE_OVERHANG                 # two columns fit
    plt.close(fig)

    fig, axes = plotting.page_figure(1, 2, layout="constrained")
    for k in range(6):
        axes[0].plot([0, 1], [k, k], label=f"a rather long label for curve number {k}")
    plotting.figure_legend(fig, axes, ncols=6)                         # six do not
    assert figure_overhang(fig) > 0.5
    with pytest.raises(ValueError, match=r"figure 'fig_wide' is drawn \d+\.\d in wide on its "
                                         r"7\.0 in canvas"):
        glue_figure("fig_wide", fig)
    assert not plt.fignum_exists(fig.number)                           # closed all the same
