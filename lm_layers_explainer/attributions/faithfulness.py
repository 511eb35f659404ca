"""Faithfulness: how the explained output moves when tokens go, most important first.

:func:`removal_curves` is a pure function of ``f`` (given as "f of the input keeping these
positions", which is where the perturbation lives), the order of the tokens and the
positions that always stay. :func:`eraser_bins` gives ERASER's bins (DeYoung et al. 2020).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

ERASER_BINS = (0.01, 0.05, 0.10, 0.20, 0.50)
"""Fractions of the tokens removed (comprehensiveness) or kept (sufficiency): ERASER's AOPC
thresholds (DeYoung et al. 2020). A fraction ``b`` of ``n`` tokens is ``ceil(b * n)`` tokens
(at least one): on short texts several bins are the same single token."""
CONVENTIONS = ("deletion", "replacement")
"""How faithfulness removes a token: ``deletion`` takes it out of the input (ERASER; what is
left is still a text), ``replacement`` puts the baseline (zero vector, pad or mask embedding)
in its place (Petsiuk et al.'s deletion game; an input the model never saw in training)."""


def eraser_bins(n: int) -> list[int]:
    """Tokens in each of ERASER's bins for ``n`` tokens: ``ceil(b * n)`` clipped to 1..n.

    >>> eraser_bins(8), eraser_bins(30)
    ([1, 1, 1, 2, 4], [1, 2, 3, 6, 15])
    """
    # The small epsilon keeps float noise (0.1 * 30 = 3.0000000000000004) from adding a token.
    return [min(n, max(1, math.ceil(b * n - 1e-9))) for b in ERASER_BINS]


def kept_sets(order: list[int], always: list[int], n_positions: int):
    """(deletion, insertion) kept positions for k = 0..len(order): without the k first
    tokens of ``order``; with only them (and ``always``)."""
    deleted = [sorted(set(range(n_positions)) - set(order[:k])) for k in range(len(order) + 1)]
    inserted = [sorted(always + order[:k]) for k in range(len(order) + 1)]
    return deleted, inserted


def removal_curves(
    f_keeping: Callable[[list[list[int]]], list[float]],
    order: list[int],
    always: list[int],
    n_positions: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(deletion curve, insertion curve): f with the k top tokens removed, and with only
    them kept, for k = 0..len(order). ``f_keeping(sets)`` returns f for inputs keeping each
    set of positions (the others removed by whatever convention it implements)."""
    deleted, inserted = kept_sets(order, always, n_positions)
    outputs = np.asarray(f_keeping(deleted + inserted), dtype=np.float64)
    return outputs[: len(order) + 1], outputs[len(order) + 1 :]
