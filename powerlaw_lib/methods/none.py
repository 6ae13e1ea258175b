"""No regularizer: cross-entropy only (the papers' "vanilla" networks)."""

from __future__ import annotations

from .base import Method


class Vanilla(Method):
    name = "none"
    label = "vanilla"
    color = "#4d4d4d"  # dark grey: the unregularized baseline
    marker = "s"
    plain = True
    reference = "Nassar et al. 2020, §4 (the unregularized baseline)"


METHOD = Vanilla()
