"""fp32 vs bf16 runs of a result store, side by side (mean ± sd over seeds).

Finds results whose configs differ only in ``precision`` (and are otherwise the same run,
seed included), groups them by the config without ``precision`` and ``seed``, and reports
per precision the mean ± sd over the seeds present in both precisions of:

- clean test accuracy (``clean_accuracy``),
- the fitted power-law exponent of the first hidden layer (``layer1_alpha``; Stringer et
  al. 2019 fit, ranks 11..500),
- PGD accuracy at ε = 0.1 (``pgd_accuracy@0.1``; Nassar et al. 2020, Fig. 2).

Two precisions agree on a metric when their means differ by at most 2 pooled seed-to-seed
standard deviations, sqrt((sd_fp32² + sd_bf16²) / 2); with fewer than 2 paired seeds the
agreement is undecided (None).

Usage: ``python -m benchmarks.precision_check [--results data/results] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from powerlaw_lib.store import Result, ResultStore

__all__ = ["METRICS", "precision_pairs", "precision_table", "format_precision_table", "main"]

METRICS = ("clean_accuracy", "layer1_alpha", "pgd_accuracy@0.1")
PRECISIONS = ("fp32", "bf16")


def _group_key(result: Result) -> str:
    d = result.config.to_dict()
    d.pop("precision")
    d.pop("seed")
    return json.dumps(d, sort_keys=True)


def precision_pairs(results: Iterable[Result]) -> dict[str, dict[int, dict[str, Result]]]:
    """group key -> seed -> {"fp32": Result, "bf16": Result}, complete pairs only."""
    groups: dict[str, dict[int, dict[str, Result]]] = {}
    for r in results:
        groups.setdefault(_group_key(r), {}).setdefault(r.config.seed, {})[r.config.precision] = r
    pairs: dict[str, dict[int, dict[str, Result]]] = {}
    for key, seeds in groups.items():
        complete = {s: by for s, by in seeds.items() if all(p in by for p in PRECISIONS)}
        if complete:
            pairs[key] = dict(sorted(complete.items()))
    return pairs


def _mean_sd(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else float("nan")


def precision_table(store: ResultStore | str | Path,
                    metrics: tuple[str, ...] = METRICS) -> list[dict[str, Any]]:
    """One row per (config group, metric): means, sds, n seeds and agreement within 2 sd."""
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    rows = []
    for key, seeds in precision_pairs(store).items():
        label = next(iter(seeds.values()))["fp32"].config.label.rsplit(" seed ", 1)[0]
        for metric in metrics:
            values = {p: [by[p].metrics[metric] for by in seeds.values() if metric in by[p].metrics]
                      for p in PRECISIONS}
            n = min(len(v) for v in values.values())
            if n == 0:
                continue
            row: dict[str, Any] = {"config": label, "group": key, "metric": metric, "n_seeds": n}
            for p in PRECISIONS:
                row[f"{p}_mean"], row[f"{p}_sd"] = _mean_sd(values[p])
            pooled = math.sqrt(0.5 * (row["fp32_sd"] ** 2 + row["bf16_sd"] ** 2)) if n > 1 else float("nan")
            row["difference"] = row["bf16_mean"] - row["fp32_mean"]
            row["pooled_sd"] = pooled
            row["agree_within_2sd"] = (abs(row["difference"]) <= 2 * pooled) if n > 1 else None
            rows.append(row)
    return rows


def format_precision_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no pairs of results that differ only in precision"
    lines = [f"{'config':52s} {'metric':18s} {'n':>2s} {'fp32':>17s} {'bf16':>17s}  agree"]
    for r in rows:
        agree = {True: "yes", False: "NO", None: "n/a"}[r["agree_within_2sd"]]
        lines.append(f"{r['config'][:52]:52s} {r['metric']:18s} {r['n_seeds']:2d} "
                     f"{r['fp32_mean']:8.4f} ± {r['fp32_sd']:6.4f} {r['bf16_mean']:8.4f} ± "
                     f"{r['bf16_sd']:6.4f}  {agree}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fp32 vs bf16 runs of a result store")
    parser.add_argument("--results", type=Path, default=Path("data/results"))
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    rows = precision_table(args.results)
    print(format_precision_table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
