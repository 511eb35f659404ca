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

from .checks import check_bool

KINDS = ("causal", "masked", "encoder", "seq2seq", "classifier")
"""The kinds of transformer model the explainers know."""

# Attribute names under which transformers models keep the norm applied after the last layer
# (Llama/Mistral: norm, GPT-2: ln_f, T5/OPT: final_layer_norm, mBART: layer_norm, ...).
_FINAL_NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "final_layernorm", "layer_norm", "norm_f")
# Attribute names of the head that maps a last-layer hidden state to vocabulary logits.
# BERT-style masked LMs keep a whole prediction head (dense, activation, LayerNorm, decoder)
# under `cls`; most others a single linear layer under `lm_head`.
_HEAD_NAMES = ("cls", "lm_head")
# Where a block keeps the last linear layer of its feed-forward network; the *input* of that
# layer is the vector of neuron activations (after the nonlinearity, and the gate if any).
_FFN_DOWN_PATHS = (
    "mlp.down_proj",  # Llama, Mistral, Qwen, Gemma, SmolLM
    "mlp.c_proj",  # GPT-2
    "mlp.dense_4h_to_h",  # GPT-NeoX, Pythia
    "mlp.fc_out",  # GPT-J
    "mlp.fc2",  # Phi, CLIP
    "output.dense",  # BERT, RoBERTa, ELECTRA (the intermediate activations go in)
    "ffn.lin2",  # DistilBERT
    "fc2",  # BART, OPT, Marian, Whisper
    "layer.-1.DenseReluDense.wo",  # T5
)


class ModelNotAvailableError(OSError):
    """A model could not be loaded (offline hub, missing package, missing folder)."""


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
    vocabulary logits (``None`` for encoders without a language-model head).
    """

    model: nn.Module
    tokenizer: Any
    kind: str
    name: str
    layers: nn.ModuleList
    embeddings: nn.Module
    final_norm: nn.Module | None
    unembedding: nn.Module | None
    encoder_layers: nn.ModuleList | None = None
    source: str = field(default="", repr=False)

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
    - a ``(model, tokenizer)`` pair, or a :class:`LoadedModel` (returned as is).

    ``kind`` (one of ``causal``, ``masked``, ``encoder``, ``seq2seq``, ``classifier``) picks
    the model class (``classifier``: a sequence classifier, ``...ForSequenceClassification``);
    by default it is read from the model's config. ``device``, ``torch_dtype`` and
    ``device_map`` are passed to transformers (``device_map`` needs accelerate).

    Loading is safe by default: remote code in a checkpoint is never run, and weights are
    read only from safetensors files. Pickled ``.bin`` weights can run code when unpickled;
    ``allow_pickle=True`` accepts them, for checkpoints you trust.
    Loading the same spec again in one process returns the same object.

    >>> load_model("all-MiniLM-L6-v2").kind
    'encoder'
    """
    from . import catalog  # catalog imports this module

    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)} (or None to infer); got {kind!r}")
    if device is not None and device_map is not None:
        raise ValueError("pass either device or device_map, not both")
    check_bool(allow_pickle, "allow_pickle")
    torch_dtype = check_dtype(torch_dtype)
    device = check_device(device)

    if isinstance(spec, LoadedModel):
        return spec
    if isinstance(spec, tuple):
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
    if key in _LOADED:
        return _LOADED[key]

    entry = catalog.get(spec)
    if entry is not None:
        model, tokenizer = entry.load(kind=kind, **options)
        name, source = entry.name, f"catalog:{entry.name}"
    else:
        model, tokenizer = from_pretrained(spec, kind=kind, allow_pickle=allow_pickle, **options)
        name, source = spec, spec
    loaded = _describe(model, tokenizer, kind, name=name, source=source)
    _LOADED[key] = loaded
    return loaded


def from_pretrained(
    spec: str,
    kind: str | None = None,
    *,
    device=None,
    torch_dtype=None,
    device_map=None,
    allow_pickle: bool = False,
    **kwargs,
):
    """The real ``from_pretrained`` path for hub ids and local folders.

    Returns ``(model, tokenizer)`` with eager attention, in eval mode. Extra keyword
    arguments go to the model's ``from_pretrained`` (for example ``gguf_file``). Weights come
    from safetensors (or GGUF) unless ``allow_pickle=True``; remote code never runs.
    """
    from transformers import AutoTokenizer

    from . import catalog

    if kwargs.get("trust_remote_code"):
        raise ValueError(
            "trust_remote_code is not supported: the explainers load only model classes that "
            "transformers itself provides"
        )
    kwargs.pop("trust_remote_code", None)
    is_folder = os.path.isdir(os.path.expanduser(spec))
    if not is_folder and spec.startswith((".", "/", "~")):
        raise ModelNotAvailableError(
            f"spec {spec!r} looks like a folder, but there is no such folder. "
            + catalog.offline_hint()
        )
    path = os.path.expanduser(spec) if is_folder else spec
    # trust_remote_code=False, explicitly: without it, transformers asks "Do you wish to run
    # the custom code? [y/N]" for a checkpoint that names its own code, and runs it on "y".
    safe = {"trust_remote_code": False, **_only(kwargs, "gguf_file")}
    try:
        refuse_remote_code(path, spec, safe)
        config = _config(path, spec, safe)
        tokenizer = AutoTokenizer.from_pretrained(path, **safe)
    except OSError as error:
        if is_folder:
            raise ModelNotAvailableError(
                f"{spec!r} is a folder but not a transformers checkpoint ({error})"
            ) from error
        offline = _hub_offline()
        why = (
            "the Hugging Face Hub is switched off (HF_HUB_OFFLINE=1) and the model is not in the "
            "local hub cache"
            if offline
            else "it could not be fetched from the Hugging Face Hub, nor found in the local cache"
        )
        raise ModelNotAvailableError(
            f"could not load {spec!r}: {why}. " + catalog.offline_hint()
        ) from error

    kind = kind or kind_from_config(config)
    model_class = _auto_class(kind)
    load_kwargs = dict(kwargs, attn_implementation="eager", trust_remote_code=False)
    if not allow_pickle and "gguf_file" not in kwargs:
        load_kwargs["use_safetensors"] = True
    if torch_dtype is not None:
        load_kwargs["dtype"] = torch_dtype
    if device_map is not None:
        load_kwargs["device_map"] = device_map
    try:
        model = model_class.from_pretrained(path, config=config, **load_kwargs)
    except OSError as error:
        if not allow_pickle and "safetensors" in str(error).lower():
            raise ModelNotAvailableError(
                f"{spec!r} has no safetensors weights, only pickled ones (.bin), which can run "
                "code when loaded. Pass allow_pickle=True to load_model if you trust this "
                f"checkpoint. ({error})"
            ) from error
        raise
    if device is not None:
        model = model.to(device)
    return model.eval(), tokenizer


def _config(path: str, spec: str, options: dict):
    """AutoConfig's config, or a clear error for a model type transformers does not know."""
    import transformers
    from transformers import AutoConfig, PretrainedConfig

    try:
        return AutoConfig.from_pretrained(path, **options)
    except ValueError as error:
        if options.get("gguf_file"):
            raise
        model_type = PretrainedConfig.get_config_dict(path)[0].get("model_type")
        raise ModelNotAvailableError(
            f"{spec!r} is a {model_type!r} model, an architecture transformers "
            f"{transformers.__version__} does not provide (its config.json says model_type "
            f"{model_type!r}); a newer transformers may know it"
        ) from error


def refuse_remote_code(path: str, spec: str, options: dict) -> None:
    """Refuse a checkpoint whose config or tokenizer config maps auto classes to its own
    Python files (``auto_map``): the explainers never run a checkpoint's code. Reads the JSON
    files only; raises OSError as transformers does when they cannot be found."""
    from transformers import PretrainedConfig
    from transformers.models.auto.tokenization_auto import get_tokenizer_config

    if options.get("gguf_file"):
        return  # a GGUF file holds weights and settings, no code
    found = {}
    config, _ = PretrainedConfig.get_config_dict(path)
    if config.get("auto_map"):
        found["config.json"] = config["auto_map"]
    tokenizer_config = get_tokenizer_config(path) or {}
    if tokenizer_config.get("auto_map"):
        found["tokenizer_config.json"] = tokenizer_config["auto_map"]
    if found:
        named = "; ".join(f"{file}: {mapping}" for file, mapping in found.items())
        raise ValueError(
            f"{spec!r} ships its own Python code (auto_map in {named}). The explainers never "
            "run a checkpoint's code (trust_remote_code=False): use a checkpoint of an "
            "architecture that transformers itself provides"
        )


def kind_from_config(config) -> str:
    """The kind of model a transformers config describes, from its architecture name."""
    from transformers.models.auto import modeling_auto as auto

    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    architectures = getattr(config, "architectures", None) or []
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
    return None


def _auto_class(kind: str):
    import transformers

    return {
        "causal": transformers.AutoModelForCausalLM,
        "masked": transformers.AutoModelForMaskedLM,
        "encoder": transformers.AutoModel,
        "seq2seq": transformers.AutoModelForSeq2SeqLM,
        "classifier": transformers.AutoModelForSequenceClassification,
    }[kind]


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
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {device!r} needs CUDA, which this machine does not have")
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f"device must be cuda:0..cuda:{count - 1} here; got {device!r}")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} needs Apple's MPS, which this machine does not have")
    return device


def _wrap_pair(pair: tuple, kind: str | None) -> LoadedModel:
    from transformers import PreTrainedModel

    if len(pair) != 2 or not isinstance(pair[0], nn.Module) or not callable(pair[1]):
        raise TypeError("a model given as a tuple must be (model, tokenizer)")
    model, tokenizer = pair
    if not isinstance(model, PreTrainedModel):
        raise TypeError(
            "the model of a (model, tokenizer) pair must be a transformers PreTrainedModel "
            f"(the explainers read its config); got {type(model).__name__}"
        )
    inferred = _kind_of_model(model)
    name = getattr(model.config, "name_or_path", "") or type(model).__name__
    return _describe(model, tokenizer, kind or inferred, name=name, source="(model, tokenizer)")


def _kind_of_model(model: nn.Module) -> str:
    from transformers.models.auto import modeling_auto as auto

    if getattr(model.config, "is_encoder_decoder", False):
        return "seq2seq"
    return _kind_from_class_name(type(model).__name__, auto) or "encoder"


def _check_text_model(model, tokenizer, name: str) -> None:
    """Refuse what the explainers cannot read: a model that does not take token ids (vision,
    audio), or a tokenizer with ids beyond the model's embedding (not its tokenizer)."""
    takes = getattr(model, "main_input_name", "input_ids")
    if takes != "input_ids":
        raise ValueError(
            f"model must take token ids (input_ids); {name} ({type(model).__name__}) takes "
            f"{takes!r}: the explainers read text models only"
        )
    embedding = model.get_input_embeddings()
    rows = getattr(embedding, "num_embeddings", None)
    tokens = len(tokenizer) if hasattr(tokenizer, "__len__") else None
    if rows is not None and tokens is not None and tokens > rows:
        raise ValueError(
            f"tokenizer does not belong to {name}: it has {tokens} tokens and the model's "
            f"embedding {rows} rows, so some token ids have no embedding"
        )


def _describe(model, tokenizer, kind, *, name: str, source: str) -> LoadedModel:
    """Find the modules explainers need, and make attention eager and the model eval."""
    _check_text_model(model, tokenizer, name)
    kind = kind or _kind_of_model(model)
    if getattr(model.config, "_attn_implementation", "eager") != "eager":
        # SDPA and flash attention return no attention weights: the views would be empty.
        model.set_attn_implementation("eager")
    model.eval()
    if kind == "seq2seq":
        stack, encoder_layers = model.get_decoder(), _find_layers(model.get_encoder())
    else:
        stack, encoder_layers = model.base_model, None
    has_vocabulary_head = kind not in ("encoder", "classifier")
    head = next((getattr(model, n) for n in _HEAD_NAMES if hasattr(model, n)), None)
    if head is None and has_vocabulary_head:
        head = model.get_output_embeddings()
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        kind=kind,
        name=name,
        layers=_find_layers(stack),
        embeddings=model.get_input_embeddings(),
        final_norm=next(
            (
                getattr(stack, n)
                for n in _FINAL_NORM_NAMES
                if isinstance(getattr(stack, n, None), nn.Module)
            ),
            None,
        ),
        unembedding=head if has_vocabulary_head else None,
        encoder_layers=encoder_layers,
        source=source,
    )


def feed_forward_down(block: nn.Module) -> nn.Module:
    """The last linear layer of a block's feed-forward network (its input: the neurons)."""
    for path in _FFN_DOWN_PATHS:
        module = block
        for part in path.split("."):
            if part.lstrip("-").isdigit() and isinstance(module, nn.ModuleList):
                module = module[int(part)]
            else:
                module = getattr(module, part, None)
            if module is None:
                break
        if isinstance(module, nn.Module):
            return module
    raise ValueError(
        f"could not find the feed-forward layer of {type(block).__name__}; known layouts: "
        + ", ".join(_FFN_DOWN_PATHS)
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


def _only(kwargs: dict, *names: str) -> dict:
    return {k: v for k, v in kwargs.items() if k in names}


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").upper() in {"1", "ON", "YES", "TRUE"}
