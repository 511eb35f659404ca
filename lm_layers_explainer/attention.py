"""Attention views: bertviz's head view and model view, self-contained and offline.

>>> head_view = lm_layers_explainer["attention_head_view"]("all-MiniLM-L6-v2", "The cat sat")
>>> view = head_view()                             # AttentionResult; shows the view
>>> view.attentions["self"].shape                  # (layers, heads, query, key)
>>> view.save("heads.png", layer=2)                # static heatmaps of one layer
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from ._bertviz import neuron_html, self_contained
from .base import Explainer
from .checks import check_choice, check_index, check_indices
from .families import config_value, neuron_families
from .models import LoadedModel
from .render import INLINE_FONT, INLINE_WIDTH, Result, inline_png, visible
from .running import attention_weights, run
from .tasks import Sequence, encode, token_texts

DISPLAY_MODES = ("light", "dark")
VIEWS = ("head", "model", "neuron")
LONG_INPUT = 128
"""Above this many tokens a view warns: bertviz draws every head, and the browser slows down."""


@dataclass
class AttentionResult(Result):
    """Attention weights and their interactive view.

    ``attentions`` maps the attention type to an array (layers, heads, query, key): ``"self"``
    for causal, masked and encoder models; ``"encoder"``, ``"decoder"`` and ``"cross"`` for
    seq2seq models. ``tokens`` are the tokens of the sequence (the decoder's for seq2seq, whose
    encoder tokens are ``encoder_tokens``). ``html`` is the view, one self-contained HTML
    string drawn from these data when first asked for (a result loaded from a file draws it
    anew: files hold no HTML). ``save("view.html")`` writes it; ``save("heads.png", layer=2,
    heads=[0, 1])`` and ``static(layer=2)`` draw heatmaps of one layer (seq2seq: pass
    ``kind=``). The neuron view also fills ``queries`` and ``keys`` (layers, heads, tokens,
    head size).
    """

    model_name: str
    view: str
    tokens: list[str]
    attentions: dict[str, np.ndarray]
    encoder_tokens: list[str] | None = None
    sentence_b_start: int | None = None
    queries: np.ndarray | None = field(default=None, repr=False)
    keys: np.ndarray | None = field(default=None, repr=False)
    layer: int = 0
    """The layer the view opens on, and the one its static fallback draws."""
    heads: list[int] | None = None
    """The heads the view opens with, and those its static fallback draws; every head if None."""
    include_layers: list[int] | None = None
    """The layers the head and model views show; every layer if None."""
    display_mode: str = "light"
    """The model and neuron views' colours: ``"light"`` or ``"dark"``."""

    def __post_init__(self):
        """Check what the view is drawn from (a model's numbers, or a file's)."""
        kinds, weights = set(self.attentions), list(self.attentions.values())
        n_layers = min((w.shape[0] for w in weights if w.ndim == 4), default=0)
        n_heads = min((w.shape[1] for w in weights if w.ndim == 4), default=0)
        shown = [self.layer, *(self.include_layers or ())]
        checks = {
            f"view must be one of {VIEWS}": self.view in VIEWS,
            f"display_mode must be one of {DISPLAY_MODES}": self.display_mode in DISPLAY_MODES,
            "attentions must hold 'self' (or, seq2seq, 'encoder', 'decoder' and 'cross')": (
                kinds == {"self"}
                or (kinds == {"encoder", "decoder", "cross"} and self.view != "neuron")
            ),
            f"layer (one of include_layers) must be in 0..{n_layers - 1}, heads in "
            f"0..{n_heads - 1}": (
                all(0 <= i < n_layers for i in shown)
                and self.layer in (self.include_layers or [self.layer])
                and all(0 <= h < n_heads for h in self.heads or ())
            ),
            f"sentence_b_start must be in 1..{len(self.tokens) - 1} or None": (
                self.sentence_b_start is None or 0 < self.sentence_b_start < len(self.tokens)
            ),
        }
        for kind, w in self.attentions.items():
            queries, keys = (len(t or ()) for t in self._axes_tokens(kind))
            message = f"attentions[{kind!r}] must be (layers, heads, {queries}, {keys})"
            checks[message] = w.ndim == 4 and w.shape[2:] == (queries, keys)
        if self.view == "neuron" and kinds == {"self"}:
            for name in ("queries", "keys"):
                vectors = getattr(self, name)
                checks[f"{name} must be (layers, heads, tokens, head size)"] = (
                    vectors is not None
                    and vectors.ndim == 4
                    and vectors.shape[:3] == self.attentions["self"].shape[:3]
                )
        failed = [message for message, passed in checks.items() if not passed]
        if failed:
            raise ValueError(f"an AttentionResult's {'; '.join(failed)}")

    @cached_property
    def html(self) -> str:
        """The interactive view: one self-contained HTML string, drawn from the data."""
        title = f"{self.view} view of {self.model_name}"
        if self.view == "neuron":
            options = {"display_mode": self.display_mode, "layer": self.layer,
                       "head": (self.heads or [0])[0]}  # fmt: skip
            markup = neuron_html(self.attentions["self"], self.queries, self.keys, self.tokens,
                                 self.sentence_b_start, **options)  # fmt: skip
            return self_contained(markup, 160 + 26 * len(self.tokens), title)
        from bertviz import head_view, model_view

        if self.view == "head":
            draw, options = head_view, {"layer": self.layer, "heads": self.heads}
            height = _view_height(max(len(self.tokens), len(self.encoder_tokens or ())))
        else:
            draw = model_view
            options = {"include_heads": self.heads, "display_mode": self.display_mode}
            shown = self.include_layers or range(next(iter(self.attentions.values())).shape[0])
            height = 140 + 105 * len(shown)
        # 4 decimals are plenty for line opacities and make the embedded JSON 3x smaller.
        weights = {
            k: tuple(torch.from_numpy(np.round(v[:, None].astype(np.float64), 4)))
            for k, v in self.attentions.items()
        }
        if "self" in weights:
            raw = draw(
                attention=weights["self"], tokens=self.tokens,
                sentence_b_start=self.sentence_b_start, include_layers=self.include_layers,
                html_action="return", **options,
            )  # fmt: skip
        else:
            raw = draw(
                encoder_attention=weights["encoder"], decoder_attention=weights["decoder"],
                cross_attention=weights["cross"], encoder_tokens=self.encoder_tokens,
                decoder_tokens=self.tokens, include_layers=self.include_layers,
                html_action="return", **options,
            )  # fmt: skip
        return self_contained(raw.data, height, title)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in self.attentions.items())
        return f"AttentionResult({self.view} view of {self.model_name}; {shapes})"

    def to_html(self) -> str:
        """The interactive view, then a static picture of the layer it opens on that the
        browser shows only where scripts are off (``<noscript>``)."""
        return self.html + self._fallback()

    def _fallback(self) -> str:
        kind = "cross" if "cross" in self.attentions else None
        heads = (self.heads or list(range(next(iter(self.attentions.values())).shape[1])))[:4]
        figure = self.figure(layer=self.layer, heads=heads, kind=kind)
        picture = inline_png(figure, f"{self.view} view of {self.model_name} as heatmaps")
        return f"<noscript>{picture}</noscript>"

    def _axes_tokens(self, part: str) -> tuple[list[str], list[str]]:
        """(query tokens, key tokens) of an attention type."""
        if part == "encoder":
            return self.encoder_tokens, self.encoder_tokens
        if part == "cross":
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
        """Heatmaps (query rows x key columns) of the chosen heads of one layer, two per row,
        sized for a book's column with 9-point text; on long inputs every k-th token is
        labelled, so that labels do not overlap."""
        import matplotlib.pyplot as plt

        kind = kind or next(iter(self.attentions))
        if kind not in self.attentions:
            raise ValueError(f"kind must be one of {', '.join(self.attentions)}; got {kind!r}")
        weights = self.attentions[kind]
        n_layers, n_heads = weights.shape[:2]
        layer = check_index(layer, n_layers, "layer")
        heads = check_indices(heads, n_heads, "heads") or list(range(n_heads))
        queries, keys = self._axes_tokens(kind)
        columns = min(len(heads), 2)
        rows = -(-len(heads) // columns)
        panel = INLINE_WIDTH / columns  # inches, labels included
        room = panel - 1.0  # inches for the heatmap itself
        line = INLINE_FONT * 1.25 / 72  # inches one label needs
        figure, axes = plt.subplots(
            rows, columns, figsize=(INLINE_WIDTH, panel * rows + 0.4), squeeze=False
        )
        axes = axes.reshape(-1)
        for ax, head in zip(axes, heads, strict=False):
            ax.imshow(weights[layer, head], cmap="Blues", vmin=0, vmax=1)
            for labels, set_ticks, rotation in (
                (keys, ax.set_xticks, 90), (queries, ax.set_yticks, 0)
            ):  # fmt: skip
                step = max(1, int(np.ceil(len(labels) * line / room)))
                shown = range(0, len(labels), step)
                set_ticks(shown, [visible(labels[i]) for i in shown], rotation=rotation,
                          fontsize=INLINE_FONT)  # fmt: skip
            ax.set_title(f"head {head}", fontsize=INLINE_FONT)
        for ax in axes[len(heads) :]:
            ax.axis("off")
        figure.suptitle(
            f"{self.model_name}: {kind} attention, layer {layer} (rows attend to columns)",
            fontsize=INLINE_FONT + 1,
        )
        figure.tight_layout()
        return figure


class _AttentionView(Explainer):
    """Shared by the views: the model, the text (or pair), its attentions, checks."""

    view = ""
    text_names = ("sentence_a", "sentence_b")

    def _sequence(self, sentence_a, sentence_b) -> Sequence:
        """The text (or pair) of this call; a seq2seq model needs both (encoder, decoder)."""
        if self.lm.task.encoder_decoder and sentence_b is None and self.text_pair is None:
            raise ValueError(
                "sentence_b is required for a seq2seq model: it is the decoder's input "
                "(sentence_a goes to the encoder)"
            )
        return self.sequence_for(sentence_a, sentence_b)

    def _warn_if_long(self, seq: Sequence) -> None:
        longest = max(len(seq), len(seq.encoder_ids or ()))
        if longest > LONG_INPUT:  # read at call time: tests may lower it
            warnings.warn(
                f"{longest} tokens: the interactive view draws every head "
                "and may freeze the browser; pass include_layers=[...] (and heads=[...]) to "
                "show fewer, as bertviz's documentation advises",
                stacklevel=4,
            )

    def _attentions(self, seq: Sequence) -> dict[str, np.ndarray]:
        self._warn_if_long(seq)
        output, _ = run(seq, attentions=True)
        found = attention_weights(self.lm, output)
        _require_weights(self.lm, found)
        return {
            name: torch.cat([a.float().cpu() for a in value]).numpy()
            for name, value in found.items()
        }


def _require_weights(lm: LoadedModel, found: dict) -> None:
    missing = [name for name, value in found.items() if not value or value[0] is None]
    if missing:
        raise ValueError(
            f"{lm.name} returned no attention weights ({', '.join(missing)}): its attention "
            "implementation does not expose them. Load it with attn_implementation='eager' "
            "(load_model does this for models it loads)"
        )


def _view_height(n_tokens: int) -> int:
    """Pixel height of a head view's frame: room for the longer token column."""
    return 120 + 22 * n_tokens


class AttentionHeadView(_AttentionView):
    """bertviz's head view: the attention of one layer's heads, token to token.

    Reading the view: each line joins a token on the left (the one attending) to a token on
    the right (attended to); its weight is the line's opacity; colours are heads. Hover over a
    token to see only its lines; double-click a head's colour box to show only that head;
    single-click boxes to add or remove heads; the drop-downs choose the layer (and, for
    seq2seq models, encoder, decoder or cross attention).

    Args:
        model: a catalog name, a Hugging Face Hub id, a folder, a ``(model, tokenizer)``
            pair or a :class:`~lm_layers_explainer.models.LoadedModel`: any model with
            attention heads.
        text: the text (the call's ``sentence_a``); or None, and the texts are given to
            each call instead.
        text_pair: a second text (``sentence_b``), or None (default): a second segment for
            masked, encoder and classifier models, the continuation of ``text`` for causal
            ones, the decoder's input (required) for seq2seq ones.

    Example:
        >>> head_view = lm_layers_explainer["attention_head_view"]("all-MiniLM-L6-v2")
        >>> head_view("The cat sat on the mat", "The cat lay on the rug")   # a pair
        AttentionResult(head view of all-MiniLM-L6-v2; self: (6, 12, 15, 15))
    """

    view = "head"

    def __call__(
        self,
        sentence_a: str | None = None,
        sentence_b: str | None = None,
        *,
        layer: int | None = None,
        heads: list[int] | None = None,
        include_layers: list[int] | None = None,
    ) -> AttentionResult:
        """Compute the attention weights (one forward pass) and draw bertviz's head view.

        Args:
            sentence_a: the text; None (default) for the one given when the explainer was
                built (giving it both ways is refused).
            sentence_b: the second text, as ``text_pair`` (see the class); None (default).
            layer: the layer the view opens on, 0 .. layers - 1 (one of ``include_layers``
                if given); None (default) for the first layer shown.
            heads: the heads shown at first, a list of 0 .. heads - 1; None (default) for all.
            include_layers: the layers in the drop-down, a non-empty list of 0 .. layers - 1;
                None (default) for all. Fewer make long inputs usable (above 128 tokens the
                view warns).

        Returns:
            AttentionResult: ``attentions`` (layers, heads, query, key) per attention type,
            ``tokens``, the self-contained ``html`` view, ``save()`` and ``figure()``.

        Example:
            >>> head_view = lm_layers_explainer["attention_head_view"](
            ...     "all-MiniLM-L6-v2", "The cat sat on the mat")
            >>> head_view(layer=2, heads=[0, 1]).attentions["self"].shape
            (6, 12, 8, 8)
        """
        seq = self._sequence(sentence_a, sentence_b)
        n_layers, n_heads = _layer_and_head_counts(self.lm)
        include_layers = check_indices(include_layers, n_layers, "include_layers")
        heads = check_indices(heads, n_heads, "heads")
        if layer is not None:
            layer = check_index(layer, n_layers, "layer")
            if include_layers is not None and layer not in include_layers:
                raise ValueError(
                    f"layer must be one of include_layers {include_layers}; got {layer}"
                )
        attentions = self._attentions(seq)
        options = {"heads": heads, "layer": layer, "include_layers": include_layers}
        return self._result(attentions, seq, options)

    def _result(self, attentions, seq: Sequence, options) -> AttentionResult:
        layer, include_layers = options.get("layer"), options["include_layers"]
        if layer is None:
            layer = include_layers[0] if include_layers else 0
        return AttentionResult(
            model_name=self.lm.name,
            view=self.view,
            tokens=seq.tokens,
            attentions=attentions,
            encoder_tokens=seq.encoder_tokens,
            sentence_b_start=seq.pair_start,
            layer=layer,
            heads=options.get("heads") or options.get("include_heads"),
            include_layers=include_layers,
            display_mode=options.get("display_mode", "light"),
        )


class AttentionModelView(AttentionHeadView):
    """bertviz's model view: every layer (rows) and head (columns) at a glance.

    Each thumbnail is one head's attention pattern; click one to enlarge it. It is built
    as :class:`AttentionHeadView` is: the same ``model``, ``text`` and ``text_pair``.

    Example:
        >>> model_view = lm_layers_explainer["attention_model_view"](
        ...     "tiny-bart", "The cat sat on the mat", "The cat")   # encoder, decoder input
        >>> list(model_view().attentions)
        ['encoder', 'decoder', 'cross']
    """

    view = "model"

    def __call__(
        self,
        sentence_a: str | None = None,
        sentence_b: str | None = None,
        *,
        include_layers: list[int] | None = None,
        include_heads: list[int] | None = None,
        display_mode: str = "light",
    ) -> AttentionResult:
        """Compute the attention weights (one forward pass) and draw bertviz's model view.

        Args:
            sentence_a: the text; None (default) for the one given when the explainer was
                built (giving it both ways is refused).
            sentence_b: the second text, as ``text_pair`` (see the class); None (default).
            include_layers: the layers shown (rows), a non-empty list of 0 .. layers - 1;
                None (default) for all. Fewer make long inputs usable.
            include_heads: the heads shown (columns), a non-empty list of 0 .. heads - 1;
                None (default) for all.
            display_mode: ``"light"`` (default) or ``"dark"``.

        Returns:
            AttentionResult: ``attentions`` (layers, heads, query, key) per attention type,
            ``tokens``, the self-contained ``html`` view, ``save()`` and ``figure()``.

        Example:
            >>> model_view = lm_layers_explainer["attention_model_view"](
            ...     "all-MiniLM-L6-v2", "The cat sat on the mat")
            >>> model_view(include_layers=[0, 1], display_mode="dark")   # weights: every layer
            AttentionResult(model view of all-MiniLM-L6-v2; self: (6, 12, 8, 8))
        """
        check_choice(display_mode, "display_mode", DISPLAY_MODES)
        seq = self._sequence(sentence_a, sentence_b)
        n_layers, n_heads = _layer_and_head_counts(self.lm)
        options = {
            "include_layers": check_indices(include_layers, n_layers, "include_layers"),
            "include_heads": check_indices(include_heads, n_heads, "include_heads"),
            "display_mode": display_mode,
        }
        attentions = self._attentions(seq)
        return self._result(attentions, seq, options)


def _layer_and_head_counts(lm: LoadedModel) -> tuple[int, int]:
    heads = config_value(lm.config, "heads")
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
# transformers model whose family entry (families.py) says where its queries and keys are.


class _QueryKeyProbe:
    """Called like bertviz's neuron-view models: ``probe(input_ids, token_type_ids=None)``
    returns ``(None, [{"attn", "queries", "keys"} per layer])``, each (1, heads, tokens, ...).

    Queries and keys are the vectors whose scaled dot products the model softmaxes (see
    :meth:`~lm_layers_explainer.families.Family.queries_and_keys`): after the rotary
    position embedding where the model has one, and with each key/value head repeated for
    the query heads that share it (grouped-query attention).
    """

    def __init__(self, lm: LoadedModel, text: str):
        self.lm, self.text = lm, text
        self.input_ids: list[int] = []
        self.layers: list[dict] = []

    def eval(self):
        return self

    def __call__(self, input_ids, token_type_ids=None):
        lm = self.lm
        family = lm.family
        modules = [m for block in lm.layers for m in family.projections(block)]
        ids = input_ids[0].tolist()
        types = None if token_type_ids is None else token_type_ids[0].tolist()
        seq = Sequence(lm, self.text, ids, len(ids), token_type_ids=types)
        output, captured = run(seq, modules, attentions=True)
        _require_weights(lm, {"self": output.attentions})
        per_block = len(modules) // lm.n_layers
        layers = []
        for index, attention in enumerate(output.attentions):
            outs = [o[None] for o in captured[index * per_block : (index + 1) * per_block]]
            queries, keys = family.queries_and_keys(lm, outs, len(ids))
            layers.append({"attn": attention.cpu(), "queries": queries.cpu(), "keys": keys.cpu()})
        self.input_ids, self.layers = ids, layers
        return None, layers


class AttentionNeuronView(_AttentionView):
    """bertviz's neuron view: the query and key vectors behind one head's attention.

    Click a token on the left to see its query vector, every key vector, their elementwise
    products and the resulting attention (the drop-downs choose layer and head). For
    Llama-style models the queries and keys are shown after the rotary position embedding,
    and each key head is repeated for the query heads that share it.

    Args:
        model: a catalog name, a Hugging Face Hub id, a folder, a ``(model, tokenizer)``
            pair or a :class:`~lm_layers_explainer.models.LoadedModel`: a BERT, RoBERTa,
            GPT-2 or Llama-style (Llama, Mistral, Qwen2, SmolLM2) model, not a seq2seq one;
            from safetensors, a folder or the catalog.
        text: the text (the call's ``sentence_a``); or None, and the texts are given to
            each call instead.
        text_pair: a second text (``sentence_b``), or None (default): a second segment for
            BERT-style models; for causal models it continues ``text``.

    Example:
        >>> neuron_view = lm_layers_explainer["attention_neuron_view"](
        ...     "all-MiniLM-L6-v2", "The cat sat on the mat")
        >>> neuron_view(layer=2, head=0).queries.shape     # (layers, heads, tokens, head size)
        (6, 12, 8, 32)
    """

    view = "neuron"

    def check_model(self, lm: LoadedModel) -> None:
        family = lm.family
        if family.query_key is None or not family.neuron_view or lm.task.encoder_decoder:
            raise ValueError(
                f"model must be of a family the neuron view knows "
                f"({', '.join(neuron_families())}); {lm.name} is {lm.config.model_type!r} "
                f"({lm.kind}). The head and model views work for every model"
            )

    def __call__(
        self,
        sentence_a: str | None = None,
        sentence_b: str | None = None,
        *,
        layer: int = 0,
        head: int = 0,
        display_mode: str = "light",
    ) -> AttentionResult:
        """Compute every layer's attention with its queries and keys (one forward pass) and
        draw bertviz's neuron view.

        Args:
            sentence_a: the text; None (default) for the one given when the explainer was
                built (giving it both ways is refused).
            sentence_b: the second text, as ``text_pair`` (see the class); None (default).
            layer: the layer the view opens on (default 0), 0 .. layers - 1.
            head: the head the view opens on (default 0), 0 .. heads - 1.
            display_mode: ``"light"`` (default) or ``"dark"``.

        Returns:
            AttentionResult: as the other views, with ``queries`` and ``keys`` (layers,
            heads, tokens, head size) filled.

        Example:
            >>> neuron_view = lm_layers_explainer["attention_neuron_view"](
            ...     "SmolLM2-135M-Instruct", "The capital of France is")
            >>> neuron_view(layer=3, head=1, display_mode="dark")
            AttentionResult(neuron view of SmolLM2-135M-Instruct; self: (30, 9, 5, 5))
        """
        from bertviz import neuron_view

        lm = self.lm
        sentence_a, sentence_b = self.texts_for(sentence_a, sentence_b)
        check_choice(display_mode, "display_mode", DISPLAY_MODES)
        n_layers, n_heads = _layer_and_head_counts(lm)
        layer, head = check_index(layer, n_layers, "layer"), check_index(head, n_heads, "head")
        bertviz_type = lm.family.neuron_view
        if bertviz_type == "gpt2" and sentence_b is not None:  # bertviz pairs only BERT-style
            sentence_a, sentence_b = sentence_a + sentence_b, None
        self._warn_if_long(encode(lm, sentence_a, sentence_b, names=self.text_names))
        probe = _QueryKeyProbe(lm, sentence_a)
        # bertviz tokenizes (as its view always did) and runs the probe; the view is drawn
        # from the result's numbers (AttentionResult.html), as for a result loaded from a file.
        parts = neuron_view.get_attention(
            probe, bertviz_type, lm.tokenizer, sentence_a, sentence_b,
            include_queries_and_keys=True,
        )  # fmt: skip
        stack = lambda key: torch.cat([d[key] for d in probe.layers]).float().numpy()  # noqa: E731
        return AttentionResult(
            model_name=lm.name,
            view=self.view,
            tokens=token_texts(lm.tokenizer, probe.input_ids),
            attentions={"self": stack("attn")},
            sentence_b_start=len(parts["aa"]["left_text"]) if "aa" in parts else None,
            queries=stack("queries"),
            keys=stack("keys"),
            layer=layer,
            heads=[head],
            display_mode=display_mode,
        )
