"""How many inputs go through the model at once: chosen from the input's size and the memory
this machine has free, before any work.

>>> rows_that_fit(lm, n_tokens=512, backward=True)     # SmolLM2, 24 GB free
Fit(rows=7, bytes_per_row=1656815616, available=24522735616)

A pass with gradients keeps every layer's activations for the backward pass: per input row
about ``layers x tokens x (12 d + 4 f + 3 h n)`` numbers (hidden size d, feed-forward size f,
h attention heads, n tokens: the attention weights grow with n squared). A pass without
gradients keeps about one layer's at a time. Against the peak resident memory measured on
SmolLM2: integrated gradients 974 MiB estimated for 1067 measured (128 tokens, 4 inputs),
1176 for 1117 (256 tokens, 2), 1580 for 1352 (512 tokens, 1); feature ablation 495 for 531
(512 tokens, 8 inputs per pass).

The same numbers bound every explainer before any work (one place): what each needs
(:func:`rollout_bytes`, :func:`patching_bytes`, :func:`states_bytes`,
:func:`measure_bytes`, :func:`nmf_bytes`) is refused by :func:`check_fits` when it is more
than :data:`REFUSE_ABOVE` of the free memory, and a call of more than ``max_passes``
forward passes (:data:`MAX_PASSES`) by :func:`check_passes`, each naming what to change.
What is allowed runs with a progress bar once its work (:func:`forward_work`, in
multiply-adds) passes :data:`SLOW_WORK`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .families import config_value

if TYPE_CHECKING:
    from .models import LoadedModel

SHARE = 0.5
"""Of the memory available, the share a batch may plan to use (the rest: the caller's)."""
REFUSE_ABOVE = 0.9
"""A computation whose estimated peak exceeds this share of the free memory is refused."""
MAX_PASSES = 10_000
"""The most forward passes (batches) one call makes unless its ``max_passes`` says more: on
a CPU a pass of :data:`TOKENS_PER_PASS` tokens takes 10-20 s on SmolLM2, so this is about a
day. More is refused before any work, naming the choices that do less."""
SLOW_WORK = 10**10
"""Multiply-adds above which a stage shows a progress bar: a few seconds on 2 CPU cores."""
CHUNK_BYTES = 64 * 2**20
"""Rows of a large array converted to float64 at a time (CKA, the attention rollout)."""
LAYER_COPIES = 12
"""The layer methods (conductance, gradient x activation) keep, per input, about this many
numbers per layer, token and feature besides the gradient pass: each layer's output and
gradient per step, their differences and products. An upper bound: layer conductance of all
30 SmolLM2 layers at 507 tokens, 5 inputs per pass, is estimated at 9.6 GiB for its batches
and peaked at 8.1 GiB resident, the process and the model included (one layer: 7.4 GiB)."""
MAX_ROWS = 32
"""The most rows per batch: beyond it, larger batches no longer run faster on a CPU."""
TOKENS_PER_PASS = 4096
"""The most tokens per batch (32 rows of 128): a larger pass is no faster per token on a
CPU, and Ctrl-C has to wait for the pass in progress (on SmolLM2, 2 CPU cores: about 10 s
without gradients, 20 s with them)."""


@dataclass(frozen=True)
class Fit:
    rows: int
    bytes_per_row: int
    available: int

    def describe(self) -> str:
        return (
            f"batches of {self.rows} (about {self.bytes_per_row / 2**30:.2f} GiB each of "
            f"{self.available / 2**30:.1f} GiB available)"
        )


def available_bytes(device: torch.device) -> int:
    """Memory free for new tensors: the GPU's free memory, or the system's available RAM."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30  # unknown: assume a laptop's share


def hidden_size(lm: LoadedModel) -> int:
    return config_value(lm.config, "hidden") or 768


def element_size(lm: LoadedModel) -> int:
    """Bytes per number of the model's weights (and so of its activations)."""
    return next(lm.model.parameters()).element_size()


def bytes_per_row(lm: LoadedModel, n_tokens: int, *, backward: bool, kept_layers: int = 0) -> int:
    """Estimated peak memory of one input row through the model (see the module doc);
    ``kept_layers``: layers whose output and gradient a layer method keeps (see
    :data:`LAYER_COPIES`)."""
    d = hidden_size(lm)
    f = config_value(lm.config, "feed_forward") or 4 * d
    h = config_value(lm.config, "heads") or 12
    vocabulary = lm.vocab_size if lm.unembedding is not None else 0
    per_token_layer = 12 * d + 4 * f + 3 * h * n_tokens
    if backward:
        numbers = lm.n_layers * n_tokens * per_token_layer + 4 * n_tokens * d + 3 * vocabulary
    else:
        numbers = n_tokens * (12 * d + 4 * f + 4 * h * n_tokens) + 2 * vocabulary
    numbers += kept_layers * LAYER_COPIES * n_tokens * d
    return int(numbers * element_size(lm))


def rows_that_fit(lm: LoadedModel, n_tokens: int, *, backward: bool, kept_layers: int = 0) -> Fit:
    """The largest batch whose estimate fits in SHARE of the free memory, of at most
    MAX_ROWS rows and TOKENS_PER_PASS tokens (at least one row)."""
    per_row = bytes_per_row(lm, n_tokens, backward=backward, kept_layers=kept_layers)
    available = available_bytes(lm.device)
    most = min(MAX_ROWS, TOKENS_PER_PASS // max(n_tokens, 1))
    rows = max(1, min(most, int(SHARE * available // max(per_row, 1))))
    return Fit(rows, per_row, available)


# --------------------------------------------------------------------------- refusals


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.2f} GiB"


def check_fits(device: torch.device, needed: int, what: str, fix: str) -> int:
    """Refuse ``what`` (a ValueError, before any work) when its estimated peak ``needed``
    (bytes) is more than :data:`REFUSE_ABOVE` of the free memory; ``fix`` names what to
    change. Returns the free memory."""
    available = available_bytes(device)
    if needed > REFUSE_ABOVE * available:
        raise ValueError(
            f"{what} needs about {gib(needed)}, more than the {gib(available)} available: {fix}"
        )
    return available


def check_passes(passes: int, max_passes: int, what: str, fix: str) -> int:
    """Refuse ``what`` when it takes more than ``max_passes`` forward passes (see
    :data:`MAX_PASSES`); ``fix`` names the choices that do less."""
    if passes > max_passes:
        raise ValueError(
            f"{what} takes {passes:,} forward passes, more than max_passes={max_passes:,} "
            f"(about a day on a CPU): {fix}, or raise max_passes"
        )
    return passes


# --------------------------------------------------------------------------- estimates


def forward_work(lm: LoadedModel, n_tokens: int) -> int:
    """Multiply-adds of one pass of one row: per layer and token the projections (4 d^2),
    the feed-forward layer (3 d f) and the attention over the tokens (2 n d)."""
    d = hidden_size(lm)
    f = config_value(lm.config, "feed_forward") or 4 * d
    return lm.n_layers * n_tokens * (4 * d * d + 3 * d * f + 2 * n_tokens * d)


def rollout_bytes(lm: LoadedModel, n_tokens: int) -> int:
    """Attention rollout: one pass without gradients, plus the running product, one layer's
    head-averaged attention and their product (tokens x tokens each, float64)."""
    return bytes_per_row(lm, n_tokens, backward=False) + 3 * n_tokens**2 * 8


def patching_bytes(lm: LoadedModel, n_tokens: int, rows: int, n_sites: int) -> int:
    """Activation patching: the clean run's activations at ``n_sites`` sites of every
    layer (kept) and its logits at every position, then passes of ``rows`` runs, each with
    a patched copy of one site."""
    per_site = n_tokens * hidden_size(lm) * element_size(lm)
    clean = (n_sites * lm.n_layers + 1) * per_site + n_tokens * lm.vocab_size * element_size(lm)
    return clean + rows * (bytes_per_row(lm, n_tokens, backward=False) + per_site)


def states_bytes(
    lm: LoadedModel, depths: int, width: int, rows: int, n_texts: int, n_tokens: int
) -> int:
    """Hidden states of ``n_texts`` texts (``n_tokens`` tokens in all), kept in float32:
    every depth pooled three ways, and every token's (``n_tokens`` 0: none); plus one pass
    of ``rows`` texts ``width`` tokens long and its states (stacked, then as float32)."""
    d = hidden_size(lm)
    one_pass = rows * (bytes_per_row(lm, width, backward=False) + 2 * depths * width * d * 4)
    return one_pass + 4 * depths * d * (3 * n_texts + n_tokens)


def measure_bytes(measure: str, n: int, widths: list[int], depths: int, dims: int = 20) -> int:
    """The working memory of one similarity ``measure`` over ``n`` datapoints, on top of the
    states: ``widths`` the two models' neurons, ``depths`` the other model's depths. CKA
    accumulates one depth's cross-products with every other depth, a chunk of rows at a
    time; the CCAs hold one pair of depths in float64 with its covariance; SVCCA also
    keeps every depth's top ``dims`` directions."""
    p, q = widths
    if measure == "cka":
        return 8 * p * q * (depths + 1) + 2 * CHUNK_BYTES
    pair = 3 * 8 * n * (p + q) + 4 * 8 * (p + q) ** 2
    if measure == "svcca":
        return pair + 8 * n * dims * 2 * (depths + 1)
    return pair


def nmf_bytes(n_tokens: int, n_features: int, n_components: int) -> int:
    """NMF of (tokens, features) activations in float32: the data (made positive, then laid
    out tokens x features), the product of the factors and the difference from it (for the
    error), and the factors with their products."""
    return 4 * 4 * n_tokens * n_features + 8 * 3 * (n_tokens + n_features) * n_components
