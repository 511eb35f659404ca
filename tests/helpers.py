"""Shared by tests: random tiny models of families the catalog does not build (fixed seed),
and an interruption of a model's forward pass."""

import torch

from lm_layers_explainer import load_model


def tiny(family: str):
    """``(model, tokenizer)``: a random Llama with grouped-query attention (4 query heads
    share 2 key heads), or a random RoBERTa, with the tiny catalog tokenizers."""
    from transformers import LlamaConfig, LlamaForCausalLM, RobertaConfig, RobertaForMaskedLM

    config_class, model_class, tokenizer_name, extra = {
        "llama": (LlamaConfig, LlamaForCausalLM, "tiny-gpt2", {"num_attention_heads": 4,
                  "num_key_value_heads": 2, "max_position_embeddings": 64}),
        "roberta": (RobertaConfig, RobertaForMaskedLM, "tiny-bert", {"num_attention_heads": 2,
                    "max_position_embeddings": 70, "pad_token_id": 0}),
    }[family]  # fmt: skip
    tokenizer = load_model(tokenizer_name).tokenizer
    config = config_class(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        attn_implementation="eager", **extra,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return model_class(config).eval(), tokenizer


def interrupt_at_pass(monkeypatch, model, n: int) -> list:
    """Make ``model``'s n-th forward pass raise KeyboardInterrupt (as Ctrl-C would); returns
    the list that gets one entry per pass started. Restore with ``restore_forward``."""
    forward = type(model).forward
    calls = []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "forward", interrupted)
    monkeypatch.setattr(interrupted, "original", forward, raising=False)
    return calls


def restore_forward(monkeypatch, model) -> None:
    """Undo :func:`interrupt_at_pass` before the test ends."""
    monkeypatch.setattr(type(model), "forward", type(model).forward.original)
