"""Image classification: which pixels and patches an image classifier's label rests on.

>>> explain = lm_layers_explainer["image_classification"]("tiny-vit", image)  # PIL or array
>>> result = explain(method="integrated_gradients", noise_tunnel="smoothgrad")
>>> result.target, result.to_frame().shape                   # the predicted label; one row
('bird', (16, 5))                                             # per 8 x 8 patch

``f`` is the probability (or logit) of one label as a function of the ``pixel_values`` the
image processor makes: the same methods as ``attributions``, on pixels instead of token
embeddings. Perturbation methods replace whole patches (the model's patch size); gradient
methods give every pixel a score, summed over the colour channels. The image shown with
the attributions is the one the model saw: the processor's resized (and cropped) image,
un-normalized.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch

from .._captum import deeplift_rules, quiet
from ..base import Explainer
from ..checks import check_choice, check_int, check_labels, check_number, check_seed
from ..memory import rows_that_fit
from ..models import LoadedModel, load_model
from ..render import Result, escape, inline_png
from ..running import class_index, class_labels
from .explained import OUTPUTS, ExplainedOutput, outputs_of, read, with_progress
from .methods import METHODS, MethodNotApplicableError, Question, check_method

BASELINES = ("zero", "black", "blur")
"""``zero``: zeros in the model's input space (after the processor's normalization: mid-grey
for ViT's mean and std of 0.5); ``black``: a black image; ``blur``: the image blurred
(Gaussian, radius a sixteenth of its side)."""
NOISE_TUNNELS = ("smoothgrad", "smoothgrad_sq", "vargrad")
TUNNELLED = tuple(name for name, m in METHODS.items() if m.tunnelable)
"""The methods a noise tunnel can average: gradient methods, with no sampling of their own
(``tunnelable`` on their lines of the methods table)."""
VIEWS = ("overlay", "heatmap", "masked", "alpha")
SIGNS = ("all", "positive", "negative", "absolute")
MAX_PIXELS = 50_000_000
"""Images with more pixels are refused before the processor resizes them."""


# --------------------------------------------------------------------------- the input


def check_image(image, name: str = "image"):
    """A PIL image in RGB, or a ``pixel_values`` tensor ``(1, channels, height, width)`` as
    the model takes it; from a PIL image, a path, a ``(height, width)`` or ``(height, width,
    3 or 4)`` array (uint8 0..255, or floats in 0..1) or a tensor."""
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        try:
            image = Image.open(image)
            image.load()
        except (OSError, Image.DecompressionBombError) as error:
            raise ValueError(f"{name} must be a readable image file; {error}") from None
    if isinstance(image, Image.Image):
        width, height = image.size
        _check_size(height, width, name)
        return image.convert("RGB")
    if isinstance(image, torch.Tensor):
        tensor = image.detach()
        if tensor.ndim == 3:
            tensor = tensor[None]
        if tensor.ndim != 4 or tensor.shape[0] != 1 or not tensor.is_floating_point():
            raise ValueError(
                f"{name} as a tensor must be pixel_values of one image, float (1, channels, "
                f"height, width); got {tuple(image.shape)} {image.dtype}"
            )
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{name} must hold finite numbers only")
        return tensor.float()
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 3 and array.shape[-1] in (3, 4):
            array = array[..., :3]
        elif array.ndim != 2:
            raise ValueError(
                f"{name} as an array must be (height, width) or (height, width, 3 or 4); got "
                f"shape {image.shape}"
            )
        _check_size(array.shape[0], array.shape[1], name)
        if array.dtype == np.uint8:
            pass
        elif np.issubdtype(array.dtype, np.floating) or array.dtype == bool:
            array = array.astype(float)
            if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
                raise ValueError(
                    f"{name} as a float array must hold values in 0..1 (or give uint8 "
                    f"0..255); got {np.nanmin(array):g}..{np.nanmax(array):g}"
                )
            array = np.round(array * 255)
        else:
            raise ValueError(f"{name} as an array must be uint8 or float; got {array.dtype}")
        return Image.fromarray(array.astype(np.uint8)).convert("RGB")
    raise TypeError(
        f"{name} must be a PIL image, a path, a numpy array or a pixel_values tensor; got "
        f"{type(image).__name__}"
    )


def _check_size(height: int, width: int, name: str) -> None:
    if height < 1 or width < 1:
        raise ValueError(f"{name} must have at least one pixel; got {height} x {width}")
    if height * width > MAX_PIXELS:
        raise ValueError(
            f"{name} must have at most {MAX_PIXELS} pixels; got {height} x {width}: resize it"
        )


def model_size(lm: LoadedModel) -> tuple[int, int, int]:
    """(channels, height, width) the model takes, from its config."""
    size = getattr(lm.config, "image_size", None)
    height, width = (size, size) if isinstance(size, int) else tuple(size or (None, None))
    return int(getattr(lm.config, "num_channels", 3)), height, width


class Pixels:
    """The image processor's arithmetic, both ways: ``(uint8 image) <-> pixel_values``
    (rescaled, then normalized by the processor's mean and std)."""

    def __init__(self, processor):
        self.scale = processor.rescale_factor if getattr(processor, "do_rescale", True) else 1.0
        normalize = getattr(processor, "do_normalize", False)
        self.mean = np.array(processor.image_mean if normalize else 0.0).reshape(-1, 1, 1)
        self.std = np.array(processor.image_std if normalize else 1.0).reshape(-1, 1, 1)

    def to_model(self, image: np.ndarray) -> torch.Tensor:
        """(height, width, 3) uint8 -> (1, 3, height, width) pixel values."""
        channels_first = image.transpose(2, 0, 1).astype(np.float64)
        values = (channels_first * self.scale - self.mean) / self.std
        return torch.tensor(values, dtype=torch.float32)[None]

    def to_image(self, pixel_values: torch.Tensor) -> np.ndarray:
        """(1, 3, height, width) pixel values -> (height, width, 3) uint8, what they show."""
        values = pixel_values[0].double().cpu().numpy() * self.std + self.mean
        return np.clip(np.round(values / self.scale), 0, 255).astype(np.uint8).transpose(1, 2, 0)


# --------------------------------------------------------------------------- f


class ImageOutput(ExplainedOutput):
    """``f``: pixel values ``(batch, channels, height, width)`` -> the probability (or logit)
    of one label ``(batch,)``: the text ``f`` (softmax or sigmoid, progress ticks) on the
    image classifier's logits."""

    def __init__(self, lm: LoadedModel, target: int, output: str):
        super().__init__(lm, read_at=None, target=target, output=output, extra=None)

    def logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


def patch_mask(shape: tuple[int, ...], patch: int) -> torch.Tensor:
    """(1, channels, height, width): every pixel numbered by its patch (row-major), the
    channels of a pixel alike."""
    _, channels, height, width = shape
    rows = torch.arange(height) // patch
    cols = torch.arange(width) // patch
    n_cols = -(-width // patch)
    grid = rows[:, None] * n_cols + cols[None, :]
    return grid.expand(1, channels, height, width).clone()


# --------------------------------------------------------------------------- the explainer


class ImageClassificationExplainer(Explainer):
    """Image classification: which pixels and patches a label of an image classifier rests on.

    Args:
        model: an image classifier (``AutoModelForImageClassification``, such as ViT) with
            its image processor: a Hub id, a folder, a ``(model, image_processor)`` pair,
            or the catalog's ``"tiny-vit"``.
        image: a PIL image, a path, a ``(height, width[, 3])`` array (uint8, or floats in
            0..1) of any size (the processor resizes it), or ``pixel_values`` of exactly
            the model's size.
        custom_labels: names for the model's labels, in index order; None (default): its
            ``id2label``.

    Example:
        >>> explain = lm_layers_explainer["image_classification"](
        ...     "google/vit-base-patch16-224", "cat.jpg")
        >>> explain(noise_tunnel="smoothgrad").target
        'tabby, tabby cat'
    """

    accepts = ("image_classifier",)

    def __init__(self, model, image, *, custom_labels=None):
        self.lm: LoadedModel = load_model(model)
        self.check_reads(self.lm)
        self.check_model(self.lm)
        self.text = self.text_pair = None
        self.custom_labels = (
            None
            if custom_labels is None
            else check_labels(custom_labels, len(self.lm.config.id2label))
        )
        checked = check_image(image)
        self.pixels = Pixels(self.lm.processor)
        if isinstance(checked, torch.Tensor):
            channels, height, width = model_size(self.lm)
            if height is not None and tuple(checked.shape[1:]) != (channels, height, width):
                raise ValueError(
                    f"image as pixel_values must be the model's size (1, {channels}, {height}, "
                    f"{width}); got {tuple(checked.shape)}. Give the image itself (a PIL "
                    "image or an array) and the processor resizes it"
                )
            self.pixel_values = checked.to(self.lm.device)
        else:
            processed = self.lm.processor(checked, return_tensors="pt")["pixel_values"]
            self.pixel_values = processed.float().to(self.lm.device)
        self.image = self.pixels.to_image(self.pixel_values)
        """What the model sees: (height, width, 3) uint8."""
        self._logits: torch.Tensor | None = None

    def labels(self) -> list[str]:
        """The classifier's labels, in index order (``custom_labels`` if given)."""
        return class_labels(self.lm, self.custom_labels)

    def logits(self) -> torch.Tensor:
        """The model's logits for the image: (labels,); one forward pass, kept."""
        if self._logits is None:
            with torch.no_grad():
                self._logits = self.lm.model(pixel_values=self.pixel_values).logits[0].float()
        return self._logits

    def patch_size(self, patch_size: int | None = None) -> int:
        """The side of the square patches that perturbation methods replace: the model's
        (``config.patch_size``), 16 where its config has none, or ``patch_size``."""
        side = min(self.pixel_values.shape[-2:])
        if patch_size is None:
            patch_size = getattr(self.lm.config, "patch_size", 16)
            return int(patch_size if isinstance(patch_size, int) else patch_size[0])
        return check_int(patch_size, "patch_size", 1, side)

    def _target(self, target) -> tuple[int, str]:
        labels = self.labels()
        index = class_index(labels, target, "target", lambda: self.logits().argmax())
        return index, labels[index]

    def _baseline(self, baseline: str) -> torch.Tensor:
        from PIL import Image, ImageFilter

        if baseline == "zero":
            return torch.zeros_like(self.pixel_values)
        if baseline == "black":
            image = np.zeros_like(self.image)
        else:
            radius = max(self.image.shape[:2]) / 16
            blurred = Image.fromarray(self.image).filter(ImageFilter.GaussianBlur(radius))
            image = np.asarray(blurred)
        return self.pixels.to_model(image).to(self.pixel_values.device)

    def __call__(
        self,
        method: str = "integrated_gradients",
        target=None,
        *,
        output: str = "probability",
        baseline: str = "zero",
        n_steps: int = 50,
        internal_batch_size: int | None = None,
        n_samples: int | None = None,
        window: int = 1,
        patch_size: int | None = None,
        noise_tunnel: str | None = None,
        nt_samples: int = 10,
        stdevs: float = 0.2,
        seed: int = 0,
    ) -> ImageAttributionResult:
        """Attribute one label's probability (or logit) to the pixels.

        Args:
            method: an attributions method (``saliency``, ``input_x_gradient``,
                ``integrated_gradients``, ``deeplift``, ``occlusion``, ``feature_ablation``,
                ``lime``, ``kernel_shap``, ``shapley_value_sampling``; the others are
                refused with their reason).
            target: a label, its index, or None (default) for the predicted label.
            output: ``probability`` (softmax; sigmoid for a multi-label model) or ``logit``.
            baseline: one of :data:`BASELINES` (default ``zero``, as transformers-interpret).
            n_steps, internal_batch_size, n_samples: as for ``attributions``.
            window: occlusion's square window, in patches (default 1): 1 .. the patches
                that fit along the image's shorter side (4 for 32 pixels in patches of 8).
            patch_size: the patch that perturbation methods replace (default: the model's).
            noise_tunnel: None, ``smoothgrad``, ``smoothgrad_sq`` or ``vargrad``: average
                the method over ``nt_samples`` copies of the image with Gaussian noise of
                standard deviation ``stdevs`` (in pixel_values units: 0.2 is a tenth of
                ViT's range of -1..1); for the gradient methods in :data:`TUNNELLED`.
            seed: seeds every random draw (noise, sampled patches).

        Returns:
            ImageAttributionResult: per-pixel scores (summed over the colour channels), per
            patch in ``to_frame()``, and the views of ``figure()``.
        """
        spec = check_method(method)
        reason = spec.refuse(self.lm)
        if reason:
            raise MethodNotApplicableError(reason)
        if spec.run is None or spec.random_baselines:
            raise MethodNotApplicableError(
                f"{spec.name} draws its baselines from random tokens, which an image has "
                "not; use deeplift (one baseline) or a noise tunnel"
            )
        check_choice(output, "output", OUTPUTS)
        check_choice(baseline, "baseline", BASELINES)
        n_steps = check_int(n_steps, "n_steps", 1, 10_000)
        if n_samples is not None:
            n_samples = check_int(n_samples, "n_samples", spec.min_samples, 100_000)
        n_samples = n_samples if n_samples is not None else spec.default_samples
        patch = self.patch_size(patch_size)
        mask = patch_mask(self.pixel_values.shape, patch).to(self.pixel_values.device)
        n_patches = int(mask.max()) + 1
        # a square of window x window patches must fit in the image (captum's occlusion
        # slides it by one patch, the last step clipped at the edge: every pixel is covered)
        height, width = self.pixel_values.shape[2:]
        window, most = check_int(window, "window", 1), min(height, width) // patch
        if window > most:
            raise ValueError(
                f"window must be in 1..{most} (squares of patches of {patch} pixels that fit in "
                f"the model's {height}x{width} input); got {window}"
            )
        seed = check_seed(seed)
        if noise_tunnel is not None:
            check_choice(noise_tunnel, "noise_tunnel", NOISE_TUNNELS)
            if not spec.tunnelable:
                raise ValueError(
                    f"noise_tunnel averages a gradient method over noisy copies of the image; "
                    f"it takes one of {', '.join(TUNNELLED)}, not {spec.name}"
                )
        nt_samples = check_int(nt_samples, "nt_samples", 1, 10_000)
        stdevs = check_number(stdevs, "stdevs", 0.0)
        index, label = self._target(target)
        tokens = n_patches + 1  # the model's sequence: a token per patch, and [CLS]
        if internal_batch_size is None:
            backward = spec.family == "gradient"
            internal_batch_size = rows_that_fit(self.lm, tokens, backward=backward).rows
        else:
            internal_batch_size = check_int(internal_batch_size, "internal_batch_size", 1, 4096)

        f = ImageOutput(self.lm, index, output)
        x = self.pixel_values.clone().requires_grad_(spec.family == "gradient")
        x_base = self._baseline(baseline)
        channels = x.shape[1]
        question = Question(
            f=f,
            x=x,
            baseline=x_base,
            feature_mask=mask,
            baseline_sampler=None,
            n_steps=n_steps,
            internal_batch_size=internal_batch_size,
            n_samples=n_samples,
            window=window,
            window_shape=(channels, window * patch, window * patch),
            strides=(channels, patch, patch),
        )
        passes = spec.passes(n_patches, n_steps, internal_batch_size, n_samples)
        if noise_tunnel is not None:
            passes *= nt_samples

        def work():
            if noise_tunnel is None:
                return spec.run(question)
            return _tunnelled(spec, question, noise_tunnel, nt_samples, stdevs)

        (attribution, delta), _ = with_progress(
            f, passes, f"{spec.name} ({label})", seed, x.device, work
        )
        attribution = attribution.detach()[0].float()
        if spec.family == "perturbation":
            # captum gives each number of a replaced patch the patch's whole effect: spread it
            # over the patch's numbers, so that a patch's scores sum to its effect
            attribution = attribution / mask[0].flatten().bincount()[mask[0]]
        logits = self.logits()
        value = read(logits, index, output, sigmoid=f.sigmoid)
        with torch.no_grad():
            base_value = float(f(x_base))
        probabilities = outputs_of(logits, "probability", f.sigmoid)
        top = probabilities.argsort(descending=True)[:5].tolist()
        labels = self.labels()
        return ImageAttributionResult(
            model_name=self.lm.name,
            method=spec.name,
            target=label,
            target_index=index,
            output=output,
            value=value,
            baseline_value=base_value,
            delta=delta,
            image=self.image,
            scores=attribution.sum(0).cpu().numpy(),
            patch_size=patch,
            signal="gradient" if spec.signal == "gradient" else "contribution",
            settings={
                "baseline": baseline,
                "n_steps": n_steps,
                "n_samples": n_samples,
                "noise_tunnel": noise_tunnel,
                "nt_samples": nt_samples if noise_tunnel else None,
                "stdevs": stdevs if noise_tunnel else None,
                "seed": seed,
            },
            top_labels={labels[i]: float(probabilities[i]) for i in top},
        )


def _tunnelled(spec, q: Question, nt_type: str, nt_samples: int, stdevs: float):
    """``spec`` averaged by captum's NoiseTunnel over noisy copies of ``q.x``."""
    from captum.attr import NoiseTunnel

    from .methods import _captum

    options = {
        "saliency": {"abs": True},
        "input_x_gradient": {},
        "integrated_gradients": {
            "baselines": q.baseline,
            "n_steps": q.n_steps,
            "internal_batch_size": q.internal_batch_size,
        },
        "deeplift": {"baselines": q.baseline},
    }[spec.name]
    tunnel = NoiseTunnel(_captum(spec.captum)(q.f))
    with deeplift_rules(), quiet():
        attribution = tunnel.attribute(
            q.x, nt_type=nt_type, nt_samples=nt_samples, stdevs=stdevs, **options
        )
    return attribution, None


# --------------------------------------------------------------------------- the result


@dataclass(eq=False)
class ImageAttributionResult(Result):
    """One label of an image classifier, attributed to the pixels.

    ``image`` is what the model saw ((height, width, 3) uint8); ``scores`` the attribution
    of each pixel (height, width), summed over the colour channels; ``value`` and
    ``baseline_value`` the explained output on the image and on the baseline; ``delta``
    captum's convergence delta where it gives one. Patches of ``patch_size`` pixels are
    the rows of ``to_frame()``.
    """

    model_name: str
    method: str
    target: str
    target_index: int
    output: str
    value: float
    baseline_value: float
    delta: float | None
    image: np.ndarray
    scores: np.ndarray
    patch_size: int
    signal: str
    settings: dict = field(default_factory=dict)
    top_labels: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        height, width = self.scores.shape
        return (
            f"ImageAttributionResult(method={self.method!r}, target={self.target!r}, "
            f"{self.output}={self.value:.4g}, pixels={height}x{width})"
        )

    def patches(self) -> np.ndarray:
        """The scores summed over each patch: (patch rows, patch columns)."""
        height, width = self.scores.shape
        p = self.patch_size
        rows, cols = -(-height // p), -(-width // p)
        padded = np.zeros((rows * p, cols * p))
        padded[:height, :width] = self.scores
        return padded.reshape(rows, p, cols, p).sum(axis=(1, 3))

    def to_frame(self):
        """One row per patch: its row and column in the patch grid, its top-left pixel and
        its score (the sum of its pixels')."""
        import pandas as pd

        grid = self.patches()
        rows, cols = np.indices(grid.shape)
        return pd.DataFrame(
            {
                "row": rows.ravel(),
                "col": cols.ravel(),
                "top": rows.ravel() * self.patch_size,
                "left": cols.ravel() * self.patch_size,
                "attribution": grid.ravel(),
            }
        )

    def title(self) -> str:
        return (
            f"{self.model_name}: {self.method} for {self.target!r} ({self.output} {self.value:.3f})"
        )

    def to_html(self) -> str:
        """Self-contained: the image and its overlay as an inline PNG, and the top labels."""
        picture = inline_png(self.figure(title=""), alt=self.title())  # the title is text
        rows = "".join(
            f"<tr><td>{escape(label)}</td><td>{p:.3f}</td></tr>"
            for label, p in self.top_labels.items()
        )
        return (
            f'<div class="lmle-image-attribution"><p><b>{escape(self.title())}</b></p>'
            f"{picture}<table><tr><th>label</th><th>probability</th></tr>{rows}</table></div>"
        )

    def figure(
        self,
        view: str = "overlay",
        sign: str | None = None,
        outlier: float = 0.01,
        resolution: str = "pixel",
        title: str | None = None,
    ):
        """The image beside one view of its scores.

        Args:
            view: ``overlay`` (scores in colour over the greyed image), ``heatmap`` (the
                scores alone), ``masked`` (the image where the scores are large, black
                elsewhere) or ``alpha`` (the image, transparent where the scores are small).
            sign: ``all`` (red positive, blue negative; default for overlay and heatmap),
                ``positive`` (default for masked and alpha), ``negative`` or ``absolute``.
            outlier: the share of the largest absolute scores that saturate the colour scale
                (0..0.5; 0.01 as captum's visualization).
            resolution: ``pixel``, or ``patch`` (each patch's sum, as one cell).
            title: the figure's title (default: model, method, label and output; "" for
                none).
        """
        import matplotlib.pyplot as plt

        check_choice(view, "view", VIEWS)
        if sign is None:
            sign = "all" if view in ("overlay", "heatmap") else "positive"
        check_choice(sign, "sign", SIGNS)
        if sign == "all" and view in ("masked", "alpha"):
            raise ValueError(
                f"sign must be positive, negative or absolute for view={view!r} (a mask "
                "needs one direction); got 'all'"
            )
        outlier = check_number(outlier, "outlier", 0.0)
        if outlier > 0.5:
            raise ValueError(f"outlier must be in 0..0.5; got {outlier}")
        check_choice(resolution, "resolution", ("pixel", "patch"))
        scores = self.scores
        if resolution == "patch":
            p = self.patch_size
            scores = np.kron(self.patches(), np.ones((p, p)))[: scores.shape[0], : scores.shape[1]]
        if sign == "positive":
            scores = np.clip(scores, 0, None)
        elif sign == "negative":
            scores = np.clip(-scores, 0, None)
        elif sign == "absolute":
            scores = np.abs(scores)
        largest = np.quantile(np.abs(scores), 1 - outlier) if scores.size else 0.0
        scaled = np.clip(scores / largest, -1, 1) if largest > 0 else np.zeros_like(scores)

        figure, (left, right) = plt.subplots(1, 2, figsize=(7.2, 3.9))
        left.imshow(self.image)
        left.set_title("what the model saw", fontsize=9)
        cmap = "RdBu_r" if sign == "all" else "Reds"
        low = -1 if sign == "all" else 0
        if view == "heatmap":
            shown = right.imshow(scaled, cmap=cmap, vmin=low, vmax=1)
            figure.colorbar(shown, ax=right, fraction=0.046, label="scaled attribution")
        elif view == "overlay":
            grey = self.image.mean(axis=2)
            right.imshow(grey, cmap="gray", alpha=0.6)
            shown = right.imshow(scaled, cmap=cmap, vmin=low, vmax=1, alpha=0.6)
            figure.colorbar(shown, ax=right, fraction=0.046, label="scaled attribution")
        elif view == "masked":
            right.imshow((self.image * scaled[..., None]).astype(np.uint8))
        else:
            rgba = np.dstack([self.image, np.round(255 * scaled).astype(np.uint8)])
            right.imshow(rgba)
        right.set_title(f"{view} ({sign})", fontsize=9)
        for axis in (left, right):
            axis.set_xticks([])
            axis.set_yticks([])
        title = self.title() if title is None else title
        if title:
            figure.suptitle(title, fontsize=10)
        figure.tight_layout()
        return figure
