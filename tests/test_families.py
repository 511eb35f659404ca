"""Model families and task kinds: one table each, and a new family is one table entry."""

import numpy as np
import pytest
import torch

from lm_layers_explainer import lm_layers_explainer, load_model
from lm_layers_explainer.families import (
    DEFAULT,
    FAMILIES,
    Family,
    QueryKey,
    family_of,
    register,
    unregister,
)
from lm_layers_explainer.tasks import KINDS, TASKS, TEXT_KINDS, encode, kind_from_config

ROTARY = "transformers.models.gpt_neox.modeling_gpt_neox.apply_rotary_pos_emb"
GPT_NEOX = Family(
    "gpt_neox",
    final_norm=("final_layer_norm",),
    head=("lm_head",),
    feed_forward=("mlp.dense_4h_to_h",),
    query_key=QueryKey(("attention.query_key_value",), layout="fused_per_head", rotary=ROTARY),
    neuron_view="gpt2",
)


def tiny_gpt_neox():
    """A random GPT-NeoX (Pythia's architecture: one fused query/key/value projection laid
    out per head, rotary embedding on a quarter of each head), with the tiny GPT-2
    tokenizer. transformers provides it; this project's family table does not."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    tokenizer = load_model("tiny-gpt2").tokenizer
    config = GPTNeoXConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=64, rotary_pct=0.25,
        attn_implementation="eager",
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return GPTNeoXForCausalLM(config).eval(), tokenizer


@pytest.fixture
def neox_entry():
    assert "gpt_neox" not in FAMILIES
    yield register(GPT_NEOX)
    unregister("gpt_neox")


def test_a_new_family_is_one_table_entry(neox_entry):
    model, tokenizer = tiny_gpt_neox()
    lm = load_model((model, tokenizer))
    assert lm.family is neox_entry
    assert lm.final_norm is model.gpt_neox.final_layer_norm
    assert lm.unembedding is model.lm_head
    text = "The cat sat on the mat"
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.no_grad():
        own = model(input_ids=ids, output_attentions=True)

    E = lm_layers_explainer
    assert E["tokens"](lm, text)().token_ids == ids[0].tolist()
    factors = E["activations"](lm, text)(n_components=2)
    assert factors.factors.shape == (2, ids.shape[1])
    last = E["predictions"](lm, text)(position=ids.shape[1], layer=1, topk=3)
    expected = own.logits[0, -1].softmax(-1).topk(3)
    assert last.token_ids[0].tolist() == expected.indices.tolist()
    np.testing.assert_allclose(last.probabilities[0], expected.values.numpy(), atol=1e-5)
    ranks = E["rankings"](lm, text)(generate=1).rankings()
    assert ranks.ranks[-1, 0] == 1  # the generated token is the last layer's top candidate

    for entry in ("attention_head_view", "attention_model_view", "attention_neuron_view"):
        view = E[entry](lm, text)()
        for layer in range(2):
            np.testing.assert_allclose(
                view.attentions["self"][layer], own.attentions[layer][0].numpy(), atol=1e-6
            )
    # The neuron view's queries and keys (after the partial rotary embedding) are the ones
    # the model softmaxes: recompute its attention from them.
    n = ids.shape[1]
    scores = view.queries @ np.swapaxes(view.keys, -1, -2) / np.sqrt(view.queries.shape[-1])
    scores = np.where(np.tril(np.ones((n, n), dtype=bool)), scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    np.testing.assert_allclose(weights, view.attentions["self"], atol=1e-5)

    attributions = E["attributions"](lm, text)
    for method in ("integrated_gradients", "feature_ablation"):
        a = attributions(method=method, target=3, n_steps=16)
        assert a.scores.shape == (n,)
        if method == "integrated_gradients":  # f(x), f(x') as captum's own delta saw them
            gap = a.scores.sum() - (a.output - a.baseline_output)
            assert abs(gap - a.delta) < 1e-7


def test_without_its_entry_a_family_gets_the_default_and_no_neuron_view():
    lm = load_model(tiny_gpt_neox())
    assert lm.family is DEFAULT
    assert lm.final_norm is lm.model.gpt_neox.final_layer_norm  # found by the common names
    with pytest.raises(ValueError, match="model must be of a family the neuron view knows"):
        lm_layers_explainer["attention_neuron_view"](lm)


def test_every_catalog_family_has_an_entry_and_finds_its_modules():
    catalog_models = {"tiny-gpt2": "gpt2", "tiny-bert": "bert", "tiny-bart": "bart",
                      "SmolLM2-135M-Instruct": "llama"}  # fmt: skip
    for name, model_type in catalog_models.items():
        lm = load_model(name)
        family = family_of(lm.config)
        assert family.model_type == model_type == lm.config.model_type
        for block in lm.layers:
            down = family.find_feed_forward(block)
            assert isinstance(down, torch.nn.Linear) or type(down).__name__ == "Conv1D"


def test_family_entries_are_checked():
    with pytest.raises(ValueError, match="layout must be one of separate, fused"):
        QueryKey(("q",), layout="interleaved")
    with pytest.raises(ValueError, match=r"modules must name 2 module\(s\)"):
        QueryKey(("attn.qkv",))
    with pytest.raises(TypeError, match="family must be a Family"):
        register({"model_type": "x"})


def test_the_task_table_covers_every_kind_once():
    assert KINDS == tuple(TASKS) == (
        "causal", "masked", "encoder", "seq2seq", "classifier", "question_answering",
        "token_classifier", "image_classifier",
    )  # fmt: skip
    for kind in KINDS:
        assert TASKS[kind].kind == kind
    assert KINDS[:-1] == TEXT_KINDS  # every kind but the image classifier reads token ids
    from transformers import BertConfig

    for architecture, kind in [
        ("BertForSequenceClassification", "classifier"),
        ("BertForQuestionAnswering", "question_answering"),
        ("BertForTokenClassification", "token_classifier"),
        ("ViTForImageClassification", "image_classifier"),
    ]:
        assert kind_from_config(BertConfig(architectures=[architecture])) == kind


@pytest.mark.parametrize(
    ("name", "kind", "pair_start", "types"),
    [("tiny-bert", None, 4, True), ("tiny-gpt2", None, 2, False)],
)
def test_one_encoding_path_for_pairs(name, kind, pair_start, types):
    lm = load_model(name, kind=kind)
    seq = encode(lm, "a b", "c")
    assert seq.pair_start == pair_start
    assert (seq.token_type_ids is not None) == types
    if types:  # the tokenizer's own pair encoding
        own = lm.tokenizer("a b", "c")
        assert seq.ids == own["input_ids"] and seq.token_type_ids == own["token_type_ids"]
    else:  # a causal model reads the second text as the first's continuation
        assert (
            seq.ids
            == lm.tokenizer("a b")["input_ids"]
            + lm.tokenizer("c", add_special_tokens=False)["input_ids"]
        )


def test_seq2seq_pairs_feed_encoder_and_decoder():
    lm = load_model("tiny-bart")
    seq = encode(lm, "a b", "c")
    assert seq.encoder_ids == lm.tokenizer("a b")["input_ids"]
    assert seq.ids == lm.tokenizer("c")["input_ids"]
    alone = encode(lm, "a b")
    assert alone.ids == [lm.config.decoder_start_token_id] and alone.n_input == 1


def test_a_causal_tokenizer_that_returns_token_types_does_not_make_segments():
    """Some causal tokenizers return token_type_ids; a causal LM has no segments, and the
    sequence must stay extendable by generation."""
    import copy

    lm = load_model("tiny-gpt2")
    tokenizer = copy.deepcopy(lm.tokenizer)
    tokenizer.model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    assert "token_type_ids" in tokenizer("The cat")
    typed = load_model((lm.model, tokenizer))
    assert encode(typed, "The cat").token_type_ids is None
    out = lm_layers_explainer["rankings"](typed, "The cat")(generate=2)
    assert out.rankings().ranks.shape == (lm.n_layers, 2)
