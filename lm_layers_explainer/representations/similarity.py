"""The ``representation_similarity`` explainer: every depth of a model against every depth
of itself or of another model, by CKA, CCA, SVCCA or PWCCA (see :mod:`.measures`).

>>> sim = lm_layers_explainer["representation_similarity"]("SmolLM2-135M-Instruct", texts)
>>> sim(method="cka").matrix.shape          # (depths, depths): embeddings + 30 layers
(31, 31)

Memory is estimated before any work (the states kept, in float32, and the measure's working
memory: :func:`~lm_layers_explainer.memory.states_bytes`,
:func:`~lm_layers_explainer.memory.measure_bytes`) and a call that does not fit is refused
with the estimate. CKA sums its cross-products over chunks of datapoints, so it needs no
float64 copy of the states; every stage shows a progress bar when long. On SmolLM2, 500
texts of 64 tokens keep about 2.3 GiB of token states and 64 texts of 2,000 tokens about
9.1 GiB; both run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ..base import Explainer
from ..checks import check_bool, check_choice, check_int, check_texts
from ..memory import SLOW_WORK, check_fits, gib, measure_bytes
from ..models import load_model
from ..render import Result, grid_figure, html_grid, inline_png
from .measures import MEASURES, matrix
from .states import MAX_TEXTS, POOLINGS, LayerStates, estimate, layer_states, n_depths, tokenized

UNITS = ("tokens", "texts")
"""What the datapoints are: every token of every text, or one pooled vector per text."""


@dataclass
class SimilarityResult(Result):
    """``matrix[i, j]``: the similarity of depth ``i`` of model A and depth ``j`` of model B
    (the same model when only one is given), over ``n_datapoints`` datapoints."""

    model_name: str
    other_name: str
    depths: list[str]
    other_depths: list[str]
    matrix: np.ndarray
    method: str
    unit: str
    n_datapoints: int
    settings: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"SimilarityResult({self.method}, {self.matrix.shape[0]} x {self.matrix.shape[1]} "
            f"depths, {self.n_datapoints} {self.unit})"
        )

    def to_frame(self):
        """Columns ``layer, other_layer, similarity``: one row per pair of depths."""
        import pandas as pd

        rows = [
            (a, b, float(self.matrix[i, j]))
            for i, a in enumerate(self.depths)
            for j, b in enumerate(self.other_depths)
        ]
        return pd.DataFrame(rows, columns=["layer", "other_layer", "similarity"])

    def neighbours(self) -> np.ndarray:
        """Same model: each depth's similarity with the next one (``depths - 1`` values);
        the lowest is where the representation changes most."""
        return np.diag(self.matrix, 1)

    def _title(self) -> str:
        if self.other_name == self.model_name:
            pairs = f"every pair of {self.model_name}'s layers"
        else:
            pairs = f"{self.model_name}'s layers (rows) with {self.other_name}'s (columns)"
        return f"{self.method} of {pairs}, over {self.n_datapoints} {self.unit}"

    @staticmethod
    def _short(names: list[str]) -> list[str]:
        return [n.replace("layer ", "").replace(" + final norm", "+norm").replace(
            "embeddings", "emb") for n in names]  # fmt: skip

    def _cells(self):
        return [[f"{v:.2f}"[1:] if 0 <= v < 1 else f"{v:.1f}" for v in row] for row in self.matrix]

    def to_html(self) -> str:
        """A table of values up to 12 columns; a wider matrix as the heatmap picture (a
        table of 31 columns would not fit a page's column)."""
        if self.matrix.shape[1] > 12:
            return f'<div class="lmle-similarity">{inline_png(self.figure(), self._title())}</div>'
        tips = [
            [f"{a} / {b}: {self.matrix[i, j]:.3f}" for j, b in enumerate(self.other_depths)]
            for i, a in enumerate(self.depths)
        ]
        return html_grid(
            self._title(), self._short(self.other_depths), self._short(self.depths),
            self._cells(), np.clip(self.matrix, 0, 1).tolist(), cmap="viridis", tooltips=tips,
        )  # fmt: skip

    def figure(self):
        """The matrix as a heatmap (rows: this model's depths; columns: the other's)."""
        import matplotlib.pyplot as plt

        if self.matrix.shape[1] <= 12:
            return grid_figure(
                self._title(), self._short(self.other_depths), self._short(self.depths),
                self._cells(), np.clip(self.matrix, 0, 1), cmap="viridis", row_axis="layer",
            )  # fmt: skip
        figure, axes = plt.subplots(figsize=(7.2, 6.4))
        image = axes.imshow(self.matrix, cmap="viridis", vmin=0, vmax=1)
        step = max(1, len(self.depths) // 10)
        axes.set_yticks(range(0, len(self.depths), step),
                        self._short(self.depths)[::step], fontsize=8)  # fmt: skip
        step = max(1, len(self.other_depths) // 10)
        axes.set_xticks(range(0, len(self.other_depths), step),
                        self._short(self.other_depths)[::step], fontsize=8)  # fmt: skip
        axes.set_xlabel(f"{self.other_name}: layer (emb = the embeddings)")
        axes.set_ylabel(f"{self.model_name}: layer")
        figure.colorbar(image, ax=axes, shrink=0.8, label=self.method)
        axes.set_title(self._title(), fontsize=9, wrap=True)
        figure.tight_layout()
        return figure


class RepresentationSimilarityExplainer(Explainer):
    """Layer-by-layer similarity of representations (CKA, CCA, SVCCA, PWCCA), within one
    model or between two.

    The states are the model's own ``hidden_states`` for the texts (the embeddings, then
    every layer's output), collected once in batches as ``embeddings`` collects them.

    Args:
        model: the model whose depths are the rows (any model that reads text).
        texts: the texts, at least 3; with ``unit="tokens"`` every token is a datapoint.
        other: a second model whose depths are the columns, or None (default) for ``model``
            itself. Token units need both models to tokenize every text the same way.
        batch_size: texts per forward pass, 1 .. 4096; None (default) for as many as fit
            in half the free memory, up to 4,096 tokens a pass.

    Example:
        >>> sim = lm_layers_explainer["representation_similarity"]("all-MiniLM-L6-v2", texts)
        >>> sim(method="cka").matrix.shape
        (7, 7)
    """

    text_names = ("texts", "")
    model_attributes = ("lm", "other")  # a call runs both models

    def __init__(self, model, texts, other=None, *, batch_size: int | None = None):
        super().__init__(model)
        self.texts = check_texts(texts, minimum=3, maximum=MAX_TEXTS)
        if batch_size is not None:
            batch_size = check_int(batch_size, "batch_size", 1, 4096)
        self.batch_size = batch_size
        self.other = self.lm if other is None else load_model(other)
        self.check_reads(self.other)
        self.check_model(self.other)
        self.ids = tokenized(self.lm, self.texts)
        self.other_ids = self.ids if other is None else tokenized(self.other, self.texts)

    @cached_property
    def states(self) -> LayerStates:
        return layer_states(self.lm, self.texts, batch_size=self.batch_size, keep_tokens=True,
                            ids=self.ids)  # fmt: skip

    @cached_property
    def other_states(self) -> LayerStates:
        if self.other is self.lm:
            return self.states
        return layer_states(self.other, self.texts, batch_size=self.batch_size,
                            keep_tokens=True, ids=self.other_ids)  # fmt: skip

    @cached_property
    def pooled_states(self) -> LayerStates:
        """The pooled states only (for ``unit="texts"`` before any token states exist)."""
        return layer_states(self.lm, self.texts, batch_size=self.batch_size, ids=self.ids)

    @cached_property
    def other_pooled_states(self) -> LayerStates:
        if self.other is self.lm:
            return self.pooled_states
        return layer_states(self.other, self.texts, batch_size=self.batch_size,
                            ids=self.other_ids)  # fmt: skip

    def _which(self, unit: str, other: bool) -> str:
        """The name of the states a call reads: with every token's, or (``unit="texts"``
        and none computed yet) the pooled ones only."""
        name = "other_states" if other else "states"
        if unit == "texts" and name not in self.__dict__:
            return "other_pooled_states" if other else "pooled_states"
        return name

    def _check_memory(self, method: str, unit: str, n: int, widths, dims: int) -> None:
        """Refuse, before any work, a call whose estimate does not fit (see module)."""
        needed, kept = 0, 0
        models = [(self.lm, self.ids, False)]
        if self.other is not self.lm:
            models.append((self.other, self.other_ids, True))
        for lm, ids, other in models:
            if self._which(unit, other) not in self.__dict__:
                states = estimate(lm, ids, self.batch_size, unit == "tokens")
                needed += states
                kept += states
        needed += measure_bytes(method, n, list(widths), n_depths(self.other), dims)
        fix = "give fewer or shorter texts"
        if unit == "tokens":
            fix += ", or use unit='texts' (one pooled vector per text)"
        if self.batch_size is not None:
            fix += ", or a smaller batch_size (None chooses)"
        check_fits(self.lm.device, needed, f"{method} over {n:,} {unit} of {len(self.texts):,} "
                   f"texts ({gib(kept)} to compute the states)", fix)  # fmt: skip

    def _datapoints(self, unit: str) -> int:
        if unit == "texts":
            if all(ids == self.ids[0] for ids in self.ids) or all(
                ids == self.other_ids[0] for ids in self.other_ids
            ):
                raise ValueError(
                    "texts must differ for unit='texts': every text is the same tokens, so "
                    "every depth's pooled vectors are the same and no similarity is defined"
                )
            return len(self.texts)
        if self.other_ids != self.ids:
            raise ValueError(
                f"unit='tokens' needs both models to read the same tokens; {self.lm.name} and "
                f"{self.other.name} tokenize the texts differently: use unit='texts' (one "
                "pooled vector per text)"
            )
        return sum(map(len, self.ids))

    def __call__(
        self,
        method: str = "cka",
        unit: str = "tokens",
        *,
        pooling: str | None = None,
        dims: int | None = None,
        drop_first_token: bool = False,
    ) -> SimilarityResult:
        """The ``method`` similarity of every pair of depths.

        Args:
            method: ``"cka"`` (linear, default), ``"cca"``, ``"svcca"`` or ``"pwcca"``. CCA
                and PWCCA need more datapoints than neurons (the hidden size).
            unit: the datapoints: every ``"tokens"`` (default) of every text, or one pooled
                vector per text (``"texts"``).
            pooling: with ``unit="texts"`` only: ``"mean"`` (None, the default), ``"cls"`` or
                ``"last"``.
            dims: with ``method="svcca"`` only: the directions kept per representation (None:
                20), 1 .. the fewest of datapoints - 1 and neurons.
            drop_first_token: with ``unit="tokens"``: leave out each text's first token
                (default False). In many causal LMs the first position holds a few huge
                activations (an "attention sink"), thousands of times the others' size, and
                they dominate CKA.

        Returns:
            SimilarityResult: ``matrix`` (depths, other depths), ``to_frame()``,
            ``neighbours()``; it shows as a heatmap table. A depth whose datapoints are all
            the same (as BERT's ``[CLS]`` embedding with ``pooling="cls"``) has no
            similarity to anything: its row (or column) is NaN. Texts that are all the same
            tokens are refused for ``unit="texts"``.
        """
        check_choice(method, "method", MEASURES)
        check_choice(unit, "unit", UNITS)
        unused = {
            "pooling": (pooling, unit != "texts", "unit='texts'"),
            "dims": (dims, method != "svcca", "method='svcca'"),
        }
        for name, (value, ignored, user) in unused.items():
            if value is not None and ignored:
                raise ValueError(
                    f"{name} is for {user} only; method={method!r}, unit={unit!r} does not use "
                    f"it (got {name}={value!r})"
                )
        pooling = "mean" if pooling is None else check_choice(pooling, "pooling", POOLINGS)
        dims = 20 if dims is None else dims
        drop_first_token = check_bool(drop_first_token, "drop_first_token")
        if drop_first_token and unit != "tokens":
            raise ValueError("drop_first_token is for unit='tokens'")
        n = self._datapoints(unit) - (len(self.texts) if drop_first_token else 0)
        widths = (self.lm.config.get_text_config().hidden_size,
                  self.other.config.get_text_config().hidden_size)  # fmt: skip
        if method == "svcca":
            dims = check_int(dims, "dims", 1, min(n - 1, *widths))
        if method in ("cca", "pwcca") and n <= max(widths):
            raise ValueError(
                f"method={method!r} needs more datapoints than neurons: {n} {unit} for "
                f"{max(widths)} neurons. Give more text, or use 'cka' or 'svcca' (which "
                "reduces each representation to dims directions first)"
            )
        self._check_memory(method, unit, n, widths, dims)
        states = getattr(self, self._which(unit, False))
        other_states = getattr(self, self._which(unit, True))
        a, rows = self._arrays(states, unit, pooling, drop_first_token)
        b = None
        if self.other is not self.lm:
            b, _ = self._arrays(other_states, unit, pooling, drop_first_token)
        work = n * widths[0] * widths[1] * len(a) * (len(a) if b is None else len(b))
        if unit == "texts":  # a depth whose pooled vectors are all the same: NaN
            kept_a = ~_constant(a)
            kept_b = kept_a if b is None else ~_constant(b)
            values = np.full((len(a), len(a) if b is None else len(b)), np.nan)
            if kept_a.any() and kept_b.any():
                values[np.ix_(kept_a, kept_b)] = matrix(
                    method, a[kept_a], None if b is None else b[kept_b], dims,
                    show=work > SLOW_WORK,
                )  # fmt: skip
        else:
            values = matrix(method, a, b, dims, rows=rows, show=work > SLOW_WORK)
        return SimilarityResult(
            model_name=self.lm.name,
            other_name=self.other.name,
            depths=list(states.depths),
            other_depths=list(other_states.depths),
            matrix=values,
            method=method,
            unit=unit,
            n_datapoints=n,
            settings={"pooling": pooling, "dims": dims, "drop_first_token": drop_first_token},
        )

    @staticmethod
    def _arrays(states: LayerStates, unit: str, pooling: str, drop_first: bool):
        """(depths, datapoints, neurons) as kept (float32, not copied), and the datapoints
        used (None: all)."""
        if unit == "texts":
            return states.pooled[pooling], None
        if not drop_first:
            return states.tokens, None
        keep = np.ones(states.tokens.shape[1], dtype=bool)
        keep[np.cumsum([0, *states.token_counts[:-1]])] = False
        return states.tokens, np.flatnonzero(keep)


def _constant(arrays, tolerance: float = 1e-5) -> np.ndarray:
    """Which depths' datapoints are all the same, up to float32 noise: each neuron's spread
    at most ``tolerance`` of the depth's largest value."""
    return np.array([
        float(np.ptp(x, axis=0).max()) <= tolerance * float(np.abs(x).max()) for x in arrays
    ])  # fmt: skip
