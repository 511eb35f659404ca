"""Attention views: bertviz's head view and model view, self-contained and offline.

>>> head_view = lm_layers_explainer["attention_head_view"]("all-MiniLM-L6-v2")
>>> view = head_view("The cat sat on the mat")     # AttentionResult; shows the view
>>> view.attentions["self"].shape                  # (layers, heads, query, key)
>>> view.save("heads.png", layer=2)                # static heatmaps of one layer
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ._bertviz import self_contained
from .forward import check_text, context_length
from .models import LoadedModel, load_model
from .render import Result, visible

LONG_INPUT = 128
"""Above this many tokens a view warns: bertviz draws every head, and the browser slows down."""


@dataclass
class AttentionResult(Result):
    """Attention weights and their interactive view.

    ``attentions`` maps the attention type to an array (layers, heads, query, key): ``"self"``
    for causal, masked and encoder models; ``"encoder"``, ``"decoder"`` and ``"cross"`` for
    seq2seq models. ``tokens`` are the tokens of the sequence (the decoder's for seq2seq, whose
    encoder tokens are ``encoder_tokens``). ``html`` is one self-contained HTML string.
    ``save("view.html")`` writes it; ``save("heads.png", layer=2, heads=[0, 1])`` and
    ``static(layer=2)`` draw heatmaps of one layer (seq2seq: pass ``kind=``).
    """

    model_name: str
    view: str
    tokens: list[str]
    attentions: dict[str, np.ndarray]
    html: str = field(repr=False)
    encoder_tokens: list[str] | None = None
    sentence_b_start: int | None = None

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in self.attentions.items())
        return f"AttentionResult({self.view} view of {self.model_name}; {shapes})"

    def to_html(self) -> str:
        return self.html

    def _axes_tokens(self, kind: str) -> tuple[list[str], list[str]]:
        """(query tokens, key tokens) of an attention type."""
        if kind == "encoder":
            return self.encoder_tokens, self.encoder_tokens
        if kind == "cross":
            return self.tokens, self.encoder_tokens
        return self.tokens, self.tokens

    def to_frame(self, kind: str | None = None):
        """Columns ``kind, layer, head, query_position, query, key_position, key, weight``."""
        import pandas as pd

        frames = []
        for name, weights in self.attentions.items():
            if kind is not None and name != kind:
                continue
            queries, keys = self._axes_tokens(name)
            layers, heads, n_q, n_k = weights.shape
            index = np.indices(weights.shape).reshape(4, -1)
            frames.append(
                pd.DataFrame(
                    {
                        "kind": name,
                        "layer": index[0],
                        "head": index[1],
                        "query_position": index[2],
                        "query": np.asarray(queries, dtype=object)[index[2]],
                        "key_position": index[3],
                        "key": np.asarray(keys, dtype=object)[index[3]],
                        "weight": weights.reshape(-1),
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)

    def figure(self, layer: int = 0, heads: list[int] | None = None, kind: str | None = None):
        """Heatmaps (query rows x key columns) of the chosen heads of one layer."""
        import matplotlib.pyplot as plt

        kind = kind or next(iter(self.attentions))
        if kind not in self.attentions:
            raise ValueError(f"kind must be one of {', '.join(self.attentions)}; got {kind!r}")
        weights = self.attentions[kind]
        n_layers, n_heads = weights.shape[:2]
        layer = _check_index(layer, n_layers, "layer")
        heads = _check_indices(heads, n_heads, "heads") or list(range(n_heads))
        queries, keys = self._axes_tokens(kind)
        columns = min(len(heads), 4)
        rows = -(-len(heads) // columns)
        size = 0.9 + 0.22 * max(len(queries), len(keys))
        figure, axes = plt.subplots(rows, columns, figsize=(size * columns, size * rows))
        axes = np.atleast_1d(axes).reshape(-1)
        for ax, head in zip(axes, heads, strict=False):
            ax.imshow(weights[layer, head], cmap="Blues", vmin=0, vmax=1)
            ax.set_xticks(range(len(keys)), [visible(t) for t in keys], rotation=90, fontsize=7)
            ax.set_yticks(range(len(queries)), [visible(t) for t in queries], fontsize=7)
            ax.set_title(f"head {head}", fontsize=8)
        for ax in axes[len(heads) :]:
            ax.axis("off")
        figure.suptitle(
            f"{self.model_name}: {kind} attention, layer {layer} (rows attend to columns)",
            fontsize=9,
        )
        figure.tight_layout()
        return figure


def _check_index(value, size: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int in 0..{size - 1}; got {value!r}")
    if not 0 <= value < size:
        raise ValueError(f"{name} must be in 0..{size - 1}; got {value}")
    return int(value)


def _check_indices(values, size: int, name: str) -> list[int] | None:
    if values is None:
        return None
    values = [values] if isinstance(values, (int, np.integer)) else list(values)
    if not values:
        raise ValueError(f"{name} must list at least one index in 0..{size - 1}")
    return [_check_index(v, size, name) for v in values]


class _AttentionView:
    """Shared by the head and model views: inputs, attentions, checks."""

    view = ""

    def __init__(self, model):
        self.model = load_model(model)

    def _inputs(self, sentence_a: str, sentence_b: str | None):
        lm = self.model
        check_text(sentence_a)
        if sentence_b is not None:
            check_text(sentence_b)
        tokenizer = lm.tokenizer
        if lm.kind == "seq2seq":
            if sentence_b is None:
                raise ValueError(
                    "sentence_b is required for a seq2seq model: it is the decoder's input "
                    "(sentence_a goes to the encoder)"
                )
            encoder_ids = tokenizer(sentence_a)["input_ids"]
            decoder_ids = tokenizer(sentence_b)["input_ids"]
            return {"encoder": encoder_ids, "decoder": decoder_ids}, None
        if sentence_b is None:
            return {"self": tokenizer(sentence_a)["input_ids"]}, None
        if lm.kind == "causal":  # a continuation: the second text follows the first
            first = tokenizer(sentence_a)["input_ids"]
            second = tokenizer(sentence_b, add_special_tokens=False)["input_ids"]
            return {"self": first + second}, len(first)
        encoded = tokenizer(sentence_a, sentence_b)
        types = encoded.get("token_type_ids")
        ids = encoded["input_ids"]
        start = types.index(1) if types and 1 in types else len(tokenizer(sentence_a)["input_ids"])
        return {"self": ids}, start

    def _attentions(self, ids: dict) -> dict[str, np.ndarray]:
        lm: LoadedModel = self.model
        limit = context_length(lm)
        for part, sequence in ids.items():
            if limit is not None and len(sequence) > limit:
                raise ValueError(
                    f"text is {len(sequence)} tokens long ({part}), longer than the model's "
                    f"context of {limit} tokens"
                )
        if max(map(len, ids.values())) > LONG_INPUT:  # read at call time: tests may lower it
            warnings.warn(
                f"{max(map(len, ids.values()))} tokens: the interactive view draws every head "
                "and may freeze the browser; pass include_layers=[...] (and heads=[...]) to "
                "show fewer, as bertviz's documentation advises",
                stacklevel=3,
            )
        device = lm.device
        with torch.no_grad():
            if lm.kind == "seq2seq":
                out = lm.model(
                    input_ids=torch.tensor([ids["encoder"]], device=device),
                    decoder_input_ids=torch.tensor([ids["decoder"]], device=device),
                    output_attentions=True,
                )
                found = {
                    "encoder": out.encoder_attentions,
                    "decoder": out.decoder_attentions,
                    "cross": out.cross_attentions,
                }
            else:
                found = {
                    "self": lm.model(
                        input_ids=torch.tensor([ids["self"]], device=device),
                        output_attentions=True,
                    ).attentions
                }
        missing = [name for name, value in found.items() if not value or value[0] is None]
        if missing:
            raise ValueError(
                f"{lm.name} returned no attention weights ({', '.join(missing)}): its attention "
                "implementation does not expose them. Load it with attn_implementation='eager' "
                "(load_model does this for models it loads)"
            )
        return {
            name: torch.cat([a.float().cpu() for a in value]).numpy()
            for name, value in found.items()
        }

    def _tokens(self, ids):
        decode = self.model.tokenizer.decode
        return [decode([i]) for i in ids]


def _view_height(n_tokens: int) -> int:
    return 120 + 22 * n_tokens


class AttentionHeadView(_AttentionView):
    """bertviz's head view: the attention of one layer's heads, token to token.

    >>> head_view = lm_layers_explainer["attention_head_view"](model)
    >>> head_view("The cat sat on the mat")                      # one text
    >>> head_view("The cat sat on the mat", "The cat lay on the rug")   # a pair
    >>> head_view(source, target)           # seq2seq: encoder input, decoder input

    Reading the view: each line joins a token on the left (the one attending) to a token on
    the right (attended to); its weight is the line's opacity; colours are heads. Hover over a
    token to see only its lines; double-click a head's colour box to show only that head;
    single-click boxes to add or remove heads; the drop-downs choose the layer (and, for
    seq2seq models, encoder, decoder or cross attention).

    Options: ``layer`` (the layer to open on), ``heads`` (heads shown at first),
    ``include_layers`` (layers in the drop-down; fewer make long inputs usable).
    Returns an :class:`AttentionResult`: ``.html``, ``.attentions``, ``.tokens``, ``.save()``.
    """

    view = "head"

    def __call__(
        self,
        sentence_a: str,
        sentence_b: str | None = None,
        *,
        layer: int | None = None,
        heads: list[int] | None = None,
        include_layers: list[int] | None = None,
    ) -> AttentionResult:
        from bertviz import head_view

        ids, b_start = self._inputs(sentence_a, sentence_b)
        n_layers, n_heads = _layer_and_head_counts(self.model)
        include_layers = _check_indices(include_layers, n_layers, "include_layers")
        heads = _check_indices(heads, n_heads, "heads")
        if layer is not None:
            layer = _check_index(layer, n_layers, "layer")
            if include_layers is not None and layer not in include_layers:
                raise ValueError(
                    f"layer must be one of include_layers {include_layers}; got {layer}"
                )
        attentions = self._attentions(ids)
        options = {"heads": heads, "layer": layer, "include_layers": include_layers}
        return self._result(attentions, ids, b_start, head_view, options)

    def _result(self, attentions, ids, b_start, draw, options) -> AttentionResult:
        # 4 decimals are plenty for line opacities and make the embedded JSON 3x smaller.
        as_tensors = {
            k: tuple(torch.from_numpy(np.round(v[:, None].astype(np.float64), 4)))
            for k, v in attentions.items()
        }
        if "self" in attentions:
            tokens = self._tokens(ids["self"])
            encoder_tokens = None
            raw = draw(
                attention=as_tensors["self"], tokens=tokens, sentence_b_start=b_start,
                html_action="return", **options,
            )  # fmt: skip
            height = _view_height(len(tokens))
        else:
            tokens = self._tokens(ids["decoder"])
            encoder_tokens = self._tokens(ids["encoder"])
            raw = draw(
                encoder_attention=as_tensors["encoder"],
                decoder_attention=as_tensors["decoder"],
                cross_attention=as_tensors["cross"],
                encoder_tokens=encoder_tokens,
                decoder_tokens=tokens,
                html_action="return",
                **options,
            )
            height = _view_height(max(len(tokens), len(encoder_tokens)))
        if self.view == "model":
            n_layers = len(
                options.get("include_layers") or range(_layer_and_head_counts(self.model)[0])
            )
            height = 140 + 105 * n_layers
        return AttentionResult(
            model_name=self.model.name,
            view=self.view,
            tokens=tokens,
            attentions=attentions,
            html=self_contained(raw.data, height, f"{self.view} view of {self.model.name}"),
            encoder_tokens=encoder_tokens,
            sentence_b_start=b_start,
        )


class AttentionModelView(AttentionHeadView):
    """bertviz's model view: every layer (rows) and head (columns) at a glance.

    >>> model_view = lm_layers_explainer["attention_model_view"](model)
    >>> model_view("The cat sat on the mat", "The cat lay on the rug")

    Each thumbnail is one head's attention pattern; click one to enlarge it. Options:
    ``include_layers`` and ``include_heads`` (fewer make long inputs usable),
    ``display_mode`` (``"light"`` or ``"dark"``). Returns an :class:`AttentionResult`.
    """

    view = "model"

    def __call__(
        self,
        sentence_a: str,
        sentence_b: str | None = None,
        *,
        include_layers: list[int] | None = None,
        include_heads: list[int] | None = None,
        display_mode: str = "light",
    ) -> AttentionResult:
        from bertviz import model_view

        if display_mode not in ("light", "dark"):
            raise ValueError(f"display_mode must be 'light' or 'dark'; got {display_mode!r}")
        ids, b_start = self._inputs(sentence_a, sentence_b)
        n_layers, n_heads = _layer_and_head_counts(self.model)
        options = {
            "include_layers": _check_indices(include_layers, n_layers, "include_layers"),
            "include_heads": _check_indices(include_heads, n_heads, "include_heads"),
            "display_mode": display_mode,
        }
        attentions = self._attentions(ids)
        return self._result(attentions, ids, b_start, model_view, options)


def _layer_and_head_counts(lm: LoadedModel) -> tuple[int, int]:
    config = lm.config.get_text_config()
    heads = getattr(config, "num_attention_heads", None) or getattr(
        config, "encoder_attention_heads", None
    )
    return lm.n_layers, int(heads)
