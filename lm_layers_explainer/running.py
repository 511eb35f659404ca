"""Running a model the way its kind needs (the kinds themselves are :mod:`tasks`'s table): the
model's inputs for an encoded text, one forward pass with the modules' outputs captured,
the logits from input embeddings (the attribution methods' ``f``), a classifier's labels,
sentence embeddings, and :class:`Stepper` for generation.

>>> output = run(lm, encode(lm, "The cat sat"), attentions=True)
>>> attention_weights(lm, output)["self"][0].shape      # layer 0: (1, heads, 3, 3)
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
import transformers
from packaging.version import Version

from .checks import check_int
from .families import family_of
from .tasks import Sequence

if TYPE_CHECKING:
    from .models import LoadedModel


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


def model_inputs(seq: Sequence) -> dict[str, torch.Tensor]:
    """The keyword arguments of one forward pass over ``seq`` (a batch of one)."""
    device = seq.lm.device
    ids = torch.tensor([seq.ids], device=device)
    if seq.lm.task.encoder_decoder:
        return {"input_ids": torch.tensor([seq.encoder_ids], device=device),
                "decoder_input_ids": ids}  # fmt: skip
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if seq.token_type_ids is not None:  # which segment of a pair each token is in
        inputs["token_type_ids"] = torch.tensor([seq.token_type_ids], device=device)
    return inputs


def run(
    seq: Sequence,
    modules=(),
    *,
    inputs: bool = False,
    encoder: bool = False,
    attentions: bool = False,
):
    """One forward pass over ``seq``; returns (the model output, what the modules saw).

    ``encoder``: run only a seq2seq model's encoder. ``attentions``: the output has the
    attention weights. Each captured tensor has the batch dimension removed: (tokens,
    features).
    """
    lm = seq.lm
    arguments = model_inputs(seq)
    if attentions:
        arguments["output_attentions"] = True
    with capture_outputs(modules, inputs=inputs) as captured, torch.no_grad():
        if encoder and lm.task.encoder_decoder:
            output = lm.model.get_encoder()(input_ids=arguments["input_ids"])
        else:
            output = lm.model(**arguments)
    return output, [tensor[0] for tensor in captured]


def attention_weights(lm: LoadedModel, output) -> dict[str, tuple]:
    """The attention weights in a model output, by attention type: ``self``, or for
    seq2seq models ``encoder``, ``decoder`` and ``cross``."""
    if lm.task.encoder_decoder:
        return {
            "encoder": output.encoder_attentions,
            "decoder": output.decoder_attentions,
            "cross": output.cross_attentions,
        }
    return {"self": output.attentions}


def takes_logits_to_keep(lm: LoadedModel) -> bool:
    """Whether the model can project only some positions onto the vocabulary."""
    return "logits_to_keep" in inspect.signature(lm.model.forward).parameters


# transformers 5.24 renamed the forward keyword (and output field) ``past_key_values`` to
# ``cache`` and warns on the old name; earlier 5.x releases know only the old one. Models
# load without remote code, so every class follows the installed release.
CACHE_KEYWORD = (
    "cache" if Version(transformers.__version__) >= Version("5.24.0.dev0") else "past_key_values"
)


def logits_of_embeddings(
    lm: LoadedModel,
    embeddings: torch.Tensor,
    extra: dict,
    keep=None,
    n_encoder: int = 0,
    head: str = "logits",
):
    """The model's logits for a batch of input embeddings (batch, tokens, features):
    (batch, tokens or kept positions, vocabulary or classes). ``extra``: further inputs of
    shape (1, tokens), such as a pair's ``token_type_ids``; ``keep``: the positions to
    project onto the vocabulary (a tensor, for models that take ``logits_to_keep``). For a
    seq2seq model the first ``n_encoder`` tokens go to the encoder, the rest to the decoder,
    and the logits are the decoder's (positions counted from the decoder's first token).
    ``head``: which of the model's outputs (one of its task's ``heads``)."""
    batch, length = embeddings.shape[:2]
    options = {k: v.expand(batch, -1) for k, v in extra.items()}
    if not lm.task.reads_in_place:
        options["use_cache"] = False  # one pass: a cache would only take memory
    if keep is not None:
        options["logits_to_keep"] = keep
    if lm.task.encoder_decoder:
        options["decoder_inputs_embeds"] = embeddings[:, n_encoder:]
        embeddings, length = embeddings[:, :n_encoder], n_encoder
    mask = torch.ones((batch, length), dtype=torch.long, device=embeddings.device)
    return getattr(lm.model(inputs_embeds=embeddings, attention_mask=mask, **options), head)


def embedding_module(lm: LoadedModel, kind: str):
    """The module that embeds each token's ``position`` or ``token_type``; a ValueError
    where the model has none (rotary positions, no token types) or is an encoder-decoder."""
    module = None
    if not lm.task.encoder_decoder:
        module = family_of(lm.config).find_embedding(lm.model.base_model, kind)
    if module is None:
        why = "an encoder-decoder" if lm.task.encoder_decoder else "rotary or no such embedding"
        raise ValueError(
            f"attributed={kind!r} needs a learned {kind} embedding in one stack; {lm.name} has "
            f"none ({why}): use attributed='word'"
        )
    return module


def class_labels(lm: LoadedModel, custom: list[str] | None = None) -> list[str]:
    """A classifier's labels in index order: ``custom`` names (checked by the caller), or the
    config's ``id2label``."""
    if custom is not None:
        return list(custom)
    id2label = lm.config.id2label
    return [str(id2label[i]) for i in range(len(id2label))]


def class_index(labels: list[str], target, name: str, predicted) -> int:
    """The index of ``target`` among ``labels``: a label, an index, or None for
    ``predicted()`` (the model's choice)."""
    if target is None:
        return int(predicted())
    if isinstance(target, str):
        if target not in labels:
            shown = labels if len(labels) <= 20 else [*labels[:20], "..."]
            raise ValueError(f"{name} must be one of the labels {shown}; got {target!r}")
        return labels.index(target)
    return check_int(target, name, 0, len(labels) - 1)


def multi_label(lm: LoadedModel) -> bool:
    """Whether a classifier's labels are independent (a sigmoid each), not exclusive."""
    return getattr(lm.config, "problem_type", None) == "multi_label_classification"


def sentence_embeddings(lm: LoadedModel, embeddings: torch.Tensor) -> torch.Tensor:
    """Mean-pooled last hidden states of a batch of input embeddings (batch, tokens,
    features), every token counted (as sentence-transformers pools): (batch, hidden)."""
    mask = torch.ones(embeddings.shape[:2], dtype=torch.long, device=embeddings.device)
    return lm.model.base_model(inputs_embeds=embeddings, attention_mask=mask)[0].mean(1)


def shares_input_embeddings(lm: LoadedModel) -> bool:
    """Whether every token the model reads is embedded by ``lm.embeddings`` (for a seq2seq
    model: its encoder and decoder share one embedding, as BART and T5 do)."""
    if not lm.task.encoder_decoder:
        return True
    model = lm.model
    parts = (model.get_encoder().get_input_embeddings(), model.get_decoder().get_input_embeddings())
    scale = getattr(lm.embeddings, "embed_scale", None)  # BART scales its embeddings
    return all(
        part.weight is lm.embeddings.weight and getattr(part, "embed_scale", None) == scale
        for part in parts
    )


class Stepper:
    """The model's next-token logits for a growing sequence, one new token per call after
    the first (a key/value cache keeps the earlier ones)."""

    def __init__(self, seq: Sequence):
        self.lm = seq.lm
        self.cache = None
        self.seen = 0
        self.encoder_outputs = None
        self.keep_one = takes_logits_to_keep(self.lm)
        if self.lm.task.encoder_decoder:
            encoder_ids = torch.tensor([seq.encoder_ids], device=self.lm.device)
            with torch.no_grad():
                self.encoder_outputs = self.lm.model.get_encoder()(input_ids=encoder_ids)

    def __call__(self, ids: list[int]) -> torch.Tensor:
        device = self.lm.device
        new = torch.tensor([ids[self.seen :]], device=device)
        options = {CACHE_KEYWORD: self.cache, "use_cache": True}
        if self.keep_one:
            options["logits_to_keep"] = 1
        with torch.no_grad():
            if self.encoder_outputs is not None:
                out = self.lm.model(
                    encoder_outputs=self.encoder_outputs, decoder_input_ids=new, **options
                )
            else:
                mask = torch.ones((1, len(ids)), dtype=torch.long, device=device)
                out = self.lm.model(input_ids=new, attention_mask=mask, **options)
        self.cache, self.seen = out[CACHE_KEYWORD], len(ids)
        return out.logits[0, -1]
