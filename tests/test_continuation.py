"""Continuations of a causal LM: each target token explained given the text and the target
tokens before it, checked against single-token runs on the extended text, the model's own
probabilities and generate()."""

import warnings

import numpy as np
import pytest
import torch

from lm_layers_explainer import lm_layers_explainer, load_model
from lm_layers_explainer.attributions.continuation import SHARED_FORWARD, TEACHER_FORCED
from lm_layers_explainer.attributions.results import ContinuationResult

Attributions = lm_layers_explainer["attributions"]
TEXT, TARGET = "The cat sat on", " the mat today"


@pytest.fixture(scope="module")
def gpt2():
    return load_model("tiny-gpt2")


def _pieces(lm, target):
    ids = lm.tokenizer(target, add_special_tokens=False)["input_ids"]
    return [lm.tokenizer.decode([i]) for i in ids]


DETERMINISTIC = [
    "feature_ablation", "occlusion", "integrated_gradients", "input_x_gradient", "saliency",
    "deeplift",
]  # fmt: skip
"""Every method that runs on the tiny models and draws nothing at random."""


@pytest.mark.parametrize("method", DETERMINISTIC)
def test_row_t_is_the_single_token_run_on_the_text_extended_by_t_target_tokens(gpt2, method):
    result = Attributions(gpt2, TEXT)(method=method, target=TARGET, n_steps=16)
    assert result.settings.get("teacher_forced", False) == (
        method in TEACHER_FORCED + SHARED_FORWARD
    )
    pieces = _pieces(gpt2, TARGET)
    assert result.target_tokens == pieces and len(pieces) >= 3
    n = result.n_input
    for t, piece in enumerate(pieces):
        single = Attributions(gpt2, TEXT + "".join(pieces[:t]))
        assert single.ids == result.source_ids[: n + t]  # the same tokens, read the same way
        row = single(method=method, target=piece, n_steps=16)
        np.testing.assert_allclose(result.scores[t, : n + t], row.scores, atol=1e-6)
        assert np.isnan(result.scores[t, n + t :]).all()  # the token itself and after
        assert result.outputs[t] == pytest.approx(row.output)
        if method == "integrated_gradients":  # captum's completeness gap, row by row
            assert result.deltas[t] == pytest.approx(row.delta, abs=1e-6)


def test_sampled_shapley_rows_each_sum_to_their_own_output_difference(gpt2):
    result = Attributions(gpt2, TEXT)(method="shapley_value_sampling", target=TARGET, n_samples=4)
    assert result.settings["teacher_forced"]
    np.testing.assert_allclose(
        np.nansum(result.scores, axis=1), result.outputs - result.baseline_outputs, atol=1e-6
    )
    single = Attributions(gpt2, TEXT)(method="shapley_value_sampling", target=" the", n_samples=4)
    assert result.outputs[0] - result.baseline_outputs[0] == pytest.approx(
        single.output - single.baseline_output, abs=1e-6
    )


def test_seed_fixes_the_sampling_of_a_continuation(gpt2):
    explainer = Attributions(gpt2, TEXT)
    runs = [
        explainer(method="shapley_value_sampling", target=TARGET, n_samples=3, seed=seed).scores
        for seed in (3, 3, 4)
    ]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.allclose(runs[0], runs[2], equal_nan=True)


def test_step_scores_are_the_models_own_probabilities_and_entropies(gpt2):
    result = Attributions(gpt2, TEXT)(method="feature_ablation", target=TARGET)
    ids = torch.tensor([result.source_ids])
    with torch.no_grad():
        logits = gpt2.model(input_ids=ids).logits[0].double()
    n = result.n_input
    log_p = logits[n - 1 : -1].log_softmax(-1)
    expected = log_p[torch.arange(len(result.target_ids)), result.target_ids].exp()
    np.testing.assert_allclose(result.step_scores["probability"], expected.numpy(), rtol=1e-5)
    entropy = -(log_p.exp() * log_p).sum(-1).numpy()
    np.testing.assert_allclose(result.step_scores["entropy"], entropy, rtol=1e-5)
    np.testing.assert_allclose(result.outputs, expected.numpy(), rtol=1e-5)  # f(x) per row


def test_generate_explains_the_models_greedy_continuation(gpt2):
    result = Attributions(gpt2, TEXT)(method="saliency", generate=3)
    ids = gpt2.tokenizer(TEXT, return_tensors="pt")
    with torch.no_grad():
        written = gpt2.model.generate(**ids, max_new_tokens=3, do_sample=False, min_new_tokens=3)
    assert result.target_ids == written[0, ids["input_ids"].shape[1] :].tolist()
    assert result.scores.shape == (3, result.n_input + 3)


def test_words_sum_their_pieces_on_both_axes(gpt2):
    result = Attributions(gpt2, TEXT)(method="feature_ablation", target=TARGET)
    words = result.aggregate("words")
    assert words.target_tokens == [" the", " mat", " today"]  # ' to' + 'day' is one word
    today = [t for t, token in enumerate(result.target_tokens) if token in (" to", "day")]
    cat = result.source_tokens.index(" cat")
    assert words.scores[2, 1] == pytest.approx(result.scores[today, cat].sum())
    assert np.isnan(words.scores[2, words.source_tokens.index(" today")])
    assert words.step_scores["probability"][2] == pytest.approx(
        np.prod(result.step_scores["probability"][today])
    )
    largest = words.aggregate("words", rule="max_abs")  # already words: the same scores
    np.testing.assert_array_equal(largest.scores, words.scores)


def test_a_one_token_target_keeps_todays_result(gpt2):
    result = Attributions(gpt2, TEXT)(method="feature_ablation", target=" the")
    assert not isinstance(result, ContinuationResult)
    assert len(result.scores) == len(gpt2.tokenizer(TEXT)["input_ids"])


@pytest.mark.parametrize(
    ("model", "options", "message"),
    [
        ("tiny-gpt2", {"target": TARGET, "generate": 2}, "not both"),
        ("tiny-gpt2", {"generate": 0}, "generate must be at least 1"),
        ("tiny-gpt2", {"generate": 10_000}, "generate must be in 0"),
        ("tiny-gpt2", {"generate": -1}, "generate"),
        ("tiny-bert", {"generate": 2}, "generate"),
        ("tiny-gpt2", {"target": " word" * 100}, "longer than the model's context"),
    ],
)
def test_bad_continuations_are_refused_before_the_model_runs(monkeypatch, model, options, message):
    from transformers import GenerationMixin, PreTrainedModel

    text = TEXT if model == "tiny-gpt2" else "The cat [MASK] on the mat"
    explainer = Attributions(model, text)

    def forbidden(self, *args, **kwargs):
        raise AssertionError(f"{type(self).__name__} ran before the arguments were checked")

    monkeypatch.setattr(PreTrainedModel, "__call__", forbidden)
    monkeypatch.setattr(GenerationMixin, "generate", forbidden)
    with pytest.raises(ValueError, match=message):
        explainer(method="saliency", **options)


# --------------------------------------------------------------------------- contrast


@pytest.mark.parametrize("method", ["input_x_gradient", "integrated_gradients", "saliency"])
def test_a_contrast_is_the_difference_of_the_two_targets_for_methods_linear_in_the_output(
    gpt2, method
):
    explainer = Attributions(gpt2, TEXT)
    both = explainer(method=method, target=" the", foil=" a", n_steps=16)
    the = explainer(method=method, target=" the", n_steps=16)
    a = explainer(method=method, target=" a", n_steps=16)
    if method == "saliency":  # |gradient| is not linear: only its output is the difference
        assert not np.allclose(both.scores, the.scores - a.scores)
    else:
        np.testing.assert_allclose(both.scores, the.scores - a.scores, atol=1e-6)
    ids = torch.tensor([explainer.ids])
    with torch.no_grad():
        p = gpt2.model(input_ids=ids).logits[0, -1].softmax(-1)
    expected = p[both.target] - p[both.foil]
    assert both.output == pytest.approx(float(expected), abs=1e-6)
    assert "minus probability of '␣a'" in both.title()


def test_a_contrast_of_logits_and_its_faithfulness(gpt2):
    explainer = Attributions(gpt2, TEXT)
    logits = explainer(method="feature_ablation", target=" the", foil=" a", output="logit")
    with torch.no_grad():
        row = gpt2.model(input_ids=torch.tensor([explainer.ids])).logits[0, -1]
    assert logits.output == pytest.approx(float(row[logits.target] - row[logits.foil]), abs=1e-5)
    faith = logits.faithfulness()  # the contrast's own curves: f(x) first
    assert faith.deletion[0] == pytest.approx(logits.output, abs=1e-5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"target": " the", "foil": " the"}, "foil must differ from the target"),
        ({"target": " the", "foil": " big dogs"}, "foil must be one token"),
        ({"target": TARGET, "foil": " a"}, "foil must have as many tokens as the target"),
        ({"target": TARGET, "foil": TARGET}, "foil must differ from the target"),
        ({"generate": 2, "foil": " a"}, "foil is for a given target"),
        ({"target": " the", "foil": 10**7}, r"foil must be in 0\.\."),
    ],
)
def test_bad_contrasts_are_refused(gpt2, options, message):
    with pytest.raises(ValueError, match=message):
        Attributions(gpt2, TEXT)(method="saliency", **options)


@pytest.mark.parametrize("method", ["feature_ablation", "input_x_gradient"])
def test_a_contrastive_continuation_is_the_difference_row_by_row(gpt2, method):
    """Row t: target token t's output minus foil token t's, both after the text and the
    target's tokens before t; a row whose foil is its target is 0."""
    pieces = _pieces(gpt2, TARGET)
    foil = " a dog" + "".join(pieces[2:])
    foils = _pieces(gpt2, foil)
    assert len(foils) == len(pieces) and foils[:2] != pieces[:2] and foils[2:] == pieces[2:]
    explainer = Attributions(gpt2, TEXT)
    both = explainer(method=method, target=TARGET, foil=foil)
    plain = explainer(method=method, target=TARGET)
    assert both.foil_tokens == foils and "minus" in both.explains()
    n = both.n_input
    for t in range(len(pieces)):
        single = Attributions(gpt2, TEXT + "".join(pieces[:t]))(method=method, target=foils[t])
        expected = plain.scores[t, : n + t] - single.scores
        np.testing.assert_allclose(both.scores[t, : n + t], expected, atol=1e-6)
        assert both.outputs[t] == pytest.approx(plain.outputs[t] - single.output, abs=1e-6)
        assert both.step_scores["foil_probability"][t] == pytest.approx(
            single.output, rel=1e-5
        )  # the foil's probability, read after the target's tokens before t
    assert np.all(both.scores[2:][~np.isnan(both.scores[2:])] == pytest.approx(0.0, abs=1e-9))
    words = both.aggregate("words")
    assert words.foil_tokens[:2] == [" a", " dog"] and "␣a" in words.to_html()


def test_compare_takes_the_same_contrast_as_a_single_call(gpt2):
    explainer = Attributions(gpt2, TEXT)
    compared = explainer.compare(
        ["input_x_gradient", "feature_ablation"], target=" the", foil=" a", faithfulness=False
    )
    for name, result in compared.results.items():
        single = explainer(method=name, target=" the", foil=" a")
        np.testing.assert_allclose(result.scores, single.scores, atol=1e-6)
        assert result.foil == single.foil and "minus" in result.title()
    with pytest.raises(ValueError, match="foil must differ"):
        explainer.compare(["saliency"], target=" the", foil=" the")


# --------------------------------------------------------------------------- seq2seq
# An encoder-decoder model: the sources are the encoder's tokens, then the decoder's (its
# start token and the target tokens before row t). The references below run the model by
# hand (inputs_embeds for the encoder, decoder_inputs_embeds for the decoder), or captum on
# that hand-written forward with the two blocks as two inputs: none of the explainer's code.

SOURCE, WRITTEN = "hello world there", " the cat sat"


def _tiny_t5():
    """A T5 (relative positions, no embedding scale, decoder starts at pad) with random
    weights (seeded) and tiny-bart's tokenizer."""
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = load_model("tiny-bart").tokenizer
    config = T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    return load_model((T5ForConditionalGeneration(config).eval(), tokenizer))


@pytest.fixture(scope="module", params=["tiny-bart", "tiny-t5"])
def seq2seq(request):
    """An encoder-decoder model: tiny-bart, or a tiny T5."""
    return load_model(request.param) if request.param == "tiny-bart" else _tiny_t5()


def _seq2seq_logits(lm, encoder_embeddings, decoder_embeddings):
    """(batch, decoder tokens, vocabulary) from the two blocks of embeddings."""
    mask = torch.ones(encoder_embeddings.shape[:2], dtype=torch.long)
    return lm.model(
        inputs_embeds=encoder_embeddings,
        attention_mask=mask,
        decoder_inputs_embeds=decoder_embeddings,
        use_cache=False,
    ).logits


def _seq2seq_rows(lm, result):
    """For each target token t: (encoder embeddings, decoder embeddings up to t, the
    position its logit is read at, its id, which sources are special)."""
    n_encoder, n_input = result.n_encoder, result.n_input
    ids = torch.tensor(result.source_ids)
    special = torch.isin(ids, torch.tensor(lm.tokenizer.all_special_ids))
    with torch.no_grad():
        embeddings = lm.embeddings(ids[None])
    for t, target in enumerate(result.target_ids):
        end = n_input + t
        yield (
            embeddings[:, :n_encoder],
            embeddings[:, n_encoder:end],
            end - n_encoder - 1,
            target,
            special[:end],
        )


def test_a_seq2seq_continuation_has_the_encoders_and_the_decoders_tokens_as_sources(seq2seq):
    result = Attributions(seq2seq, SOURCE)(method="feature_ablation", target=WRITTEN)
    encoder = seq2seq.tokenizer(SOURCE)["input_ids"]
    start = seq2seq.config.decoder_start_token_id
    targets = seq2seq.tokenizer(WRITTEN, add_special_tokens=False)["input_ids"]
    assert result.source_ids == encoder + [start] + targets
    assert (result.n_encoder, result.n_input) == (len(encoder), len(encoder) + 1)
    assert result.target_ids == targets
    after = np.triu_indices(len(targets), k=result.n_input, m=len(result.source_ids))
    assert len(after[0]) == 3 + 2 + 1 and np.isnan(result.scores[after]).all()
    assert not np.isnan(result.scores[np.tril_indices(len(targets), k=result.n_input - 1)]).any()
    frame = result.to_frame()
    assert set(frame.loc[frame.source_index < len(encoder), "source_block"]) == {"encoder"}
    assert set(frame.loc[frame.source_index >= len(encoder), "source_block"]) == {"decoder"}


@pytest.mark.parametrize("method", ["feature_ablation", "input_x_gradient"])
def test_seq2seq_rows_equal_the_models_own_answer(seq2seq, method):
    """feature_ablation: f(x) - f(x with one token's embedding zeroed); input x gradient:
    the gradient of f times x, summed over features; f the logit of target t."""
    result = Attributions(seq2seq, SOURCE)(method=method, target=WRITTEN, output="logit")
    for t, (enc, dec, at, target, special) in enumerate(_seq2seq_rows(seq2seq, result)):
        n_encoder = enc.shape[1]
        expected = np.zeros(len(special))
        if method == "feature_ablation":
            with torch.no_grad():
                full = float(_seq2seq_logits(seq2seq, enc, dec)[0, at, target])
                for s in np.flatnonzero(~special.numpy()):
                    e, d = enc.clone(), dec.clone()
                    (e[0, s] if s < n_encoder else d[0, s - n_encoder]).zero_()
                    expected[s] = full - float(_seq2seq_logits(seq2seq, e, d)[0, at, target])
        else:
            enc, dec = enc.clone().requires_grad_(True), dec.clone().requires_grad_(True)
            _seq2seq_logits(seq2seq, enc, dec)[0, at, target].backward()
            both = torch.cat([enc * enc.grad, dec * dec.grad], dim=1)
            expected = both[0].sum(-1).detach().double().numpy()
        assert np.abs(expected).max() > 1e-4  # the check has something to compare
        n = result.n_input + t
        np.testing.assert_allclose(result.scores[t, :n], expected, atol=1e-5)
        assert np.isnan(result.scores[t, n:]).all()


def test_seq2seq_integrated_gradients_rows_equal_captums_on_the_two_blocks(seq2seq):
    from captum.attr import IntegratedGradients

    result = Attributions(seq2seq, SOURCE)(
        method="integrated_gradients", target=WRITTEN, output="logit", n_steps=16
    )
    for t, (enc, dec, at, target, special) in enumerate(_seq2seq_rows(seq2seq, result)):
        n_encoder = enc.shape[1]
        keep = special[:, None].float()  # special tokens stay in the baseline
        baselines = (enc * keep[:n_encoder], dec * keep[n_encoder:])
        ig = IntegratedGradients(
            lambda e, d, at=at, y=target: _seq2seq_logits(seq2seq, e, d)[:, at, y]
        )
        parts = ig.attribute((enc, dec), baselines=baselines, n_steps=16)
        expected = torch.cat(parts, dim=1)[0].sum(-1).double().numpy()
        n = result.n_input + t
        np.testing.assert_allclose(result.scores[t, :n], expected, atol=1e-5)


def test_a_seq2seq_single_token_and_its_contrast(seq2seq):
    explainer = Attributions(seq2seq, SOURCE)
    assert explainer.tokens[-1] == seq2seq.tokenizer.decode([seq2seq.config.decoder_start_token_id])
    one = explainer(method="input_x_gradient", target=" the", output="logit")
    assert not isinstance(one, ContinuationResult) and one.n_encoder == len(explainer.ids) - 1
    assert one.question == "next token of the decoder"
    foil = explainer(method="input_x_gradient", target=" a", output="logit")
    both = explainer(method="input_x_gradient", target=" the", foil=" a", output="logit")
    np.testing.assert_allclose(both.scores, one.scores - foil.scores, atol=1e-6)
    enc = torch.tensor([explainer.ids[: one.n_encoder]])
    start = torch.tensor([[seq2seq.config.decoder_start_token_id]])
    with torch.no_grad():
        logits = seq2seq.model(input_ids=enc, decoder_input_ids=start).logits[0, -1]
    assert both.output == pytest.approx(float(logits[one.target] - logits[both.foil]), abs=1e-5)
    faith = one.faithfulness()  # deletion removes tokens from both blocks
    assert faith.deletion[0] == pytest.approx(one.output, abs=1e-5)
    assert "encoder" in one.to_html() and "decoder" in one.to_html()


def test_seq2seq_generate_explains_the_models_greedy_continuation_and_its_step_scores(seq2seq):
    result = Attributions(seq2seq, SOURCE)(method="saliency", generate=3)
    encoder = torch.tensor([seq2seq.tokenizer(SOURCE)["input_ids"]])
    decoder = [seq2seq.config.decoder_start_token_id]
    probabilities = []
    with torch.no_grad():
        for _ in range(3):  # greedy, by hand
            logits = seq2seq.model(input_ids=encoder, decoder_input_ids=torch.tensor([decoder]))
            p = logits.logits[0, -1].double().softmax(-1)
            decoder.append(int(p.argmax()))
            probabilities.append(float(p.max()))
    assert result.target_ids == decoder[1:]
    np.testing.assert_allclose(result.step_scores["probability"], probabilities, rtol=1e-5)


def test_seq2seq_words_keep_the_two_blocks_apart(seq2seq):
    result = Attributions(seq2seq, SOURCE)(method="feature_ablation", target=WRITTEN)
    words = result.aggregate("words")
    assert words.n_encoder == len([w for w in result.words() if w[0] < result.n_encoder])
    assert "".join(words.source_tokens[: words.n_encoder]) == "".join(
        result.source_tokens[: result.n_encoder]
    )
    assert words.target_tokens == [" the", " cat", " sat"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"text_pair": "the decoder"}, "text_pair is for masked LMs"),
        ({"generate": 10_000}, "generate must be in 0"),
        ({"target": " word" * 2000}, "longer than the model's context"),
    ],
)
def test_bad_seq2seq_questions_are_refused_before_the_model_runs(monkeypatch, options, message):
    from transformers import PreTrainedModel

    monkeypatch.setattr(PreTrainedModel, "__call__", lambda *a, **k: pytest.fail("model ran"))
    bart = load_model("tiny-bart")  # a model with a context limit (T5 has none)
    options = dict(options)
    text_pair = options.pop("text_pair", None)
    with pytest.raises(ValueError, match=message):
        Attributions(bart, SOURCE, text_pair)(method="saliency", **options)


@pytest.mark.parametrize("method", DETERMINISTIC)
def test_a_seq2seq_continuations_first_row_is_the_single_token_run(seq2seq, method):
    explainer = Attributions(seq2seq, SOURCE)
    result = explainer(method=method, target=WRITTEN, output="logit", n_steps=16)
    single = explainer(method=method, target=result.target_ids[0], output="logit", n_steps=16)
    assert single.tokens == result.source_tokens[: result.n_input]
    np.testing.assert_allclose(result.scores[0, : result.n_input], single.scores, atol=1e-5)
    assert result.outputs[0] == pytest.approx(single.output, abs=1e-5)


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-bart"])
def test_generation_uses_the_installed_transformers_cache_keyword_without_warnings(name):
    # transformers 5.24 renamed past_key_values to cache and warns on the old name: a
    # warning reaches every notebook's stderr, so generation must pass the current name.
    lm = load_model(name)
    text = SOURCE if name == "tiny-bart" else TEXT
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        result = Attributions(lm, text)(method="saliency", generate=3)
    assert len(result.target_ids) == 3
