"""The logit lens: each layer's residual stream read through the final norm and unembedding.

    logits_l = unembedding(final_norm(h_l))

``h_l`` is the output of block ``l``, captured with a hook, so the last layer's lens equals
the model's own logits with the final norm applied exactly once (the ``hidden_states`` that
transformers returns already have the final norm applied to the last entry).
"""

from __future__ import annotations

import warnings

import torch

from .running import run
from .tasks import Sequence


class LogitLens:
    """One forward pass over a sequence; then layer-by-layer logits on demand.

    >>> lens = LogitLens(encode(lm, "The capital of France is"))
    >>> lens.logits(layer=29, states=[4]).shape       # (positions, vocabulary)
    torch.Size([1, 49152])
    """

    def __init__(self, seq: Sequence):
        lm = seq.lm
        self.lm = lm
        output, self.states = run(seq, lm.layers)
        self.model_logits = output.logits[0].float()
        bias = getattr(lm.model, "final_logits_bias", None)  # BART-style models add one
        self._bias = bias[0] if isinstance(bias, torch.Tensor) else None

    @property
    def n_layers(self) -> int:
        return len(self.states)

    def logits(self, layer: int, states: list[int]) -> torch.Tensor:
        """Lens logits (len(states), vocabulary) of ``layer`` at the given state positions."""
        hidden = self.states[layer][states]
        with torch.no_grad():
            if self.lm.final_norm is not None:
                hidden = self.lm.final_norm(hidden)
            logits = self.lm.unembedding(hidden)
            if self._bias is not None:
                logits = logits + self._bias
        return logits.float()

    def check_last_layer(self, states: list[int], atol: float = 1e-4) -> None:
        """Warn if the last layer's lens does not reproduce the model's own output there."""
        last = self.logits(self.n_layers - 1, states).softmax(-1)
        own = self.model_logits[states].softmax(-1)
        if not torch.allclose(last, own, atol=atol):
            warnings.warn(
                f"the logit lens at the last layer of {self.lm.name} differs from the model's "
                f"output (max |dp| = {float((last - own).abs().max()):.2g}): this architecture "
                "changes the logits after its head (scaling, soft-capping); read the "
                "intermediate layers with care",
                stacklevel=3,
            )


def ranks_of(logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """1-based rank of each token among the vocabulary: 1 + how many score strictly higher.

    ``logits`` (n, vocabulary), ``token_ids`` (n,) or (n, k) -> ranks of the same shape.
    """
    ids = token_ids if token_ids.dim() == 2 else token_ids[:, None]
    chosen = logits.gather(1, ids)
    ranks = (logits[:, None, :] > chosen[:, :, None]).sum(-1) + 1
    return ranks if token_ids.dim() == 2 else ranks[:, 0]
