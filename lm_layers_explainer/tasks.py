"""Task kinds: how each kind of model is given a text and read; one table.

:data:`TASKS` maps a model's kind (``causal``, ``masked``, ``encoder``, ``seq2seq``,
``classifier``) to a :class:`Task`. Explainers never branch on the kind: they encode with
:func:`encode`, run the model with :func:`lm_layers_explainer.running.run` (or
``logits_of_embeddings``, or a ``Stepper`` for generation), and ask ``lm.task`` what a
position means.

>>> seq = encode(load_model("tiny-bert"), "a b", "c")      # a pair, with token types
>>> seq.pair_start, seq.token_type_ids
(4, [0, 0, 0, 0, 1, 1])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import transformers

from .checks import check_text
from .families import config_value

if TYPE_CHECKING:  # models imports this module
    from .models import LoadedModel


@dataclass(frozen=True)
class Task:
    """What a kind of model is and how it reads a text.

    ``reads_in_place``: the hidden state at a position describes that position (a
    bidirectional encoder; a masked LM predicts the ``[MASK]`` there), else it predicts the
    next token (causal LMs, seq2seq decoders). ``second_text``: how a second text is given:
    as a second ``segment`` (the tokenizer's pair encoding, with token types), as a
    ``continuation`` of the first, or as the ``decoder``'s input (the first goes to the
    encoder). ``explains``: what the attributions explainer explains: the ``next_token``
    (of a causal LM, or of a seq2seq model's decoder), the one ``mask``, a ``class`` of the
    whole text, the ``span`` of an answer (its start and end), a ``label`` of each token, or
    None (refused).
    """

    kind: str
    auto_class: str
    reads_in_place: bool
    vocabulary_head: bool
    second_text: str
    encoder_decoder: bool = False
    explains: str | None = None
    heads: tuple[str, ...] = ("logits",)
    """The model outputs an explanation can read (``start_logits`` and ``end_logits`` for
    question answering)."""
    reads: str = "text"


TASKS: dict[str, Task] = {
    t.kind: t
    for t in [
        Task("causal", "AutoModelForCausalLM", reads_in_place=False, vocabulary_head=True,
             second_text="continuation", explains="next_token"),
        Task("masked", "AutoModelForMaskedLM", reads_in_place=True, vocabulary_head=True,
             second_text="segment", explains="mask"),
        Task("encoder", "AutoModel", reads_in_place=True, vocabulary_head=False,
             second_text="segment"),
        Task("seq2seq", "AutoModelForSeq2SeqLM", reads_in_place=False, vocabulary_head=True,
             second_text="decoder", encoder_decoder=True, explains="next_token"),
        Task("classifier", "AutoModelForSequenceClassification", reads_in_place=True,
             vocabulary_head=False, second_text="segment", explains="class"),
        Task("question_answering", "AutoModelForQuestionAnswering", reads_in_place=True,
             vocabulary_head=False, second_text="segment", explains="span",
             heads=("start_logits", "end_logits")),
        Task("token_classifier", "AutoModelForTokenClassification", reads_in_place=True,
             vocabulary_head=False, second_text="segment", explains="label"),
        Task("image_classifier", "AutoModelForImageClassification", reads_in_place=True,
             vocabulary_head=False, second_text="none", explains="class", reads="pixels"),
    ]
}  # fmt: skip
"""Kind -> :class:`Task`."""

KINDS = tuple(TASKS)
"""The kinds of transformer model the explainers know."""

TEXT_KINDS = tuple(kind for kind, task in TASKS.items() if task.reads == "text")
"""The kinds that read token ids: every explainer but the image explainer explains these."""


def auto_class(kind: str):
    """The transformers Auto class that loads a model of ``kind``."""

    return getattr(transformers, TASKS[kind].auto_class)


def kind_from_config(config) -> str:
    """The kind of model a transformers config (or its config.json read as a dict)
    describes, from its architecture name."""
    from transformers.models.auto import modeling_auto as auto

    def setting(name):
        return config.get(name) if isinstance(config, dict) else getattr(config, name, None)

    if setting("is_encoder_decoder"):
        return "seq2seq"
    architectures = setting("architectures") or []
    for architecture in architectures:
        kind = _kind_from_class_name(architecture, auto)
        if kind:
            return kind
    return "encoder"


def _kind_from_class_name(name: str, auto) -> str | None:
    if name in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values() or name.endswith(
        ("ForCausalLM", "LMHeadModel")
    ):
        return "causal"
    if name in auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES.values() or name.endswith("ForMaskedLM"):
        return "masked"
    if name in auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES.values():
        return "seq2seq"
    if name.endswith("ForSequenceClassification"):
        return "classifier"
    if name.endswith("ForQuestionAnswering"):
        return "question_answering"
    if name.endswith("ForTokenClassification"):
        return "token_classifier"
    if name.endswith("ForImageClassification"):
        return "image_classifier"
    return None


def kind_of_model(model) -> str:
    """The kind of a loaded transformers model, from its class name."""
    from transformers.models.auto import modeling_auto as auto

    if getattr(model.config, "is_encoder_decoder", False):
        return "seq2seq"
    return _kind_from_class_name(type(model).__name__, auto) or "encoder"


def blocks_and_encoder_blocks(model, kind: str):
    """(the stack whose blocks give the hidden states, the encoder stack or None)."""
    if TASKS[kind].encoder_decoder:
        return model.get_decoder(), model.get_encoder()
    return model.base_model, None


# --------------------------------------------------------------------------- encoding


def token_texts(tokenizer, ids) -> list[str]:
    """Each token id decoded on its own (" Paris", "##ville", "[CLS]")."""
    return [tokenizer.decode([int(i)]) for i in ids]


def special_flags(tokenizer, ids) -> list[bool]:
    """For each token id, whether the tokenizer counts it special ([CLS], [SEP], a BOS)."""
    special = set(tokenizer.all_special_ids)
    return [int(i) in special for i in ids]


@dataclass
class Sequence:
    """A text as the model reads it: the token sequence the explainers index.

    ``ids`` are the text's tokens for causal, masked, encoder and classifier models (with a
    pair: both texts, the second from ``pair_start``, told apart by ``token_type_ids`` where
    the model has them); for seq2seq models the decoder's tokens (its start token, or the
    pair's second text), the text going to the encoder as ``encoder_ids``. ``n_input`` counts
    the tokens that came from the text (generated ones follow).
    """

    lm: LoadedModel
    text: str
    ids: list[int]
    n_input: int
    encoder_ids: list[int] | None = None
    text_pair: str | None = None
    pair_start: int | None = None
    token_type_ids: list[int] | None = None

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

    @property
    def n_encoder(self) -> int:
        """How many tokens go to the encoder (0 without one)."""
        return len(self.encoder_ids or ())

    @property
    def sources(self) -> list[int]:
        """Every token the output depends on: the encoder's (if any), then ``ids``."""
        return list(self.encoder_ids or ()) + list(self.ids)

    def with_ids(self, ids: list[int]) -> Sequence:
        """The same text with the token sequence ``ids`` (for example, extended)."""
        return Sequence(
            self.lm, self.text, list(ids), self.n_input, self.encoder_ids, self.text_pair,
            self.pair_start, self.token_type_ids,
        )  # fmt: skip


def context_length(lm: LoadedModel) -> int | None:
    """The longest sequence the model takes, from its config (None if it does not say)."""
    return config_value(lm.config, "context")


def check_length(
    lm: LoadedModel, n_tokens: int, part: str | None = None, name: str = "text"
) -> None:
    """Refuse a sequence longer than the model's context, before any model work."""
    limit = context_length(lm)
    if limit is not None and n_tokens > limit:
        where = f" ({part})" if part else ""
        raise ValueError(
            f"{name} is {n_tokens} tokens long{where}, longer than the model's context of "
            f"{limit} tokens"
        )


def _check_pair_length(lm: LoadedModel, n_tokens: int, start: int, names) -> None:
    """Refuse two texts longer together than the model's context, naming the longer."""
    limit = context_length(lm)
    if limit is None or n_tokens <= limit:
        return
    first, second = start, n_tokens - start
    longer = names[1] if second >= first else names[0]
    raise ValueError(
        f"{longer} is too long: {names[0]} and {names[1]} are {n_tokens} tokens long together "
        f"({first} + {second}), longer than the model's context of {limit} tokens"
    )


def encode(
    lm: LoadedModel,
    text: str,
    text_pair: str | None = None,
    *,
    names: tuple[str, str] = ("text", "text_pair"),
) -> Sequence:
    """Tokenize ``text`` (and a second text) for ``lm``: the one tokenizing path.

    Refuses empty texts, lone surrogates and sequences longer than the model's context
    (``names`` are the parameter names used in errors). A seq2seq model without a second
    text starts its decoder from its ``decoder_start_token_id``.
    """
    text = check_text(text, names[0])
    if text_pair is not None:
        text_pair = check_text(text_pair, names[1])
    tokenizer, task = lm.tokenizer, lm.task
    if task.encoder_decoder:
        encoder_ids = [int(i) for i in tokenizer(text)["input_ids"]]
        part = "encoder" if text_pair is not None else None
        check_length(lm, len(encoder_ids), part, name=names[0])
        if text_pair is None:
            start = lm.config.decoder_start_token_id
            if start is None:
                raise ValueError(f"{lm.name} has no decoder_start_token_id in its config")
            return Sequence(lm, text, [int(start)], 1, encoder_ids)
        ids = [int(i) for i in tokenizer(text_pair)["input_ids"]]
        check_length(lm, len(ids), "decoder", name=names[1])
        return Sequence(lm, text, ids, len(ids), encoder_ids, text_pair)
    start = None
    if text_pair is None:
        encoded = tokenizer(text)
        ids, types = encoded["input_ids"], encoded.get("token_type_ids")
        if task.second_text != "segment":  # a causal LM has no segments to tell apart
            types = None
    elif task.second_text == "continuation":  # the second text goes on from the first
        first = tokenizer(text)["input_ids"]
        ids = first + tokenizer(text_pair, add_special_tokens=False)["input_ids"]
        types, start = None, len(first)
    else:
        encoded = tokenizer(text, text_pair)
        ids, types = encoded["input_ids"], encoded.get("token_type_ids")
        start = types.index(1) if types and 1 in types else len(tokenizer(text)["input_ids"])
    ids = [int(i) for i in ids]
    if text_pair is None:
        check_length(lm, len(ids), name=names[0])
    else:
        _check_pair_length(lm, len(ids), start, names)
    types = [int(t) for t in types] if types is not None else None
    return Sequence(lm, text, ids, len(ids), None, text_pair, start, types)


# --------------------------------------------------------------------------- positions


def predicted_from(lm: LoadedModel, position: int) -> int:
    """The position whose hidden state predicts the token at ``position``."""
    return position if lm.task.reads_in_place else position - 1


def read_position(seq: Sequence) -> int | None:
    """Where the attributions explainer reads what it explains: the last token (causal: the
    next token is predicted there), the one ``[MASK]`` (masked), None (a classifier's
    output belongs to the whole text; a question-answering model's start and end, over
    every position; a token classifier's, until a token is chosen)."""
    lm = seq.lm
    if lm.task.explains == "next_token":
        return len(seq.ids) - 1
    if lm.task.explains != "mask":
        return None
    mask_id = lm.tokenizer.mask_token_id
    if mask_id is None:
        raise ValueError(f"{lm.name} has no mask token, so a masked-LM question needs one")
    where = [i for i, token in enumerate(seq.ids) if token == mask_id]
    if len(where) != 1:
        raise ValueError(
            f"text must contain exactly one {lm.tokenizer.mask_token} for a masked LM "
            f"(the prediction to explain); found {len(where)}"
        )
    return where[0]


def read_position_in(lm: LoadedModel, kept: list[int], ids: list[int], read_at: int | None):
    """The read position in a text made of the tokens at positions ``kept`` (``ids``):
    the last token (causal), the same ``[MASK]`` (masked), None (classifier)."""
    if read_at is None:
        return None
    if lm.task.explains == "next_token":
        return len(ids) - 1
    if read_at not in kept:  # a token classifier's own token
        raise ValueError(
            f"deleting token {read_at} deletes the token whose label is explained; use "
            "convention='replacement'"
        )
    return kept.index(read_at)


def question_text(seq: Sequence, read_at: int | None, head: str = "logits") -> str:
    """What the attributions explainer explains, in words."""
    lm = seq.lm
    if lm.task.explains == "span":
        return f"the answer's {head.removesuffix('_logits')} position"
    if lm.task.explains == "label":
        return f"the label of token {read_at}"
    if lm.task.explains == "next_token" and lm.task.encoder_decoder:
        return "next token of the decoder"
    if lm.task.explains == "next_token":
        return "next token after the text"
    if lm.task.explains == "mask":
        return f"the {lm.tokenizer.mask_token} at position {read_at}"
    return "class of the text" + (" pair" if seq.text_pair is not None else "")
