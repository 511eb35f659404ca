"""Direct logit attribution: the next token's logit split into what the embeddings, every
attention head and every MLP wrote into the residual stream.

The stream the final norm reads is a sum, ``r = e + sum_l (a_l + m_l)``, and each head's
share of ``a_l`` is its slice of the output projection. The final norm is not linear, so it
is frozen at the scale it applied to ``r`` (``1 / rms(r)``, or ``1 / std(r)`` with centring
for LayerNorm): each piece ``c`` then reaches the logit as ``(w * s * c) . u``, with ``w``
the norm's weight and ``u`` the target's unembedding row (minus the foil's). The pieces, with
the norm's and the head's biases, add up to the model's own logit (Elhage et al. 2021).

>>> dla = lm_layers_explainer["logit_attribution"]("SmolLM2-135M-Instruct",
...                                                "The Eiffel Tower is in the city of")
>>> result = dla(target=" Paris")
>>> result.heads.shape, abs(result.total - result.logit) < 1e-4
((30, 9), True)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..base import Explainer
from ..render import INLINE_WIDTH, PALETTE, Result, escape, html_grid, signed
from ..tasks import token_texts
from .stream import Sites, check_causal, check_target_and_foil, logit_read, target_or_top

TOLERANCE = 1e-3
"""How far (relative to the logit's size, at least 1) the pieces may sum from the model's
own logit before the model is refused as not decomposable (a post-norm model, a scaled or
capped head)."""


class FrozenNorm:
    """The final norm as a linear map at the scale it applied to ``r``: ``__call__(c)`` is
    ``w * s * c`` (centred first for LayerNorm); ``bias`` the norm's bias (zeros without)."""

    def __init__(self, norm: nn.Module, r: torch.Tensor):
        self.centred = isinstance(norm, nn.LayerNorm)
        eps = next(
            (float(getattr(norm, n)) for n in ("variance_epsilon", "eps", "epsilon")
             if isinstance(getattr(norm, n, None), float)),
            1e-6,
        )  # fmt: skip
        weight = getattr(norm, "weight", None)
        self.weight = (
            weight.detach().double() if weight is not None else torch.ones_like(r, dtype=float)
        )
        bias = getattr(norm, "bias", None)
        self.bias = bias.detach().double() if bias is not None else torch.zeros_like(self.weight)
        with torch.no_grad():
            expected = norm(r[None])[0].double()
        r = r.double()
        spread = r.var(unbiased=False) if self.centred else r.pow(2).mean()
        self.scale = float(1 / torch.sqrt(spread + eps))
        rebuilt = self(r) + self.bias
        if not torch.allclose(
            rebuilt, expected, rtol=1e-3, atol=1e-4 * float(expected.abs().max())
        ):
            raise ValueError(
                f"the final norm ({type(norm).__name__}) is not weight x x / rms(x) (RMSNorm) "
                "nor LayerNorm: logit attribution cannot freeze it; add its rule to "
                "components/logit_attribution.py"
            )

    def __call__(self, c: torch.Tensor) -> torch.Tensor:
        c = c.double()
        if self.centred:
            c = c - c.mean(-1, keepdim=True)
        return self.weight * self.scale * c


@dataclass
class LogitAttributionResult(Result):
    """The logit of ``target_text`` (minus ``foil_text``'s) after the text, in pieces.

    ``embeddings``: the token (and position) embeddings' share; ``heads[l, h]``: head ``h`` of
    layer ``l``; ``attention_bias[l]``: layer ``l``'s output-projection bias; ``mlp[l]``: its
    MLP; ``constant``: the final norm's and the head's biases. ``logit`` is the model's own
    (logit difference with a foil); ``total`` the pieces' sum. ``norm_scale``: the scale the
    final norm applied to this stream, frozen.
    """

    model_name: str
    tokens: list[str]
    target: int
    target_text: str
    logit: float
    embeddings: float
    heads: np.ndarray
    attention_bias: np.ndarray
    mlp: np.ndarray
    constant: float
    norm_scale: float
    foil: int | None = None
    foil_text: str | None = None
    settings: dict = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        layer, head = np.unravel_index(np.abs(self.heads).argmax(), self.heads.shape)
        return (
            f"LogitAttributionResult({self._what()} = {self.logit:.4g}; pieces sum to "
            f"{self.total:.4g}; largest head L{layer}H{head} {self.heads[layer, head]:+.3g})"
        )

    def _what(self) -> str:
        return logit_read(self.target_text, self.foil_text)

    @property
    def attention(self) -> np.ndarray:
        """Each layer's attention: its heads plus its projection's bias."""
        return self.heads.sum(1) + self.attention_bias

    @property
    def per_layer(self) -> np.ndarray:
        """Each layer's attention plus MLP."""
        return self.attention + self.mlp

    @property
    def total(self) -> float:
        """The sum of every piece: the logit, up to float rounding."""
        return float(self.embeddings + self.per_layer.sum() + self.constant)

    def to_frame(self):
        """Columns ``component, layer, head, contribution``: the embeddings, every head, each
        layer's attention bias and MLP, and the constant (layer and head -1 where none)."""
        import pandas as pd

        rows = [("embeddings", -1, -1, self.embeddings)]
        for layer in range(len(self.mlp)):
            rows += [("head", layer, h, v) for h, v in enumerate(self.heads[layer])]
            rows.append(("attention bias", layer, -1, self.attention_bias[layer]))
            rows.append(("mlp", layer, -1, self.mlp[layer]))
        rows.append(("biases of the final norm and head", -1, -1, self.constant))
        frame = pd.DataFrame(rows, columns=["component", "layer", "head", "contribution"])
        frame["contribution"] = frame["contribution"].astype(float)
        return frame

    def _title(self) -> str:
        return (
            f"{self.model_name}: direct logit attribution of the {self._what()} = "
            f"{self.logit:.3f} after {''.join(self.tokens)!r}, final norm frozen at its scale"
        )

    def _grid(self):
        n_layers, n_heads = self.heads.shape
        largest = float(np.abs(self.heads).max()) or 1.0
        sums = np.stack([self.attention, self.mlp, self.per_layer], 1)
        spread = float(np.abs(sums).max()) or 1.0
        cells = [
            [signed(v) for v in self.heads[k]] + [signed(v) for v in sums[k]]
            for k in range(n_layers)
        ]
        shades = [
            list(0.5 + 0.5 * self.heads[k] / largest) + list(0.5 + 0.5 * sums[k] / spread)
            for k in range(n_layers)
        ]
        columns = [f"h{h}" for h in range(n_heads)] + ["attention", "mlp", "layer"]
        return columns, [f"layer {k}" for k in range(n_layers)], cells, shades

    def to_html(self) -> str:
        columns, rows, cells, shades = self._grid()
        grid = html_grid(self._title(), columns, rows, cells, shades, cmap="RdBu_r",
                         split=self.heads.shape[1])  # fmt: skip
        footer = (
            f"embeddings {self.embeddings:+.3f}, biases of the final norm and head "
            f"{self.constant:+.3f}; all pieces sum to {self.total:.4f} (the model's "
            f"{self.logit:.4f}). Red raises the {escape(self._what())}, blue lowers it; "
            "head colours are scaled to the largest head, the last three columns to the "
            "largest layer sum."
        )
        return f'<div class="lmle-dla">{grid}<div style="font-size:12px">{footer}</div></div>'

    def figure(self):
        """Heads x layers (red raises the logit, blue lowers it) beside each layer's attention
        and MLP as bars."""
        import matplotlib.pyplot as plt

        n_layers, n_heads = self.heads.shape
        height = max(3.0, 1.2 + 0.16 * n_layers)
        figure, (grid, bars) = plt.subplots(
            1, 2, figsize=(INLINE_WIDTH, height), gridspec_kw={"width_ratios": [1.3, 1]}
        )
        largest = float(np.abs(self.heads).max()) or 1.0
        image = grid.imshow(self.heads, cmap="RdBu_r", vmin=-largest, vmax=largest, aspect="auto")
        grid.set_xticks(range(n_heads), [str(h) for h in range(n_heads)], fontsize=7)
        grid.set_yticks(range(n_layers), [str(k) for k in range(n_layers)], fontsize=6)
        grid.set_xlabel("head")
        grid.set_ylabel("layer")
        figure.colorbar(image, ax=grid, fraction=0.05, pad=0.02)
        y = np.arange(n_layers)
        bars.barh(y - 0.2, self.attention, height=0.4, color=PALETTE[0], label="attention")
        bars.barh(y + 0.2, self.mlp, height=0.4, color=PALETTE[1], label="MLP")
        bars.axvline(0, color="#333333", linewidth=0.8)
        bars.set_ylim(n_layers - 0.5, -0.5)
        bars.set_yticks(range(n_layers), [str(k) for k in range(n_layers)], fontsize=6)
        bars.set_xlabel("contribution to the logit")
        bars.legend(fontsize=7, loc="lower right")
        figure.suptitle(
            f"{self._what()} = {self.logit:.2f} (embeddings {self.embeddings:+.2f})",
            fontsize=9,
        )
        figure.tight_layout()
        return figure


class LogitAttributionExplainer(Explainer):
    """Direct logit attribution: the next token's logit split over the embeddings, every
    attention head and every MLP.

    >>> dla = lm_layers_explainer["logit_attribution"]("tiny-gpt2", "The cat sat on the")
    >>> dla(target=" mat", foil=" dog").heads.shape       # (layers, heads)
    """

    accepts = ("causal",)
    entry_point = "logit_attribution"
    text_required = True

    def __init__(self, model, text: str):
        super().__init__(model, text)
        self.sites = Sites(self.lm)
        self._recorded = None

    def check_model(self, lm) -> None:
        check_causal(lm, "logit_attribution", "it splits the next token's logit")
        if lm.final_norm is None or not isinstance(lm.unembedding, nn.Linear):
            raise ValueError(
                f"logit_attribution needs a final norm and a linear vocabulary head; "
                f"{lm.name} has {type(lm.final_norm).__name__} and "
                f"{type(lm.unembedding).__name__}"
            )

    def recorded(self) -> dict:
        """The text's forward pass, with every block's additions to the stream (kept)."""
        if self._recorded is None:
            ids = torch.tensor([self.sequence.ids], device=self.lm.device)
            self._recorded = self.sites.record(ids, sites=("residual", "attention", "mlp",
                                                           "heads"))  # fmt: skip
        return self._recorded

    def __call__(self, target=None, foil=None) -> LogitAttributionResult:
        """Split the logit of ``target`` (one token's text or id; None: the model's top
        prediction) after the text, minus ``foil``'s if given.

        Returns a :class:`LogitAttributionResult`; ``heads`` is ``(layers, heads)``.
        """
        lm = self.lm
        target_index, foil_index = check_target_and_foil(lm, target, foil)
        recorded = self.recorded()
        logits = recorded["logits"].double()
        target_index = target_or_top(target_index, foil_index, foil, logits, "the model's")
        head = lm.unembedding
        direction = head.weight[target_index].detach().double()
        head_bias = 0.0 if head.bias is None else float(head.bias[target_index].detach())
        logit = float(logits[target_index])
        if foil_index is not None:
            direction = direction - head.weight[foil_index].detach().double()
            head_bias -= 0.0 if head.bias is None else float(head.bias[foil_index].detach())
            logit -= float(logits[foil_index])
        last = -1
        norm = FrozenNorm(lm.final_norm, recorded["final"][last])

        def share(c: torch.Tensor) -> torch.Tensor:
            return norm(c) @ direction

        sites = self.sites
        heads, biases, mlps = [], [], []
        for layer in range(sites.n_layers):
            per_head, bias = sites.per_head(layer, recorded["heads"][layer][last])
            heads.append(share(per_head).cpu().numpy())
            biases.append(float(share(bias)))
            mlps.append(float(share(recorded["mlp"][layer][last])))
        result = LogitAttributionResult(
            model_name=lm.name,
            tokens=token_texts(lm.tokenizer, self.sequence.ids),
            target=target_index,
            target_text=visible_text(lm, target_index),
            logit=logit,
            embeddings=float(share(recorded["residual"][0][last])),
            heads=np.array(heads),
            attention_bias=np.array(biases),
            mlp=np.array(mlps),
            constant=float(norm.bias @ direction) + head_bias,
            norm_scale=norm.scale,
            foil=foil_index,
            foil_text=None if foil_index is None else visible_text(lm, foil_index),
        )
        allowed = TOLERANCE * max(1.0, abs(logit))
        if abs(result.total - logit) > allowed:
            raise ValueError(
                f"the pieces sum to {result.total:.6g}, not the model's {logit:.6g}: "
                f"{lm.name}'s blocks do not simply add to the residual stream (a post-norm "
                "model, or a scaled or capped head), so its logit cannot be split this way"
            )
        return result


def visible_text(lm, index: int) -> str:
    """A token's text as the tokenizer writes it (``' Paris'``)."""
    return token_texts(lm.tokenizer, [index])[0]


__all__ = ["LogitAttributionExplainer", "LogitAttributionResult"]
