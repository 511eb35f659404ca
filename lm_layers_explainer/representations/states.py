"""The hidden states of many texts at every depth, pooled to one vector per text.

One batched forward pass per ``batch_size`` texts (sorted by length, padded on the right
with an attention mask, so padding changes no real token's state); the states are the
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


def _stack(lm: LoadedModel):
    """The part of the model that makes the hidden states (no vocabulary head)."""
    model = lm.model
    return model.get_encoder() if lm.task.encoder_decoder else model.base_model


def layer_states(
    lm: LoadedModel,
    texts: list[str],
    *,
    batch_size: int = 32,
    keep_tokens: bool = False,
    ids: list[list[int]] | None = None,
) -> LayerStates:
    """Run ``texts`` through ``lm`` in batches and pool every depth's states (see module)."""
    batch_size = check_int(batch_size, "batch_size", 1, 4096)
    ids = tokenized(lm, texts) if ids is None else ids
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    stack, device = _stack(lm), lm.device
    pooled: dict[str, list] = {p: [None] * len(ids) for p in POOLINGS}
    per_token: list | None = [None] * len(ids) if keep_tokens else None
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
        weights = mask[None, :, :, None].float()
        means = (states * weights).sum(2) / lengths[None, :, None]
        last = states[:, torch.arange(len(chosen)), lengths - 1]
        for row, i in enumerate(chosen):
            pooled["mean"][i] = means[:, row]
            pooled["cls"][i] = states[:, row, 0]
            pooled["last"][i] = last[:, row]
            if per_token is not None:
                per_token[i] = states[:, row, : len(ids[i])]
    result = LayerStates(
        depths=depth_names(lm, len(output.hidden_states)),
        pooled={p: torch.stack(v, 1).numpy() for p, v in pooled.items()},
        token_counts=[len(i) for i in ids],
    )
    if per_token is not None:
        result.tokens = torch.cat(per_token, 1).numpy()
        result.token_texts = [lm.tokenizer.convert_ids_to_tokens(i) for i in ids]
    return result
