"""The reference suite: this project's numbers against computations nobody here wrote.

- attention in every view against the model's own ``output_attentions``, for single texts
  and pairs, on BERT-, Llama- and BART-style models;
- the logit lens against transformers' ``output_hidden_states``, with the final norm and the
  head applied here;
- the neuron view against bertviz's own neuron-view BERT, loaded with the same weights;
- Shapley value sampling against shap's exact Shapley values;
- faithfulness against ERASER's definitions (DeYoung et al. 2020), computed here by
  deleting tokens and running the model;
- generated tokens against the model's own argmax, whatever its generation config forces.

Every library imported here is a test requirement (pyproject's ``test`` extra): when one is
missing, collecting this file fails; nothing here skips.
"""

import math

import numpy as np
import pytest
import shap
import torch
from bertviz import neuron_view as bertviz_neuron_view
from bertviz.transformers_neuron_view import BertModel as BertvizBertModel
from helpers import tiny

from lm_layers_explainer import lm_layers_explainer, load_model
from lm_layers_explainer.tasks import token_texts

E = lm_layers_explainer
A, B = "The cat sat on the mat", "The dog lay on the rug"


def _model(name):
    if name == "llama":
        return load_model(tiny("llama"))
    if name == "tiny-bert-encoder":
        return load_model("tiny-bert", kind="encoder")
    return load_model(name)


# --------------------------------------------------------------------------- attention


def own_attentions(lm, a, b=None):
    """(tokens, {kind: (layers, heads, query, key)}) from the model's own output_attentions,
    on what the tokenizer returns for the text or the pair (a causal model reads the second
    text as the continuation of the first)."""
    tokenizer = lm.tokenizer
    with torch.no_grad():
        if lm.kind == "seq2seq":
            encoder, decoder = tokenizer(a)["input_ids"], tokenizer(b)["input_ids"]
            out = lm.model(
                input_ids=torch.tensor([encoder]),
                decoder_input_ids=torch.tensor([decoder]),
                output_attentions=True,
            )
            found = {
                "encoder": out.encoder_attentions,
                "decoder": out.decoder_attentions,
                "cross": out.cross_attentions,
            }
            return token_texts(tokenizer, decoder), _stack(found)
        if lm.kind == "causal":
            ids = tokenizer(a)["input_ids"]
            if b is not None:
                ids = ids + tokenizer(b, add_special_tokens=False)["input_ids"]
            inputs = {"input_ids": torch.tensor([ids])}
        else:
            inputs = dict(tokenizer(a, b, return_tensors="pt"))
        out = lm.model(**inputs, output_attentions=True)
    ids = inputs["input_ids"][0].tolist()
    return token_texts(tokenizer, ids), _stack({"self": out.attentions})


def _stack(found):
    return {kind: torch.cat(list(layers)).numpy() for kind, layers in found.items()}


@pytest.mark.parametrize("view", ["attention_head_view", "attention_model_view"])
@pytest.mark.parametrize("name", ["tiny-bert", "tiny-bert-encoder", "llama", "tiny-gpt2"])
@pytest.mark.parametrize("pair", [False, True], ids=["single", "pair"])
def test_views_show_the_models_own_attention(view, name, pair):
    lm = _model(name)
    second = B if pair else None
    result = E[view](lm)(A, second)
    tokens, expected = own_attentions(lm, A, second)
    assert result.tokens == tokens
    np.testing.assert_allclose(result.attentions["self"], expected["self"], atol=1e-6)


@pytest.mark.parametrize("view", ["attention_head_view", "attention_model_view"])
def test_seq2seq_views_show_the_models_own_attention(view):
    lm = load_model("tiny-bart")
    result = E[view](lm)(A, B)
    tokens, expected = own_attentions(lm, A, B)
    assert result.tokens == tokens and set(result.attentions) == set(expected)
    for kind in expected:
        np.testing.assert_allclose(result.attentions[kind], expected[kind], atol=1e-6)


@pytest.mark.parametrize("name", ["tiny-bert", "llama", "tiny-gpt2"])
@pytest.mark.parametrize("pair", [False, True], ids=["single", "pair"])
def test_neuron_view_shows_the_models_own_attention(name, pair):
    """bertviz pairs only BERT-style models; for causal ones the neuron view reads the pair
    as one text, the two strings joined."""
    lm = _model(name)
    result = E["attention_neuron_view"](lm)(A, B if pair else None)
    if lm.kind == "causal":
        tokens, expected = own_attentions(lm, A + B if pair else A)
    else:
        tokens, expected = own_attentions(lm, A, B if pair else None)
    assert result.tokens == tokens
    np.testing.assert_allclose(result.attentions["self"], expected["self"], atol=1e-6)


@pytest.mark.slow
def test_minilm_pair_views_show_the_models_own_attention():
    """The case that was wrong: token types of a pair never reached the model (up to 0.45)."""
    lm = load_model("all-MiniLM-L6-v2")
    _, expected = own_attentions(lm, A, B)
    for view in ("attention_head_view", "attention_model_view", "attention_neuron_view"):
        result = E[view](lm)(A, B)
        np.testing.assert_allclose(result.attentions["self"], expected["self"], atol=1e-5)


# --------------------------------------------------------------------------- neuron view


def _bertviz_bert(lm, folder):
    """bertviz's own neuron-view BERT with ``lm``'s weights (it reads pytorch_model.bin)."""
    lm.config.to_json_file(folder / "config.json")
    torch.save(lm.model.state_dict(), folder / "pytorch_model.bin")
    return BertvizBertModel.from_pretrained(str(folder), output_attentions=True).eval()


def _compare_with_bertviz(lm, folder, a, b, atol):
    reference = _bertviz_bert(lm, folder)
    data = bertviz_neuron_view.get_attention(
        reference, "bert", lm.tokenizer, a, b, include_queries_and_keys=True
    )["all"]
    result = E["attention_neuron_view"](lm)(a, b)
    np.testing.assert_allclose(result.attentions["self"], np.array(data["attn"]), atol=atol)
    np.testing.assert_allclose(result.queries, np.array(data["queries"]), atol=10 * atol)
    np.testing.assert_allclose(result.keys, np.array(data["keys"]), atol=10 * atol)


@pytest.mark.parametrize("pair", [False, True], ids=["single", "pair"])
def test_neuron_view_equals_bertviz_own_bert(tmp_path, pair):
    lm = load_model("tiny-bert", kind="encoder")
    _compare_with_bertviz(lm, tmp_path, A, B if pair else None, atol=1e-6)


@pytest.mark.slow
def test_neuron_view_equals_bertviz_own_bert_on_minilm(tmp_path):
    _compare_with_bertviz(load_model("all-MiniLM-L6-v2"), tmp_path, A, B, atol=1e-5)


# --------------------------------------------------------------------------- logit lens


def lens_by_hand(lm, text, state):
    """Probabilities (layers, vocabulary) at one state position, read from transformers'
    hidden states through the final norm and head that this test names for each family.

    ``hidden_states[l + 1]`` is block ``l``'s output; the last one already has the final norm
    applied, so the last layer is the model's own logits.
    """
    model = lm.model
    family = type(model).__name__
    if family == "GPT2LMHeadModel":
        norm, head = model.transformer.ln_f, model.lm_head
    elif family == "LlamaForCausalLM":
        norm, head = model.model.norm, model.lm_head
    elif family == "BertForMaskedLM":
        norm, head = None, model.cls
    elif family == "BartForConditionalGeneration":
        norm, head = None, lambda h: model.lm_head(h) + model.final_logits_bias[0]
    else:
        raise AssertionError(f"no by-hand lens for {family}")
    tokenizer = lm.tokenizer
    with torch.no_grad():
        if lm.kind == "seq2seq":
            start = model.config.decoder_start_token_id
            out = model(
                input_ids=torch.tensor([tokenizer(text)["input_ids"]]),
                decoder_input_ids=torch.tensor([[start]]),
                output_hidden_states=True,
            )
            hidden = out.decoder_hidden_states
        else:
            out = model(**tokenizer(text, return_tensors="pt"), output_hidden_states=True)
            hidden = out.hidden_states
        rows = []
        for block_output in hidden[1:-1]:
            h = block_output[0, state]
            rows.append(head(norm(h) if norm is not None else h))
        rows.append(out.logits[0, state])
    return torch.stack(rows).float().softmax(-1).numpy()


@pytest.mark.parametrize(
    ("name", "text", "position"),
    [("tiny-gpt2", "The keys to the cabinet", 3), ("llama", "The keys to the cabinet", 4),
     ("tiny-bert", "the cat sat on the [MASK] .", 6), ("tiny-bart", "The cat sat", 1)],
)  # fmt: skip
def test_logit_lens_equals_hidden_states_through_norm_and_head(name, text, position):
    lm = _model(name)
    result = E["predictions"](lm, text)(position=position, topk=5)
    state = position if lm.kind == "masked" else position - 1
    expected = lens_by_hand(lm, text, state)
    assert result.layers == list(range(lm.n_layers))
    for layer in result.layers:
        top = np.argsort(-expected[layer], kind="stable")[:5]
        np.testing.assert_array_equal(result.token_ids[layer], top)
        np.testing.assert_allclose(result.probabilities[layer], expected[layer][top], atol=5e-6)


@pytest.mark.slow
def test_logit_lens_on_smollm2_at_every_layer():
    lm = load_model("SmolLM2-135M-Instruct")
    text = " Heathrow airport is in the city of"
    result = E["predictions"](lm, text)(position=8, topk=5)
    expected = lens_by_hand(lm, text, 7)
    assert len(result.layers) == 30
    for layer in result.layers:
        top = np.argsort(-expected[layer], kind="stable")[:5]
        np.testing.assert_array_equal(result.token_ids[layer], top)
        np.testing.assert_allclose(result.probabilities[layer], expected[layer][top], atol=5e-5)


# --------------------------------------------------------------------------- Shapley values


def test_shapley_value_sampling_agrees_with_shaps_exact_values():
    """shap enumerates every coalition of the 5 tokens (the game: f with the tokens outside
    the coalition replaced by the zero vector); sampling 400 orders must land close."""
    lm = load_model("tiny-gpt2")
    text = "The keys to the cabinet"
    explainer = E["attributions"](lm, text)
    target = explainer.resolve_target(None)[0]
    ids = torch.tensor([explainer.ids])
    n = ids.shape[1]
    assert n >= 4
    with torch.no_grad():
        x = lm.model.get_input_embeddings()(ids)

    def game(coalitions):
        masks = torch.tensor(np.asarray(coalitions), dtype=x.dtype)[:, :, None]
        with torch.no_grad():
            logits = lm.model(inputs_embeds=x * masks).logits[:, -1]
        return logits.softmax(-1)[:, target].double().numpy()

    exact = shap.explainers.Exact(game, shap.maskers.Independent(np.zeros((1, n))))(np.ones((1, n)))
    exact_values = exact.values[0]
    ours = explainer(method="shapley_value_sampling", n_samples=400).scores
    assert exact_values.sum() == pytest.approx(game(np.ones((1, n)))[0] - game(np.zeros((1, n)))[0])
    assert ours.sum() == pytest.approx(exact_values.sum(), abs=1e-9)  # both efficient
    scale = np.abs(exact_values).max()
    np.testing.assert_allclose(ours, exact_values, atol=0.1 * scale)
    assert np.argmax(ours) == np.argmax(exact_values)


# --------------------------------------------------------------------------- faithfulness


def _explained_probability(lm, ids, types, target):
    """The probability of ``target`` as the model computes it on these ids: after the last
    token (causal), at the [MASK] (masked LM), or of the class (classifier)."""
    inputs = {"input_ids": torch.tensor([ids])}
    if types is not None:
        inputs["token_type_ids"] = torch.tensor([types])
    with torch.no_grad():
        logits = lm.model(**inputs).logits[0]
    if lm.kind == "causal":
        logits = logits[-1]
    elif lm.kind == "masked":
        logits = logits[ids.index(lm.tokenizer.mask_token_id)]
    return float(logits.softmax(-1)[target])


def eraser_by_hand(lm, text, pair, scores, target):
    """ERASER's comprehensiveness and sufficiency: the rationale r_b is the ceil(b * n)
    highest-scored ordinary tokens, b in 1, 5, 10, 20, 50 %; tokens are deleted."""
    encoding = lm.tokenizer(text, pair) if pair else lm.tokenizer(text)
    ids = list(encoding["input_ids"])
    types = encoding.get("token_type_ids")
    special = set(lm.tokenizer.all_special_ids)
    ordinary = [i for i, t in enumerate(ids) if t not in special]
    ranked = sorted(ordinary, key=lambda i: -scores[i])  # stable: earlier first on ties

    def probability(positions):
        kept = sorted(positions)
        return _explained_probability(
            lm, [ids[i] for i in kept], None if types is None else [types[i] for i in kept], target
        )

    full = probability(range(len(ids)))
    comprehensiveness, sufficiency, sizes = [], [], []
    for b in (0.01, 0.05, 0.10, 0.20, 0.50):
        k = max(1, math.ceil(round(b * len(ordinary), 9)))
        rationale = set(ranked[:k])
        sizes.append(k)
        comprehensiveness.append(full - probability(set(range(len(ids))) - rationale))
        sufficiency.append(full - probability(set(range(len(ids))) - set(ordinary) | rationale))
    return float(np.mean(comprehensiveness)), float(np.mean(sufficiency)), sizes


LONG_REVIEW = (
    "the movie was good and the cat sat on the mat while the dog lay on the rug , i liked it "
    "and this is great but the house budget committee voted to pass a spending bill"
)


@pytest.mark.parametrize(
    ("name", "kind", "text", "pair", "method"),
    [
        ("tiny-gpt2", None, "The keys to the cabinet are on the table", None, "saliency"),
        ("tiny-bert", "masked", "the cat sat on the [MASK] .", None, "integrated_gradients"),
        ("tiny-bert", "classifier", "the movie was good", "i liked it", "feature_ablation"),
        ("tiny-bert", "classifier", LONG_REVIEW, None, "input_x_gradient"),
    ],
)
def test_faithfulness_equals_erasers_definitions(name, kind, text, pair, method):
    lm = load_model(name, kind=kind)
    explainer = E["attributions"](lm, text, pair) if pair else E["attributions"](lm, text)
    a = explainer(method=method)
    faith = a.faithfulness()
    comprehensiveness, sufficiency, sizes = eraser_by_hand(lm, text, pair, a.scores, a.target)
    assert faith.bins() == sizes
    assert faith.comprehensiveness == pytest.approx(comprehensiveness, abs=1e-6)
    assert faith.sufficiency == pytest.approx(sufficiency, abs=1e-6)
    if text == LONG_REVIEW:  # long enough for five different bins, not all one token
        assert len(set(sizes)) == 5


# --------------------------------------------------------------------------- generation


def argmax_by_hand(lm, text, n):
    """The sequence's ids with n more, each the argmax of the model's logits over the whole
    prefix (no cache, no generation config); and how many ids came before them."""
    tokenizer = lm.tokenizer
    with torch.no_grad():
        if lm.kind == "seq2seq":
            encoder = torch.tensor([tokenizer(text)["input_ids"]])
            ids = [lm.model.config.decoder_start_token_id]
            run = lambda ids: lm.model(input_ids=encoder, decoder_input_ids=ids)  # noqa: E731
        else:
            ids = tokenizer(text)["input_ids"]
            run = lambda ids: lm.model(input_ids=ids)  # noqa: E731
        n_input = len(ids)
        for _ in range(n):
            ids.append(int(run(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids, n_input


def force_everything_else(lm, own):
    """Set every option a generation config can use to override the model's choices, aimed
    at the tokens ``own`` the model chooses, so that generate() could not return them."""
    config = lm.model.generation_config
    config.repetition_penalty = 10.0
    config.no_repeat_ngram_size = 1
    config.min_new_tokens = len(own) + 1
    config.begin_suppress_tokens = own[:1]
    config.suppress_tokens = own[1:2]
    config.bad_words_ids = [[own[2]]]
    config.eos_token_id = own[3]  # generate() would stop there
    if lm.kind == "seq2seq":
        config.forced_bos_token_id = 0
        config.forced_eos_token_id = 2


@pytest.mark.parametrize("name", ["tiny-bart", "tiny-gpt2", "llama"])
def test_generated_tokens_are_the_models_own_argmax_whatever_its_config_forces(name):
    lm = _model(name)
    text = "The cat sat on the mat"
    ids, n_input = argmax_by_hand(lm, text, 5)
    force_everything_else(lm, ids[n_input:])
    rankings = E["rankings"](lm)(text, generate=5)
    assert rankings.token_ids == ids
    assert (rankings.rankings().ranks[-1] == 1).all()  # each the last layer's top candidate
    prediction = E["predictions"](lm, text)(position=len(ids) - 1, topk=1)
    assert prediction.tokens == token_texts(lm.tokenizer, ids[:-1])
    assert prediction.token_ids[-1][0] == ids[-1]


def test_generated_bart_positions_end_with_the_models_token_not_a_forced_end():
    """The case that was wrong: BART's config forces EOS at the last step of generate()."""
    lm = load_model("tiny-bart")
    assert lm.model.generation_config.forced_eos_token_id == 2
    ids, _ = argmax_by_hand(lm, "The cat sat on the mat", 2)
    result = E["predictions"](lm, "The cat sat on the mat")(position=3)
    assert result.tokens == token_texts(lm.tokenizer, ids)
    assert ids[-1] != 2  # the model itself does not say EOS there, so the test can tell


def test_sampling_draws_from_the_models_own_distribution_only():
    """With every token but one suppressed by the config, generate() could only draw that
    one; sampling from the model's softmax draws others, reproducibly per seed."""
    lm = load_model("tiny-gpt2")
    lm.model.generation_config.suppress_tokens = list(range(1, lm.vocab_size))
    predictions = E["predictions"](lm, "The cat")
    draws = [predictions(position=3, layer=0, do_sample=True, seed=s).tokens[-1] for s in range(8)]
    assert len(set(draws)) > 1 and set(draws) != {lm.tokenizer.decode([0])}
    again = [predictions(position=3, layer=0, do_sample=True, seed=s).tokens[-1] for s in range(8)]
    assert again == draws
