"""Positions, tokens and generation, shared by the explainers (encoding and running the
model are :mod:`.tasks`').

Positions count tokens from 0 as the tokenizer produces them (as in ecco). ``position=p``
asks what the model predicts for the token at ``p``: a causal model (or a seq2seq decoder)
predicts it from the hidden state at ``p - 1``, a masked model from the state at ``p``.

>>> seq = extend(encode(load_model("tiny-gpt2"), "The cat sat"), 2)
>>> seq.n_input, len(seq)
(3, 5)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .checks import check_bool, check_int, check_seed, check_unicode, is_int
from .render import progress
from .running import Stepper
from .tasks import Sequence, check_length, context_length, token_texts

if TYPE_CHECKING:
    from .models import LoadedModel


def token_id(lm: LoadedModel, token, name: str, id_name: str | None = None) -> int:
    """The vocabulary id of ``token``: a text that is exactly one token, or an id.

    ``name`` is the parameter named in errors (``id_name`` for an id out of range).
    """
    id_name = id_name or name
    if isinstance(token, str):
        if not token:
            raise ValueError(f"{name} must be a non-empty token text or an int id; got ''")
        check_unicode(token, name)
        ids = lm.tokenizer(token, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(
                f"{name} must be one token of {lm.name}'s vocabulary; {token!r} is not a single "
                f"token: it splits into {token_texts(lm.tokenizer, ids)}. Give one of them, or "
                "a token id"
            )
        return int(ids[0])
    if not is_int(token):
        raise TypeError(f"{name} must be an int (a token id) or a token text; got {token!r}")
    if not 0 <= int(token) < lm.vocab_size:
        raise ValueError(f"{id_name} must be in 0..{lm.vocab_size - 1}; got {token}")
    return int(token)


def spaced_tokens(lm: LoadedModel, text: str, tokens: list[str]) -> list[str]:
    """The tokens as they sit in the text: a space in front of a token that followed a gap.

    WordPiece tokens ("the", "cat") carry no spaces; byte-level ones (" cat") do. The
    tokenizer's character offsets tell where the text had whitespace. Without offsets (slow
    tokenizers) the tokens are returned as they are.
    """
    try:
        offsets = lm.tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
    except (NotImplementedError, TypeError, ValueError, KeyError):
        return list(tokens)
    if len(offsets) != len(tokens):
        return list(tokens)
    spaced, previous_end = [], None
    for token, (start, end) in zip(tokens, offsets, strict=True):
        gap = previous_end is not None and start > previous_end and end > start
        spaced.append(" " + token if gap and not token[:1].isspace() else token)
        if end > start:
            previous_end = end
    return spaced


def describe_positions(seq: Sequence) -> str:
    shown = ", ".join(f"{i}:{token!r}" for i, token in enumerate(seq.tokens[:40]))
    more = f", ... ({len(seq)} in all)" if len(seq) > 40 else ""
    return f"tokens: {shown}{more}"


def position_range(lm: LoadedModel, seq: Sequence, allow_generation: bool) -> tuple[int, int]:
    """Smallest and largest valid ``position`` (inclusive); None for no upper bound.

    With generation, a causal model (or seq2seq decoder) reaches position ``p`` by running on
    ``p`` tokens, so ``p`` goes up to the model's context length (no bound if the config
    names none).
    """
    if lm.task.reads_in_place:
        return 0, len(seq) - 1
    if allow_generation:
        return 1, context_length(lm)
    return 1, len(seq)


def check_position(position, lm: LoadedModel, seq: Sequence, *, allow_generation: bool) -> int:
    low, high = position_range(lm, seq, allow_generation)
    if not is_int(position):
        raise TypeError(f"position must be an int; got {type(position).__name__}")
    position = int(position)
    if position < low or (high is not None and position > high):
        if not allow_generation or lm.task.reads_in_place:
            what = f"{low}..{high}"
        elif high is None:
            what = f"{low} or more (past {len(seq)} generates)"
        else:
            what = (
                f"{low}..{high} (past {len(seq)} generates; {high} is {lm.name}'s context "
                "length, the most tokens it takes)"
            )
        why = (
            " (a causal model predicts position p from position p-1, so 0 has no prediction)"
            if not lm.task.reads_in_place and position < low
            else ""
        )
        raise ValueError(
            f"position must be in {what}; got {position}{why}. {describe_positions(seq)}"
        )
    return position


def check_generation(lm: LoadedModel, generate, n_tokens: int = 0) -> int:
    """``generate`` new tokens after ``n_tokens``: an int >= 0 that stays within the model's
    context (refused for models that fill in tokens rather than continue a text)."""
    generate = check_int(generate, "generate", 0)
    if generate and lm.task.reads_in_place:
        raise ValueError(
            f"generate must be 0 for a {lm.kind} model ({lm.name}): it fills in tokens, "
            "it does not continue a text; put [MASK] where you want a prediction"
        )
    limit = context_length(lm)
    if limit is not None and n_tokens + generate > limit:
        raise ValueError(
            f"generate must be in 0..{max(limit - n_tokens, 0)}: the text has {n_tokens} "
            f"tokens and {lm.name} takes at most {limit} (its context length); got {generate}"
        )
    return generate


GENERATION_PROGRESS = 32
"""Generations of at least this many tokens show a progress bar."""


def check_sampling(do_sample, seed) -> tuple[bool, int]:
    """``do_sample`` (True or False) and its ``seed``, checked before any generation."""
    return check_bool(do_sample, "do_sample"), check_seed(seed)


def extend(seq: Sequence, n: int, *, do_sample: bool = False, seed: int = 0) -> Sequence:
    """Return ``seq`` with ``n`` more tokens, each the model's own choice: the most probable
    next token (greedy), or with ``do_sample`` a draw from the model's softmax (temperature
    1, nothing cut off), seeded by ``seed``.

    This is a plain loop over the model's forward pass (with its key/value cache), not
    ``generate()``: a checkpoint's generation config can force tokens (BOS/EOS), suppress
    some, ban words, penalize repeats or impose a minimum length, and none of that is the
    model's prediction. An end-of-sequence token is kept like any other, and generation goes
    on after it. The caller's random state is untouched; Ctrl-C stops between two tokens.

    >>> extend(encode(lm, "The cat"), 2).tokens
    ['The', ' cat', ...two more]
    """
    if n <= 0:
        return seq
    lm = seq.lm
    check_length(lm, len(seq) + n, "with the generated tokens")
    generator = torch.Generator().manual_seed(seed) if do_sample else None
    ids = list(seq.ids)
    step = Stepper(seq)
    for _ in progress(range(n), desc="generating", show=n >= GENERATION_PROGRESS):
        logits = step(ids).float().cpu()
        if do_sample:
            token = int(torch.multinomial(logits.softmax(-1), 1, generator=generator))
        else:
            token = int(logits.argmax())
        ids.append(token)
    return seq.with_ids(ids)
