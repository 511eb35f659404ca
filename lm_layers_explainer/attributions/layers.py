"""Layer and neuron attribution: how much each layer's output, at each token, carries the
explained output (captum's layer methods), and which input tokens reach it through one
feed-forward neuron (``neuron_conductance``).

>>> attributions = lm_layers_explainer["attributions"]("SmolLM2-135M-Instruct", text)
>>> attributions(method="layer_conductance", target=" Paris")       # every layer
LayerAttributionResult(layer_conductance, 30 layers x 7 tokens, ...)
>>> attributions(method="neuron_conductance", layer=20, neuron=123)  # one neuron

The methods share the token methods' question (``f`` of the input embeddings, the
baseline, ``n_steps``) and live in :data:`LAYER_METHODS`, a table like
:data:`~lm_layers_explainer.attributions.methods.METHODS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..checks import check_index, check_int
from ..render import INLINE_WIDTH, Result, grid_figure, html_grid, signed
from .explained import attribute
from .methods import Method, Question, _batches, _captum


def _layer_evaluations(q: Question, inputs: torch.Tensor):
    """The gradient of f with respect to each layer in ``q.layer`` (a list) and each
    layer's output, for a batch of inputs: one forward and one backward pass for all the
    layers (captum's own helper, which its layer methods call one layer at a time).

    Both come back detached: captum returns each layer's output still in the graph, and the
    part of the graph below the layer (every earlier layer's saved activations) is never
    freed by the backward pass, which starts at the layer. Kept past the pass, it grew
    conductance's memory pass after pass (OOM at 23.8 GB on SmolLM2 at 507 tokens)."""
    from captum._utils.gradient import compute_layer_gradients_and_eval

    gradients, evaluations = compute_layer_gradients_and_eval(q.f, q.layer, inputs)
    return [g[0].detach() for g in gradients], [e[0].detach() for e in evaluations]


def _layer_conductance(q: Question):
    """captum's LayerConductance for every layer in ``q.layer`` from one set of passes: the
    path from the baseline to the input at ``n_steps + 1`` Gauss-Legendre points, and per
    layer the sum over steps of gradient x (change of the layer's output to the next step).
    Returns (layers, tokens, features)."""
    from captum.attr._utils.approximation_methods import approximation_parameters

    alphas = approximation_parameters("gausslegendre")[1](q.n_steps + 1)
    totals = None
    last = None  # the previous batch's last gradient and output, per layer
    for start in range(0, len(alphas), q.internal_batch_size):
        chosen = alphas[start : start + q.internal_batch_size]
        inputs = torch.cat([q.baseline + a * (q.x - q.baseline) for a in chosen])
        gradients, outputs = _layer_evaluations(q, inputs.detach().requires_grad_())
        if last is not None:
            gradients = [torch.cat([g0, g]) for (g0, _), g in zip(last, gradients, strict=True)]
            outputs = [torch.cat([o0, o]) for (_, o0), o in zip(last, outputs, strict=True)]
        steps = torch.stack(
            [(g[:-1] * (o[1:] - o[:-1])).sum(0) for g, o in zip(gradients, outputs, strict=True)]
        )
        totals = steps if totals is None else totals + steps
        last = [(g[-1:].detach(), o[-1:].detach()) for g, o in zip(gradients, outputs, strict=True)]
    return totals.detach(), None


def _layer_gradient_x_activation(q: Question):
    """captum's LayerGradientXActivation for every layer in ``q.layer``, from one pass.
    Returns (layers, tokens, features)."""
    gradients, outputs = _layer_evaluations(q, q.x)
    return torch.stack([(g * o)[0] for g, o in zip(gradients, outputs, strict=True)]).detach(), None


def _layer_integrated_gradients(q: Question):
    """captum's LayerIntegratedGradients, one run per layer in ``q.layer`` (it replaces a
    layer's output, so layers cannot share passes). Returns (layers, tokens, features)."""
    rows = []
    for layer in q.layer:
        attribution = _captum("LayerIntegratedGradients")(q.f, layer).attribute(
            q.x, baselines=q.baseline, n_steps=q.n_steps,
            internal_batch_size=q.internal_batch_size,
        )  # fmt: skip
        rows.append(attribution.detach()[0])
    return torch.stack(rows), None


def _neuron_conductance(q: Question):
    attribution = _captum("NeuronConductance")(q.f, q.layer).attribute(
        q.x, neuron_selector=q.neuron, baselines=q.baseline, n_steps=q.n_steps,
        internal_batch_size=q.internal_batch_size, attribute_to_neuron_input=True,
    )  # fmt: skip
    return attribution.detach(), None


def _steps(n_tokens, n_steps, batch, n_samples) -> int:
    return _batches(n_steps + 1, batch)


LAYER_METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method(
            "layer_conductance",
            "LayerConductance",
            "integrated gradients through each layer's output (conductance): its share of "
            "f(x) - f(x')",
            "layer",
            _layer_conductance,
            cite="dhamdhere2018conductance",
            batched=True,
            count_passes=_steps,
        ),
        Method(
            "layer_integrated_gradients",
            "LayerIntegratedGradients",
            "integrated gradients on the straight path between the layer's outputs for the "
            "baseline and the input",
            "layer",
            _layer_integrated_gradients,
            cite="sundararajan2017axiomatic",
            batched=True,
            count_passes=_steps,
            per_layer=True,
        ),
        Method(
            "layer_gradient_x_activation",
            "LayerGradientXActivation",
            "the layer's output times the gradient of f with respect to it",
            "layer",
            _layer_gradient_x_activation,
            cite="shrikumar2017deeplift",
        ),
        Method(
            "neuron_conductance",
            "NeuronConductance",
            "integrated gradients of each input token through one feed-forward neuron",
            "neuron",
            _neuron_conductance,
            cite="dhamdhere2018conductance",
            batched=True,
            count_passes=_steps,
        ),
    ]
}
"""Layer and neuron method name -> :class:`~lm_layers_explainer.attributions.methods.Method`."""


@dataclass
class LayerAttributionResult(Result):
    """``scores[r, t]``: row ``r``'s attribution at token ``t``, each the sum over the
    features. For layer methods a row is a layer and ``t`` a position of its output; for
    ``neuron_conductance`` the one row is the neuron and ``t`` an input token.
    ``deltas``: per row, its sum minus ``output - baseline_output`` (captum's convergence
    delta for conductance and integrated gradients; for gradient x activation, which
    promises no such sum, how far it is from one)."""

    method: str
    model_name: str
    tokens: list[str]
    rows: list[str]
    scores: np.ndarray
    target: int
    target_text: str
    question: str
    output_kind: str
    output: float
    baseline_output: float
    deltas: list[float]
    row_axis: str = "layer"
    settings: dict = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return (
            f"LayerAttributionResult({self.method}, {len(self.rows)} {self.row_axis}s x "
            f"{len(self.tokens)} tokens, {self.output_kind} of {self.target_text!r} = "
            f"{self.output:.4g})"
        )

    @property
    def totals(self) -> np.ndarray:
        """Each row's sum over the tokens (for conductance: about f(x) - f(x'))."""
        return self.scores.sum(1)

    def to_frame(self):
        """Columns ``row, position, token, attribution`` (``row``: a layer name, or the
        neuron), one row per cell."""
        import pandas as pd

        cells = [
            (name, t, token, float(self.scores[r, t]))
            for r, name in enumerate(self.rows)
            for t, token in enumerate(self.tokens)
        ]
        return pd.DataFrame(cells, columns=[self.row_axis, "position", "token", "attribution"])

    def _title(self) -> str:
        where = "its output at each token" if self.row_axis == "layer" else "each input token"
        return (
            f"{self.model_name}, {self.method}: {self.output_kind} of {self.target_text!r} "
            f"({self.question}) = {self.output:.3g} (baseline {self.baseline_output:.3g})"
            f"; per {self.row_axis}, {where}; last column the row's sum"
        )

    def _grid(self):
        largest = float(np.abs(self.scores).max()) or 1.0
        values = 0.5 + 0.5 * self.scores / largest
        total = self.totals
        spread = float(np.abs(total).max()) or 1.0
        cells = [
            [signed(v) for v in row] + [signed(t)]
            for row, t in zip(self.scores, total, strict=True)
        ]
        shades = [
            list(row) + [0.5 + 0.5 * t / spread] for row, t in zip(values, total, strict=True)
        ]
        columns = [f"{t}:{token}" for t, token in enumerate(self.tokens)] + ["sum"]
        return columns, cells, shades

    def to_html(self) -> str:
        columns, cells, shades = self._grid()
        return html_grid(self._title(), columns, self.rows, cells, shades, cmap="RdBu_r",
                         split=len(self.tokens))  # fmt: skip

    def figure(self):
        """The grid: rows, tokens and each row's sum, red positive, blue negative."""
        columns, cells, shades = self._grid()
        figure = grid_figure(self._title(), columns, self.rows, cells, shades, cmap="RdBu_r",
                             row_axis=self.row_axis, split=len(self.tokens))  # fmt: skip
        figure.set_figwidth(max(INLINE_WIDTH, figure.get_figwidth()))
        return figure


def explain_layers(explainer, spec: Method, index: int, text: str, settings: dict,
                   layer, neuron, position, contrast=None) -> LayerAttributionResult:  # fmt: skip
    """Run a layer method on every layer (``layer`` None) or one, or ``neuron_conductance``
    on ``neuron`` of ``layer``'s feed-forward input at ``position``."""
    lm = explainer.lm
    explained = explainer.explained
    foil, _ = contrast or (None, None)
    question = explainer.question(explained, index, settings, foil)
    n_layers = lm.n_layers
    if spec.family == "neuron":
        question.layer = lm.family.find_feed_forward(lm.layers[layer])
        question.neuron = (position, neuron)
        rows = [f"layer {layer} neuron {neuron} at {position}"]
    else:
        chosen = list(range(n_layers)) if layer is None else [layer]
        question.layer = [lm.layers[k] for k in chosen]
        rows = [f"layer {k}" for k in chosen]
    desc = f"{spec.name} ({len(rows)} {'layers' if len(rows) > 1 else 'layer'}, batches of "
    desc += f"{settings['internal_batch_size']})"
    if spec.per_layer and len(rows) > 1:
        one_layer = spec.count_passes
        spec = replace(spec, count_passes=lambda *args: len(rows) * one_layer(*args))
    attribution, _, seconds = attribute(spec, question, settings, desc)
    per_row = attribution if spec.family == "layer" else attribution[0][None]
    scores = per_row.double().sum(-1).cpu().numpy()  # (rows, tokens)
    output, baseline_output = explainer.outputs(explained, index, settings, foil)
    return LayerAttributionResult(
        method=spec.name, model_name=lm.name, tokens=list(explained.tokens), rows=rows,
        scores=scores, target=index, target_text=text, question=explained.question,
        output_kind=settings["output"], output=output, baseline_output=baseline_output,
        deltas=[float(total - (output - baseline_output)) for total in scores.sum(1)],
        row_axis="neuron" if spec.family == "neuron" else "layer",
        settings={**settings, "seconds": seconds, "layer": layer, "neuron": neuron,
                  "position": position},
    )  # fmt: skip


def check_layer_options(explainer, spec: Method, layer, neuron, position):
    """(layer, neuron, position) checked for ``spec`` before any model work."""
    lm = explainer.lm
    if lm.task.encoder_decoder:
        raise ValueError(
            f"{spec.name} explains models with one stack of layers (causal LMs, masked LMs, "
            f"classifiers); {lm.name} is a seq2seq model"
        )
    if spec.family == "layer":
        if neuron is not None or position is not None:
            raise ValueError(f"neuron and position are for neuron_conductance, not {spec.name}")
        return (None if layer is None else check_index(layer, lm.n_layers, "layer")), None, None
    if layer is None or neuron is None:
        raise ValueError("neuron_conductance needs layer= and neuron= (a feed-forward neuron)")
    layer = check_index(layer, lm.n_layers, "layer")
    width = _neurons(lm, layer)
    neuron = check_int(neuron, "neuron", 0, width - 1)
    default = explainer.read_at if explainer.read_at is not None else 0
    position = (
        default if position is None else check_index(position, len(explainer.ids), "position")
    )
    return layer, neuron, position


def _neurons(lm, layer: int) -> int:
    """How many neurons feed layer ``layer``'s last feed-forward linear layer."""
    module = lm.family.find_feed_forward(lm.layers[layer])
    weight = getattr(module, "weight", None)
    if weight is None:
        raise ValueError(f"cannot tell the feed-forward width of {type(module).__name__}")
    # nn.Linear stores (out, in); GPT-2's Conv1D stores (in, out)
    return int(weight.shape[1] if type(module).__name__ != "Conv1D" else weight.shape[0])
