"""Speed benchmarks of powerlaw_lib: `make bench` (python -m benchmarks.run).

Modules
-------
- :mod:`benchmarks.run` -- measures everything in one process, prints a table and writes
  ``benchmarks/results.json``.
- :mod:`benchmarks.timing` -- medians of interleaved repeats, machine description.
- :mod:`benchmarks.flops` -- analytic FLOP counts of the GEMMs of a training step, an epoch
  and the per-epoch refresh.
- :mod:`benchmarks.reference` -- the per-eigenvalue-loop formulation of Nassar et al. 2020,
  eq. 2 (the authors' code structure), kept as the baseline of the step speedup.
- :mod:`benchmarks.precision_check` -- fp32 vs bf16 runs of a result store, side by side.
"""
