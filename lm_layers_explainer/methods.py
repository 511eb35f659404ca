"""The attribution methods: one table, :data:`METHODS`, each line a captum class and how to call it.

Every method gets the same question, a :class:`Question`: a function ``f`` from input token
embeddings ``(batch, tokens, features)`` to the explained output ``(batch,)`` (a probability
or a logit), the input ``x``, a baseline ``x'`` and a feature mask grouping each token's
features. A method returns captum's attribution ``(1, tokens, features)`` and, where captum
computes one, its convergence delta.

Methods that do not fit a transformer as captum implements them are in :data:`METHODS` too,
with a ``refuse`` function that returns the reason; calling them raises
:class:`MethodNotApplicableError` with that reason. Nothing falls back to another method.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ._captum import deeplift_rules, quiet
from .models import LoadedModel


class MethodNotApplicableError(ValueError):
    """An attribution method that cannot give a faithful answer for this model."""


@dataclass
class Question:
    """What every method explains: ``f(x)``, with baseline, feature mask and options."""

    f: nn.Module
    x: torch.Tensor
    baseline: torch.Tensor
    feature_mask: torch.Tensor
    baseline_sampler: Callable[[int], torch.Tensor]
    n_steps: int
    internal_batch_size: int
    n_samples: int | None
    window: int


@dataclass(frozen=True)
class Method:
    """One attribution method: its name, captum class, one-line summary and runner."""

    name: str
    captum: str
    summary: str
    family: str  # "gradient" or "perturbation"
    run: Callable[[Question], tuple[torch.Tensor, float | None]] | None
    refuse: Callable[[LoadedModel], str | None] = lambda lm: None
    default_samples: int | None = None
    cite: str = ""
    signal: str = "contribution"  # or "gradient": a sensitivity, not a share of f(x) - f(x')
    batched: bool = False  # internal_batch_size sets how many inputs go through f at once
    rows: Callable[[int | None], int] = lambda n_samples: 1  # else: inputs in its one pass

    def passes(self, n_tokens: int, q_steps: int, batch: int, n_samples: int | None) -> int:
        """About how many calls of f one attribution makes (for its progress bar)."""
        if self.name == "integrated_gradients":
            return -(-q_steps // batch) + 2  # + f(x) and f(x') for the convergence delta
        if self.name in ("lime", "kernel_shap"):  # the sampled subsets only
            return -(-n_samples // batch)
        if self.family == "perturbation":  # the input itself, then the perturbed ones
            evaluations = n_tokens if n_samples is None else n_samples * n_tokens
            return -(-evaluations // batch) + 1
        return 1


def _captum(name: str):
    import captum.attr

    return getattr(captum.attr, name)


# --------------------------------------------------------------------------- gradients


def _saliency(q: Question):
    return _captum("Saliency")(q.f).attribute(q.x, abs=True), None


def _input_x_gradient(q: Question):
    return _captum("InputXGradient")(q.f).attribute(q.x), None


def _integrated_gradients(q: Question):
    attribution, delta = _captum("IntegratedGradients")(q.f).attribute(
        q.x,
        baselines=q.baseline,
        n_steps=q.n_steps,
        internal_batch_size=q.internal_batch_size,
        return_convergence_delta=True,
    )
    return attribution, float(delta.sum())


def _deeplift(q: Question):
    with deeplift_rules(), quiet():
        attribution, delta = _captum("DeepLift")(q.f).attribute(
            q.x, baselines=q.baseline, return_convergence_delta=True
        )
    return attribution, float(delta.sum())


def _deeplift_shap(q: Question):
    baselines = q.baseline_sampler(q.n_samples)
    with deeplift_rules(), quiet():
        attribution, delta = _captum("DeepLiftShap")(q.f).attribute(
            q.x, baselines=baselines, return_convergence_delta=True
        )
    # captum gives one delta per baseline; the mean is the gap of the averaged attribution.
    return attribution, float(delta.mean())


def _guided_backprop(q: Question):
    with quiet():
        return _captum("GuidedBackprop")(q.f).attribute(q.x), None


def _deconvolution(q: Question):
    with quiet():
        return _captum("Deconvolution")(q.f).attribute(q.x), None


def _needs_relu(method: str):
    def refuse(lm: LoadedModel) -> str | None:
        if any(isinstance(module, nn.ReLU) for module in lm.model.modules()):
            return None
        activations = sorted(
            {
                type(module).__name__
                for module in lm.model.modules()
                if "activation" in type(module).__module__
                or type(module).__name__.endswith(("GELU", "SiLU", "Activation"))
            }
        )
        return (
            f"{method} only changes the backward pass through nn.ReLU modules, and "
            f"{lm.name} has none (its activations: {', '.join(activations) or 'none found'}); "
            "the result would be exactly the plain gradient. Use 'saliency' or "
            "'input_x_gradient' instead"
        )

    return refuse


def _refuse_guided_gradcam(lm: LoadedModel) -> str:
    return (
        "guided_gradcam multiplies guided backpropagation by Grad-CAM, which weights the "
        "channels of a convolutional feature map (channels x height x width) by their "
        "pooled gradients and upsamples the coarse spatial map to the input. A transformer "
        "layer's output is tokens x features at full token resolution: captum's LayerGradCam "
        "would take the token axis for channels and the features for space, and its "
        "upsampling would spread a per-feature map over the embedding. Guided "
        "backpropagation itself needs nn.ReLU modules. No faithful reading exists here"
    )


def _refuse_lrp(lm: LoadedModel) -> str:
    return (
        "lrp needs a propagation rule for every layer. captum's LRP has rules for Linear, "
        "convolution, pooling, ReLU, Tanh and Dropout only: it raises on the embedding "
        "lookup, and it has no rules for LayerNorm/RMSNorm, the attention softmax and the "
        "products inside attention and gated MLPs (the rules those need, from Ali et al. "
        "2022 and AttnLRP, are not in captum). A relevance that is not conserved through "
        "those layers would not be LRP"
    )


# --------------------------------------------------------------------------- perturbations


def _occlusion(q: Question):
    features = q.x.shape[-1]
    attribution = _captum("Occlusion")(q.f).attribute(
        q.x,
        sliding_window_shapes=(q.window, features),
        strides=(1, features),
        baselines=q.baseline,
        perturbations_per_eval=q.internal_batch_size,
    )
    return attribution, None


def _feature_ablation(q: Question):
    attribution = _captum("FeatureAblation")(q.f).attribute(
        q.x,
        baselines=q.baseline,
        feature_mask=q.feature_mask,
        perturbations_per_eval=q.internal_batch_size,
    )
    return attribution, None


def _sampled_over_tokens(q: Question, method):
    """Run a captum method that samples token subsets or orders (features: whole tokens)."""
    attribution = method.attribute(
        q.x,
        baselines=q.baseline,
        feature_mask=q.feature_mask,
        n_samples=q.n_samples,
        perturbations_per_eval=q.internal_batch_size,
    )
    return attribution, None


def _lime(q: Question):
    from captum._utils.models.linear_model import SkLearnRidge

    # The reference LIME implementation fits a ridge regression (alpha=1) on the binary
    # "token kept" features; captum's default (Lasso, alpha=0.01) zeroes most tokens when the
    # explained output is a small probability.
    return _sampled_over_tokens(
        q, _captum("Lime")(q.f, interpretable_model=SkLearnRidge(alpha=1.0))
    )


def _kernel_shap(q: Question):
    return _sampled_over_tokens(q, _captum("KernelShap")(q.f))


def _shapley_value_sampling(q: Question):
    return _sampled_over_tokens(q, _captum("ShapleyValueSampling")(q.f))


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method(
            "saliency",
            "Saliency",
            "|gradient| of the output with respect to each embedding",
            "gradient",
            _saliency,
            signal="gradient",
            cite="simonyan2014saliency",
        ),
        Method(
            "input_x_gradient",
            "InputXGradient",
            "embedding times gradient: a first-order estimate of each token's effect",
            "gradient",
            _input_x_gradient,
            cite="shrikumar2017deeplift",
        ),
        Method(
            "integrated_gradients",
            "IntegratedGradients",
            "gradients averaged on the straight path from the baseline, times (x - baseline)",
            "gradient",
            _integrated_gradients,
            cite="sundararajan2017axiomatic",
            batched=True,
        ),
        Method(
            "deeplift",
            "DeepLift",
            "differences from the baseline propagated with the rescale rule",
            "gradient",
            _deeplift,
            cite="shrikumar2017deeplift",
            rows=lambda n_samples: 2,  # the input and the baseline
        ),
        Method(
            "deeplift_shap",
            "DeepLiftShap",
            "DeepLift averaged over a distribution of baselines (random tokens)",
            "gradient",
            _deeplift_shap,
            default_samples=10,
            cite="lundberg2017shap",
            rows=lambda n_samples: 2 * n_samples,  # the input repeated, and each baseline
        ),
        Method(
            "guided_backprop",
            "GuidedBackprop",
            "gradient with negative signals stopped at every ReLU",
            "gradient",
            _guided_backprop,
            refuse=_needs_relu("guided_backprop"),
            signal="gradient",
            cite="springenberg2015striving",
        ),
        Method(
            "guided_gradcam",
            "GuidedGradCam",
            "guided backprop weighted by a Grad-CAM map (refused: needs conv feature maps)",
            "gradient",
            None,
            refuse=_refuse_guided_gradcam,
            cite="selvaraju2017gradcam",
        ),
        Method(
            "deconvolution",
            "Deconvolution",
            "gradient with ReLUs applied to the backward signal instead",
            "gradient",
            _deconvolution,
            refuse=_needs_relu("deconvolution"),
            signal="gradient",
            cite="zeiler2014visualizing",
        ),
        Method(
            "lrp",
            "LRP",
            "relevance propagated layer by layer (refused: no transformer rules in captum)",
            "gradient",
            None,
            refuse=_refuse_lrp,
            cite="bach2015lrp",
        ),
        Method(
            "occlusion",
            "Occlusion",
            "output drop when a window of tokens is replaced by the baseline",
            "perturbation",
            _occlusion,
            cite="zeiler2014visualizing",
            batched=True,
        ),
        Method(
            "feature_ablation",
            "FeatureAblation",
            "output drop when one token is replaced by the baseline",
            "perturbation",
            _feature_ablation,
            batched=True,
        ),
        Method(
            "lime",
            "Lime",
            "a weighted linear model fitted to random token subsets",
            "perturbation",
            _lime,
            default_samples=200,
            cite="ribeiro2016why",
            batched=True,
        ),
        Method(
            "kernel_shap",
            "KernelShap",
            "Shapley values estimated by a kernel-weighted linear model on token subsets",
            "perturbation",
            _kernel_shap,
            default_samples=200,
            cite="lundberg2017shap",
            batched=True,
        ),
        Method(
            "shapley_value_sampling",
            "ShapleyValueSampling",
            "Shapley values averaged over random token orders",
            "perturbation",
            _shapley_value_sampling,
            default_samples=25,
            cite="strumbelj2010efficient",
            batched=True,
        ),
    ]
}
"""Method name -> :class:`Method`, in the order the book presents them."""


def check_method(name) -> Method:
    """The method called ``name``, or a ValueError listing the valid names."""
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {name!r}")
    return METHODS[name]
