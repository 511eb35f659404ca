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


def bytes_per_row(lm: LoadedModel, n_tokens: int, *, backward: bool) -> int:
    """Estimated peak memory of one input row through the model (see the module doc)."""
    d = config_value(lm.config, "hidden") or 768
    f = config_value(lm.config, "feed_forward") or 4 * d
    h = config_value(lm.config, "heads") or 12
    element = next(lm.model.parameters()).element_size()
    vocabulary = lm.vocab_size if lm.unembedding is not None else 0
    per_token_layer = 12 * d + 4 * f + 3 * h * n_tokens
    if backward:
        numbers = lm.n_layers * n_tokens * per_token_layer + 4 * n_tokens * d + 3 * vocabulary
    else:
        numbers = n_tokens * (12 * d + 4 * f + 4 * h * n_tokens) + 2 * vocabulary
    return int(numbers * element)


def rows_that_fit(lm: LoadedModel, n_tokens: int, *, backward: bool) -> Fit:
    """The largest batch whose estimate fits in SHARE of the free memory, of at most
    MAX_ROWS rows and TOKENS_PER_PASS tokens (at least one row)."""
    per_row = bytes_per_row(lm, n_tokens, backward=backward)
    available = available_bytes(lm.device)
    most = min(MAX_ROWS, TOKENS_PER_PASS // max(n_tokens, 1))
    rows = max(1, min(most, int(SHARE * available // max(per_row, 1))))
    return Fit(rows, per_row, available)
