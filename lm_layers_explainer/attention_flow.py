"""Attention rollout and attention flow (Abnar & Zuidema 2020): how much of each input token
reaches a position, through every layer's attention and the residual connection.

Each layer's attention, averaged over its heads, is mixed with the identity for the residual
connection, ``Â = 0.5 A + 0.5 I``. *Rollout* multiplies these down the layers,
``R_l = Â_l R_{l-1}``; row ``i`` of ``R_l`` is the share of each input token in position
``i`` after layer ``l``. *Flow* treats the ``Â_l`` as capacities of a graph whose nodes are
the positions before and after every layer, and takes the maximum flow from each input token
to position ``i`` after layer ``l`` (scipy); its cost grows quickly with length, so it is
refused past :data:`FLOW_MAX_TOKENS` tokens. ``raw`` is each layer's averaged attention alone.

Memory and time are bounded before the pass: each layer's attention is averaged over its
heads as the layer computes it (the heads' weights of all layers are never kept together),
and rollout multiplies one layer at a time, keeping only the running product (tokens x
tokens) and the rows read. The estimate (:func:`~lm_layers_explainer.memory.rollout_bytes`)
is refused before any work when it does not fit; a long text shows a progress bar over the
layers (rollout at 8,187 tokens on SmolLM2: about 11 GiB, 30 products of 8,187 x 8,187).

>>> flow = lm_layers_explainer["attention_flow"]("tiny-gpt2", "The cat sat on the mat")
>>> flow(method="rollout").scores.shape                 # (layers, tokens)
(2, 6)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from .base import Explainer
from .checks import check_choice, check_index
from .families import config_value
from .memory import SLOW_WORK, bytes_per_row, check_fits, forward_work, rollout_bytes
from .render import NOT_SAVED, Result, fixed, grid_figure, html_grid, progress
from .running import model_inputs, takes_logits_to_keep
from .tasks import read_position, token_texts

METHODS = ("raw", "rollout", "flow")
"""``raw``: each layer's attention averaged over heads; ``rollout`` and ``flow``: the
paper's two ways of following it down the layers, with the residual connection."""

FLOW_MAX_TOKENS = 128
"""Attention flow solves one maximum-flow problem per layer and input token on a graph of
layers x tokens^2 edges, so its cost grows about as the cube of the length (on 2 CPU cores,
SmolLM2's 30 layers: 3 s at 64 tokens, 29 s at 128, 211 s at 256); past this length it is
refused: use rollout."""
FLOW_SLOW = 30 * 64**3
"""Layers x tokens^3 above which flow shows a progress bar (SmolLM2 at 64 tokens: 3 s)."""


def with_residual(attention: np.ndarray) -> np.ndarray:
    """``0.5 A + 0.5 I``, rows renormalized to sum to 1: attention with the residual
    connection, as the paper models it. ``attention``: (layers, tokens, tokens)."""
    mixed = 0.5 * attention + 0.5 * np.eye(attention.shape[-1])
    return mixed / mixed.sum(-1, keepdims=True)


def rollout(attention: np.ndarray) -> np.ndarray:
    """``R_l = Â_l R_{l-1}`` for every layer: (layers, tokens, tokens); ``attention`` is
    (layers, tokens, tokens), already averaged over heads."""
    mixed = with_residual(attention)
    rolled = np.empty_like(mixed)
    current = np.eye(mixed.shape[-1])
    for layer, a in enumerate(mixed):
        current = a @ current
        rolled[layer] = current
    return rolled


def flow(attention: np.ndarray, position: int, show: bool = False) -> np.ndarray:
    """The maximum flow from each input token to ``position`` after each layer, through a
    graph whose edge from token ``j`` before layer ``l`` to token ``i`` after it has capacity
    ``Â_l[i, j]``: (layers, tokens).

    scipy's maximum flow (Dinic's algorithm, in C) takes integer capacities: they are scaled
    so that no node's total fits outside 32 bits, about 1e-7 of a token's share at 48 tokens
    (networkx's pure-Python solver gives the same values, 80 times slower; see the tests).
    ``show``: a progress bar over the layers.
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_flow

    mixed = with_residual(attention)
    n_layers, n_tokens, _ = mixed.shape
    scale = (2**31 - 1) // (n_tokens + 1)  # a node passes on at most n_tokens of capacity
    sources, sinks, capacities = [], [], []
    for layer in range(n_layers):
        i, j = np.nonzero(mixed[layer] > 0)
        sources.append(layer * n_tokens + j)
        sinks.append((layer + 1) * n_tokens + i)
        capacities.append(np.rint(mixed[layer, i, j] * scale).astype(np.int32))
    size = (n_layers + 1) * n_tokens
    graph = csr_matrix(
        (np.concatenate(capacities), (np.concatenate(sources), np.concatenate(sinks))),
        shape=(size, size),
    )
    values = np.zeros((n_layers, n_tokens))
    for layer in progress(range(n_layers), desc="attention flow, layers", show=show):
        sink = (layer + 1) * n_tokens + position
        for j in range(n_tokens):
            values[layer, j] = maximum_flow(graph, j, sink, method="dinic").flow_value / scale
    return values


def head_means(lm, seq, consume) -> int:
    """One pass over ``seq`` (no gradients); each layer's attention weights, averaged over
    the heads as the layer computes them, go to ``consume(layer, (tokens, tokens))`` in
    float64. Returns how many layers gave weights (0: the model computes none, as with
    ``attn_implementation="sdpa"``)."""
    seen: set[int] = set()
    heads = config_value(lm.config, "heads")
    n = len(seq.ids)

    def hook_for(layer):
        def hook(module, args, output):
            weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if (layer in seen or not torch.is_tensor(weights) or weights.dim() != 4
                    or tuple(weights.shape[1:]) != (heads, n, n)):  # fmt: skip
                return
            seen.add(layer)
            device = weights.device if weights.device.type == "cuda" else torch.device("cpu")
            # summed a head at a time: a float64 copy of every head at once is 9 n^2 doubles
            mean = weights[0, 0].to(device, torch.float64)
            for head in weights[0, 1:]:
                mean += head.to(device, torch.float64)
            consume(layer, mean.div_(weights.shape[1]))

        return hook

    handles = [
        module.register_forward_hook(hook_for(layer), prepend=True)
        for layer, block in enumerate(lm.layers)
        for module in block.modules()
    ]
    keep = {"logits_to_keep": 1} if takes_logits_to_keep(lm) else {}  # no logits are read
    try:
        with torch.no_grad():
            lm.model(**model_inputs(seq), use_cache=False, **keep)
    finally:
        for handle in handles:
            handle.remove()
    return len(seen)


class _Rows:
    """What a stream of head-averaged attention keeps: row ``position`` of each layer's
    (``raw``) or of the rollout up to that layer (``rollout``, one product a layer)."""

    def __init__(self, method: str, position: int, bar):
        self.method, self.position, self.bar = method, position, bar
        self.current, self.rows = None, []

    def __call__(self, layer: int, mean: torch.Tensor) -> None:
        # a row is copied out: a view would keep its whole tokens x tokens matrix alive
        if self.method == "raw":
            self.rows.append(mean[self.position].cpu().numpy().copy())
        else:
            mean.mul_(0.5).diagonal().add_(0.5)  # 0.5 A + 0.5 I, as with_residual
            mean /= mean.sum(-1, keepdim=True)
            self.current = mean if self.current is None else mean @ self.current
            self.rows.append(self.current[self.position].cpu().numpy().copy())
        self.bar.update(1)


@dataclass
class AttentionFlowResult(Result):
    """``scores[l, j]``: the share of input token ``j`` in ``position`` after layer ``l``
    (``raw``: layer ``l``'s attention from ``position`` to ``j``, averaged over heads). The
    field was called ``relevance``; that name still reads it, with a DeprecationWarning."""

    method: str
    model_name: str
    tokens: list[str]
    position: int
    scores: np.ndarray
    explainer: object = field(default=None, repr=False, metadata={NOT_SAVED: True})

    def __repr__(self) -> str:
        top = np.argsort(-self.scores[-1])[:3]
        shown = ", ".join(f"{self.tokens[j]!r} {self.scores[-1, j]:.3f}" for j in top)
        return (
            f"AttentionFlowResult({self.method}, {self.scores.shape[0]} layers x "
            f"{len(self.tokens)} tokens, into {self.tokens[self.position]!r} at "
            f"{self.position}; last layer: {shown})"
        )

    def to_frame(self):
        """Columns ``layer, position, token, relevance``, one row per cell."""
        import pandas as pd

        cells = [
            (layer, j, token, float(self.scores[layer, j]))
            for layer in range(self.scores.shape[0])
            for j, token in enumerate(self.tokens)
        ]
        return pd.DataFrame(cells, columns=["layer", "position", "token", "relevance"])

    @property
    def relevance(self) -> np.ndarray:
        """Deprecated name of :attr:`scores` (every attribution-like result says ``scores``)."""
        warnings.warn(
            "AttentionFlowResult.relevance is now .scores; the old name goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.scores

    def _title(self) -> str:
        what = {"raw": "attention (head mean)", "rollout": "attention rollout",
                "flow": "attention flow"}[self.method]  # fmt: skip
        return (
            f"{self.model_name}: {what} into {self.position}:{self.tokens[self.position]!r} "
            "from each input token, after each layer"
        )

    def _grid(self):
        largest = float(self.scores.max()) or 1.0
        cells = [[fixed(v) for v in row] for row in self.scores]
        shades = (self.scores / largest).tolist()
        columns = [f"{j}:{token}" for j, token in enumerate(self.tokens)]
        rows = [f"layer {k}" for k in range(self.scores.shape[0])]
        return columns, rows, cells, shades

    def to_html(self) -> str:
        return html_grid(self._title(), *self._grid())

    def figure(self):
        """The layers x tokens grid, darker where more of a token reaches the position."""
        return grid_figure(self._title(), *self._grid())

    def as_attribution(self, target=None, foil=None, *, layer=None, output="probability"):
        """This relevance after ``layer`` (the last by default) as an attribution of
        ``target`` (None: the top prediction) read at ``position``, whose ``faithfulness()``
        scores it beside the attribution methods'."""
        if self.explainer is None:
            raise ValueError(
                "this result was loaded from a file and keeps no model, so it cannot be "
                "scored as an attribution"
            )
        n_layers = self.scores.shape[0]
        layer = n_layers - 1 if layer is None else check_index(layer, n_layers, "layer")
        attributions = self.explainer.attributions()
        return attributions.scored(
            self.scores[layer], f"attention_{self.method}", target, foil, output=output
        )

    def faithfulness(self, convention: str = "deletion", target=None, *, layer=None):
        """Deletion and insertion curves and ERASER's scores of the last layer's relevance
        (see :meth:`as_attribution`)."""
        return self.as_attribution(target, layer=layer).faithfulness(convention)


class AttentionFlowExplainer(Explainer):
    """Attention rollout and attention flow: how much of each input token reaches a
    position, layer by layer, through attention and the residual connection.

    >>> flow = lm_layers_explainer["attention_flow"]("SmolLM2-135M-Instruct", text)
    >>> flow(method="rollout").faithfulness().comprehensiveness
    """

    entry_point = "attention_flow"
    text_required = True

    def __init__(self, model, text: str, text_pair: str | None = None):
        super().__init__(model, text, text_pair)
        self._attention = None
        self._attributions = None

    def check_model(self, lm) -> None:
        super().check_model(lm)
        if lm.task.encoder_decoder:
            raise ValueError(
                f"attention_flow follows one stack's self-attention; {lm.name} is a seq2seq "
                "model (encoder, decoder and cross-attention)"
            )

    def attention(self) -> np.ndarray:
        """Every layer's attention averaged over heads: (layers, tokens, tokens), kept (what
        flow reads; refused before the pass when it would not fit in memory)."""
        if self._attention is None:
            lm, n = self.lm, len(self.sequence.ids)
            needed = bytes_per_row(lm, n, backward=False) + (lm.n_layers + 1) * n * n * 8
            check_fits(lm.device, needed, f"every layer's attention on {n} tokens",
                       "use method='rollout' or 'raw' (one layer at a time), or a shorter "
                       "text")  # fmt: skip
            found = {}
            self._check_weights(head_means(lm, self.sequence, found.__setitem__))
            self._attention = np.stack([found[k].cpu().numpy() for k in sorted(found)])
        return self._attention

    def _check_weights(self, layers: int) -> None:
        if layers != self.lm.n_layers:
            raise ValueError(
                f"{self.lm.name} returned no attention weights: load it with "
                "attn_implementation='eager' (load_model does this for models it loads)"
            )

    def _streamed(self, method: str, position: int) -> np.ndarray:
        """``raw`` or ``rollout`` rows for ``position`` from one pass, a layer at a time."""
        lm, n = self.lm, len(self.sequence.ids)
        needed = rollout_bytes(lm, n)
        check_fits(lm.device, needed, f"attention {method} on {n} tokens (one pass, and "
                   f"{n} x {n} float64 products)", "use a shorter text")  # fmt: skip
        work = forward_work(lm, n) + (lm.n_layers * n**3 if method == "rollout" else 0)
        with progress(total=lm.n_layers, desc=f"attention {method}, layers",
                      show=work > SLOW_WORK) as bar:  # fmt: skip
            rows = _Rows(method, position, bar)
            self._check_weights(head_means(lm, self.sequence, rows))
        return np.stack(rows.rows)

    def attributions(self):
        """The attributions explainer of the same model and text (for faithfulness)."""
        if self._attributions is None:
            from .attributions import AttributionsExplainer

            self._attributions = AttributionsExplainer(self.lm, self.text, self.text_pair)
        return self._attributions

    def __call__(self, method: str = "rollout", position: int | None = None):
        """Relevance of every input token for ``position`` (None: where the model's
        prediction is read, the last token of a causal LM, else the first) after each layer.
        ``raw`` and ``rollout`` run one pass, a layer at a time (memory: one pass and three
        tokens x tokens matrices; refused before the pass, with the estimate, when that does
        not fit); ``flow`` keeps every layer's attention and takes at most
        :data:`FLOW_MAX_TOKENS` tokens. A long text shows a progress bar over the layers.

        Returns an :class:`AttentionFlowResult`; ``scores`` is (layers, tokens).
        """
        method = check_choice(method, "method", METHODS)
        seq = self.sequence
        n = len(seq.ids)
        if position is None:
            read = read_position(seq) if self.lm.task.explains in ("next_token", "mask") else 0
            position = n - 1 if read is None else read
        else:
            position = check_index(position, n, "position")
        if method == "flow" and n > FLOW_MAX_TOKENS:
            raise ValueError(
                f"method='flow' takes texts of at most {FLOW_MAX_TOKENS} tokens (one maximum "
                f"flow per layer and token); this text is {n}: use method='rollout'"
            )
        if method == "flow":
            attention = self.attention()
            relevance = flow(attention, position, show=len(attention) * n**3 > FLOW_SLOW)
        else:
            relevance = self._streamed(method, position)
        return AttentionFlowResult(
            method=method,
            model_name=self.lm.name,
            tokens=token_texts(self.lm.tokenizer, seq.ids),
            position=position,
            scores=relevance,
            explainer=self,
        )
