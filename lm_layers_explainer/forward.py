"""The shared forward-pass core: encode a text, check positions, generate, capture layer outputs.

Positions count tokens from 0 as the tokenizer produces them (as in ecco). ``position=p``
asks what the model predicts for the token at ``p``: a causal model (or a seq2seq decoder)
predicts it from the hidden state at ``p - 1``, a masked model from the state at ``p``.

>>> seq = encode(load_model("tiny-gpt2"), "The cat sat")
>>> seq.tokens, seq.n_input
(['The', ' cat', ' sat'], 3)
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .checks import check_bool, check_int, check_seed, check_text, is_int
from .models import LoadedModel
from .render import progress

READS_IN_PLACE = ("masked", "encoder", "classifier")
"""Kinds whose hidden state at a position describes that position itself (bidirectional
encoders); the others (causal, seq2seq decoders) predict the next token from it."""


@dataclass
class Sequence:
    """The token sequence the explainers index: the text's tokens for causal, masked and
    encoder models; the decoder's tokens (starting with its start token) for seq2seq models,
    whose text goes to the encoder as ``encoder_ids``."""

    lm: LoadedModel
    text: str
    ids: list[int]
    n_input: int
    encoder_ids: list[int] | None = None

    @property
    def tokens(self) -> list[str]:
        return token_texts(self.lm.tokenizer, self.ids)

    @property
    def encoder_tokens(self) -> list[str] | None:
        if self.encoder_ids is None:
            return None
        return token_texts(self.lm.tokenizer, self.encoder_ids)

    def __len__(self) -> int:
        return len(self.ids)


def token_texts(tokenizer, ids) -> list[str]:
    """Each token id decoded on its own (" Paris", "##ville", "[CLS]")."""
    return [tokenizer.decode([int(i)]) for i in ids]


def token_id(lm: LoadedModel, token, name: str, id_name: str | None = None) -> int:
    """The vocabulary id of ``token``: a text that is exactly one token, or an id.

    ``name`` is the parameter named in errors (``id_name`` for an id out of range).
    """
    id_name = id_name or name
    if isinstance(token, str):
        if not token:
            raise ValueError(f"{name} must be a non-empty token text or an int id; got ''")
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


def check_length(lm: LoadedModel, n_tokens: int, part: str | None = None) -> None:
    """Refuse a sequence longer than the model's context, before any model work."""
    limit = context_length(lm)
    if limit is not None and n_tokens > limit:
        where = f" ({part})" if part else ""
        raise ValueError(
            f"text is {n_tokens} tokens long{where}, longer than the model's context of "
            f"{limit} tokens"
        )


def context_length(lm: LoadedModel) -> int | None:
    """The longest sequence the model takes, from its config (None if it does not say)."""
    config = lm.config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def encode(lm: LoadedModel, text: str) -> Sequence:
    """Tokenize ``text`` for ``lm``; raises ValueError for empty or too long texts."""
    text = check_text(text)
    ids = list(lm.tokenizer(text)["input_ids"])
    check_length(lm, len(ids))
    if lm.kind == "seq2seq":
        start = lm.config.decoder_start_token_id
        if start is None:
            raise ValueError(f"{lm.name} has no decoder_start_token_id in its config")
        return Sequence(lm, text, [int(start)], n_input=1, encoder_ids=ids)
    return Sequence(lm, text, ids, n_input=len(ids))


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


def predicted_from(lm: LoadedModel, position: int) -> int:
    """The position whose hidden state predicts the token at ``position``."""
    return position if lm.kind in READS_IN_PLACE else position - 1


def position_range(lm: LoadedModel, seq: Sequence, allow_generation: bool) -> tuple[int, int]:
    """Smallest and largest valid ``position`` (inclusive); None for no upper bound.

    With generation, a causal model (or seq2seq decoder) reaches position ``p`` by running on
    ``p`` tokens, so ``p`` goes up to the model's context length (no bound if the config
    names none).
    """
    if lm.kind in READS_IN_PLACE:
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
        if not allow_generation or lm.kind in READS_IN_PLACE:
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
            if lm.kind not in READS_IN_PLACE and position < low
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
    if generate and lm.kind in READS_IN_PLACE:
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
    step = _Stepper(seq)
    for _ in progress(range(n), desc="generating", show=n >= GENERATION_PROGRESS):
        logits = step(ids).float().cpu()
        if do_sample:
            token = int(torch.multinomial(logits.softmax(-1), 1, generator=generator))
        else:
            token = int(logits.argmax())
        ids.append(token)
    return Sequence(lm, seq.text, ids, seq.n_input, seq.encoder_ids)


class _Stepper:
    """The model's next-token logits for a growing sequence, one new token per call after
    the first (a key/value cache keeps the earlier ones)."""

    def __init__(self, seq: Sequence):
        self.lm = seq.lm
        self.cache = None
        self.seen = 0
        self.encoder_outputs = None
        self.keep_one = "logits_to_keep" in inspect.signature(self.lm.model.forward).parameters
        if self.lm.kind == "seq2seq":
            encoder_ids = torch.tensor([seq.encoder_ids], device=self.lm.device)
            with torch.no_grad():
                self.encoder_outputs = self.lm.model.get_encoder()(input_ids=encoder_ids)

    def __call__(self, ids: list[int]) -> torch.Tensor:
        device = self.lm.device
        new = torch.tensor([ids[self.seen :]], device=device)
        options = {"past_key_values": self.cache, "use_cache": True}
        if self.keep_one:
            options["logits_to_keep"] = 1
        with torch.no_grad():
            if self.lm.kind == "seq2seq":
                out = self.lm.model(
                    encoder_outputs=self.encoder_outputs, decoder_input_ids=new, **options
                )
            else:
                mask = torch.ones((1, len(ids)), dtype=torch.long, device=device)
                out = self.lm.model(input_ids=new, attention_mask=mask, **options)
        self.cache, self.seen = out.past_key_values, len(ids)
        return out.logits[0, -1]


@contextmanager
def capture_outputs(modules, *, inputs: bool = False):
    """Collect each module's output (or first input) during a forward pass, in order."""
    captured: list[torch.Tensor | None] = [None] * len(modules)
    handles = []

    def hook_for(index):
        def hook(module, args, output):
            value = args[0] if inputs else output
            captured[index] = (value[0] if isinstance(value, tuple) else value).detach()

        return hook

    for index, module in enumerate(modules):
        handles.append(module.register_forward_hook(hook_for(index)))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def run(seq: Sequence, modules, *, inputs: bool = False, encoder: bool = False):
    """One forward pass over ``seq``; returns (the model output, what the modules saw).

    Each captured tensor has the batch dimension removed: (tokens, features).
    """
    lm = seq.lm
    device = lm.device
    with capture_outputs(modules, inputs=inputs) as captured, torch.no_grad():
        if lm.kind == "seq2seq":
            encoder_ids = torch.tensor([seq.encoder_ids], device=device)
            if encoder:
                output = lm.model.get_encoder()(input_ids=encoder_ids)
            else:
                output = lm.model(
                    input_ids=encoder_ids, decoder_input_ids=torch.tensor([seq.ids], device=device)
                )
        else:
            ids = torch.tensor([seq.ids], device=device)
            output = lm.model(input_ids=ids, attention_mask=torch.ones_like(ids))
    return output, [tensor[0] for tensor in captured]
