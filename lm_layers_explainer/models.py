"""Model loading: one function, :func:`load_model`, used by every explainer.

>>> lm = load_model("tiny-gpt2")  # a catalog name, a hub id, a folder, or (model, tokenizer)
>>> lm.kind, lm.n_layers
('causal', 2)

Models are put in eval mode with eager attention, so that attention weights are the ones the
model really used. ``trust_remote_code`` is never turned on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .checkpoints import ModelNotAvailableError, from_pretrained
from .checks import check_bool
from .families import Family, family_of
from .locks import LOADING, model_lock
from .tasks import KINDS, TASKS, Task, blocks_and_encoder_blocks, kind_of_model

__all__ = ["KINDS", "LoadedModel", "ModelNotAvailableError", "load_model", "clear_model_cache"]


@dataclass(eq=False)
class LoadedModel:
    """A model, its tokenizer, its kind and the modules explainers hook into.

    >>> lm = load_model("SmolLM2-135M-Instruct")
    >>> lm.kind, lm.n_layers, type(lm.final_norm).__name__
    ('causal', 30, 'LlamaRMSNorm')

    ``layers`` are the blocks whose outputs are the hidden states (the decoder's for seq2seq
    models, whose encoder blocks are ``encoder_layers``); ``embeddings`` is the input token
    embedding; ``final_norm`` the norm applied after the last block (``None`` where the model
    has none, as in post-LayerNorm BERT); ``unembedding`` maps a final hidden state to
    vocabulary logits (``None`` for encoders without a language-model head). An image
    classifier's ``tokenizer`` is its image processor (``processor`` names it so) and its
    ``embeddings`` the patch embedding.
    """

    model: nn.Module
    tokenizer: Any  # for an image classifier (kind "image_classifier"): its image processor
    kind: str
    name: str
    layers: nn.ModuleList
    embeddings: nn.Module
    final_norm: nn.Module | None
    unembedding: nn.Module | None
    encoder_layers: nn.ModuleList | None = None
    source: str = field(default="", repr=False)

    @property
    def processor(self):
        """What turns an input into the model's tensors: the tokenizer, or an image
        classifier's image processor."""
        return self.tokenizer

    @property
    def task(self) -> Task:
        """What this kind of model is and how it reads a text (see :mod:`.tasks`)."""
        return TASKS[self.kind]

    @property
    def family(self) -> Family:
        """What the explainers know of this architecture (see :mod:`.families`)."""
        return family_of(self.config)

    @property
    def n_layers(self) -> int:
        """Number of blocks in ``layers``."""
        return len(self.layers)

    @property
    def config(self):
        return self.model.config

    @property
    def vocab_size(self) -> int:
        """Number of logits the language-model head gives (the model's vocabulary)."""
        return int(self.config.get_text_config().vocab_size)

    @property
    def device(self) -> torch.device:
        """Where the model's first parameter lives; explainers put their inputs there."""
        return next(self.model.parameters()).device

    def __repr__(self) -> str:
        extra = f", encoder_layers={len(self.encoder_layers)}" if self.encoder_layers else ""
        return (
            f"LoadedModel(name={self.name!r}, kind={self.kind!r}, "
            f"architecture={type(self.model).__name__}, n_layers={self.n_layers}{extra}, "
            f"device={self.device})"
        )


_LOADED: dict[tuple, LoadedModel] = {}


def clear_model_cache() -> None:
    """Forget the models :func:`load_model` keeps for reuse within this process."""
    _LOADED.clear()


def load_model(
    spec,
    kind: str | None = None,
    *,
    device: str | torch.device | None = None,
    torch_dtype: str | torch.dtype | None = None,
    device_map: str | dict | None = None,
    allow_pickle: bool = False,
) -> LoadedModel:
    """Load a model for the explainers, or wrap one already loaded.

    ``spec`` is one of:

    - a catalog name that works offline (see :func:`lm_layers_explainer.catalog.names`),
      such as ``"SmolLM2-135M-Instruct"``, ``"all-MiniLM-L6-v2"`` or ``"tiny-gpt2"``;
    - a Hugging Face Hub id (``"gpt2"``, ``"facebook/bart-large-cnn"``) or a local folder,
      loaded with ``from_pretrained``;
    - a ``(model, tokenizer)`` pair, or a :class:`LoadedModel` (returned as is). A pair is
      checked for what can be told: the model takes token ids, and the tokenizer has no id
      beyond the model's embedding. Another model's tokenizer with as many tokens or fewer
      (other ids, other special tokens) cannot be told from the model's own: it is accepted,
      and the explanations are then of text the model never reads that way.

    ``kind`` (one of :data:`KINDS`: ``causal``, ``masked``, ``encoder``, ``seq2seq``,
    ``classifier``, ``question_answering``, ``token_classifier``, ``image_classifier``) picks
    the model class (``classifier``: a sequence classifier, ``...ForSequenceClassification``);
    by default it is read from the model's config. An image classifier loads with its image
    processor in place of a tokenizer (a pair is ``(model, image_processor)``). ``device``,
    ``torch_dtype`` and ``device_map`` are passed to transformers (``device_map`` needs
    accelerate).

    Loading is safe by default: remote code in a checkpoint is never run, and weights are
    read only from safetensors files. Pickled ``.bin`` weights can run code when unpickled;
    ``allow_pickle=True`` accepts them, for checkpoints you trust.
    Loading the same spec again in one process returns the same object.

    >>> load_model("all-MiniLM-L6-v2").kind
    'encoder'
    """
    # Imported here, not at the top: `python -m lm_layers_explainer.catalog` runs the catalog
    # as a script, which must not be imported with the package first.
    from . import catalog

    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)} (or None to infer); got {kind!r}")
    if device is not None and device_map is not None:
        raise ValueError("pass either device or device_map, not both")
    check_bool(allow_pickle, "allow_pickle")
    torch_dtype = check_dtype(torch_dtype)
    device = check_device(device)
    device_map = check_device_map(device_map)

    if isinstance(spec, LoadedModel):
        return spec
    if isinstance(spec, tuple):
        with LOADING:
            return _wrap_pair(spec, kind)
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(
            "spec must be a catalog name, a hub id, a local folder, a (model, tokenizer) pair "
            f"or a LoadedModel; got {type(spec).__name__}"
        )

    spec = os.fspath(spec)
    if not spec.strip():
        raise ValueError(f"spec must name a model; got an empty string. {catalog.offline_hint()}")
    options = {"device": device, "torch_dtype": torch_dtype, "device_map": device_map}
    key = (
        catalog.canonical_name(spec) or _normalize_path(spec),
        kind,
        allow_pickle,
        *map(str, options.values()),
    )
    with LOADING:  # one load at a time: see lm_layers_explainer.locks
        if key not in _LOADED:
            _LOADED[key] = _load(spec, kind, options, allow_pickle)
        return _LOADED[key]


def _load(spec: str, kind: str | None, options: dict, allow_pickle: bool) -> LoadedModel:
    from . import catalog

    entry = catalog.get(spec)
    if entry is not None:
        model, tokenizer = entry.load(kind=kind, **options)
        name, source = entry.name, f"catalog:{entry.name}"
    else:
        try:
            model, tokenizer = from_pretrained(
                spec, kind=kind, allow_pickle=allow_pickle, **options
            )
        except ModelNotAvailableError as error:
            if not error.hint:
                raise
            raise ModelNotAvailableError(f"{error} {catalog.offline_hint()}") from error
        name, source = spec, spec
    return _describe(model, tokenizer, kind, name=name, source=source)


DTYPES = ("float32", "float16", "bfloat16", "float64", "auto")


def check_dtype(torch_dtype):
    """None, a floating torch.dtype, or the name of one (``"bfloat16"``) or ``"auto"``."""
    if torch_dtype is None or torch_dtype == "auto":
        return torch_dtype
    if not isinstance(torch_dtype, (str, torch.dtype)):
        raise TypeError(f"torch_dtype must be a torch.dtype or its name; got {torch_dtype!r}")
    dtype = torch_dtype
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None) if dtype in DTYPES else None
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(
            f"torch_dtype must be a floating torch.dtype or one of {', '.join(DTYPES)}; got "
            f"{torch_dtype!r}"
        )
    return dtype


def check_device(device):
    """None, or a device this machine has (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``)."""
    if device is None:
        return None
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a string or a torch.device; got {device!r}")
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ValueError(
            f"device must be a torch device such as 'cpu', 'cuda', 'cuda:0' or 'mps'; got "
            f"{device!r}"
        ) from None
    if parsed.type == "meta":
        raise ValueError(
            "device must be one that computes, such as 'cpu', 'cuda' or 'mps'; 'meta' tensors "
            "hold no numbers, so nothing could be explained"
        )
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {device!r} needs CUDA, which this machine does not have")
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f"device must be cuda:0..cuda:{count - 1} here; got {device!r}")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} needs Apple's MPS, which this machine does not have")
    return device


DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
"""accelerate's placement strategies; a device_map may also be one device, or a dict."""


def check_device_map(device_map):
    """None, one of :data:`DEVICE_MAPS`, a device (``"cpu"``, ``"cuda:0"``), or a dict of
    module name -> device, as accelerate takes it."""
    if device_map is None or isinstance(device_map, dict):
        return device_map
    if isinstance(device_map, str) and device_map in DEVICE_MAPS:
        return device_map
    if isinstance(device_map, (str, torch.device)):
        try:
            check_device(device_map)
        except ValueError as error:
            raise ValueError(
                f"device_map must be one of {', '.join(DEVICE_MAPS)}, a device this machine "
                f"has, or a dict of module name -> device; got {device_map!r} ({error})"
            ) from None
        return device_map
    raise TypeError(
        f"device_map must be a string, a torch.device or a dict; got {type(device_map).__name__}"
    )


def _wrap_pair(pair: tuple, kind: str | None) -> LoadedModel:
    from transformers import PreTrainedModel

    if len(pair) != 2 or not isinstance(pair[0], nn.Module) or not callable(pair[1]):
        raise TypeError(
            "a model given as a tuple must be (model, tokenizer), or (model, image_processor) "
            "for an image classifier"
        )
    model, tokenizer = pair
    if not isinstance(model, PreTrainedModel):
        raise TypeError(
            "the model of a (model, tokenizer) pair must be a transformers PreTrainedModel "
            f"(the explainers read its config); got {type(model).__name__}"
        )
    inferred = kind_of_model(model)
    name = getattr(model.config, "name_or_path", "") or type(model).__name__
    return _describe(model, tokenizer, kind or inferred, name=name, source="(model, tokenizer)")


def _check_inputs(model, processor, kind: str, name: str) -> None:
    """Refuse what the explainers cannot read: a model that takes neither token ids nor an
    image classifier's pixel values (audio, a vision backbone without a classifier), or a
    tokenizer with ids beyond the model's embedding (not its tokenizer)."""
    takes = getattr(model, "main_input_name", "input_ids")
    if takes == "pixel_values" and TASKS[kind].reads == "pixels":
        return
    if takes != "input_ids":
        raise ValueError(
            f"model must take token ids (input_ids), or be an image classifier "
            f"(...ForImageClassification); {name} ({type(model).__name__}) takes {takes!r}"
        )
    embedding = model.get_input_embeddings()
    rows = getattr(embedding, "num_embeddings", None)
    tokens = len(processor) if hasattr(processor, "__len__") else None
    if rows is not None and tokens is not None and tokens > rows:
        raise ValueError(
            f"tokenizer does not belong to {name}: it has {tokens} tokens and the model's "
            f"embedding {rows} rows, so some token ids have no embedding"
        )


def _describe(model, tokenizer, kind, *, name: str, source: str) -> LoadedModel:
    """Find the modules explainers need, and make attention eager and the model eval."""
    kind = kind or kind_of_model(model)
    _check_inputs(model, tokenizer, kind, name)
    with model_lock(model):  # a pair's model may be running in another thread
        if getattr(model.config, "_attn_implementation", "eager") != "eager":
            # SDPA and flash attention return no attention weights: the views would be empty.
            model.set_attn_implementation("eager")
        model.eval()
    stack, encoder = blocks_and_encoder_blocks(model, kind)
    family = family_of(model.config)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        kind=kind,
        name=name,
        layers=_find_layers(stack),
        embeddings=model.get_input_embeddings(),
        final_norm=family.find_final_norm(stack),
        unembedding=family.find_head(model) if TASKS[kind].vocabulary_head else None,
        encoder_layers=_find_layers(encoder) if encoder is not None else None,
        source=source,
    )


def _find_layers(stack: nn.Module) -> nn.ModuleList:
    """The first ModuleList of identical blocks in a transformer stack (h, layers, layer, block)."""
    for module in stack.modules():
        if isinstance(module, nn.ModuleList) and len({type(block) for block in module}) == 1:
            return module
    raise ValueError(
        f"could not find the transformer blocks of {type(stack).__name__}: "
        "no ModuleList of identical layers"
    )


def _normalize_path(spec: str) -> str:
    expanded = os.path.expanduser(spec)
    return os.path.abspath(expanded) if os.path.isdir(expanded) else spec
