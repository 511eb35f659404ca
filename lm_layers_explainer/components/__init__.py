"""What the model uses: the residual stream split into its writers (direct logit
attribution) and activations patched between two runs (activation patching)."""

from .logit_attribution import LogitAttributionExplainer, LogitAttributionResult
from .patching import PatchingExplainer, PatchingResult

__all__ = [
    "LogitAttributionExplainer",
    "LogitAttributionResult",
    "PatchingExplainer",
    "PatchingResult",
]
