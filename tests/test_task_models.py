"""Task models (question answering, token classification, zero-shot, similarity, multi-label)
on tiny random models, each checked against the model run by hand or transformers' own
pipelines: none of the explainers' code."""

import numpy as np
import pytest
import torch

from lm_layers_explainer import lm_layers_explainer, load_model
from lm_layers_explainer.attributions.results import AttributionResult, RowsResult

E = lm_layers_explainer
QUESTION, CONTEXT = "where is the cat", "the cat sat on the mat"
NLI_LABELS = ["contradiction", "neutral", "entailment"]


def _tiny_classifier(labels, **config):
    """tiny-bert's encoder and tokenizer with a new seeded classifier head."""
    from transformers import BertForSequenceClassification

    base = load_model("tiny-bert", kind="classifier")
    settings = base.config.to_dict()
    settings.update(
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        **config,
    )
    torch.manual_seed(1)
    model = BertForSequenceClassification(type(base.config).from_dict(settings)).eval()
    return load_model((model, base.tokenizer))


def _by_hand(lm, ids, types=None):
    """(embeddings with grad, keyword arguments) for a forward pass written here."""
    ids = torch.tensor([ids])
    x = lm.embeddings(ids).detach().requires_grad_(True)
    extra = {} if types is None else {"token_type_ids": torch.tensor([types])}
    return x, extra


# --------------------------------------------------------------------------- question answering


@pytest.fixture(scope="module")
def qa_model():
    return load_model("tiny-bert", kind="question_answering")


def test_the_best_span_is_the_largest_start_plus_end_in_the_context(qa_model):
    qa = E["question_answering"](qa_model, QUESTION, CONTEXT)
    encoded = qa_model.tokenizer(QUESTION, CONTEXT)
    with torch.no_grad():
        out = qa_model.model(**{k: torch.tensor([v]) for k, v in encoded.items()})
    special = set(qa_model.tokenizer.all_special_ids)
    context = [
        i
        for i, (t, token) in enumerate(
            zip(encoded["token_type_ids"], encoded["input_ids"], strict=True)
        )
        if t == 1 and token not in special
    ]
    best = max(
        ((s, e) for s in context for e in context if s <= e < s + 30),
        key=lambda se: float(out.start_logits[0, se[0]] + out.end_logits[0, se[1]]),
    )
    result = qa(method="saliency")
    assert isinstance(result, RowsResult) and list(result.rows) == ["start", "end"]
    assert tuple(result.details["span"]) == best
    start_p = out.start_logits[0].softmax(-1)[best[0]]
    assert result.details["start probability"] == pytest.approx(float(start_p), rel=1e-5)
    assert result.rows["start"].output == pytest.approx(float(start_p), rel=1e-5)


@pytest.mark.parametrize("head", ["start", "end"])
def test_a_qa_row_is_input_x_gradient_of_that_positions_probability(qa_model, head):
    qa = E["question_answering"](qa_model, QUESTION, CONTEXT)
    result = qa(method="input_x_gradient", answer="on the mat")
    encoded = qa_model.tokenizer(QUESTION, CONTEXT)
    x, extra = _by_hand(qa_model, encoded["input_ids"], encoded["token_type_ids"])
    out = qa_model.model(inputs_embeds=x, **extra)
    position = result.details["span"][0 if head == "start" else 1]
    getattr(out, f"{head}_logits")[0].softmax(-1)[position].backward()
    expected = (x * x.grad)[0].sum(-1).detach().double().numpy()
    np.testing.assert_allclose(result.rows[head].scores, expected, atol=1e-6)
    tokens = result.rows[head].tokens
    assert "".join(tokens[result.details["span"][0] : result.details["span"][1] + 1]) == "onthemat"
    assert result.details["answer"] == "on the mat"


def test_an_answer_outside_the_context_is_refused_before_the_model_runs(qa_model, monkeypatch):
    from transformers import PreTrainedModel

    qa = E["question_answering"](qa_model, QUESTION, CONTEXT)
    monkeypatch.setattr(PreTrainedModel, "__call__", lambda *a, **k: pytest.fail("model ran"))
    with pytest.raises(ValueError, match="answer must occur in the context"):
        qa(answer="the dog")


# --------------------------------------------------------------------------- token classification


@pytest.fixture(scope="module")
def tagger():
    return load_model("tiny-bert", kind="token_classifier")


def test_token_rows_are_the_labelled_tokens_and_each_is_the_models_own_answer(tagger):
    from transformers import pipeline

    ner = E["token_classification"](tagger, CONTEXT)
    result = ner(method="feature_ablation", ignored_labels=["O"])
    tags = pipeline("token-classification", model=tagger.model, tokenizer=tagger.tokenizer)
    expected = [(t["index"], t["entity"]) for t in tags(CONTEXT)]  # the pipeline drops O
    rows = [(int(row.split()[0]), row.rsplit(": ", 1)[1]) for row in result.rows]
    assert rows == expected and rows
    ids = tagger.tokenizer(CONTEXT)["input_ids"]
    x, _ = _by_hand(tagger, ids)
    special = set(tagger.tokenizer.all_special_ids)
    for (i, label), row in zip(rows, result.rows.values(), strict=True):
        target = tagger.config.label2id[label]
        with torch.no_grad():
            full = float(tagger.model(inputs_embeds=x).logits[0, i].softmax(-1)[target])
            expected = np.zeros(len(ids))
            for s in range(len(ids)):
                if ids[s] in special:
                    continue
                ablated = x.clone()
                ablated[0, s] = 0
                p = tagger.model(inputs_embeds=ablated).logits[0, i].softmax(-1)[target]
                expected[s] = full - float(p)
        np.testing.assert_allclose(row.scores, expected, atol=1e-6)
        assert row.output == pytest.approx(full, rel=1e-5)


def test_a_tokens_deletion_curve_is_refused_and_replacement_works(tagger):
    result = E["token_classification"](tagger, CONTEXT)(method="input_x_gradient")
    row = next(iter(result.rows.values()))
    with pytest.raises(ValueError, match="deletes the token whose label is explained"):
        row.faithfulness()
    assert row.faithfulness("replacement").deletion[0] == pytest.approx(row.output, rel=1e-5)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"ignored_labels": ["PERSON"]}, ValueError, r"must be among the labels \['O'"),
        ({"ignored_labels": "O"}, TypeError, "ignored_labels must be a list of str"),
        ({"ignored_positions": [99]}, ValueError, r"ignored_positions must be in 0\.\."),
        ({"ignored_positions": ["1"]}, TypeError, r"ignored_positions must be an int in 0\.\."),
        ({"n_stepz": 3}, TypeError, r"unknown options \['n_stepz'\]"),
    ],
)
def test_bad_token_classification_options_are_refused_before_the_model_runs(
    tagger, monkeypatch, options, error, message
):
    from transformers import PreTrainedModel

    ner = E["token_classification"](tagger, CONTEXT)
    monkeypatch.setattr(PreTrainedModel, "__call__", lambda *a, **k: pytest.fail("model ran"))
    with pytest.raises(error, match=message):
        ner(**options)


# --------------------------------------------------------------------------- zero-shot


@pytest.fixture(scope="module")
def nli():
    return _tiny_classifier(NLI_LABELS)


def test_zero_shot_label_scores_are_the_pipelines_and_rows_explain_each_entailment(nli):
    from transformers import pipeline

    labels = ["sport", "finance", "cats"]
    explainer = E["zero_shot"](nli, CONTEXT, labels=labels, hypothesis_template="it is {}")
    result = explainer(method="input_x_gradient")
    classify = pipeline("zero-shot-classification", model=nli.model, tokenizer=nli.tokenizer)
    own = classify(CONTEXT, candidate_labels=labels, hypothesis_template="it is {}")
    expected = dict(zip(own["labels"], own["scores"], strict=True))
    for label in labels:
        assert result.details["label scores"][label] == pytest.approx(expected[label], rel=1e-4)
    encoded = nli.tokenizer(CONTEXT, "it is finance")
    x, extra = _by_hand(nli, encoded["input_ids"], encoded["token_type_ids"])
    p = nli.model(inputs_embeds=x, **extra).logits[0].softmax(-1)[NLI_LABELS.index("entailment")]
    p.backward()
    np.testing.assert_allclose(
        result.rows["finance"].scores, (x * x.grad)[0].sum(-1).detach().numpy(), atol=1e-6
    )
    assert result.rows["finance"].output == pytest.approx(float(p.detach()), rel=1e-5)


def test_zero_shot_with_a_sentence_encoder_explains_each_labels_cosine():
    lm = load_model("tiny-bert", kind="encoder")
    labels = ["sport", "cats"]
    result = E["zero_shot"](lm, CONTEXT, labels=labels)(method="input_x_gradient")
    for label in labels:
        hypothesis = f"This example is {label}."
        with torch.no_grad():
            cosine = torch.cosine_similarity(_sentence(lm, CONTEXT), _sentence(lm, hypothesis))
        assert result.details["label scores"][label] == pytest.approx(float(cosine), rel=1e-5)
        same = E["similarity"](lm, CONTEXT, hypothesis)(method="input_x_gradient")
        np.testing.assert_allclose(result.rows[label].scores, same.rows["text_a"].scores, atol=1e-7)
        assert result.rows[label].output_kind == "cosine similarity"
    with pytest.raises(TypeError, match="output is not an option with a sentence encoder"):
        E["zero_shot"](lm, CONTEXT, labels=labels)(output="probability")


@pytest.mark.parametrize(
    ("model", "options", "message"),
    [
        ("classifier", {"labels": ["a"]}, "model must be an NLI classifier with an entailment"),
        ("nli", {"labels": []}, "labels must be a non-empty list"),
        ("nli", {"labels": ["a", "a"]}, "labels must not repeat"),
        ("nli", {"labels": ["a"], "hypothesis_template": "about"}, "must hold exactly one {}"),
        ("nli", {"labels": [" "]}, "labels must contain"),
    ],
)
def test_bad_zero_shot_questions_are_refused(nli, model, options, message):
    lm = nli if model == "nli" else load_model("tiny-bert", kind="classifier")
    with pytest.raises(ValueError, match=message):
        E["zero_shot"](lm, CONTEXT, **options)


# --------------------------------------------------------------------------- similarity


def _sentence(lm, text):
    ids = torch.tensor([lm.tokenizer(text)["input_ids"]])
    return lm.model(input_ids=ids)[0].mean(1)


def test_similarity_is_the_cosine_of_mean_pooled_embeddings_and_its_gradient():
    lm = load_model("tiny-bert", kind="encoder")
    a, b = "the cat sat", "a dog lay on the mat"
    rows = E["similarity"](lm, a, b)(method="input_x_gradient")
    assert list(rows.rows) == ["text_a", "text_b"]
    result = rows.rows["text_a"]
    with torch.no_grad():
        cosine = torch.cosine_similarity(_sentence(lm, a), _sentence(lm, b))
    assert result.output == pytest.approx(float(cosine), rel=1e-5)
    ids_a, ids_b = lm.tokenizer(a)["input_ids"], lm.tokenizer(b)["input_ids"]
    assert result.token_ids == ids_a + ids_b and result.n_encoder == len(ids_a)
    xa, _ = _by_hand(lm, ids_a)
    xb, _ = _by_hand(lm, ids_b)
    pooled = [lm.model(inputs_embeds=x)[0].mean(1) for x in (xa, xb)]
    torch.cosine_similarity(*pooled).sum().backward()
    expected = torch.cat([xa * xa.grad, xb * xb.grad], dim=1)[0].sum(-1).detach().numpy()
    np.testing.assert_allclose(result.scores, expected, atol=1e-6)
    curve = result.faithfulness()  # deletion: tokens removed from either text
    first = result.top(1)[0]
    kept = [i for i in range(len(result.tokens)) if i != first]
    short_a = [result.token_ids[i] for i in kept if i < len(ids_a)]
    short_b = [result.token_ids[i] for i in kept if i >= len(ids_a)]
    with torch.no_grad():
        pooled = [lm.model(input_ids=torch.tensor([ids]))[0].mean(1) for ids in (short_a, short_b)]
    assert curve.deletion[1] == pytest.approx(float(torch.cosine_similarity(*pooled)), rel=1e-5)
    html = rows.to_html()
    assert "text_a" in html and "text_b" in html


def test_each_similarity_row_attributes_one_text_with_the_other_held():
    lm = load_model("tiny-bert", kind="encoder")
    a, b = "the cat sat", "a dog lay on the mat"
    rows = E["similarity"](lm, a, b)(method="integrated_gradients", n_steps=64).rows
    n_a = len(lm.tokenizer(a)["input_ids"])
    ids_b = torch.tensor([lm.tokenizer(b)["input_ids"]])
    special = set(lm.tokenizer.all_special_ids)
    for name, row in rows.items():
        held = slice(n_a, None) if name == "text_a" else slice(0, n_a)
        assert not row.scores[held].any()  # the held text's tokens stay in the baseline
        assert row.scores.sum() == pytest.approx(row.output - row.baseline_output, abs=1e-3)
    ids_a = [t if t in special else 0 for t in lm.tokenizer(a)["input_ids"]]
    with torch.no_grad():  # text_a's baseline: its ordinary tokens' embeddings zeroed
        x = lm.embeddings(torch.tensor([ids_a]))
        x[0, [i for i, t in enumerate(ids_a) if t not in special]] = 0
        empty_a = lm.model(inputs_embeds=x)[0].mean(1)
        cosine = torch.cosine_similarity(empty_a, lm.model(input_ids=ids_b)[0].mean(1))
    assert rows["text_a"].baseline_output == pytest.approx(float(cosine), rel=1e-5)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: E["similarity"]("tiny-gpt2", "a", "b"), ValueError, "model must be one of"),
        (lambda: E["similarity"]("tiny-bert", "a", None), TypeError, "text_b is missing"),
        (lambda: E["similarity"]("tiny-bert", "a", "b")(output="probability"), TypeError,
         "output is not an option of similarity"),
    ],
)  # fmt: skip
def test_bad_similarity_questions_are_refused(build, error, message):
    with pytest.raises(error, match=message):
        build()


# --------------------------------------------------------------------------- multi-label


def test_a_multi_label_classifier_explains_every_label_above_one_half():
    lm = _tiny_classifier(["a", "b", "c", "d"], problem_type="multi_label_classification")
    explainer = E["attributions"](lm, CONTEXT)
    result = explainer(method="input_x_gradient")
    ids = lm.tokenizer(CONTEXT)["input_ids"]
    with torch.no_grad():
        p = lm.model(input_ids=torch.tensor([ids])).logits[0].sigmoid()
    assert list(result.rows) == [label for label, q in zip("abcd", p, strict=True) if q >= 0.5]
    assert result.rows, "the seeded head puts some label above 0.5"
    label = next(iter(result.rows))
    x, _ = _by_hand(lm, ids)
    lm.model(inputs_embeds=x).logits[0].sigmoid()["abcd".index(label)].backward()
    np.testing.assert_allclose(
        result.rows[label].scores, (x * x.grad)[0].sum(-1).detach().numpy(), atol=1e-6
    )
    one = explainer(method="input_x_gradient", target="d")  # a named label: one result
    assert isinstance(one, AttributionResult)
    assert one.output == pytest.approx(float(p[3]), rel=1e-5)  # its sigmoid, not a softmax


def test_question_answering_and_token_models_point_plain_attributions_to_their_explainers():
    for kind, name in [("question_answering", "question_answering"),
                       ("token_classifier", "token_classification")]:  # fmt: skip
        with pytest.raises(ValueError, match=f"lm_layers_explainer\\['{name}'\\]"):
            E["attributions"](load_model("tiny-bert", kind=kind), "a b")


# --------------------------------------------------------------------------- attributed=


@pytest.mark.parametrize("kind", ["position", "token_type"])
def test_attributing_position_or_token_type_embeddings_replaces_that_modules_output(kind):
    lm = load_model("tiny-bert", kind="classifier")
    result = E["attributions"](lm, CONTEXT)(method="input_x_gradient", attributed=kind)
    ids = torch.tensor([lm.tokenizer(CONTEXT)["input_ids"]])
    module = getattr(lm.model.bert.embeddings, f"{kind}_embeddings")
    with torch.no_grad():  # the module's own output on this text
        if kind == "position":
            value = module(torch.arange(ids.shape[1]))[None]
        else:
            value = module(torch.zeros_like(ids))
    value = value.clone().requires_grad_(True)
    handle = module.register_forward_hook(lambda *_: value)
    try:
        out = lm.model(input_ids=ids).logits[0].softmax(-1)[result.target]
    finally:
        handle.remove()
    out.backward()
    expected = (value * value.grad)[0].sum(-1).detach().numpy()
    assert np.abs(expected).max() > 1e-6
    np.testing.assert_allclose(result.scores, expected, atol=1e-7)
    assert f"{kind} embeddings attributed" in result.title()
    assert result.settings["attributed"] == kind
    ig = E["attributions"](lm, CONTEXT)(method="integrated_gradients", attributed=kind)
    assert ig.scores.sum() == pytest.approx(ig.output - ig.baseline_output, abs=1e-4)
    with pytest.raises(ValueError, match="use convention='replacement'"):
        ig.faithfulness()
    assert ig.faithfulness("replacement").deletion[0] == pytest.approx(ig.output, rel=1e-5)


def test_task_explainers_take_attributed_too():
    qa = E["question_answering"](load_model("tiny-bert", kind="question_answering"),
                                 QUESTION, CONTEXT)  # fmt: skip
    word = qa(method="input_x_gradient", answer="on the mat")
    position = qa(method="input_x_gradient", answer="on the mat", attributed="position")
    assert not np.allclose(word.rows["start"].scores, position.rows["start"].scores)
    assert position.rows["end"].output == pytest.approx(word.rows["end"].output)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: E["attributions"]("tiny-bart", "a b")(attributed="position"),
         "needs a learned position embedding in one stack; tiny-bart has none"),
        (lambda: E["attributions"]("tiny-gpt2", "a b")(attributed="token_type"),
         "needs a learned token_type embedding"),
        (lambda: E["attributions"]("tiny-gpt2", "a b")(attributed="pos"),
         "attributed must be one of word, position, token_type"),
        (lambda: E["attributions"]("tiny-gpt2", "a b")(attributed="position", baseline="pad"),
         "takes the zero baseline only"),
        (lambda: E["attributions"]("tiny-gpt2", "a b")(method="deeplift_shap",
                                                       attributed="position"),
         "deeplift_shap draws random tokens"),
        (lambda: E["attributions"]("tiny-gpt2", "a b")(target=" the cat", attributed="position"),
         "a continuation attributes word embeddings only"),
        (lambda: E["similarity"]("tiny-bert", "a", "b")(attributed="position"),
         "a similarity attributes word embeddings only"),
    ],
)  # fmt: skip
def test_bad_attributed_questions_are_refused(build, message, monkeypatch):
    from transformers import PreTrainedModel

    monkeypatch.setattr(PreTrainedModel, "__call__", lambda *a, **k: pytest.fail("model ran"))
    with pytest.raises(ValueError, match=message):
        build()


def test_custom_labels_rename_a_classifiers_and_a_taggers_labels(tagger):
    """transformers-interpret's custom_labels: the same question, under other names."""
    classifier = load_model("tiny-bert", kind="classifier")
    plain = E["attributions"](classifier, "the cat sat")("saliency", target=1)
    renamed = E["attributions"](classifier, "the cat sat", custom_labels=["bad", "good"])
    good = renamed("saliency", target="good")
    assert good.target_text == "good" and plain.target_text == "positive"
    np.testing.assert_array_equal(good.scores, plain.scores)
    with pytest.raises(ValueError, match=r"target must be one of the labels \['bad', 'good'\]"):
        renamed("saliency", target="positive")
    names = ["other", "first", "first-inside", "place", "place-inside"]
    ner = E["token_classification"](tagger, CONTEXT, custom_labels=names)
    result = ner("saliency", ignored_labels=["other"])
    model_names = E["token_classification"](tagger, CONTEXT)("saliency", ignored_labels=["O"])
    mapping = dict(zip(tagger.config.id2label.values(), names, strict=True))
    assert [mapping[label] for label in model_names.details["labels"].values()] == list(
        result.details["labels"].values()
    )
    assert len(result.rows) == len(model_names.rows)


@pytest.mark.parametrize(
    ("model", "custom", "error", "message"),
    [
        ("classifier", ["a"], ValueError, "custom_labels must name each of the model's 2 labels"),
        ("classifier", ["a", "a"], ValueError, r"custom_labels must be distinct; \['a'\]"),
        ("classifier", "ab", TypeError, "custom_labels must be a list of 2 label names"),
        ("classifier", ["a", " "], ValueError, "custom_labels must contain something"),
        ("causal", ["a", "b"], ValueError, "custom_labels renames a classifier's labels"),
    ],
)
def test_bad_custom_labels_are_refused(model, custom, error, message):
    lm = load_model("tiny-bert", kind="classifier") if model == "classifier" else "tiny-gpt2"
    with pytest.raises(error, match=message):
        E["attributions"](lm, "the cat", custom_labels=custom)


# --------------------------------------------------------------------------- issue 27


def test_a_qa_rows_deletion_curve_starts_at_its_output_and_a_deleted_answer_has_p_0(qa_model):
    """The row explains the probability of one position: deleting other tokens moves it
    (the curve reads the same token where it now is); deleting it leaves probability 0."""
    qa = E["question_answering"](qa_model, QUESTION, CONTEXT)
    row = qa("saliency").rows["start"]
    curve = row.faithfulness()
    assert curve.deletion[0] == pytest.approx(row.output, rel=1e-5)
    assert curve.insertion[-1] == pytest.approx(row.output, rel=1e-5)
    start = qa.span()[0]
    gone = curve.order.index(start) + 1  # deletion[k]: the k top tokens deleted
    assert np.all(curve.deletion[gone:] == 0) and np.all(curve.deletion[:gone] > 0)
    assert np.all(curve.insertion[:gone] == 0) and np.all(curve.insertion[gone:] > 0)
    first = curve.order[0] if gone > 1 else curve.order[1]  # a token that is not the answer
    kept = [i for i in range(len(row.tokens)) if i != first]
    types = row.explained.extra["token_type_ids"][0, kept]
    with torch.no_grad():
        out = qa_model.model(input_ids=torch.tensor([row.token_ids])[:, kept],
                             token_type_ids=types[None])  # fmt: skip
    expected = float(out.start_logits[0].softmax(-1)[kept.index(start)])
    assert row.explained.output_with(kept, start, "probability") == pytest.approx(expected)
    logit = qa("saliency", output="logit").rows["end"]
    with pytest.raises(ValueError, match="deletes the position whose logit is explained"):
        logit.faithfulness()


def _same_rows(compared, alone):
    """compare()'s rows hold each method's rows as the call alone gives them."""
    for method, result in alone.items():
        assert list(compared) == list(result.rows)
        for row, expected in result.rows.items():
            np.testing.assert_allclose(compared[row].results[method].scores, expected.scores)
            assert compared[row].results[method].output == expected.output


def test_compare_on_the_task_explainers_gives_each_methods_own_rows(qa_model, tagger, nli):
    qa = E["question_answering"](qa_model, QUESTION, CONTEXT)
    methods = ["saliency", "input_x_gradient"]
    compared = qa.compare(methods, faithfulness=False, answer="the mat")
    _same_rows(compared, {m: qa(m, answer="the mat") for m in methods})
    assert compared["start"].convention is None
    ner = E["token_classification"](tagger, "the cat")
    _same_rows(ner.compare(["saliency"], faithfulness=False, ignored_positions=[1]),
               {"saliency": ner("saliency", ignored_positions=[1])})  # fmt: skip
    zero_shot = E["zero_shot"](nli, "the cat", labels=["a", "b"])
    _same_rows(zero_shot.compare(["saliency"], faithfulness=False),
               {"saliency": zero_shot("saliency")})  # fmt: skip
    similarity = E["similarity"](load_model("tiny-bert"), "a cat", "a dog")
    compared = similarity.compare(["saliency", "deeplift"])
    _same_rows(compared, {"saliency": similarity("saliency")})
    assert set(compared) == {"text_a", "text_b"}  # not the similarity of a "[PAD]" token
    assert compared["text_a"].results["deeplift"].startswith("deeplift cannot explain")
    saliency = compared["text_b"].results["saliency"]
    assert compared["text_b"].convention == "deletion"
    assert saliency.faithfulness().deletion[0] == pytest.approx(saliency.output, rel=1e-5)
    tags = ner.compare(["saliency"])  # a tagger's rows: faithfulness by replacement
    assert {c.convention for c in tags.values()} == {"replacement"}
    logits = qa.compare(["saliency"], output="logit")  # no logit for a deleted answer
    assert logits["end"].convention == "replacement"


def test_ignored_positions_take_numpy_ints(tagger):
    ner = E["token_classification"](tagger, "the cat sat")
    plain = ner("saliency", ignored_positions=[1, 3])
    assert not any(row.startswith(("1 ", "3 ")) for row in plain.rows)
    for positions in (np.array([1, 3]), [np.int64(1), np.int32(3)]):
        assert list(ner("saliency", ignored_positions=positions).rows) == list(plain.rows)
