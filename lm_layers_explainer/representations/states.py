"""The hidden states of many texts at every depth, pooled to one vector per text.

One batched forward pass per ``batch_size`` texts (sorted by length, padded on the right
with an attention mask, so padding changes no real token's state; None: as many as fit in
half the free memory, up to 4,096 tokens a pass); the states are the
model's own ``hidden_states`` (``output_hidden_states=True``): the embeddings, then every
layer's output. A seq2seq model's encoder reads the texts.

>>> states = layer_states(load_model("all-MiniLM-L6-v2"), ["A cat.", "A dog."])
>>> states.pooled["mean"].shape            # (depths = layers + 1, texts, hidden)
(7, 2, 384)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..checks import check_int
from ..memory import rows_that_fit, states_bytes
from ..models import LoadedModel
from ..render import progress
from ..tasks import encode

POOLINGS = ("mean", "cls", "last")
"""How a text's token states become one vector: their ``mean`` (padding excluded, as
sentence-transformers pools), the first token's (``cls``, BERT's [CLS]) or the last
token's (``last``: in a causal LM the only one that has read the whole text)."""

MAX_TEXTS = 100_000


def depth_names(lm: LoadedModel, n_depths: int) -> list[str]:
    """``embeddings``, ``layer 0``, ... : what each of the ``hidden_states`` is."""
    names = ["embeddings"] + [f"layer {i}" for i in range(n_depths - 1)]
    if lm.final_norm is not None:  # transformers applies the final norm to the last state
        names[-1] += " + final norm"
    return names


@dataclass
class LayerStates:
    """What :func:`layer_states` keeps: per pooling ``(depths, texts, hidden)`` and, with
    ``keep_tokens``, every real token's state ``(depths, tokens of all texts, hidden)``."""

    depths: list[str]
    pooled: dict[str, np.ndarray]
    token_counts: list[int]
    tokens: np.ndarray | None = None
    token_texts: list[list[str]] | None = None


def tokenized(lm: LoadedModel, texts: list[str]) -> list[list[int]]:
    """Each text's token ids as the model reads it (a seq2seq model: its encoder's)."""
    sequences = [encode(lm, text, names=(f"texts[{i}]", "")) for i, text in enumerate(texts)]
    return [s.encoder_ids if s.encoder_ids is not None else s.ids for s in sequences]


def n_depths(lm: LoadedModel) -> int:
    """How many hidden states the stack returns: the embeddings, then every layer's."""
    layers = lm.encoder_layers if lm.task.encoder_decoder else lm.layers
    return len(layers) + 1


def batch_rows(lm: LoadedModel, ids: list[list[int]], batch_size: int | None) -> int:
    """``batch_size``, or (None) as many texts of the longest length as fit."""
    return batch_size or rows_that_fit(lm, max(map(len, ids)), backward=False).rows


def estimate(lm: LoadedModel, ids: list[list[int]], batch_size: int | None,
             keep_tokens: bool) -> int:  # fmt: skip
    """The peak memory of :func:`layer_states` (see
    :func:`~lm_layers_explainer.memory.states_bytes`), in bytes."""
    tokens = sum(map(len, ids)) if keep_tokens else 0
    width = max(map(len, ids))
    return states_bytes(lm, n_depths(lm), width, batch_rows(lm, ids, batch_size), len(ids),
                        tokens)  # fmt: skip


def _stack(lm: LoadedModel):
    """The part of the model that makes the hidden states (no vocabulary head)."""
    model = lm.model
    return model.get_encoder() if lm.task.encoder_decoder else model.base_model


def layer_states(
    lm: LoadedModel,
    texts: list[str],
    *,
    batch_size: int | None = 32,
    keep_tokens: bool = False,
    ids: list[list[int]] | None = None,
) -> LayerStates:
    """Run ``texts`` through ``lm`` in batches and pool every depth's states (see module);
    what is kept is filled in place (float32), never concatenated."""
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", 1, 4096)
    ids = tokenized(lm, texts) if ids is None else ids
    batch_size = batch_rows(lm, ids, batch_size)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    stack, device = _stack(lm), lm.device
    pooled: dict[str, np.ndarray] = {}
    per_token: np.ndarray | None = None
    offsets = np.cumsum([0, *map(len, ids)])
    starts = range(0, len(ids), batch_size)
    for start in progress(starts, desc=f"hidden states of {len(ids)} texts", total=len(starts)):
        chosen = order[start : start + batch_size]
        lengths = torch.tensor([len(ids[i]) for i in chosen])
        width = int(lengths.max())
        batch = torch.full((len(chosen), width), pad, dtype=torch.long)
        for row, i in enumerate(chosen):
            batch[row, : len(ids[i])] = torch.tensor(ids[i])
        mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
        with torch.no_grad():
            output = stack(
                input_ids=batch.to(device), attention_mask=mask.to(device),
                output_hidden_states=True,
            )  # fmt: skip
        states = torch.stack(output.hidden_states).float().cpu()  # (depths, batch, width, hidden)
        del output
        depths, hidden = states.shape[0], states.shape[-1]
        if not pooled:
            pooled = {p: np.empty((depths, len(ids), hidden), np.float32) for p in POOLINGS}
            if keep_tokens:
                per_token = np.empty((depths, int(offsets[-1]), hidden), np.float32)
        weights = mask[None, :, :, None].float()
        means = (states * weights).sum(2) / lengths[None, :, None]
        last = states[:, torch.arange(len(chosen)), lengths - 1]
        for row, i in enumerate(chosen):
            pooled["mean"][:, i] = means[:, row].numpy()
            pooled["cls"][:, i] = states[:, row, 0].numpy()
            pooled["last"][:, i] = last[:, row].numpy()
            if per_token is not None:
                per_token[:, offsets[i] : offsets[i + 1]] = states[:, row, : len(ids[i])].numpy()
    result = LayerStates(
        depths=depth_names(lm, depths),
        pooled=pooled,
        token_counts=[len(i) for i in ids],
    )
    if per_token is not None:
        result.tokens = per_token
        result.token_texts = [lm.tokenizer.convert_ids_to_tokens(i) for i in ids]
    return result
