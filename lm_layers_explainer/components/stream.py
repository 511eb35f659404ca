"""The residual stream of a causal LM, as its blocks write into it: where to read and where to
patch (one place for the logit attribution and patching explainers).

A pre-norm block (GPT-2, Llama) adds two things to the stream it reads: its attention
output (the output projection of every head's output, side by side in that projection's
input) and its MLP output. So the stream after the last block, before the final norm, is
the embeddings plus every block's two additions (Elhage et al. 2021):

>>> sites = Sites(load_model("tiny-gpt2"))
>>> recorded = sites.record(torch.tensor([[464, 3797, 3332]]))
>>> sorted(recorded)
['attention', 'final', 'heads', 'mlp', 'residual']
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager

import torch
from torch import nn

from ..families import config_value
from ..forward import token_id
from ..models import LoadedModel

SITES = ("residual", "attention", "mlp", "heads")
"""What can be read and patched: ``residual``, the stream a block reads (layer 0's is the
embeddings); ``attention`` and ``mlp``, what the block's attention and MLP add to it;
``heads``, the input of the attention output projection, one slice per head."""


def check_causal(lm: LoadedModel, entry_point: str, why: str) -> None:
    """Refuse a model that is not a causal LM (one stack whose last position predicts the
    next token), naming ``entry_point`` and ``why`` it needs one."""
    if lm.task.explains != "next_token" or lm.task.encoder_decoder:
        raise ValueError(
            f"model must be a causal LM for {entry_point} ({why}); {lm.name} is {lm.kind!r}"
        )


def check_target_and_foil(lm: LoadedModel, target, foil) -> tuple[int | None, int | None]:
    """(target id, foil id), each None when not given, checked before any model work."""
    target_index = None if target is None else token_id(lm, target, "target")
    foil_index = None if foil is None else token_id(lm, foil, "foil")
    if foil_index is not None and foil_index == target_index:
        raise ValueError(f"foil must differ from the target; both are {target!r}")
    return target_index, foil_index


def target_or_top(target_index, foil_index, foil, logits: torch.Tensor, whose: str) -> int:
    """The target id, or (None) the top of ``logits``; refused when that is the foil.
    ``whose``: whose prediction it is, for the message (``"the model's"``)."""
    if target_index is not None:
        return target_index
    top = int(logits.argmax())
    if foil_index == top:
        raise ValueError(
            f"foil {foil!r} is {whose} top prediction, which target=None explains; give a target"
        )
    return top


def logit_read(target_text: str, foil_text: str | None) -> str:
    """What is read, in words: ``logit of ' Paris' - logit of ' Rome'``."""
    what = f"logit of {target_text!r}"
    return what + (f" - logit of {foil_text!r}" if foil_text is not None else "")


def _block_input(args, kwargs) -> torch.Tensor:
    """The hidden states a block is called with (first positional argument or keyword)."""
    return args[0] if args else kwargs["hidden_states"]


def _with_block_input(args, kwargs, value):
    if args:
        return (value, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": value}


def _first(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _replace_first(output, value):
    return (value, *output[1:]) if isinstance(output, tuple) else value


class Sites:
    """The modules of ``lm`` where each site is read or written, per layer.

    ``heads`` and ``head_size`` come from the config; the attention output projection's
    input must be ``heads x head_size`` wide (checked when recorded).
    """

    def __init__(self, lm: LoadedModel):
        self.lm = lm
        family = lm.family
        self.blocks = list(lm.layers)
        self.attention = [family.find_sublayer(b, "attention_output") for b in self.blocks]
        self.mlp = [family.find_sublayer(b, "mlp") for b in self.blocks]
        self.n_layers = len(self.blocks)
        self.n_heads = config_value(lm.config, "heads")
        hidden = config_value(lm.config, "hidden")
        self.head_size = getattr(lm.config, "head_dim", None) or hidden // self.n_heads

    def module(self, site: str, layer: int) -> nn.Module:
        """The module hooked for ``site`` at ``layer``: the block (``residual``, its input),
        the attention output projection (``attention``: output; ``heads``: input) or the
        MLP."""
        if site == "residual":
            return self.blocks[layer]
        return self.mlp[layer] if site == "mlp" else self.attention[layer]

    @contextmanager
    def hooked(self, site: str, layer: int, edit):
        """Within the block, ``edit(tensor) -> tensor or None`` sees (and may replace) the
        value of ``site`` at ``layer`` on every forward pass: ``(batch, tokens, features)``."""
        module = self.module(site, layer)
        if site in ("residual", "heads"):

            def pre_hook(module, args, kwargs):
                value = _block_input(args, kwargs) if site == "residual" else args[0]
                edited = edit(value)
                if edited is None:
                    return None
                if site == "residual":
                    return _with_block_input(args, kwargs, edited)
                return (edited, *args[1:]), kwargs

            handle = module.register_forward_pre_hook(pre_hook, with_kwargs=True)
        else:

            def hook(module, args, output):
                edited = edit(_first(output))
                return None if edited is None else _replace_first(output, edited)

            handle = module.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    def record(self, input_ids: torch.Tensor, sites=SITES) -> dict[str, list[torch.Tensor]]:
        """One forward pass of ``input_ids`` (a batch of one); every site at every layer,
        ``(tokens, features)`` each, and ``final``: the stream the final norm reads, plus
        ``logits`` (the last position's)."""
        recorded: dict[str, list] = {site: [None] * self.n_layers for site in sites}

        def keep(site, layer):
            def edit(value):
                recorded[site][layer] = value[0].detach()

            return edit

        final = []
        with stacked(self.hooked(s, k, keep(s, k)) for s in sites for k in range(self.n_layers)):
            handle = self.lm.final_norm.register_forward_pre_hook(
                lambda module, args: final.append(args[0][0].detach())
            )
            try:
                with torch.no_grad():
                    output = self.lm.model(input_ids=input_ids)
            finally:
                handle.remove()
        recorded["final"] = final[-1]
        recorded["logits"] = output.logits[0, -1].detach()
        if "heads" in sites and recorded["heads"][0].shape[-1] != self.n_heads * self.head_size:
            raise ValueError(
                f"{self.lm.name}'s attention output projection reads "
                f"{recorded['heads'][0].shape[-1]} features, not {self.n_heads} heads x "
                f"{self.head_size}: its heads cannot be told apart"
            )
        return recorded

    def per_head(self, layer: int, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What each head adds to the stream, and the projection's bias: ``z`` is the output
        projection's input ``(..., heads x head_size)``; returns ``(..., heads, features)``
        and ``(features,)``. The projection runs on ``z`` with every other head zeroed, so
        any linear projection (``nn.Linear``, GPT-2's ``Conv1D``) works as it is."""
        projection = self.attention[layer]
        mask = torch.zeros(self.n_heads, self.n_heads * self.head_size, dtype=z.dtype)
        for h in range(self.n_heads):
            mask[h, h * self.head_size : (h + 1) * self.head_size] = 1
        with torch.no_grad():
            bias = projection(torch.zeros_like(z[..., :1, :] if z.dim() > 1 else z[None]))
            bias = bias.reshape(-1, bias.shape[-1])[0]
            heads = projection(z[..., None, :] * mask.to(z.device)) - bias
        return heads, bias


@contextmanager
def stacked(managers):
    """Enter every context manager of an iterable, leave them all."""
    with ExitStack() as stack:
        for manager in managers:
            stack.enter_context(manager)
        yield
