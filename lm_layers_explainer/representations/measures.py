"""Similarity of two representations of the same datapoints: CKA, CCA, SVCCA, PWCCA.

Each takes two arrays ``(datapoints, neurons)`` (the neuron counts may differ) and returns a
number, 1 for representations that are the same up to the transformations the measure
ignores. They follow the papers' definitions as their authors' reference code computes them
(google/svcca, which ``ecco.analysis`` ships), so that numbers agree with ecco's:

- **cka** (Kornblith et al. 2019), linear:
  ``||Yᵀ X||²_F / (||Xᵀ X||_F ||Yᵀ Y||_F)`` on centred X, Y. Invariant to orthogonal
  transforms and isotropic scaling, not to other invertible linear maps.
- **cca** (Raghu et al. 2017): the canonical correlations ``ρ_i``, the singular values of
  ``Σxx^-1/2 Σxy Σyy^-1/2``; reported as the mean of the leading ``ρ_i`` that make up 98 % of
  their sum (the reference code's "mean", which drops the trailing near-zero ones).
  Invariant to every invertible linear map, so it needs more datapoints than neurons.
- **svcca** (Raghu et al. 2017): each representation reduced to its top ``dims`` singular
  directions first, then the plain mean of all canonical correlations.
- **pwcca** (Morcos et al. 2018): the canonical correlations weighted by how much of the
  representation their directions account for, as the reference ``compute_pwcca`` forms
  them (directions orthonormalized by QR, weights summed over the neurons' projections).

The covariances are computed, scaled and regularized (``epsilon`` on the diagonal; neurons
with variance below ``epsilon`` dropped) as the reference code does.
"""

from __future__ import annotations

import numpy as np

from ..memory import CHUNK_BYTES
from ..render import progress

MEASURES = ("cka", "cca", "svcca", "pwcca")
THRESHOLD = 0.98
EPSILON = 1e-10


def cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of ``x`` (n, p) and ``y`` (n, q)."""
    x = x - x.mean(0)
    y = y - y.mean(0)
    cross = np.linalg.norm(y.T @ x) ** 2
    return float(cross / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def _whitened_svd(x: np.ndarray, y: np.ndarray, epsilon: float):
    """The SVD of ``Σxx^-1/2 Σxy Σyy^-1/2`` (covariances scaled to a largest entry of 1,
    low-variance neurons dropped, ``epsilon`` added to the diagonal) and which neurons were
    kept: ``(u, ρ, kept_x, kept_y)``."""
    p = x.shape[1]
    covariance = np.cov(x, y, rowvar=False)
    sxx, sxy, syy = covariance[:p, :p], covariance[:p, p:], covariance[p:, p:]
    xmax, ymax = np.abs(sxx).max(), np.abs(syy).max()
    sxx, syy, sxy = sxx / xmax, syy / ymax, sxy / np.sqrt(xmax * ymax)
    kept_x, kept_y = np.abs(np.diag(sxx)) >= epsilon, np.abs(np.diag(syy)) >= epsilon
    sxx, syy, sxy = sxx[kept_x][:, kept_x], syy[kept_y][:, kept_y], sxy[kept_x][:, kept_y]
    u, rho, _ = np.linalg.svd(_inverse_sqrt(sxx, epsilon) @ sxy @ _inverse_sqrt(syy, epsilon))
    return u, np.abs(rho), kept_x, kept_y


def _inverse_sqrt(sigma: np.ndarray, epsilon: float) -> np.ndarray:
    """``(Σ + εI)^-1/2`` of a symmetric positive semi-definite matrix (via its pseudo-inverse,
    as the reference code takes it)."""
    values, vectors = np.linalg.eigh(np.linalg.pinv(sigma + epsilon * np.eye(len(sigma))))
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def canonical_correlations(x: np.ndarray, y: np.ndarray, epsilon: float = EPSILON) -> np.ndarray:
    """The canonical correlations of ``x`` (n, p) and ``y`` (n, q), largest first."""
    return _whitened_svd(x, y, epsilon)[1]


def _leading(rho: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """The leading correlations whose sum first reaches ``threshold`` of the total."""
    share = np.concatenate([[0.0], np.cumsum(rho)]) / rho.sum()
    return rho[: int(np.argmax(share >= threshold))]


def cca(x: np.ndarray, y: np.ndarray, epsilon: float = EPSILON) -> float:
    """Mean of the leading canonical correlations (98 % of their sum) of x and y."""
    return float(_leading(canonical_correlations(x, y, epsilon)).mean())


def top_directions(x: np.ndarray, dims: int) -> np.ndarray:
    """``x`` centred and projected on its top ``dims`` singular directions (n, dims)."""
    u, s, _ = np.linalg.svd(x - x.mean(0), full_matrices=False)
    return u[:, :dims] * s[:dims]


def svcca(x: np.ndarray, y: np.ndarray, dims: int = 20, epsilon: float = EPSILON) -> float:
    """Mean canonical correlation of x and y, each first reduced to ``dims`` directions."""
    rho = canonical_correlations(top_directions(x, dims), top_directions(y, dims), epsilon)
    return float(rho.mean())


def pwcca(x: np.ndarray, y: np.ndarray, epsilon: float = EPSILON) -> float:
    """Canonical correlations of x and y, weighted by projection (Morcos et al. 2018),
    from the side with fewer neurons (after dropping those without variance)."""
    u, rho, kept, kept_y = _whitened_svd(x, y, epsilon)
    if kept.sum() > kept_y.sum():  # the reference weighs by the side with fewer neurons
        x, y = y, x
        u, rho, kept, _ = _whitened_svd(x, y, epsilon)
    acts = x[:, kept]
    means = acts.mean(0)
    directions = (acts - means) @ u + means  # as the reference forms them, (n, k)
    basis, _ = np.linalg.qr(directions)
    weights = np.abs(basis.T @ acts).sum(1)
    weights = weights[: len(rho)] / weights[: len(rho)].sum()
    return float((weights * rho).sum())


def similarity(measure: str, x: np.ndarray, y: np.ndarray, dims: int = 20) -> float:
    """``measure`` (one of :data:`MEASURES`) of x and y."""
    if measure == "svcca":
        return svcca(x, y, dims)
    return {"cka": cka, "cca": cca, "pwcca": pwcca}[measure](x, y)


def matrix(measure: str, a, b=None, dims: int = 20, *, rows=None, show: bool = False):
    """``measure`` of every ``a[i]`` with every ``b[j]`` (``b`` None: ``a`` with itself, a
    symmetric measure computed once per pair). ``a`` and ``b``: sequences of (datapoints,
    neurons) arrays of any float type (a ``(depths, datapoints, neurons)`` array is one),
    read in float64 a piece at a time; ``rows``: the datapoints used (None: all). CKA
    accumulates its cross-products a chunk of rows at a time, so its memory does not grow
    with the datapoints; what depends on one array alone (its mean and norm for CKA, its top
    directions for SVCCA) is computed once per array. ``show``: a progress bar."""
    same = b is None
    b = a if same else b
    if measure == "cka":
        return _cka_matrix(a, b, same, rows, show)
    if measure == "svcca":
        a = [top_directions(_rows(x, rows), dims) for x in a]
        b = a if same else [top_directions(_rows(y, rows), dims) for y in b]

        def pair(x, y):
            return float(canonical_correlations(x, y).mean())

        rows = None
    else:

        def pair(x, y):
            return similarity(measure, x, y)

    symmetric = same and measure != "pwcca"  # pwcca weighs by one side's directions
    result = np.empty((len(a), len(b)))
    bar = progress(total=len(a) * len(b), desc=f"{measure} of every pair of depths", show=show)
    with bar:
        for i in range(len(a)):
            x = _rows(a[i], rows)
            for j in range(len(b)):
                result[i, j] = result[j, i] if symmetric and j < i else pair(x, _rows(b[j], rows))
                bar.update(1)
    return result


def _rows(x, rows, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Rows ``start:stop`` of ``x`` (of those listed in ``rows``, None: all) in float64."""
    chosen = slice(start, stop) if rows is None else rows[start:stop]
    return np.asarray(x[chosen], dtype=np.float64)


def _cka_matrix(a, b, same: bool, rows, show: bool) -> np.ndarray:
    """Linear CKA of every pair, from centred cross-products ``Y_jᵀ X_i`` summed over chunks
    of :data:`~lm_layers_explainer.memory.CHUNK_BYTES` (see :func:`cka`)."""
    n = (len(a[0]) if rows is None else len(rows)) if len(a) else 0
    width = max(x.shape[1] for x in [*a, *b])
    step = max(1, CHUNK_BYTES // (8 * width * (len(b) + 1)))
    chunks = [(start, start + step) for start in range(0, n, step)]

    def means(arrays):
        return [sum(_rows(x, rows, *c).sum(0) for c in chunks) / n for x in arrays]

    mean_a = means(a)
    mean_b = mean_a if same else means(b)
    squares = np.empty((len(a), len(b)))  # ||Y_jᵀ X_i||_F^2
    with progress(range(len(a)), desc="cka of every pair of depths", show=show) as bar:
        for i in bar:
            others = range(i, len(b)) if same else range(len(b))
            cross = {j: 0.0 for j in others}
            for c in chunks:
                x = _rows(a[i], rows, *c) - mean_a[i]
                for j in others:
                    cross[j] = cross[j] + (_rows(b[j], rows, *c) - mean_b[j]).T @ x
            for j in others:
                squares[i, j] = np.square(cross[j]).sum()
                if same:
                    squares[j, i] = squares[i, j]
    if same:
        norm_a = norm_b = np.sqrt(np.diag(squares))
    else:
        norm_a, norm_b = (_self_norms(arrays, found, rows, chunks)
                          for arrays, found in ((a, mean_a), (b, mean_b)))  # fmt: skip
    return squares / np.outer(norm_a, norm_b)


def _self_norms(arrays, means, rows, chunks) -> np.ndarray:
    """``||Xᵀ X||_F`` of each centred array, over chunks of rows."""
    norms = []
    for x, mean in zip(arrays, means, strict=True):
        gram = 0.0
        for c in chunks:
            centred = _rows(x, rows, *c) - mean
            gram = gram + centred.T @ centred
        norms.append(np.linalg.norm(gram))
    return np.array(norms)
