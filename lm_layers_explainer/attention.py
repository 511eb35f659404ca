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
from .checks import check_index, check_indices, check_text
from .forward import check_length, token_texts
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
    ``static(layer=2)`` draw heatmaps of one layer (seq2seq: pass ``kind=``). The neuron
    view also fills ``queries`` and ``keys`` (layers, heads, tokens, head size).
    """

    model_name: str
    view: str
    tokens: list[str]
    attentions: dict[str, np.ndarray]
    html: str = field(repr=False)
    encoder_tokens: list[str] | None = None
    sentence_b_start: int | None = None
    queries: np.ndarray | None = field(default=None, repr=False)
    keys: np.ndarray | None = field(default=None, repr=False)

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
        layer = check_index(layer, n_layers, "layer")
        heads = check_indices(heads, n_heads, "heads") or list(range(n_heads))
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


class _AttentionView:
    """Shared by the head and model views: inputs, attentions, checks."""

    view = ""

    def __init__(self, model):
        self.model = load_model(model)

    def _inputs(self, sentence_a: str, sentence_b: str | None):
        """(token ids per part, where sentence_b starts, other model inputs).

        The other inputs are what the tokenizer returns besides the ids and the all-ones
        mask: for a BERT-style pair, the ``token_type_ids`` that tell the model which segment
        each token is in (without them it reads both sentences as the first).
        """
        lm = self.model
        check_text(sentence_a, "sentence_a")
        if sentence_b is not None:
            check_text(sentence_b, "sentence_b")
        tokenizer = lm.tokenizer
        if lm.kind == "seq2seq":
            if sentence_b is None:
                raise ValueError(
                    "sentence_b is required for a seq2seq model: it is the decoder's input "
                    "(sentence_a goes to the encoder)"
                )
            encoder_ids = tokenizer(sentence_a)["input_ids"]
            decoder_ids = tokenizer(sentence_b)["input_ids"]
            return {"encoder": encoder_ids, "decoder": decoder_ids}, None, {}
        if lm.kind == "causal" and sentence_b is not None:  # the second text continues the first
            first = tokenizer(sentence_a)["input_ids"]
            second = tokenizer(sentence_b, add_special_tokens=False)["input_ids"]
            return {"self": first + second}, len(first), {}
        if sentence_b is None:
            encoded = tokenizer(sentence_a)
            start = None
        else:
            encoded = tokenizer(sentence_a, sentence_b)
            types = encoded.get("token_type_ids")
            start = (
                types.index(1) if types and 1 in types else len(tokenizer(sentence_a)["input_ids"])
            )
        extra = {k: v for k, v in encoded.items() if k not in ("input_ids", "attention_mask")}
        return {"self": list(encoded["input_ids"])}, start, extra

    def _check_lengths(self, ids: dict) -> None:
        for part, sequence in ids.items():
            check_length(self.model, len(sequence), part)
        if max(map(len, ids.values())) > LONG_INPUT:  # read at call time: tests may lower it
            warnings.warn(
                f"{max(map(len, ids.values()))} tokens: the interactive view draws every head "
                "and may freeze the browser; pass include_layers=[...] (and heads=[...]) to "
                "show fewer, as bertviz's documentation advises",
                stacklevel=4,
            )

    def _attentions(self, ids: dict, extra: dict) -> dict[str, np.ndarray]:
        lm: LoadedModel = self.model
        self._check_lengths(ids)
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
                inputs = {k: torch.tensor([v], device=device) for k, v in extra.items()}
                found = {
                    "self": lm.model(
                        input_ids=torch.tensor([ids["self"]], device=device),
                        output_attentions=True,
                        **inputs,
                    ).attentions
                }
        _require_weights(lm, found)
        return {
            name: torch.cat([a.float().cpu() for a in value]).numpy()
            for name, value in found.items()
        }

    def _tokens(self, ids):
        return token_texts(self.model.tokenizer, ids)

    def _height(self, tokens: list[str], encoder_tokens: list[str] | None, options) -> int:
        """Pixel height of the view's frame: room for the longer token column."""
        return _view_height(max(len(tokens), len(encoder_tokens or ())))


def _require_weights(lm: LoadedModel, found: dict) -> None:
    missing = [name for name, value in found.items() if not value or value[0] is None]
    if missing:
        raise ValueError(
            f"{lm.name} returned no attention weights ({', '.join(missing)}): its attention "
            "implementation does not expose them. Load it with attn_implementation='eager' "
            "(load_model does this for models it loads)"
        )


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

        ids, b_start, extra = self._inputs(sentence_a, sentence_b)
        n_layers, n_heads = _layer_and_head_counts(self.model)
        include_layers = check_indices(include_layers, n_layers, "include_layers")
        heads = check_indices(heads, n_heads, "heads")
        if layer is not None:
            layer = check_index(layer, n_layers, "layer")
            if include_layers is not None and layer not in include_layers:
                raise ValueError(
                    f"layer must be one of include_layers {include_layers}; got {layer}"
                )
        attentions = self._attentions(ids, extra)
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
        height = self._height(tokens, encoder_tokens, options)
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

    def _height(self, tokens, encoder_tokens, options) -> int:
        """One row of thumbnails per layer shown."""
        n_layers = len(options["include_layers"] or range(self.model.n_layers))
        return 140 + 105 * n_layers

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
        ids, b_start, extra = self._inputs(sentence_a, sentence_b)
        n_layers, n_heads = _layer_and_head_counts(self.model)
        options = {
            "include_layers": check_indices(include_layers, n_layers, "include_layers"),
            "include_heads": check_indices(include_heads, n_heads, "include_heads"),
            "display_mode": display_mode,
        }
        attentions = self._attentions(ids, extra)
        return self._result(attentions, ids, b_start, model_view, options)


def _layer_and_head_counts(lm: LoadedModel) -> tuple[int, int]:
    config = lm.config.get_text_config()
    heads = getattr(config, "num_attention_heads", None) or getattr(
        config, "encoder_attention_heads", None
    )
    if not heads:
        raise ValueError(
            f"model must have attention heads for the attention views; {lm.name} "
            f"({type(lm.model).__name__}) has none in its config, so it gives no attention "
            "weights to show"
        )
    return lm.n_layers, int(heads)


# --------------------------------------------------------------------------- neuron view
# bertviz's neuron view only runs its own bundled BERT/GPT-2/RoBERTa classes, which cannot
# read safetensors. Its show() only needs a callable that returns, for every layer, the
# attention with the queries and keys behind it; _QueryKeyProbe computes those from any
# transformers model of the families below, with hooks on the query/key projections.

NEURON_FAMILIES = {
    "bert": "bert",  # transformers model_type -> how bertviz adds special tokens
    "roberta": "roberta",
    "gpt2": "gpt2",
    "llama": "gpt2",  # Llama-style: grouped-query attention and rotary positions
    "mistral": "gpt2",
    "qwen2": "gpt2",
}


class _QueryKeyProbe:
    """Called like bertviz's neuron-view models: ``probe(input_ids, token_type_ids=None)``
    returns ``(None, [{"attn", "queries", "keys"} per layer])``, each (1, heads, tokens, ...).

    Queries and keys are the vectors whose scaled dot products the model softmaxes: after
    the rotary position embedding for Llama-style models, and with each key/value head
    repeated for the query heads that share it (grouped-query attention).
    """

    def __init__(self, lm: LoadedModel):
        self.lm = lm
        self.model_type = lm.config.model_type
        self.input_ids: list[int] = []
        self.layers: list[dict] = []

    def eval(self):
        return self

    def _projections(self, block):
        if self.model_type in ("bert", "roberta"):
            return block.attention.self.query, block.attention.self.key
        if self.model_type == "gpt2":
            return (block.attn.c_attn,)
        return block.self_attn.q_proj, block.self_attn.k_proj

    def __call__(self, input_ids, token_type_ids=None):
        from .forward import capture_outputs

        lm = self.lm
        config = lm.config
        n_heads = config.num_attention_heads
        modules = [m for block in lm.layers for m in self._projections(block)]
        device = lm.device
        kwargs = {"output_attentions": True}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids.to(device)
        with capture_outputs(modules) as captured, torch.no_grad():
            output = lm.model(input_ids.to(device), **kwargs)
        _require_weights(lm, {"self": output.attentions})
        per_block = len(modules) // lm.n_layers
        layers = []
        for index, attention in enumerate(output.attentions):
            outs = captured[index * per_block : (index + 1) * per_block]
            queries, keys = self._heads(outs, n_heads, input_ids.shape[-1])
            layers.append({"attn": attention.cpu(), "queries": queries.cpu(), "keys": keys.cpu()})
        self.input_ids, self.layers = input_ids[0].tolist(), layers
        # bertviz embeds every number as JSON: rounded copies keep the view 4-5x smaller;
        # the exact values stay in self.layers for the result.
        rounded = [
            {"attn": torch.round(d["attn"].double(), decimals=4),
             "queries": torch.round(d["queries"].double(), decimals=3),
             "keys": torch.round(d["keys"].double(), decimals=3)}
            for d in layers
        ]  # fmt: skip
        return None, rounded

    def _heads(self, outs, n_heads, n_tokens):
        config = self.lm.config
        split = lambda x, h: x.view(1, n_tokens, h, -1).transpose(1, 2)  # noqa: E731
        if self.model_type == "gpt2":
            query, key, _ = outs[0].split(config.n_embd, dim=-1)
            return split(query, n_heads), split(key, n_heads)
        query, key = outs
        if self.model_type in ("bert", "roberta"):
            return split(query, n_heads), split(key, n_heads)
        # Llama-style: rotary embedding, then each key head serves n_heads // n_kv query heads.
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        n_kv = getattr(config, "num_key_value_heads", None) or n_heads
        query, key = split(query, n_heads), split(key, n_kv)
        positions = torch.arange(n_tokens, device=query.device)[None]
        cos, sin = self.lm.model.base_model.rotary_emb(query, positions)
        query, key = apply_rotary_pos_emb(query, key, cos, sin)
        return query, key.repeat_interleave(n_heads // n_kv, dim=1)


class AttentionNeuronView(_AttentionView):
    """bertviz's neuron view: the query and key vectors behind one head's attention.

    >>> neuron_view = lm_layers_explainer["attention_neuron_view"](model)
    >>> neuron_view("The cat sat on the mat", "The cat lay on the rug")

    Click a token on the left to see its query vector, every key vector, their elementwise
    products and the resulting attention (the drop-downs choose layer and head). Works for
    BERT, RoBERTa, GPT-2 and Llama-style models (Llama, Mistral, Qwen2, SmolLM2), loaded
    from safetensors, folders or the catalog. For Llama-style models the queries and keys are
    shown after the rotary position embedding, and each key head is repeated for the query
    heads that share it. For causal models ``sentence_b`` continues ``sentence_a``.
    Options: ``layer`` and ``head`` to open on, ``display_mode`` ``"light"``/``"dark"``.
    """

    view = "neuron"

    def __init__(self, model):
        super().__init__(model)
        model_type = self.model.config.model_type
        if model_type not in NEURON_FAMILIES or self.model.kind == "seq2seq":
            raise ValueError(
                f"model must be of a family the neuron view knows ({', '.join(NEURON_FAMILIES)}); "
                f"{self.model.name} is {model_type!r} ({self.model.kind}). The head and model "
                "views work for every model"
            )

    def __call__(
        self,
        sentence_a: str,
        sentence_b: str | None = None,
        *,
        layer: int = 0,
        head: int = 0,
        display_mode: str = "light",
    ) -> AttentionResult:
        from bertviz import neuron_view

        lm = self.model
        check_text(sentence_a, "sentence_a")
        if sentence_b is not None:
            check_text(sentence_b, "sentence_b")
        if display_mode not in ("light", "dark"):
            raise ValueError(f"display_mode must be 'light' or 'dark'; got {display_mode!r}")
        n_layers, n_heads = _layer_and_head_counts(lm)
        layer, head = check_index(layer, n_layers, "layer"), check_index(head, n_heads, "head")
        bertviz_type = NEURON_FAMILIES[lm.config.model_type]
        if bertviz_type == "gpt2" and sentence_b is not None:  # bertviz pairs only BERT-style
            sentence_a, sentence_b = sentence_a + sentence_b, None
        ids, b_start, _ = self._inputs(sentence_a, sentence_b)
        self._check_lengths(ids)
        probe = _QueryKeyProbe(lm)
        raw = neuron_view.show(
            probe, bertviz_type, lm.tokenizer, sentence_a, sentence_b,
            display_mode=display_mode, layer=layer, head=head, html_action="return",
        )  # fmt: skip
        stack = lambda key: torch.cat([d[key] for d in probe.layers]).float().numpy()  # noqa: E731
        tokens = self._tokens(probe.input_ids)
        return AttentionResult(
            model_name=lm.name,
            view=self.view,
            tokens=tokens,
            attentions={"self": stack("attn")},
            html=self_contained(raw.data, 160 + 26 * len(tokens), f"neuron view of {lm.name}"),
            sentence_b_start=b_start,
            queries=stack("queries"),
            keys=stack("keys"),
        )
