"""The ``activations`` explainer: feed-forward neurons, decomposed into factors over the tokens.

>>> activations = lm_layers_explainer["activations"]("all-MiniLM-L6-v2", text)
>>> factors = activations(n_components=8)    # ActivationsResult; shows coloured tokens
>>> factors.factors.shape                    # (n_components, n_tokens)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .base import Explainer
from .checks import check_index, check_int, check_number, check_seed
from .families import config_value
from .forward import spaced_tokens
from .memory import SLOW_WORK, bytes_per_row, check_fits, hidden_size, nmf_bytes
from .render import (
    INLINE_FONT,
    INLINE_WIDTH,
    PALETTE,
    Result,
    escape,
    inline_png,
    progress,
    visible,
)
from .running import run


def _colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def nmf(data: np.ndarray, n_components: int, seed: int, max_iter: int, tol: float, bar):
    """scikit-learn's ``NMF(init="random", solver="cd")`` on ``data`` (samples, features):
    the same random start, coordinate-descent updates and stopping rule (the projected
    gradient's size against the first iteration's, at most ``tol``), iterated here so that
    ``bar`` ticks once an iteration. Returns (W, H, iterations)."""
    avg = np.sqrt(data.mean() / n_components)
    rng = np.random.RandomState(seed)
    h = avg * rng.standard_normal(size=(n_components, data.shape[1])).astype(data.dtype)
    w = avg * rng.standard_normal(size=(data.shape[0], n_components)).astype(data.dtype)
    w, ht = np.ascontiguousarray(np.abs(w)), np.ascontiguousarray(np.abs(h).T)
    first, iteration = None, 0
    while iteration < max_iter:
        iteration += 1
        violation = _sweep(data, w, ht) + _sweep(data.T, ht, w)
        bar.update(1)
        first = violation if first is None else first
        if first == 0 or violation / first <= tol:
            break
    if iteration == max_iter and tol > 0:
        import warnings

        from sklearn.exceptions import ConvergenceWarning

        warnings.warn(f"Maximum number of iterations {max_iter} reached. Increase it to "
                      "improve convergence.", ConvergenceWarning, stacklevel=3)  # fmt: skip
    return w, ht.T, iteration


def _sweep(x: np.ndarray, w: np.ndarray, ht: np.ndarray) -> float:
    """One coordinate-descent pass over the columns of ``w`` (in place) for ``x ~ w htᵀ``,
    as scikit-learn's ``_update_cdnmf_fast`` (each column's rows at once); returns the sum
    of the projected gradients' sizes."""
    hht = ht.T @ ht
    xht = x @ ht
    violation = 0.0
    for t in range(w.shape[1]):
        gradient = w @ hht[t] - xht[:, t]
        column = w[:, t]
        violation += float(np.abs(np.where(column == 0, np.minimum(gradient, 0), gradient)).sum())
        if hht[t, t] != 0:
            w[:, t] = np.maximum(column - gradient / hht[t, t], 0)
    return violation


@dataclass
class ActivationsResult(Result):
    """NMF of the neuron activations of layers ``from_layer .. to_layer - 1``.

    ``factors`` (n_components, n_tokens): how strongly each factor fires at each token;
    ``components`` (n_components, n_neurons): which neurons make up each factor (neurons of
    the chosen layers, concatenated in layer order); ``tokens`` the tokens of the text.
    """

    model_name: str
    tokens: list[str]
    factors: np.ndarray
    components: np.ndarray
    from_layer: int
    to_layer: int
    reconstruction_error: float
    spaced: list[str] | None = None  # the tokens with the text's spacing, for display

    @property
    def n_components(self) -> int:
        return self.factors.shape[0]

    def strongest(self) -> np.ndarray:
        """For each token, the index of the factor that fires most there."""
        return self.factors.argmax(0)

    def top_tokens(self, k: int = 3) -> list[list[str]]:
        """The ``k`` tokens at which each factor fires most."""
        return [[self.tokens[i] for i in np.argsort(-row)[:k]] for row in self.factors]

    def __repr__(self) -> str:
        return (
            f"ActivationsResult({self.n_components} factors over {len(self.tokens)} tokens, "
            f"layers {self.from_layer}..{self.to_layer - 1})"
        )

    def to_frame(self):
        """Columns ``position, token, factor, value``, one row per token and factor."""
        import pandas as pd

        rows = [
            (p, token, f, float(self.factors[f, p]))
            for p, token in enumerate(self.tokens)
            for f in range(self.n_components)
        ]
        return pd.DataFrame(rows, columns=["position", "token", "factor", "value"])

    def _opacity(self) -> np.ndarray:
        """Per token: the strongest factor's value, relative to that factor's maximum."""
        peak = self.factors.max(1, keepdims=True)
        peak[peak == 0] = 1
        return (self.factors / peak).max(0)

    def to_html(self) -> str:
        strongest, opacity = self.strongest(), self._opacity()
        spans = "".join(
            f'<span title="position {p}, factor {strongest[p]}" style="background:'
            f"{_colour(strongest[p])}{int(40 + 215 * opacity[p]):02x};"
            f'padding:1px 0;white-space:pre-wrap">{escape(token)}</span>'
            for p, token in enumerate(self.spaced or self.tokens)
        )
        legend = "".join(
            f'<div><span style="background:{_colour(f)};color:white;padding:0 6px">'
            f"factor {f}</span> strongest at: {escape(', '.join(map(repr, top)))}</div>"
            for f, top in enumerate(self.top_tokens())
        )
        return (
            f'<div class="lmle-activations"><div>{escape(self.model_name)}: each token coloured '
            f"by its strongest of {self.n_components} NMF factors of the feed-forward "
            f"activations, layers {self.from_layer}..{self.to_layer - 1} (deeper colour = "
            f'stronger)</div><div style="line-height:1.9;margin:6px 0">{spans}</div>'
            f'<div style="font-size:12px">{legend}</div>'
            + inline_png(self.curves_figure(), "each factor's value along the tokens")
            + "</div>"
        )

    def curves_figure(self):
        """Each factor's value along the tokens, one small panel per factor (a shared token
        axis), sized for the book's column; the HTML view embeds it."""
        import matplotlib.pyplot as plt

        n = self.n_components
        figure, panels = plt.subplots(
            n, 1, sharex=True, figsize=(INLINE_WIDTH, 0.45 * n + 0.7), squeeze=False
        )
        self.draw_curves(list(panels[:, 0]))
        figure.subplots_adjust(hspace=0.15)
        return figure

    def draw_curves(self, panels) -> None:
        """Each factor's value along the tokens, factor ``f`` on ``panels[f]`` (matplotlib
        axes sharing the token axis), each panel scaled to its factor's maximum."""
        for f, (axes, row) in enumerate(zip(panels, self.factors, strict=True)):
            axes.fill_between(range(len(row)), row, color=_colour(f), linewidth=0)
            axes.set_ylabel(f"factor {f}", rotation=0, ha="right", va="center",
                            fontsize=INLINE_FONT, color=_colour(f))  # fmt: skip
            axes.set_yticks([])
            axes.set_ylim(0, max(float(row.max()), 1e-12))
            for side in ("top", "right", "left"):
                axes.spines[side].set_visible(False)
        for axes in panels[:-1]:
            axes.tick_params(labelbottom=False)  # the last panel labels the token axis
        last = panels[-1]
        last.set_xlim(0, len(self.tokens) - 1)
        last.set_xlabel("token position (each panel scaled to its factor's maximum)",
                        fontsize=INLINE_FONT)  # fmt: skip
        last.tick_params(labelsize=INLINE_FONT)

    def draw_tokens(self, axes, width: int = 150) -> None:
        """The text, each token on its strongest factor's colour, wrapped at ``width`` chars."""
        strongest, opacity = self.strongest(), self._opacity()
        x, y = 0, 0
        for p, token in enumerate(self.tokens):
            shown = visible(token)
            if x + len(shown) > width and x > 0:
                x, y = 0, y + 1
            axes.text(
                x, -y, shown, family="monospace", fontsize=8, va="center",
                bbox={"facecolor": _colour(strongest[p]), "alpha": 0.15 + 0.85 * opacity[p],
                      "pad": 1, "linewidth": 0},
            )  # fmt: skip
            x += len(shown) + 1
        axes.set_xlim(-1, width + 2)
        axes.set_ylim(-y - 1, 1)
        axes.axis("off")

    def figure(self):
        """The text coloured by each token's strongest factor, above the factors' panels."""
        import matplotlib.pyplot as plt

        rows = 1 + sum(len(visible(t)) + 1 for t in self.tokens) // 130
        n = self.n_components
        figure = plt.figure(figsize=(11, 1.2 + 0.3 * rows + 0.45 * n + 0.7))
        grid = figure.add_gridspec(1 + n, 1, height_ratios=[0.5 + 0.3 * rows] + [0.45] * n)
        top = figure.add_subplot(grid[0])
        self.draw_tokens(top)
        top.set_title(
            f"{self.model_name}: strongest NMF factor per token "
            f"(layers {self.from_layer}..{self.to_layer - 1})",
            fontsize=9,
        )
        first = figure.add_subplot(grid[1])
        panels = [first] + [figure.add_subplot(grid[1 + f], sharex=first) for f in range(1, n)]
        self.draw_curves(panels)
        figure.subplots_adjust(hspace=0.15)
        return figure


class ActivationsExplainer(Explainer):
    """Feed-forward neuron activations, decomposed into a few factors over the tokens (NMF).

    The activations are the inputs of each block's last feed-forward linear layer (after
    the nonlinearity and, in gated MLPs, the gate), for every token, captured with hooks in
    one forward pass (on the first call; later calls reuse them). Negative values are set to
    0, as in ecco, because NMF needs non-negative data: a factor describes neurons firing
    together. For seq2seq models the encoder's layers and tokens are used.

    Args:
        model: a catalog name, a Hugging Face Hub id, a folder, a ``(model, tokenizer)``
            pair or a :class:`~lm_layers_explainer.models.LoadedModel`; any kind of model.
        text: the text whose activations are decomposed (required).

    Example:
        >>> activations = lm_layers_explainer["activations"](
        ...     "all-MiniLM-L6-v2", "The cat sat on the mat because it was tired")
        >>> activations(n_components=3).factors.shape      # (n_components, tokens)
        (3, 12)
    """

    text_required = True

    def __init__(self, model, text: str):
        super().__init__(model, text)
        lm, sequence = self.lm, self.sequence
        self._encoder = lm.encoder_layers is not None  # seq2seq: the encoder reads the text
        blocks = lm.encoder_layers if self._encoder else lm.layers
        self.n_layers = len(blocks)
        self._downs = [lm.family.find_feed_forward(block) for block in blocks]
        self.tokens = sequence.encoder_tokens if self._encoder else sequence.tokens
        self.token_ids = sequence.encoder_ids if self._encoder else sequence.ids
        self.spaced = spaced_tokens(lm, sequence.text, self.tokens)

    @cached_property
    def activations(self) -> np.ndarray:
        """(layers, tokens, neurons), float32 on the CPU: captured by one hooked forward
        pass, on first use (so that bad arguments are refused before it runs)."""
        _, captured = run(self.sequence, self._downs, inputs=True, encoder=self._encoder)
        return np.stack([a.float().cpu().numpy() for a in captured])

    def _neurons(self) -> int:
        """Neurons per layer: the input width of the last feed-forward linear layer."""
        module = self._downs[0]
        weight = getattr(module, "weight", None)
        if weight is None:
            return config_value(self.lm.config, "feed_forward") or 4 * hidden_size(self.lm)
        # nn.Linear stores (out, in); GPT-2's Conv1D stores (in, out)
        return int(weight.shape[1] if type(module).__name__ != "Conv1D" else weight.shape[0])

    def _check_cost(self, layers: int, n_components: int, max_iter: int) -> bool:
        """Refuse, before any work, an NMF whose memory estimate does not fit; whether it
        is long enough for a progress bar."""
        lm, n = self.lm, len(self.tokens)
        features = layers * self._neurons()
        needed = nmf_bytes(n, features, n_components)
        if "activations" not in self.__dict__:
            needed += bytes_per_row(lm, n, backward=False) + 4 * self.n_layers * n * self._neurons()
        check_fits(lm.device, needed, f"NMF of {n:,} tokens x {features:,} neurons",
                   "use fewer layers (from_layer, to_layer) or a shorter text")  # fmt: skip
        return max_iter * 4 * n * features * n_components > SLOW_WORK

    def explore(self, n_components: int = 8, from_layer=None, to_layer=None):
        """ecco's interactive explorer of the factors (needs the internet: it loads its
        JavaScript from CDNs; and ecco installed, see :mod:`lm_layers_explainer._ecco`).

        >>> activations.explore(n_components=8)     # displays in a notebook
        """
        from ._ecco import ecco_nmf

        return ecco_nmf(self, n_components, from_layer, to_layer).explore()

    def __call__(
        self,
        n_components: int = 8,
        from_layer: int | None = None,
        to_layer: int | None = None,
        *,
        seed: int = 0,
        max_iter: int = 500,
        tol: float = 1e-3,
    ) -> ActivationsResult:
        """Decompose the activations of layers ``from_layer .. to_layer - 1`` into
        ``n_components`` factors with scikit-learn's NMF (random init, as in ecco).

        Args:
            n_components: factors to find (default 8), 1 .. the number of tokens: the
                default needs a text of at least 8 tokens.
            from_layer: the first layer, 0 .. layers - 1; None (default) for 0.
            to_layer: the layer after the last one, ``from_layer + 1`` .. layers; None
                (default) for the number of layers.
            seed: NMF's random state (default 0), 0 .. ``2**32 - 1``.
            max_iter: NMF's iteration limit (default 500), 1 .. 1,000,000. A long run
                shows a progress bar over the iterations (it ends early when ``tol`` is
                met).
            tol: NMF's stopping tolerance (default 1e-3), a finite number >= 0.

        The memory (the activations and the factorization) is estimated before any work
        and a call that does not fit is refused, naming the layers and the text.

        Returns:
            ActivationsResult: ``factors`` (n_components, tokens), ``components``
            (n_components, neurons of the chosen layers), ``tokens``; it shows as the text
            coloured by each token's strongest factor.

        Example:
            >>> activations = lm_layers_explainer["activations"](
            ...     "all-MiniLM-L6-v2", "The cat sat on the mat because it was tired")
            >>> activations(n_components=3, from_layer=2, to_layer=4)    # layers 2 and 3
            ActivationsResult(3 factors over 12 tokens, layers 2..3)
        """
        n_tokens = len(self.tokens)
        n_components = check_int(n_components, "n_components", 1, n_tokens)
        start = 0 if from_layer is None else check_index(from_layer, self.n_layers, "from_layer")
        stop = (
            self.n_layers
            if to_layer is None
            else check_int(to_layer, "to_layer", start + 1, self.n_layers)
        )
        seed = check_seed(seed)
        max_iter = check_int(max_iter, "max_iter", 1, 1_000_000)
        tol = check_number(tol, "tol", 0.0)
        show = self._check_cost(stop - start, n_components, max_iter)
        # (tokens, layers x neurons): each token is a sample, each neuron a feature.
        data = np.maximum(self.activations[start:stop], 0).transpose(1, 0, 2).reshape(n_tokens, -1)
        # ecco's settings (random init, seed, 500 iterations), with a tolerance of 1e-3: on the
        # book's paragraph, SmolLM2 then stops after about 400 iterations at the error 500
        # strict (1e-4) iterations reach (825.60 vs 825.59), instead of warning.
        with progress(total=max_iter, desc=f"NMF, {n_components} factors", show=show) as bar:
            per_token, components, _ = nmf(data, n_components, seed, max_iter, tol, bar)
        return ActivationsResult(
            model_name=self.lm.name,
            tokens=self.tokens,
            factors=per_token.T,
            components=components,
            from_layer=start,
            to_layer=stop,
            reconstruction_error=float(np.linalg.norm(data - per_token @ components)),
            spaced=self.spaced,
        )
