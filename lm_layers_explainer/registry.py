"""The registry of explainers: ``lm_layers_explainer.entry_points`` and ``[name]``.

To add an explainer, add one line to :data:`ENTRY_POINTS`: its name and where its class
lives. The one-line summary is the first line of the class's docstring. Explainers derive
from :class:`lm_layers_explainer.base.Explainer`.

**The rule for when the text is given.** An explainer is built with the model and the
text(s) it explains; calling it chooses what to show of them, and every call reuses the
work done for that text (its encoding, its forward pass)::

    predictions = lm_layers_explainer["predictions"](model, text)
    predictions(position=8, layer=5)
    lm_layers_explainer["tokens"](model, text)()
    lm_layers_explainer["attention_head_view"](model, text, text_pair)(layer=2)
    lm_layers_explainer["rankings"](model, text)(generate=1)

The explainers that an earlier version built with the model only (tokens, rankings and the
three attention views) still take the text when called instead, as in
``lm_layers_explainer["tokens"](model)(text)``; giving it both ways is refused. A text is
always checked (and, where the explainer reads the model, encoded) before any model runs.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator

from .render import escape

ENTRY_POINTS: dict[str, str] = {
    "tokens": "lm_layers_explainer.tokens:TokensExplainer",
    "activations": "lm_layers_explainer.activations:ActivationsExplainer",
    "predictions": "lm_layers_explainer.predictions:PredictionsExplainer",
    "rankings": "lm_layers_explainer.rankings:RankingsExplainer",
    "attention_head_view": "lm_layers_explainer.attention:AttentionHeadView",
    "attention_model_view": "lm_layers_explainer.attention:AttentionModelView",
    "attention_neuron_view": "lm_layers_explainer.attention:AttentionNeuronView",
    "attributions": "lm_layers_explainer.attributions:AttributionsExplainer",
    "embeddings": "lm_layers_explainer.representations:EmbeddingsExplainer",
    "representation_similarity": (
        "lm_layers_explainer.representations:RepresentationSimilarityExplainer"
    ),
    "question_answering": "lm_layers_explainer.attributions:QuestionAnsweringExplainer",
    "token_classification": "lm_layers_explainer.attributions:TokenClassificationExplainer",
    "zero_shot": "lm_layers_explainer.attributions:ZeroShotExplainer",
    "similarity": "lm_layers_explainer.attributions:SimilarityExplainer",
    "image_classification": "lm_layers_explainer.attributions:ImageClassificationExplainer",
    "logit_attribution": "lm_layers_explainer.components:LogitAttributionExplainer",
    "patching": "lm_layers_explainer.components:PatchingExplainer",
    "attention_flow": "lm_layers_explainer.attention_flow:AttentionFlowExplainer",
}
"""Entry-point name -> ``module:attribute`` of the explainer class (imported on first use)."""


class EntryPoints(dict):
    """Entry-point name -> one-line summary; prints as an aligned list, shows as a table."""

    def __repr__(self) -> str:
        width = max(map(len, self), default=0)
        return "\n".join(f"{name.ljust(width)}  {summary}" for name, summary in self.items())

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td><code>{escape(name)}</code></td><td>{escape(summary)}</td></tr>"
            for name, summary in self.items()
        )
        return f"<table><tr><th>entry point</th><th>what it shows</th></tr>{rows}</table>"


class ExplainerRegistry:
    """``registry[name]`` returns an explainer class; ``registry.entry_points`` lists them.

    >>> lm_layers_explainer["tokens"]
    <class 'lm_layers_explainer.tokens.TokensExplainer'>
    """

    def __init__(self, entry_points: dict[str, str]):
        self._targets = dict(entry_points)

    def __getitem__(self, name: str):
        if name not in self._targets:
            raise KeyError(
                f"no explainer named {name!r}; valid names: {', '.join(sorted(self._targets))}"
            )
        module_name, attribute = self._targets[name].split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def __contains__(self, name) -> bool:
        return name in self._targets

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)

    @property
    def entry_points(self) -> EntryPoints:
        """Entry-point name -> one-line summary."""
        return EntryPoints(
            (name, (inspect.getdoc(self[name]) or "").splitlines()[0]) for name in self._targets
        )

    def __repr__(self) -> str:
        return f"lm_layers_explainer({', '.join(self._targets)})"


lm_layers_explainer = ExplainerRegistry(ENTRY_POINTS)
