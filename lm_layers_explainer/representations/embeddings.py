"""The ``embeddings`` explainer: many texts' sentence embeddings at every layer, in 2-D.

>>> emb = lm_layers_explainer["embeddings"]("all-MiniLM-L6-v2", texts, labels=topics)
>>> result = emb(projection="pca")          # EmbeddingsResult: one panel per depth
>>> result.separation_frame()               # silhouette and probe accuracy per depth
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ..base import Explainer
from ..checks import (
    check_choice,
    check_int,
    check_labels_per_text,
    check_number,
    check_seed,
    check_texts,
)
from ..memory import check_fits
from ..render import INLINE_FONT, INLINE_WIDTH, PALETTE, Result, escape
from .states import (
    MAX_TEXTS,
    POOLINGS,
    LayerStates,
    depth_names,
    estimate,
    layer_states,
    tokenized,
)

PROJECTIONS = ("pca", "tsne", "umap")


def check_depth(layer, names: list[str]) -> list[int]:
    """Depth indices for ``layer``: None (every depth), ``"embeddings"`` or a layer 0..L-1
    (depth ``layer + 1``)."""
    n_layers = len(names) - 1
    if layer is None:
        return list(range(len(names)))
    if isinstance(layer, str):
        if layer != "embeddings":
            raise ValueError(
                f"layer must be None, 'embeddings' or in 0..{n_layers - 1}; got {layer!r}"
            )
        return [0]
    return [check_int(layer, "layer", 0, n_layers - 1) + 1]


def project(states: np.ndarray, projection: str, seed: int, **options) -> np.ndarray:
    """``states`` (texts, hidden) in 2-D with scikit-learn's PCA or t-SNE, or umap-learn."""
    if projection == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2).fit_transform(states)
    if projection == "tsne":
        from sklearn.manifold import TSNE

        # Exact gradients up to 1000 texts: there scikit-learn's Barnes-Hut approximation
        # was slower (45 s against 6 s for 400 texts on 2 cores) as well as approximate.
        method = "exact" if len(states) <= 1000 else "barnes_hut"
        return TSNE(
            n_components=2, perplexity=options["perplexity"], init="pca", random_state=seed,
            method=method,
        ).fit_transform(states)  # fmt: skip
    try:
        import umap
    except ImportError as error:
        raise ImportError(
            "projection='umap' needs umap-learn: pip install 'lm-layers-explainer[umap]'"
        ) from error
    return umap.UMAP(
        n_components=2, n_neighbors=options["n_neighbors"], random_state=seed, n_jobs=1
    ).fit_transform(states)


def separation(states: np.ndarray, labels: list[str], seed: int) -> tuple[float, float]:
    """How far apart the labelled groups lie in the full states: scikit-learn's silhouette
    score (euclidean) and a linear probe's accuracy (standardized features, logistic
    regression, stratified k-fold cross-validation, k = 5 or the smallest group's size)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import silhouette_score
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    silhouette = float(silhouette_score(states, labels))
    folds = min(5, min(labels.count(label) for label in set(labels)))
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    splits = StratifiedKFold(folds, shuffle=True, random_state=seed)
    accuracy = float(cross_val_score(probe, states, labels, cv=splits).mean())
    return silhouette, accuracy


@dataclass
class EmbeddingsResult(Result):
    """Each text's pooled state at each shown depth, projected to 2-D.

    ``coordinates`` (depths shown, texts, 2); ``depths`` their names (``embeddings``,
    ``layer 0``...); with labels, ``silhouette`` and ``probe_accuracy`` per depth (computed
    on the full states, not the 2-D picture).
    """

    model_name: str
    texts: list[str]
    labels: list[str] | None
    depths: list[str]
    coordinates: np.ndarray
    pooling: str
    projection: str
    silhouette: np.ndarray | None = None
    probe_accuracy: np.ndarray | None = None
    settings: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"EmbeddingsResult({len(self.texts)} texts, {len(self.depths)} depths, "
            f"{self.pooling} pooling, {self.projection})"
        )

    def to_frame(self):
        """Columns ``depth, layer, text_index, text, label, x, y``: one row per text and
        depth (``depth`` 0 is the embeddings, ``d`` the output of layer ``d - 1``)."""
        import pandas as pd

        start = self.settings.get("first_depth", 0)
        rows = [
            (start + d, name, i, text, None if self.labels is None else self.labels[i],
             float(self.coordinates[d, i, 0]), float(self.coordinates[d, i, 1]))
            for d, name in enumerate(self.depths)
            for i, text in enumerate(self.texts)
        ]  # fmt: skip
        return pd.DataFrame(
            rows, columns=["depth", "layer", "text_index", "text", "label", "x", "y"]
        )

    def separation_frame(self):
        """Columns ``layer, silhouette, probe_accuracy``, one row per depth (labels needed)."""
        import pandas as pd

        if self.silhouette is None:
            raise ValueError("separation needs labels: build the explainer with labels=")
        return pd.DataFrame({"layer": self.depths, "silhouette": self.silhouette,
                             "probe_accuracy": self.probe_accuracy})  # fmt: skip

    def _label_colours(self) -> dict[str, str]:
        names = sorted(set(self.labels or ["text"]), key=(self.labels or ["text"]).index)
        return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}

    def _caption(self, d: int) -> str:
        if self.silhouette is None:
            return self.depths[d]
        return (
            f"{self.depths[d]}: silhouette {self.silhouette[d]:.2f}, "
            f"probe {self.probe_accuracy[d]:.2f}"
        )

    def _panel_svg(self, d: int, colours: dict[str, str], size: int = 170) -> str:
        points = self.coordinates[d]
        low, high = points.min(0), points.max(0)
        scale = (size - 16) / np.maximum(high - low, 1e-12)
        circles = []
        for i, (x, y) in enumerate(points):
            label = "text" if self.labels is None else self.labels[i]
            tip = self.texts[i] if self.labels is None else f"{label}: {self.texts[i]}"
            cx, cy = 8 + (x - low[0]) * scale[0], size - 8 - (y - low[1]) * scale[1]
            circles.append(
                f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="{colours[label]}" '
                f'fill-opacity="0.8"><title>{escape(tip)}</title></circle>'
            )
        return (
            f'<figure style="margin:0;width:{size}px"><svg width="{size}" height="{size}" '
            f'viewBox="0 0 {size} {size}" role="img" style="border:1px solid #ddd">'
            f"<title>{escape(self.depths[d])}</title>{''.join(circles)}</svg>"
            f'<figcaption style="font-size:11px;line-height:1.2">{escape(self._caption(d))}'
            "</figcaption></figure>"
        )

    def to_html(self) -> str:
        colours = self._label_colours()
        legend = (
            ""
            if self.labels is None
            else "".join(
                f'<span style="margin-right:10px"><span style="color:{c}">&#9679;</span> '
                f"{escape(name)}</span>"
                for name, c in colours.items()
            )
        )
        panels = "".join(self._panel_svg(d, colours) for d in range(len(self.depths)))
        return (
            f'<div class="lmle-embeddings"><div>{escape(self.model_name)}: {len(self.texts)} '
            f"texts, {escape(self.pooling)}-pooled states projected by "
            f"{escape(self.projection)} (each panel its own projection; hover a point for its "
            f'text)</div><div style="font-size:12px;margin:4px 0">{legend}</div>'
            f'<div style="display:flex;flex-wrap:wrap;gap:8px">{panels}</div></div>'
        )

    def figure(self, columns: int = 4):
        """One scatter panel per depth, points coloured by label."""
        import matplotlib.pyplot as plt

        n = len(self.depths)
        columns = min(columns, n)
        rows = -(-n // columns)
        side = INLINE_WIDTH / columns
        figure, panels = plt.subplots(
            rows, columns, figsize=(INLINE_WIDTH, side * rows + 0.6), squeeze=False
        )
        colours = self._label_colours()
        labels = self.labels or ["text"] * len(self.texts)
        for d, axes in enumerate(panels.flat):
            if d >= n:
                axes.axis("off")
                continue
            for name, colour in colours.items():
                chosen = [i for i, label in enumerate(labels) if label == name]
                axes.scatter(*self.coordinates[d, chosen].T, s=9, color=colour, alpha=0.8,
                             label=name, linewidths=0)  # fmt: skip
            axes.set_xticks([])
            axes.set_yticks([])
            axes.set_title(self._caption(d).replace(": ", "\n"), fontsize=INLINE_FONT - 1)
        if self.labels is not None:
            handles, names = panels.flat[0].get_legend_handles_labels()
            figure.legend(handles, names, loc="lower center", ncol=min(len(colours), 5),
                          fontsize=INLINE_FONT, frameon=False)  # fmt: skip
        figure.suptitle(
            f"{self.model_name}: {self.pooling}-pooled states, {self.projection} per panel",
            fontsize=INLINE_FONT + 1,
        )
        figure.tight_layout(rect=(0, 0.06 if self.labels is not None else 0, 1, 1))
        return figure


class EmbeddingsExplainer(Explainer):
    """Sentence embeddings of many texts at every layer, projected to 2-D (PCA, t-SNE, UMAP).

    Each text's hidden states are pooled to one vector per depth (the embeddings, then
    every layer's output; the model's own ``hidden_states``), one batched forward pass per
    ``batch_size`` texts, on the first call. With labels, each depth reports how well the
    labelled groups separate there: silhouette score and a linear probe's cross-validated
    accuracy, on the full vectors.

    Args:
        model: a catalog name, Hub id, folder, ``(model, tokenizer)`` pair or
            :class:`~lm_layers_explainer.models.LoadedModel` that reads text (any kind; a
            seq2seq model's encoder reads the texts).
        texts: the texts, at least 3 (each within the model's context).
        labels: one label per text (strings or ints), or None (default).
        batch_size: texts per forward pass (default 32), 1 .. 4096.

    Example:
        >>> emb = lm_layers_explainer["embeddings"](
        ...     "all-MiniLM-L6-v2", ["A cat sat.", "Dogs bark.", "Stocks fell.", "Bonds rose."],
        ...     labels=["animal", "animal", "money", "money"])
        >>> emb(layer=5).coordinates.shape          # (depths shown, texts, 2)
        (1, 4, 2)
    """

    text_names = ("texts", "")

    def __init__(self, model, texts, labels=None, *, batch_size: int = 32):
        super().__init__(model)
        self.texts = check_texts(texts, minimum=3, maximum=MAX_TEXTS)
        self.labels = check_labels_per_text(labels, len(self.texts))
        self.batch_size = check_int(batch_size, "batch_size", 1, 4096)
        self.ids = tokenized(self.lm, self.texts)  # the texts checked against the context
        self.depths = depth_names(self.lm, self.lm_depths())

    def lm_depths(self) -> int:
        """How many states each text has: the embeddings and every layer's output."""
        layers = self.lm.encoder_layers if self.lm.encoder_layers is not None else self.lm.layers
        return len(layers) + 1

    @cached_property
    def states(self) -> LayerStates:
        """The pooled states (see :func:`~lm_layers_explainer.representations.states.layer_states`),
        computed on first use."""
        return layer_states(self.lm, self.texts, batch_size=self.batch_size, ids=self.ids)

    def __call__(
        self,
        layer=None,
        pooling: str = "mean",
        projection: str = "pca",
        *,
        seed: int = 0,
        perplexity: float | None = None,
        n_neighbors: int | None = None,
    ) -> EmbeddingsResult:
        """Project each depth's pooled states to 2-D, one panel per depth.

        Args:
            layer: None (default) for every depth, ``"embeddings"``, or a layer 0 .. L-1
                (its output).
            pooling: ``"mean"`` (default) of the tokens, the first token's state (``"cls"``)
                or the last token's (``"last"``, for causal LMs).
            projection: ``"pca"`` (default, scikit-learn), ``"tsne"`` (scikit-learn) or
                ``"umap"`` (umap-learn, an extra).
            seed: random state of t-SNE, UMAP and the probe's folds (default 0).
            perplexity: t-SNE's, above 0 and below the number of texts; None (default) for
                min(30, (texts - 1) / 3). Refused with another projection.
            n_neighbors: UMAP's, 2 .. texts - 1; None (default) for min(15, texts - 1).
                Refused with another projection.

        Returns:
            EmbeddingsResult: ``coordinates``, ``to_frame()``, ``separation_frame()``; it
            shows one panel per depth, points coloured by label, each text on hover.
        """
        chosen = check_depth(layer, self.depths)
        check_choice(pooling, "pooling", POOLINGS)
        check_choice(projection, "projection", PROJECTIONS)
        seed = check_seed(seed)
        for name, value, used_by in (("perplexity", perplexity, "tsne"),
                                     ("n_neighbors", n_neighbors, "umap")):  # fmt: skip
            if value is not None and projection != used_by:
                raise ValueError(
                    f"{name} is an option of projection={used_by!r}; projection={projection!r} "
                    f"does not use it (got {name}={value!r})"
                )
        n = len(self.texts)
        options = {}
        if projection == "tsne":
            default = min(30.0, (n - 1) / 3)
            options["perplexity"] = default if perplexity is None else perplexity
            if perplexity is not None:
                check_number(perplexity, "perplexity", 0, above=True)
                if perplexity >= n:
                    raise ValueError(f"perplexity must be below the number of texts ({n}); "
                                     f"got {perplexity}")  # fmt: skip
        if projection == "umap":
            options["n_neighbors"] = (
                min(15, n - 1)
                if n_neighbors is None
                else check_int(n_neighbors, "n_neighbors", 2, n - 1)
            )
        # a score needs two groups with two members each
        counts = Counter(self.labels or ())
        separate = len(counts) >= 2 and min(counts.values()) >= 2
        if "states" not in self.__dict__:  # refused before any pass when it cannot fit
            needed = estimate(self.lm, self.ids, self.batch_size, False)
            check_fits(self.lm.device, needed, f"the pooled states of {n:,} texts, batches of "
                       f"{self.batch_size}", "give fewer or shorter texts, or a smaller "
                       "batch_size (1 .. 4096)")  # fmt: skip
        pooled = self.states.pooled[pooling][chosen]
        coordinates = np.stack([project(s, projection, seed, **options) for s in pooled])
        scores = [separation(s, self.labels, seed) for s in pooled] if separate else None
        return EmbeddingsResult(
            model_name=self.lm.name,
            texts=list(self.texts),
            labels=self.labels,
            depths=[self.depths[d] for d in chosen],
            coordinates=coordinates,
            pooling=pooling,
            projection=projection,
            silhouette=None if scores is None else np.array([s for s, _ in scores]),
            probe_accuracy=None if scores is None else np.array([a for _, a in scores]),
            settings={"first_depth": chosen[0], "seed": seed, **options},
        )
