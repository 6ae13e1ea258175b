"""The fast paths of training against slow reference formulations, and the benchmark helpers.

Oracles: the per-eigenvalue-loop form of Nassar et al. 2020, eq. 2 (benchmarks.reference);
the materialized full-set activations with spectrum.covariance and a float64 eigh for the
streaming refresh; plain autograd for one training step; hand-computed FLOP counts; and
hand-built results for the precision comparison. No timing is asserted here.
"""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import pytest
import scipy.linalg
import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks package

from benchmarks.flops import (gram_flops, loop_penalty_flops, network_step_flops,  # noqa: E402
                              projection_flops, spectral_step_flops)
from benchmarks.precision_check import format_precision_table, precision_table  # noqa: E402
from benchmarks.reference import LoopSpectralPenalty, loop_spectral_penalty  # noqa: E402
from powerlaw_lib.config import RunConfig  # noqa: E402
from powerlaw_lib.models import CNN, MLP  # noqa: E402
from powerlaw_lib.regularizers import SpectralRegularizer, spectral_penalty  # noqa: E402
from powerlaw_lib.spectrum import covariance  # noqa: E402
from powerlaw_lib.store import Result, ResultStore  # noqa: E402
from powerlaw_lib.inference import hidden_representations  # noqa: E402
from powerlaw_lib.methods import LayerPenalty, build_penalty, refresh_eigenvectors  # noqa: E402
from powerlaw_lib.training import make_optimizer, training_step  # noqa: E402


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# ----------------------------------------------------------------------------- loop baseline


def test_loop_baseline_computes_the_library_penalty_and_gradient() -> None:
    reference = torch.tanh(torch.randn(300, 40, dtype=torch.float64) @ torch.randn(40, 40, dtype=torch.float64))
    reg = SpectralRegularizer(alpha=1.5, tau=4, beta=2.0)
    reg.refresh(reference)
    h = torch.tanh(torch.randn(80, 40, dtype=torch.float64) @ torch.randn(40, 40, dtype=torch.float64))
    h.requires_grad_(True)
    fast = reg(h)
    slow = loop_spectral_penalty(h, reg.basis.eigenvectors, alpha=1.5, tau=4, beta=2.0)
    assert float(slow.detach()) > 1e-3
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=0)
    (g_fast,) = torch.autograd.grad(fast, h)
    (g_slow,) = torch.autograd.grad(slow, h)
    torch.testing.assert_close(g_fast, g_slow, rtol=1e-8, atol=1e-12)
    wrapped = LoopSpectralPenalty(reg.basis.eigenvectors, 1.5, 4, 2.0)
    assert not wrapped.needs_refresh
    torch.testing.assert_close(wrapped(h.detach().float()), fast.detach().float(), rtol=1e-4, atol=0)


# ----------------------------------------------------------------------------- streaming refresh


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_streaming_refresh_equals_materialized_covariance(monkeypatch, arch: str, precision: str) -> None:
    import powerlaw_lib.inference as inference

    monkeypatch.setattr(inference, "EVAL_CHUNK", 450)  # several chunks, the last one short
    if arch == "mlp":
        config = RunConfig(hidden=(60, 50), batch_norm=True, regularizer="spectral", reg_layers=(1, 2),
                           batch_size=64)
        model = MLP((784, 60, 50, 10), batch_norm=True)
    else:
        config = RunConfig(arch="cnn", hidden=(64,), batch_norm=False, regularizer="spectral",
                           reg_layers=(2, 3), batch_size=900)
        model = CNN(hidden=64)
    x = torch.rand(1600 if arch == "mlp" else 1000, 1, 28, 28)
    regs = build_penalty(config).regularizers
    refresh_eigenvectors(model, regs, x, precision)
    assert model.training  # the mode is restored
    hs = hidden_representations(model, x, list(regs), precision)
    for layer, reg in regs.items():
        cov = covariance(hs[layer].double())  # float64 oracle on the same activations
        expected = torch.from_numpy(scipy.linalg.eigvalsh(cov.numpy())[::-1].copy())
        torch.testing.assert_close(reg.basis.eigenvalues, expected, rtol=0,
                                   atol=1e-5 * float(expected[0]))
        v = reg.basis.eigenvectors.double()
        # the stored basis diagonalizes the oracle covariance
        torch.testing.assert_close(v.T @ cov @ v, torch.diag(expected), rtol=0,
                                   atol=1e-5 * float(expected[0]))


# ----------------------------------------------------------------------------- one training step


def test_training_step_matches_an_autograd_reference_step() -> None:
    config = RunConfig(hidden=(64,), batch_norm=True, regularizer="spectral", reg_layers=(1,),
                       beta=2.0, tau=3, batch_size=96, lr=1e-3)
    model = MLP((784, 64, 10), batch_norm=True)
    x, y = torch.rand(96, 1, 28, 28), torch.randint(0, 10, (96,))
    penalty_fn = build_penalty(config)
    penalty_fn.start_epoch(model, torch.rand(500, 1, 28, 28), torch.Generator())
    basis = penalty_fn.regularizers[1].basis.eigenvectors
    reference = copy.deepcopy(model)

    loss, penalty, _ = training_step(model, make_optimizer(config, model), penalty_fn, x, y)

    opt = torch.optim.Adam(reference.parameters(), lr=1e-3)  # plain Adam, plain autograd
    logits, (h,) = reference.forward_with_hidden(x)
    centred = h - h.mean(dim=0)
    lam = torch.sort((centred @ basis).pow(2).sum(dim=0) / (len(x) - 1), descending=True).values
    ref_penalty = spectral_penalty(lam, alpha=1.0, tau=3, beta=2.0)
    ref_loss = torch.nn.functional.cross_entropy(logits, y) + ref_penalty
    opt.zero_grad()
    ref_loss.backward()
    opt.step()
    assert float(penalty) > 0
    torch.testing.assert_close(loss, ref_loss.detach(), rtol=1e-5, atol=0)
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


class _GemmRecorder(TorchDispatchMode):
    """Records the input dtypes and the output size of every matrix product."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[torch.dtype, ...], int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.__name__.split(".")[0]
        if name in ("mm", "addmm", "bmm", "convolution", "convolution_backward"):
            dtypes = tuple(a.dtype for a in args if isinstance(a, torch.Tensor))
            size = out.numel() if isinstance(out, torch.Tensor) else 0
            self.calls.append((name, dtypes, size))
        return out


def test_bf16_step_runs_every_large_product_in_bf16() -> None:
    """Linear layers and projections, forward and backward, under bf16 autocast."""
    config = RunConfig(hidden=(64, 64), batch_norm=False, regularizer="spectral", reg_layers=(1, 2),
                       tau=3, batch_size=128, precision="bf16")
    model = MLP((784, 64, 64, 10))
    penalty_fn = build_penalty(config)
    assert isinstance(penalty_fn, LayerPenalty) and penalty_fn.precision == "bf16"
    penalty_fn.start_epoch(model, torch.rand(400, 1, 28, 28), torch.Generator())
    opt = make_optimizer(config, model)
    x, y = torch.rand(128, 1, 28, 28), torch.randint(0, 10, (128,))
    with _GemmRecorder() as recorder:
        loss, penalty, logits = training_step(model, opt, penalty_fn, x, y, "bf16")
    assert loss.dtype == penalty.dtype == torch.float32 and torch.isfinite(loss)
    big = [(name, dtypes) for name, dtypes, size in recorder.calls if size >= 64 * 64]
    # forward: 2 hidden Linear + 2 projections; backward: their weight, input and projection grads
    assert len(big) >= 8
    assert all(all(d == torch.bfloat16 for d in dtypes if d.is_floating_point) for _, dtypes in big), big
    assert all(p.dtype == torch.float32 for p in model.parameters())


# ----------------------------------------------------------------------------- FLOP counts


def test_flop_counts_match_closed_forms() -> None:
    mlp = MLP((784, 2000, 10), batch_norm=True)
    # forward 2·B·(784·2000 + 2000·10); backward: dW of both, dX of the readout only
    b = 3000
    expected = b * (2 * 784 * 2000 * 2 + 2 * 2000 * 10 * 3)
    assert network_step_flops(mlp, (1, 28, 28), b) == expected
    assert spectral_step_flops(mlp, (1, 28, 28), b, [2000]) == expected + 4 * b * 2000 ** 2
    assert gram_flops(60000, [2000]) == 60000 * 2000 * 2001
    cnn = CNN(hidden=1000)
    conv1 = 2 * 16 * 26 * 26 * 1 * 9
    conv2 = 2 * 32 * 11 * 11 * 16 * 9
    fc, readout = 2 * 800 * 1000, 2 * 1000 * 10
    assert network_step_flops(cnn, (1, 28, 28), 1) == 2 * conv1 + 3 * (conv2 + fc + readout)


@pytest.mark.parametrize("batch, width", [(48, 32), (30, 40)])
def test_penalty_flop_counts_match_torch_flop_counter(batch, width) -> None:
    """Matrix-product FLOPs of a penalty's forward + backward, counted by torch itself."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    h = torch.randn(batch, width, dtype=torch.float64, requires_grad=True)
    basis = torch.linalg.qr(torch.randn(width, width, dtype=torch.float64))[0]
    reg = SpectralRegularizer(alpha=1.0, tau=3, beta=1.0)
    reg.refresh(torch.randn(4 * width, width, dtype=torch.float64))
    for penalty, expected in ((lambda x: loop_spectral_penalty(x, basis, tau=3), loop_penalty_flops),
                              (reg, projection_flops)):
        with FlopCounterMode(display=False) as counter:
            penalty(h).backward()
        assert counter.get_total_flops() == expected(batch, [width])


# ----------------------------------------------------------------------------- precision check


def _result(config: RunConfig, acc: float, alpha: float, pgd: float) -> Result:
    return Result(config, {"clean_accuracy": acc, "layer1_alpha": alpha, "pgd_accuracy@0.1": pgd})


def test_precision_check_pairs_configs_that_differ_only_in_precision(tmp_path) -> None:
    store = ResultStore(tmp_path)
    base = RunConfig(hidden=(50,), epochs=2, regularizer="spectral", reg_layers=(1,), beta=2.0,
                     batch_size=100)
    fp32 = {0: (0.90, 1.0, 0.50), 1: (0.92, 1.2, 0.52), 2: (0.91, 1.1, 0.54)}
    bf16 = {0: (0.91, 1.1, 0.51), 1: (0.93, 1.3, 0.53), 2: (0.91, 1.6, 0.55)}
    for seed in fp32:
        store.put(_result(base.replace(seed=seed), *fp32[seed]))
        store.put(_result(base.replace(seed=seed, precision="bf16"), *bf16[seed]))
    store.put(_result(base.replace(seed=3), 0.5, 9.0, 0.0))  # no bf16 partner: ignored
    store.put(_result(base.replace(beta=1.0), 0.8, 2.0, 0.3))  # another config, fp32 only
    rows = precision_table(store)
    assert [r["metric"] for r in rows] == ["clean_accuracy", "layer1_alpha", "pgd_accuracy@0.1"]
    by = {r["metric"]: r for r in rows}
    assert all(r["n_seeds"] == 3 for r in rows)
    acc = by["clean_accuracy"]
    assert acc["fp32_mean"] == pytest.approx(0.91) and acc["fp32_sd"] == pytest.approx(0.01)
    assert acc["bf16_mean"] == pytest.approx(0.9166667)
    assert acc["agree_within_2sd"] is True  # difference 0.0067 <= 2 · 0.0108
    alpha = by["layer1_alpha"]  # means 1.1 vs 1.333, pooled sd sqrt((0.01 + 0.0633)/2) = 0.19
    assert alpha["pooled_sd"] == pytest.approx(math.sqrt(0.5 * (0.01 + 0.19 / 3)), rel=1e-6)
    assert alpha["agree_within_2sd"] is True
    text = format_precision_table(rows)
    assert "clean_accuracy" in text and "yes" in text


def test_precision_check_flags_disagreement_and_single_seeds(tmp_path) -> None:
    store = ResultStore(tmp_path)
    base = RunConfig(hidden=(50,), epochs=2, batch_size=100)
    for seed, (a, b) in enumerate([(0.90, 0.70), (0.91, 0.71)]):
        store.put(_result(base.replace(seed=seed), a, 1.0, 0.5))
        store.put(_result(base.replace(seed=seed, precision="bf16"), b, 1.0, 0.5))
    single = base.replace(hidden=(60,))
    store.put(_result(single, 0.9, 1.0, 0.5))
    store.put(_result(single.replace(precision="bf16"), 0.9, 1.0, 0.5))
    rows = precision_table(store)
    acc = [r for r in rows if r["metric"] == "clean_accuracy" and r["n_seeds"] == 2][0]
    assert acc["agree_within_2sd"] is False
    assert all(r["agree_within_2sd"] is None for r in rows if r["n_seeds"] == 1)
    assert format_precision_table([]).startswith("no pairs")


# ----------------------------------------------------------------------------- benchmark without bf16


def test_benchmark_skips_bf16_timings_when_asked_and_formats_them_as_missing() -> None:
    """On CPUs that emulate bf16 the benchmark leaves the bf16 figures out (None)."""
    from benchmarks.measures import epoch_figures, gemm_gflops, refresh_figures, step_figures
    from benchmarks.run import format_table

    config = RunConfig(hidden=(64,), batch_norm=True, regularizer="spectral", reg_layers=(1,),
                       tau=3, batch_size=96)
    x, y = torch.rand(256, 1, 28, 28), torch.randint(0, 10, (256,))
    step = step_figures(config, x, x[:96], y[:96], repeats=1, bf16=False)
    assert step["step_seconds_library_bf16"] is None and step["bf16_step_speedup"] is None
    assert step["speedup_vs_loop"] > 0 and step["penalty_relative_difference_float64"] < 1e-5
    epoch = epoch_figures(config, (x, y, x[:32], y[:32]), repeats=1, bf16=False)
    assert epoch["epoch_seconds_bf16"] is None and epoch["epoch_seconds_fp32"] > 0
    refresh = refresh_figures(config, x, repeats=1, bf16=False)
    assert refresh["refresh_seconds_bf16"] is None
    gemm = gemm_gflops(repeats=1, bf16_size=64)
    assert gemm["gemm_bf16_size"] == 64 and gemm["gemm_gflops_bf16"] > 0
    pgd = {"pgd_seconds_library": 1.0, "pgd_seconds_naive": 4.0, "pgd_net_train_seconds": 2.0}
    results = {"metrics": {"bf16_epoch_speedup": None, "specreg_step_speedup_vs_loop": 3.5},
               "targets": {"bf16_epoch_speedup": 2.5, "specreg_step_speedup_vs_loop": 3.0},
               "details": {"shallow_step": step, "mlp3x1000_step": step, "cnn_step": step,
                           "shallow_refresh": refresh, "shallow_epoch": epoch, "pgd": pgd},
               "gemm_start_end": [gemm], "bf16_timed": False, "seconds_total": 1.0}
    table = format_table(results)
    assert "bf16_epoch_speedup" in table and "not timed" in table and "64³" in table
    assert "library bf16 n/a" in table


# ----------------------------------------------------------------------------- chunked steps


def _step_gradient(model, penalty, x, y, chunk):
    """(loss, term, logits, gradient per parameter) of one `training_step` in `chunk` passes.

    SGD with lr 1 on a copy: the parameters' change is minus the gradient."""
    from powerlaw_lib.training import training_step as step

    net = copy.deepcopy(model)
    before = [p.detach().clone() for p in net.parameters()]
    loss, term, logits = step(net, torch.optim.SGD(net.parameters(), lr=1.0), penalty, x, y,
                              chunk=chunk)
    return loss, term, logits, [b - p.detach() for b, p in zip(before, net.parameters())]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_chunked_cnn_step_equals_the_one_pass_step(dtype: torch.dtype) -> None:
    """Passes of 64 images (the last one 22) give the loss, the logits and the gradient of
    one pass over the batch of 150."""
    model = CNN(image_size=12, channels=(4, 8), hidden=40).to(dtype)
    x = torch.rand(150, 1, 12, 12, dtype=dtype)
    y = torch.randint(0, 10, (150,))
    penalty = build_penalty(RunConfig())
    one = _step_gradient(model, penalty, x, y, chunk=None)
    chunked = _step_gradient(model, penalty, x, y, chunk=64)
    rtol = 1e-6 if dtype == torch.float64 else 1e-5  # the cross-entropy is float32 in both
    for a, b in zip(one[:3], chunked[:3]):
        torch.testing.assert_close(b, a, rtol=rtol, atol=rtol * float(a.abs().max()))
    for a, b in zip(one[3], chunked[3]):  # per parameter, relative to its largest entry
        assert float(a.abs().max()) > 0
        assert float((a - b).abs().max()) <= rtol * float(a.abs().max())
    assert float(chunked[1]) == 0.0


def test_only_independent_models_without_a_penalty_term_are_chunked() -> None:
    from powerlaw_lib.training import step_chunk

    plain = build_penalty(RunConfig())
    spectral = build_penalty(RunConfig(regularizer="spectral", reg_layers=(1,), beta=1.0))
    assert step_chunk(CNN(), plain) == 1000
    assert step_chunk(CNN(whiten=True), plain) is None  # whitening couples the samples
    assert step_chunk(CNN(), spectral) is None          # a term of the whole batch
    assert step_chunk(MLP((784, 64, 10), batch_norm=False), plain) is None
    model = CNN(image_size=12, channels=(4, 8), hidden=40)
    with pytest.raises(ValueError, match="without a term"):
        training_step(model, make_optimizer(RunConfig(), model), spectral,
                      torch.rand(8, 1, 12, 12), torch.randint(0, 10, (8,)), chunk=4)


def test_side_by_side_gain_is_the_pair_s_total_step_rate_over_the_single_run_s():
    from benchmarks.side_by_side import side_by_side_figures

    with pytest.raises(ValueError, match="threads must be an even number >= 2, got 3"):
        side_by_side_figures("cnn", threads=3)
    f = side_by_side_figures("shallow_specreg", threads=2, steps=1, rounds=1, quick=True)
    assert f["step_seconds_one_run"] > 0 and f["step_seconds_side_by_side"] > 0
    assert f["side_by_side_gain"] == pytest.approx(2 * f["step_seconds_one_run"]
                                                   / f["step_seconds_side_by_side"])
