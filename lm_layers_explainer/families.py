"""Model families: what the explainers know about each architecture, in one table.

:data:`FAMILIES` maps a config's ``model_type`` to a :class:`Family`: where a model keeps
its final norm, its language-model head and each block's feed-forward output layer, and
where (and how laid out) each block computes its attention queries and keys, with the
rotary position embedding and grouped-query attention. A model type that is not in the
table gets :data:`DEFAULT`, which searches the attribute names common to transformers
models; only the neuron view needs a family's own entry (its queries and keys).

>>> family_of(load_model("tiny-gpt2").config).final_norm
('ln_f',)

Teaching the explainers a new architecture is one entry, in the manner of inseq's
per-architecture configuration (the test ``test_a_new_family_is_one_table_entry`` does this
for GPT-NeoX):

>>> rotary = "transformers.models.gpt_neox.modeling_gpt_neox.apply_rotary_pos_emb"
>>> register(Family("gpt_neox", final_norm=("final_layer_norm",), head=("lm_head",),
...                 feed_forward=("mlp.dense_4h_to_h",), neuron_view="gpt2",
...                 query_key=QueryKey(("attention.query_key_value",),
...                                    layout="fused_per_head", rotary=rotary)))
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch
from torch import nn

LAYOUTS = ("separate", "fused", "fused_per_head")
"""How a block's attention projects queries and keys: ``separate`` modules (BERT, Llama),
one ``fused`` module giving ``[q | k | v]`` along the features (GPT-2's ``c_attn``), or one
module giving ``[q | k | v]`` per head, ``(tokens, heads, 3 x head size)`` (GPT-NeoX)."""

CONFIG_NAMES: dict[str, tuple[str, ...]] = {
    "context": ("max_position_embeddings", "n_positions", "max_sequence_length", "n_ctx"),
    "hidden": ("hidden_size", "d_model"),
    "feed_forward": ("intermediate_size", "n_inner", "encoder_ffn_dim"),
    "heads": ("num_attention_heads", "n_head", "encoder_attention_heads"),
    "key_value_heads": ("num_key_value_heads",),
}
"""Config fields that hold one size, by what the size is; the first one set counts."""


@dataclass(frozen=True)
class QueryKey:
    """Where a block's attention computes its queries and keys.

    ``modules``: paths inside a block, ``(query, key)`` for the ``separate`` layout, else the
    one fused projection. ``rotary``: the dotted name of the function that applies the
    rotary position embedding (``apply_rotary_pos_emb(q, k, cos, sin)``), whose ``cos`` and
    ``sin`` come from the base model's ``rotary_emb``; None for learned or no positions.
    Key heads fewer than query heads (grouped-query attention, the config's
    ``num_key_value_heads``) are repeated for the query heads that share them.
    """

    modules: tuple[str, ...]
    layout: str = "separate"
    rotary: str | None = None

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}; got {self.layout!r}")
        wanted = 2 if self.layout == "separate" else 1
        if len(self.modules) != wanted:
            raise ValueError(
                f"modules must name {wanted} module(s) for the {self.layout!r} layout; got "
                f"{self.modules}"
            )


@dataclass(frozen=True)
class Family:
    """One architecture: attribute paths, each a tuple of candidates (the first found wins).

    ``final_norm``: the norm after the last block, an attribute of the block stack (the
    decoder's for seq2seq models); ``head``: the module mapping a last hidden state to
    vocabulary logits, an attribute of the model (else its output embeddings);
    ``feed_forward``: the last linear layer of a block's feed-forward network, whose input is
    the vector of neuron activations; ``query_key``: for the neuron view; ``neuron_view``:
    how bertviz's neuron view adds special tokens (``"bert"``, ``"roberta"`` or ``"gpt2"``
    for none); ``attention_output``: a block's attention output projection (its input
    holds each head's output side by side, its output is what attention adds to the
    residual stream); ``mlp``: the block's feed-forward network, whose output is what it
    adds to the residual stream (paths in a block; empty: :data:`DEFAULT`'s).
    """

    model_type: str
    final_norm: tuple[str, ...] = ()
    head: tuple[str, ...] = ()
    feed_forward: tuple[str, ...] = ()
    query_key: QueryKey | None = None
    neuron_view: str | None = None
    position_embeddings: tuple[str, ...] = ()
    token_type_embeddings: tuple[str, ...] = ()
    attention_output: tuple[str, ...] = ()
    mlp: tuple[str, ...] = ()

    def find_embedding(self, base_model: nn.Module, kind: str) -> nn.Module | None:
        """The module that embeds each token's ``position`` or ``token_type`` (paths in the
        base model; this family's, else :data:`DEFAULT`'s), or None (rotary positions, no
        token types)."""
        paths = getattr(self, f"{kind}_embeddings") or getattr(DEFAULT, f"{kind}_embeddings")
        for path in paths:
            module = module_at(base_model, path)
            if isinstance(module, nn.Embedding):
                return module
        return None

    def find_final_norm(self, stack: nn.Module) -> nn.Module | None:
        """The final norm of a block stack, or None (post-LayerNorm models have none)."""
        return next(
            (
                getattr(stack, name)
                for name in self.final_norm
                if isinstance(getattr(stack, name, None), nn.Module)
            ),
            None,
        )

    def find_head(self, model: nn.Module) -> nn.Module | None:
        """The vocabulary head: a named attribute, else the model's output embeddings."""
        found = next((getattr(model, n) for n in self.head if hasattr(model, n)), None)
        return found if found is not None else model.get_output_embeddings()

    def find_feed_forward(self, block: nn.Module) -> nn.Module:
        """The last linear layer of a block's feed-forward network (its input: the neurons)."""
        for path in self.feed_forward:
            module = module_at(block, path)
            if module is not None:
                return module
        raise ValueError(
            f"could not find the feed-forward layer of {type(block).__name__}; known layouts: "
            + ", ".join(self.feed_forward)
        )

    def find_sublayer(self, block: nn.Module, what: str) -> nn.Module:
        """A block's ``attention_output`` or ``mlp`` module (this family's paths, else
        :data:`DEFAULT`'s); a ValueError naming the paths tried if none is there."""
        paths = getattr(self, what) or getattr(DEFAULT, what)
        for path in paths:
            module = module_at(block, path)
            if module is not None:
                return module
        raise ValueError(
            f"could not find the {what.replace('_', ' ')} of {type(block).__name__}; known "
            f"layouts: {', '.join(paths)} (add the model's to its family, see families.py)"
        )

    def projections(self, block: nn.Module) -> list[nn.Module]:
        """The modules whose outputs hold a block's queries and keys."""
        return [module_at(block, path) for path in self.query_key.modules]

    def queries_and_keys(self, lm, outputs: list[torch.Tensor], n_tokens: int):
        """(queries, keys), each (1, heads, tokens, head size): the vectors whose scaled dot
        products the model softmaxes, from the projections' outputs of one block."""
        config = lm.config
        n_heads = config_value(config, "heads")
        n_kv = config_value(config, "key_value_heads") or n_heads
        layout = self.query_key.layout

        def split(x, heads):
            return x.view(1, n_tokens, heads, -1).transpose(1, 2)

        if layout == "separate":
            query, key = split(outputs[0], n_heads), split(outputs[1], n_kv)
        elif layout == "fused":
            hidden = outputs[0].shape[-1] // 3
            query, key, _ = outputs[0].split(hidden, dim=-1)
            query, key = split(query, n_heads), split(key, n_heads)
        else:  # fused_per_head
            query, key, _ = split(outputs[0], n_heads).chunk(3, dim=-1)
        if self.query_key.rotary:
            module, name = self.query_key.rotary.rsplit(".", 1)
            apply = getattr(importlib.import_module(module), name)
            positions = torch.arange(n_tokens, device=query.device)[None]
            cos, sin = lm.model.base_model.rotary_emb(query, positions)
            query, key = apply(query, key, cos, sin)
        if key.shape[1] != n_heads:  # grouped-query attention
            key = key.repeat_interleave(n_heads // key.shape[1], dim=1)
        return query, key


def module_at(root: nn.Module, path: str) -> nn.Module | None:
    """The module at a dotted path (``"mlp.down_proj"``; ``-1`` indexes a ModuleList)."""
    module = root
    for part in path.split("."):
        if part.lstrip("-").isdigit() and isinstance(module, nn.ModuleList):
            module = module[int(part)]
        else:
            module = getattr(module, part, None)
        if module is None:
            return None
    return module if isinstance(module, nn.Module) else None


def config_value(config, what: str):
    """A size from a (text) config by what it is (see :data:`CONFIG_NAMES`); None if unset."""
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in CONFIG_NAMES[what]:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


_LLAMA_STYLE = {
    "final_norm": ("norm",),
    "attention_output": ("self_attn.o_proj",),
    "mlp": ("mlp",),
    "head": ("lm_head",),
    "feed_forward": ("mlp.down_proj",),
    "query_key": QueryKey(
        ("self_attn.q_proj", "self_attn.k_proj"),
        rotary="transformers.models.llama.modeling_llama.apply_rotary_pos_emb",
    ),
    "neuron_view": "gpt2",
}
_BERT_STYLE = {
    "head": ("cls", "lm_head"),
    "feed_forward": ("output.dense",),
    "query_key": QueryKey(("attention.self.query", "attention.self.key")),
}

FAMILIES: dict[str, Family] = {}
"""``model_type`` -> :class:`Family`. Add one with :func:`register`."""


def register(family: Family) -> Family:
    """Add (or replace) the entry for ``family.model_type``; returns it."""
    if not isinstance(family, Family):
        raise TypeError(f"family must be a Family; got {type(family).__name__}")
    FAMILIES[family.model_type] = family
    return family


def unregister(model_type: str) -> None:
    """Remove the entry for ``model_type`` (its models then get :data:`DEFAULT`)."""
    FAMILIES.pop(model_type, None)


for _family in [
    Family("bert", neuron_view="bert", **_BERT_STYLE),
    Family("roberta", neuron_view="roberta", **_BERT_STYLE),
    Family(
        "gpt2",
        final_norm=("ln_f",),
        head=("lm_head",),
        feed_forward=("mlp.c_proj",),
        attention_output=("attn.c_proj",),
        mlp=("mlp",),
        query_key=QueryKey(("attn.c_attn",), layout="fused"),
        neuron_view="gpt2",
    ),
    Family("llama", **_LLAMA_STYLE),  # SmolLM2
    Family("mistral", **_LLAMA_STYLE),
    Family("qwen2", **_LLAMA_STYLE),
    Family("bart", final_norm=("layer_norm",), head=("lm_head",), feed_forward=("fc2",)),
]:
    register(_family)

DEFAULT = Family(
    "(any)",
    # the norm after the last layer: Llama/Mistral norm, GPT-2 ln_f, T5/OPT
    # final_layer_norm, mBART layer_norm, ...
    final_norm=("norm", "ln_f", "final_layer_norm", "final_layernorm", "layer_norm", "norm_f"),
    # BERT-style masked LMs keep a whole prediction head (dense, activation, LayerNorm,
    # decoder) under `cls`; most others a single linear layer under `lm_head`.
    head=("cls", "lm_head"),
    position_embeddings=("embeddings.position_embeddings", "wpe"),  # BERT-style, GPT-2
    token_type_embeddings=("embeddings.token_type_embeddings",),  # BERT-style
    feed_forward=(
        "mlp.down_proj",  # Llama, Mistral, Qwen, Gemma, SmolLM
        "mlp.c_proj",  # GPT-2
        "mlp.dense_4h_to_h",  # GPT-NeoX, Pythia
        "mlp.fc_out",  # GPT-J
        "mlp.fc2",  # Phi, CLIP
        "output.dense",  # BERT, RoBERTa, ELECTRA (the intermediate activations go in)
        "ffn.lin2",  # DistilBERT
        "fc2",  # BART, OPT, Marian, Whisper
        "layer.-1.DenseReluDense.wo",  # T5
    ),
    attention_output=(
        "self_attn.o_proj",  # Llama, Mistral, Qwen, Gemma, SmolLM
        "attn.c_proj",  # GPT-2
        "attention.dense",  # GPT-NeoX, Pythia
        "attn.out_proj",  # GPT-J
        "self_attn.dense",  # Phi
        "self_attn.out_proj",  # OPT, BART
    ),
    mlp=("mlp", "feed_forward"),
)
"""For a model type not in :data:`FAMILIES`: the names common to transformers models."""


def family_of(config) -> Family:
    """The :class:`Family` of a model's config (``DEFAULT`` for a type not in the table)."""
    return FAMILIES.get(getattr(config, "model_type", None), DEFAULT)


def neuron_families() -> list[str]:
    """The model types whose entries let the neuron view read queries and keys."""
    return [t for t, f in FAMILIES.items() if f.query_key is not None and f.neuron_view]
