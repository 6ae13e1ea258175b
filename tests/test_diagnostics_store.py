"""Stored tracking runs of the regularizer chapter: read back, never retrained silently."""

from __future__ import annotations

import numpy as np
import pytest

from powerlaw_lib import diagnostics
from powerlaw_lib.config import RunConfig
from powerlaw_lib.experiments import TrainingNotAllowedError

CONFIG = RunConfig(hidden=(40,), batch_size=60, regularizer="spectral", reg_layers=(1,), tau=3,
                   beta=2.0, train_subset=240, test_subset=100, epochs=2, lr=1e-3)


def test_a_tracking_run_is_stored_once_and_read_back_identically(tmp_path, monkeypatch):
    with pytest.raises(TrainingNotAllowedError, match="would train 2 epochs"):
        diagnostics.stored_rayleigh_tracking(CONFIG, tmp_path)
    assert not list(tmp_path.iterdir())
    made = diagnostics.stored_rayleigh_tracking(CONFIG, tmp_path, allow_training=True)
    (stored,) = tmp_path.glob("rayleigh_*.json")
    assert stored.name == f"rayleigh_{CONFIG.key}.json"
    monkeypatch.setattr(diagnostics, "track_rayleigh_quotients",
                        lambda *a, **k: pytest.fail("retrained a stored tracking run"))
    again = diagnostics.stored_rayleigh_tracking(CONFIG, tmp_path)
    assert again.bands == made.bands and again.history == made.history
    for name in ("epochs", "stale_error", "fresh_error", "penalty_exact", "penalty_stale",
                 "penalty_fresh", "last_exact", "last_stale", "last_full"):
        np.testing.assert_array_equal(getattr(again, name), getattr(made, name))
