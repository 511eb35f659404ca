"""Representations through the layers: pooled states against the model's own hidden states
run one text at a time, projections against scikit-learn's, the similarity measures against
ecco.analysis (Google's reference code) and their invariances, and layer and neuron
attributions against captum's own classes called directly."""

import numpy as np
import pytest
import torch

from lm_layers_explainer import lm_layers_explainer, load_model
from lm_layers_explainer.representations import cca, cka, pwcca, svcca

Embeddings = lm_layers_explainer["embeddings"]
Similarity = lm_layers_explainer["representation_similarity"]
Attributions = lm_layers_explainer["attributions"]

# Different lengths, so that every batch is padded.
TEXTS = [
    "The cat sat on the mat",
    "A dog",
    "Birds sing in the early morning light",
    "the cat",
    "Stocks fell",
    "Bonds rose after the long report today",
]
LABELS = ["animal", "animal", "animal", "animal", "money", "money"]


def own_hidden_states(lm, text):
    """(depths, tokens, hidden): the model's own hidden_states for one text, unpadded."""
    ids = torch.tensor([lm.tokenizer(text)["input_ids"]])
    with torch.no_grad():
        output = lm.model(input_ids=ids, output_hidden_states=True)
    return torch.stack(output.hidden_states)[:, 0].double().numpy()


def pooled(states, pooling):
    return {"mean": states.mean(1), "cls": states[:, 0], "last": states[:, -1]}[pooling]


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-bert"])
@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
def test_pooled_states_are_the_models_own_hidden_states_of_each_text_alone(name, pooling):
    lm = load_model(name)
    explainer = Embeddings(lm, TEXTS, batch_size=4)  # padded batches, lengths sorted
    got = explainer.states.pooled[pooling]  # (depths, texts, hidden)
    expected = np.stack([pooled(own_hidden_states(lm, t), pooling) for t in TEXTS], 1)
    assert got.shape == expected.shape == (lm.n_layers + 1, len(TEXTS), lm.config.hidden_size)
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_pca_coordinates_are_scikit_learns_on_the_pooled_states():
    from sklearn.decomposition import PCA

    lm = load_model("tiny-bert")
    result = Embeddings(lm, TEXTS, labels=LABELS)(layer=1, pooling="cls")
    states = np.stack([own_hidden_states(lm, t)[2, 0] for t in TEXTS])  # layer 1 = depth 2
    expected = PCA(n_components=2).fit_transform(states)
    assert result.depths == ["layer 1"]
    # PCA's axes are defined up to sign
    got = result.coordinates[0] * np.sign(result.coordinates[0][0] * expected[0])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    frame = result.to_frame()
    assert list(frame["text"]) == TEXTS and set(frame["depth"]) == {2}


def test_separation_is_scikit_learns_silhouette_and_a_probe_that_finds_an_obvious_split():
    from sklearn.metrics import silhouette_score

    lm = load_model("tiny-gpt2")
    texts = [f"the cat number {i}" for i in range(6)] + [f"stocks and bonds {i}" for i in range(6)]
    labels = ["cat"] * 6 + ["money"] * 6
    result = Embeddings(lm, texts, labels=labels)()
    states = np.stack([own_hidden_states(lm, t).mean(1) for t in texts], 1)
    expected = [silhouette_score(s, labels) for s in states]
    np.testing.assert_allclose(result.silhouette, expected, atol=1e-4)
    assert result.probe_accuracy[0] == 1.0  # different words: the embeddings alone separate
    frame = result.separation_frame()
    assert list(frame["layer"]) == ["embeddings", "layer 0", "layer 1 + final norm"]


def test_without_usable_labels_there_is_no_separation_and_it_says_why():
    lm = load_model("tiny-gpt2")
    result = Embeddings(lm, TEXTS[:3], labels=["a", "a", "b"])()  # "b" has one member
    assert result.silhouette is None
    with pytest.raises(ValueError, match="separation needs labels"):
        result.separation_frame()


def test_tsne_and_umap_give_every_text_a_point_per_depth():
    explainer = Embeddings("tiny-bert", TEXTS * 2)
    tsne = explainer(projection="tsne", perplexity=3)
    assert tsne.coordinates.shape == (3, 12, 2) and np.isfinite(tsne.coordinates).all()
    pytest.importorskip("umap")
    umap = explainer(layer="embeddings", projection="umap", n_neighbors=4)
    assert umap.coordinates.shape == (1, 12, 2) and np.isfinite(umap.coordinates).all()


def test_the_view_shows_one_panel_per_depth_with_each_text_on_hover():
    result = Embeddings("tiny-gpt2", TEXTS, labels=LABELS)()
    html = result.to_html()
    assert html.count("<figure") == 3
    assert html.count("<circle") == 3 * len(TEXTS)
    assert "<title>animal: The cat sat on the mat</title>" in html


# --------------------------------------------------------------------------- measures


def _arrays(seed=0, n=400, p=24, q=24):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)) @ rng.normal(size=(p, p))
    y = np.tanh(x[:, :q] @ rng.normal(size=(q, q))) + 0.3 * rng.normal(size=(n, q))
    return x, y


def _ecco_analysis():
    import importlib.util

    if importlib.util.find_spec("ecco") is None:  # nox installs it (--no-deps)
        pytest.skip("ecco is not installed")
    from lm_layers_explainer._ecco import import_ecco_output

    import_ecco_output()  # the matplotlib workaround ecco's package import needs
    import ecco.analysis

    return ecco.analysis


@pytest.mark.parametrize("measure", ["cka", "cca", "svcca", "pwcca"])
def test_every_measure_agrees_with_ecco_analysis_on_the_same_arrays(measure):
    analysis = _ecco_analysis()
    ours = {"cka": cka, "cca": cca, "svcca": svcca, "pwcca": pwcca}[measure]
    for seed in range(3):
        x, y = _arrays(seed)
        # ecco takes (neurons, datapoints); we take (datapoints, neurons)
        assert ours(x, y) == pytest.approx(float(getattr(analysis, measure)(x.T, y.T)), abs=1e-8)


def test_pwcca_weighs_by_the_side_with_fewer_neurons_whichever_comes_first():
    analysis = _ecco_analysis()
    x, _ = _arrays(0, p=24)
    _, y = _arrays(1, p=24, q=12)
    # ecco's own branch for a wider first argument is broken (google/svcca PR 9): compare
    # with ecco given the narrower side first, the branch that works.
    reference = float(analysis.pwcca(y.T, x.T))
    assert pwcca(y, x) == pytest.approx(reference, abs=1e-8)
    assert pwcca(x, y) == pytest.approx(reference, abs=1e-8)


def test_cka_is_one_with_itself_and_ignores_rotation_and_scale_but_not_other_maps():
    x, y = _arrays(2)
    rotation, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(24, 24)))
    assert cka(x, x) == pytest.approx(1.0)
    assert cka(x, 3.5 * x @ rotation) == pytest.approx(1.0)
    assert cka(x, y) == pytest.approx(cka(2.0 * x @ rotation, y))
    stretch = np.diag(np.linspace(0.1, 10, 24))  # invertible, not orthogonal
    assert cka(x, x @ stretch) < 0.99
    assert cca(x, x @ stretch) == pytest.approx(1.0, abs=1e-6)  # CCA ignores any such map


def test_the_matrix_of_every_pair_is_each_measure_computed_pair_by_pair():
    from lm_layers_explainer.representations.measures import matrix

    arrays = [_arrays(seed)[0] for seed in range(3)] + [_arrays(5)[1]]
    for measure, one in [("cka", cka), ("cca", cca), ("pwcca", pwcca)]:
        expected = [[one(a, b) for b in arrays] for a in arrays]
        np.testing.assert_allclose(matrix(measure, arrays), expected, atol=1e-10)
    expected = [[svcca(a, b, dims=5) for b in arrays[:2]] for a in arrays]
    np.testing.assert_allclose(matrix("svcca", arrays, arrays[:2], dims=5), expected, atol=1e-10)


# --------------------------------------------------------------------------- similarity


def test_the_similarity_matrix_is_cka_of_the_models_own_token_states():
    lm = load_model("tiny-bert")
    result = Similarity(lm, TEXTS)(method="cka")
    tokens = np.concatenate([own_hidden_states(lm, t) for t in TEXTS], 1)
    expected = np.array([[cka(a, b) for b in tokens] for a in tokens])
    np.testing.assert_allclose(result.matrix, expected, atol=1e-6)
    np.testing.assert_allclose(np.diag(result.matrix), 1.0, atol=1e-9)
    assert result.n_datapoints == tokens.shape[1]
    assert result.neighbours().shape == (lm.n_layers,)
    # without each text's first token ([CLS] here)
    dropped = Similarity(lm, TEXTS)(method="cka", drop_first_token=True)
    rest = np.concatenate([own_hidden_states(lm, t)[:, 1:] for t in TEXTS], 1)
    assert dropped.n_datapoints == rest.shape[1]
    assert dropped.matrix[0, 2] == pytest.approx(cka(rest[0], rest[2]), abs=1e-6)


def test_two_models_compare_by_pooled_texts_and_tokens_need_the_same_tokenizer():
    gpt2, bert = load_model("tiny-gpt2"), load_model("tiny-bert")
    with pytest.raises(ValueError, match="tokenize the texts differently: use unit='texts'"):
        Similarity(gpt2, TEXTS, other=bert)(unit="tokens")
    result = Similarity(gpt2, TEXTS, other=bert)(method="svcca", unit="texts", dims=3)
    a = np.stack([own_hidden_states(gpt2, t).mean(1) for t in TEXTS], 1)
    b = np.stack([own_hidden_states(bert, t).mean(1) for t in TEXTS], 1)
    assert result.matrix.shape == (3, 3)
    assert result.matrix[1, 2] == pytest.approx(svcca(a[1], b[2], dims=3), abs=1e-6)


@pytest.mark.parametrize(("method", "options"), [("cka", {}), ("svcca", {"dims": 3})])
def test_a_depth_whose_datapoints_are_all_the_same_is_nan_and_the_others_are_measured(
    method, options
):
    """BERT's [CLS] embedding is the same for every text: with pooling="cls" the
    embeddings depth has no variance, so no similarity (NaN, not a number from noise)."""
    import warnings

    lm = load_model("tiny-bert")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no "invalid value" from 0 / 0
        result = Similarity(lm, TEXTS)(method=method, unit="texts", pooling="cls", **options)
    assert np.isnan(result.matrix[0]).all() and np.isnan(result.matrix[:, 0]).all()
    assert np.isfinite(result.matrix[1:, 1:]).all()
    if method == "cka":
        states = np.stack([own_hidden_states(lm, t)[:, 0] for t in TEXTS], 1)
        assert result.matrix[1, 2] == pytest.approx(cka(states[1], states[2]), abs=1e-6)


# --------------------------------------------------------------------------- layers

TEXT = "The cat sat on the"


def _question(explainer, result):
    explained = explainer.explained
    x = explained.embeddings()
    return explained.f(result.target, "probability"), x, explained.baseline(x, "zero")


def test_layer_conductance_of_every_layer_from_shared_passes_is_captums_per_layer():
    from captum.attr import LayerConductance

    explainer = Attributions("tiny-gpt2", TEXT)
    result = explainer(method="layer_conductance", n_steps=32, internal_batch_size=5)
    f, x, baseline = _question(explainer, result)
    for k, layer in enumerate(explainer.lm.layers):
        reference, delta = LayerConductance(f, layer).attribute(
            x, baselines=baseline, n_steps=32, return_convergence_delta=True
        )
        np.testing.assert_allclose(result.scores[k], reference[0].sum(-1).detach(), atol=1e-9)
        assert result.deltas[k] == pytest.approx(float(delta), abs=1e-9)


def test_each_layers_conductance_sums_to_the_output_difference_within_the_delta():
    explainer = Attributions("tiny-gpt2", TEXT)
    result = explainer(method="layer_conductance", n_steps=128)
    with torch.no_grad():  # f(x) and f(x') from the model itself
        ids = torch.tensor([explainer.ids])
        p = explainer.lm.model(input_ids=ids).logits[0, -1].softmax(-1)[result.target]
        zeros = torch.zeros(1, len(explainer.ids), explainer.lm.config.n_embd)
        p0 = explainer.lm.model(inputs_embeds=zeros).logits[0, -1].softmax(-1)[result.target]
    difference = float(p - p0)
    for total, delta in zip(result.totals, result.deltas, strict=True):
        assert abs(total - difference) == pytest.approx(abs(delta), abs=1e-9)
        assert abs(delta) < 0.02 * abs(difference)


def test_layer_gradient_x_activation_and_integrated_gradients_are_captums():
    from captum.attr import LayerGradientXActivation, LayerIntegratedGradients

    explainer = Attributions("tiny-bert", "the cat [MASK] on the mat")
    gxa = explainer(method="layer_gradient_x_activation")
    lig = explainer(method="layer_integrated_gradients", layer=1, n_steps=16)
    f, x, baseline = _question(explainer, gxa)
    for k, layer in enumerate(explainer.lm.layers):
        reference = LayerGradientXActivation(f, layer).attribute(x)
        np.testing.assert_allclose(gxa.scores[k], reference[0].sum(-1).detach(), atol=1e-9)
    reference = LayerIntegratedGradients(f, explainer.lm.layers[1]).attribute(
        x, baselines=baseline, n_steps=16
    )
    assert lig.rows == ["layer 1"]
    np.testing.assert_allclose(lig.scores[0], reference[0].sum(-1).detach(), atol=1e-9)


def test_a_neurons_conductance_is_captums_and_sums_to_that_neurons_layer_conductance():
    from captum.attr import LayerConductance, NeuronConductance

    explainer = Attributions("tiny-gpt2", TEXT)
    result = explainer(method="neuron_conductance", layer=1, neuron=17, n_steps=128,
                       output="logit")  # fmt: skip
    explained = explainer.explained
    x = explained.embeddings()
    f, baseline = explained.f(result.target, "logit"), explained.baseline(x, "zero")
    down = explainer.lm.family.find_feed_forward(explainer.lm.layers[1])
    position = len(explainer.ids) - 1  # where the next token is read
    reference = NeuronConductance(f, down).attribute(
        x, neuron_selector=(position, 17), baselines=baseline, n_steps=128,
        attribute_to_neuron_input=True,
    )  # fmt: skip
    np.testing.assert_allclose(result.scores[0], reference[0].sum(-1).detach(), atol=1e-10)
    # Summed over the input tokens, it is the neuron's own conductance (two quadratures of
    # one integral: they agree as the steps grow)
    layer = LayerConductance(f, down).attribute(
        x, baselines=baseline, n_steps=128, attribute_to_layer_input=True
    )
    assert result.totals[0] == pytest.approx(float(layer[0, position, 17].detach()), rel=0.02)
    assert result.rows == [f"layer 1 neuron 17 at {position}"]


def test_layer_results_show_every_row_and_come_back_from_json(tmp_path):
    from lm_layers_explainer.saving import load_result

    result = Attributions("tiny-gpt2", TEXT)(method="layer_gradient_x_activation")
    frame = result.to_frame()
    assert len(frame) == 2 * len(result.tokens)
    assert result.to_html().count("<tr>") == 1 + 2
    back = load_result(result.save(tmp_path / "layers.json"))
    np.testing.assert_array_equal(back.scores, result.scores)


def test_a_wide_similarity_matrix_shows_as_its_picture_and_a_small_one_as_a_table():
    from lm_layers_explainer.representations import SimilarityResult

    def result(n):
        names = ["embeddings"] + [f"layer {i}" for i in range(n - 1)]
        return SimilarityResult("m", "m", names, names, np.eye(n), "cka", "tokens", 50)

    small, wide = result(7).to_html(), result(31).to_html()
    assert "<table" in small and "<img" not in small
    assert "<img" in wide and "<table" not in wide


def test_a_multi_label_classifiers_layer_rows_sum_to_its_sigmoid_not_a_softmax():
    import copy

    base = load_model("tiny-bert", kind="classifier")
    model = copy.deepcopy(base.model)
    model.config.problem_type = "multi_label_classification"
    lm = load_model((model, base.tokenizer))
    result = Attributions(lm, "the cat sat")(method="layer_conductance", target=0, n_steps=64)
    with torch.no_grad():
        logits = model(**base.tokenizer("the cat sat", return_tensors="pt")).logits[0]
    assert result.output == pytest.approx(float(logits.sigmoid()[0]), abs=1e-6)
    for total, delta in zip(result.totals, result.deltas, strict=True):
        assert total - delta == pytest.approx(result.output - result.baseline_output, abs=1e-9)
        assert abs(delta) < 0.05 * abs(result.output - result.baseline_output) + 1e-4
