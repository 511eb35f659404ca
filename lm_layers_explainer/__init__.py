"""lm-layers-explainer: see inside transformer language models.

>>> from lm_layers_explainer import lm_layers_explainer, load_model
>>> lm_layers_explainer.entry_points          # name -> what it shows
>>> lm = load_model("SmolLM2-135M-Instruct")  # catalog name, hub id, folder, (model, tokenizer)
>>> result.save("result.json"); load_result("result.json")   # any result, as data
"""

from .models import KINDS, LoadedModel, ModelNotAvailableError, clear_model_cache, load_model
from .registry import lm_layers_explainer
from .saving import load_result

__all__ = [
    "KINDS",
    "LoadedModel",
    "ModelNotAvailableError",
    "clear_model_cache",
    "lm_layers_explainer",
    "load_model",
    "load_result",
]
__version__ = "0.1.0"
