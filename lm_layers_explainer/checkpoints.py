"""Loading a checkpoint from the Hugging Face Hub or a local folder, safely.

>>> model, tokenizer = from_pretrained("gpt2")    # eager attention, eval mode, no remote code

This module knows transformers' loading path and nothing of the catalog or the explainers
(:func:`lm_layers_explainer.models.load_model` builds on it).
"""

from __future__ import annotations

import os

from .tasks import TASKS, auto_class, kind_from_config


class ModelNotAvailableError(OSError):
    """A model could not be loaded (offline hub, missing package, missing folder).

    ``hint`` marks errors where a list of the models that load offline helps the reader
    (``load_model`` adds it).
    """

    def __init__(self, message: str, *, hint: bool = False):
        super().__init__(message)
        self.hint = hint


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

    Returns ``(model, tokenizer)`` with eager attention, in eval mode (for an image
    classifier, ``(model, image_processor)``). Extra keyword
    arguments go to the model's ``from_pretrained`` (for example ``gguf_file``). Weights come
    from safetensors (or GGUF) unless ``allow_pickle=True``; remote code never runs.
    """
    from transformers import AutoTokenizer

    if kwargs.get("trust_remote_code"):
        raise ValueError(
            "trust_remote_code is not supported: the explainers load only model classes that "
            "transformers itself provides"
        )
    kwargs.pop("trust_remote_code", None)
    is_folder = os.path.isdir(os.path.expanduser(spec))
    if not is_folder and spec.startswith((".", "/", "~")):
        raise ModelNotAvailableError(
            f"spec {spec!r} looks like a folder, but there is no such folder.", hint=True
        )
    path = os.path.expanduser(spec) if is_folder else spec
    # trust_remote_code=False, explicitly: without it, transformers asks "Do you wish to run
    # the custom code? [y/N]" for a checkpoint that names its own code, and runs it on "y".
    safe = {"trust_remote_code": False, **_only(kwargs, "gguf_file")}
    try:
        refuse_remote_code(path, spec, safe)
        config = _config(path, spec, safe)
        kind = kind or kind_from_config(config)
        if TASKS[kind].reads == "pixels":
            from transformers import AutoImageProcessor

            tokenizer = AutoImageProcessor.from_pretrained(path, **safe)
        else:
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
        raise ModelNotAvailableError(f"could not load {spec!r}: {why}.", hint=True) from error

    model_class = auto_class(kind)
    load_kwargs = dict(kwargs, attn_implementation="eager", trust_remote_code=False)
    if not allow_pickle and "gguf_file" not in kwargs:
        load_kwargs["use_safetensors"] = True
        refuse_pickled_shards(path, spec)
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
    if TASKS[kind_from_config(config)].reads == "pixels":
        processor_config = _image_processor_config(path)
        if processor_config.get("auto_map"):
            found["preprocessor_config.json"] = processor_config["auto_map"]
    if found:
        named = "; ".join(f"{file}: {mapping}" for file, mapping in found.items())
        raise ValueError(
            f"{spec!r} ships its own Python code (auto_map in {named}). The explainers never "
            "run a checkpoint's code (trust_remote_code=False): use a checkpoint of an "
            "architecture that transformers itself provides"
        )


def refuse_pickled_shards(path: str, spec: str) -> None:
    """Refuse a sharded checkpoint whose safetensors index names a weight file that is not
    safetensors: transformers would unpickle it (``use_safetensors`` does not look inside
    the index). Reads the index only (a JSON file); nothing when there is none."""
    import json

    from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, cached_file

    index = cached_file(
        path,
        SAFE_WEIGHTS_INDEX_NAME,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
    )
    if index is None:
        return
    try:
        with open(index, encoding="utf-8") as file:
            files = set(json.load(file)["weight_map"].values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ModelNotAvailableError(
            f"{spec!r} has a {SAFE_WEIGHTS_INDEX_NAME} that is not a weight map "
            f"({type(error).__name__}: {error})"
        ) from None
    pickled = sorted(str(f) for f in files if not str(f).endswith(".safetensors"))
    if pickled:
        raise ModelNotAvailableError(
            f"{spec!r} has a {SAFE_WEIGHTS_INDEX_NAME} that points at weights which are not "
            f"safetensors ({', '.join(pickled)}): they would be unpickled, which can run code. "
            "Pass allow_pickle=True to load_model if you trust this checkpoint"
        )


def _image_processor_config(path: str) -> dict:
    """An image model's preprocessor_config.json ({} where there is none)."""
    from transformers.image_processing_base import ImageProcessingMixin

    try:
        return ImageProcessingMixin.get_image_processor_dict(path)[0] or {}
    except (OSError, ValueError):
        return {}


def _only(kwargs: dict, *names: str) -> dict:
    return {k: v for k, v in kwargs.items() if k in names}


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").upper() in {"1", "ON", "YES", "TRUE"}
