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

from .._captum import deeplift_rules, quiet
from ..models import LoadedModel


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
    # Occlusion over an image: the window and stride (channels, height, width) in pixels;
    # None: ``window`` tokens with all their features
    window_shape: tuple[int, ...] | None = None
    strides: tuple[int, ...] | None = None
    # Layer methods: the module whose output is attributed (a block); neuron methods: the
    # feed-forward module whose input holds the neuron, and (position, neuron) in it
    layer: nn.Module | None = None
    neuron: tuple[int, int] | None = None


def per_token_mask(x: torch.Tensor) -> torch.Tensor:
    """The feature mask that makes every token one group: (1, tokens, features), each
    feature of token ``i`` numbered ``i``."""
    n_tokens, n_features = x.shape[1:]
    return (
        torch.arange(n_tokens, device=x.device)
        .view(1, n_tokens, 1)
        .expand(1, n_tokens, n_features)
        .clone()
    )


def _batches(n: int, batch: int) -> int:
    return -(-n // batch)


def _one_pass(n_tokens: int, n_steps: int, batch: int, n_samples: int | None) -> int:
    return 1


def _per_token(n_tokens: int, n_steps: int, batch: int, n_samples: int | None) -> int:
    """The input itself, then each token (or each token in each sampled order) perturbed."""
    evaluations = n_tokens if n_samples is None else n_samples * n_tokens
    return _batches(evaluations, batch) + 1


@dataclass(frozen=True)
class Method:
    """One attribution method: its name, captum class, one-line summary and runner.

    What a method needs is on its line, never decided by its name: ``batched`` (it takes
    ``internal_batch_size``), ``rows`` (else: the inputs of its one pass, from
    ``n_samples``), ``default_samples``/``min_samples`` (it samples), ``random_baselines``
    (its baseline is a sample of random-token inputs, and f(x') their mean), ``count_passes``
    (about how many calls of f it makes: ``(tokens, n_steps, batch, n_samples) -> int``).
    For a whole continuation (``continuation.py``): ``teacher_forced`` (every perturbed pass
    of the whole sequence reads all target tokens at once) or ``shares_forward`` (a gradient
    method whose forward passes serve every target token); for images (``images.py``):
    ``tunnelable`` (a noise tunnel can average it: a gradient method with no sampling of its
    own); ``one_use_hooks`` (captum's hooks keep one input and output per module, so ``f``
    must run each module once per pass). ``complete``: its scores sum to f(x) - f(x') up to
    a convergence delta, which it reports; ``attribute_options``: what its captum class's
    ``attribute`` is always given (saliency's ``abs``), as ``(name, value)`` pairs.
    """

    name: str
    captum: str
    summary: str
    family: str  # "gradient" or "perturbation"
    run: Callable[[Question], tuple[torch.Tensor, float | None]] | None
    refuse: Callable[[LoadedModel], str | None] = lambda lm: None
    default_samples: int | None = None
    min_samples: int = 1
    cite: str = ""
    signal: str = "contribution"  # or "gradient": a sensitivity, not a share of f(x) - f(x')
    batched: bool = False  # internal_batch_size sets how many inputs go through f at once
    rows: Callable[[int | None], int] = lambda n_samples: 1  # else: inputs in its one pass
    random_baselines: bool = False
    count_passes: Callable[[int, int, int, int | None], int] = _one_pass
    per_layer: bool = False  # a layer method that runs once per layer (passes x layers)
    teacher_forced: bool = False
    shares_forward: bool = False
    tunnelable: bool = False
    one_use_hooks: bool = False
    complete: bool = False
    attribute_options: tuple[tuple[str, object], ...] = ()

    def passes(self, n_tokens: int, n_steps: int, batch: int, n_samples: int | None) -> int:
        """About how many calls of f one attribution makes (for its progress bar)."""
        return self.count_passes(n_tokens, n_steps, batch, n_samples)


def _captum(name: str):
    import captum.attr

    return getattr(captum.attr, name)


# --------------------------------------------------------------------------- gradients


def _saliency(q: Question):
    options = dict(METHODS["saliency"].attribute_options)  # abs: |gradient|
    return _captum("Saliency")(q.f).attribute(q.x, **options), None


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
        sliding_window_shapes=q.window_shape or (q.window, features),
        strides=q.strides or (1, features),
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
            shares_forward=True,
            tunnelable=True,
            attribute_options=(("abs", True),),  # |gradient|
        ),
        Method(
            "input_x_gradient",
            "InputXGradient",
            "embedding times gradient: a first-order estimate of each token's effect",
            "gradient",
            _input_x_gradient,
            cite="shrikumar2017deeplift",
            shares_forward=True,
            tunnelable=True,
        ),
        Method(
            "integrated_gradients",
            "IntegratedGradients",
            "gradients averaged on the straight path from the baseline, times (x - baseline)",
            "gradient",
            _integrated_gradients,
            cite="sundararajan2017axiomatic",
            batched=True,
            # the steps, then f(x) and f(x') for the convergence delta
            count_passes=lambda n_tokens, n_steps, batch, n_samples: _batches(n_steps, batch) + 2,
            shares_forward=True,
            tunnelable=True,
            complete=True,
        ),
        Method(
            "deeplift",
            "DeepLift",
            "differences from the baseline propagated with the rescale rule",
            "gradient",
            _deeplift,
            cite="shrikumar2017deeplift",
            rows=lambda n_samples: 2,  # the input and the baseline
            tunnelable=True,
            one_use_hooks=True,
            complete=True,
        ),
        Method(
            "deeplift_shap",
            "DeepLiftShap",
            "DeepLift averaged over a distribution of baselines (random tokens)",
            "gradient",
            _deeplift_shap,
            default_samples=10,
            min_samples=2,
            cite="lundberg2017shap",
            rows=lambda n_samples: 2 * n_samples,  # the input repeated, and each baseline
            random_baselines=True,
            one_use_hooks=True,
            complete=True,
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
            count_passes=_per_token,
            teacher_forced=True,
        ),
        Method(
            "feature_ablation",
            "FeatureAblation",
            "output drop when one token is replaced by the baseline",
            "perturbation",
            _feature_ablation,
            batched=True,
            count_passes=_per_token,
            teacher_forced=True,
        ),
        Method(
            "lime",
            "Lime",
            "a weighted linear model fitted to random token subsets",
            "perturbation",
            _lime,
            default_samples=200,
            # the sampled subsets only
            count_passes=lambda n_tokens, n_steps, batch, n_samples: _batches(n_samples, batch),
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
            # the sampled subsets only
            count_passes=lambda n_tokens, n_steps, batch, n_samples: _batches(n_samples, batch),
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
            count_passes=_per_token,
            teacher_forced=True,
        ),
    ]
}
"""Method name -> :class:`Method`, in the order the book presents them."""


def token_scores(spec, per_feature: torch.Tensor) -> torch.Tensor:
    """One score per token from captum's (tokens, features) attribution.

    - Perturbation methods replace whole tokens and give every feature of a token the same
      value: that value (their mean) is the score.
    - Methods that return a gradient, not a contribution (saliency, guided backprop,
      deconvolution): the sum of absolute values (L1 norm). A plain sum would be about 0 in
      every model whose embeddings reach the output only through LayerNorm: its gradient is
      orthogonal to the all-ones direction.
    - Contributions (input x gradient, integrated gradients, DeepLift, DeepLiftShap): the
      sum, so that completeness can be checked against f(x) - f(x').
    """
    if spec.family == "perturbation":
        return per_feature.mean(-1)
    if spec.signal == "gradient":
        return per_feature.abs().sum(-1)
    return per_feature.sum(-1)


def check_method(name, also: tuple[str, ...] = ()) -> Method:
    """The method called ``name``, or a ValueError listing the valid names (and ``also``,
    names valid elsewhere in the same call)."""
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"method must be one of {', '.join([*METHODS, *also])}; got {name!r}")
    return METHODS[name]
