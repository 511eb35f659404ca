"""Attention views on the tiny causal, encoder and seq2seq models."""

import html
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from helpers import tiny

from lm_layers_explainer import lm_layers_explainer, load_model

HOSTILE = '<script>alert(1)</script> "><img src=x onerror=alert(1)> {{7*7}}'


def _document(view_html):
    """The HTML document inside the view's iframe."""
    (srcdoc,) = re.findall(r'srcdoc="([^"]*)"', view_html)
    return html.unescape(srcdoc)


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.elements = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))


def _elements(document):
    parser = _Elements()
    parser.feed(document)
    return parser.elements


@pytest.mark.parametrize(
    ("name", "kinds"),
    [
        ("tiny-gpt2", {"self"}),
        ("tiny-bert", {"self"}),
        ("tiny-bart", {"encoder", "decoder", "cross"}),
    ],
)
@pytest.mark.parametrize("entry", ["attention_head_view", "attention_model_view"])
def test_views_return_real_attentions_whose_rows_sum_to_one(name, kinds, entry):
    view = lm_layers_explainer[entry](name)("The cat sat on the mat", "The cat lay on the rug")
    assert set(view.attentions) == kinds
    lm = load_model(name)
    for weights in view.attentions.values():
        assert weights.shape[:2] == (2, 2)  # tiny models: 2 layers, 2 heads
        np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    if name == "tiny-bart":
        assert view.attentions["cross"].shape[-2:] == (len(view.tokens), len(view.encoder_tokens))
    else:
        assert (
            view.attentions["self"].shape[-1]
            == len(view.tokens)
            == len(set(range(len(view.tokens))))
        )
    assert lm.model.config._attn_implementation == "eager"


def test_causal_attention_never_looks_ahead():
    weights = lm_layers_explainer["attention_head_view"]("tiny-gpt2")("The cat sat on the mat")
    upper = np.triu(np.ones(weights.attentions["self"].shape[-2:]), k=1).astype(bool)
    assert (weights.attentions["self"][..., upper] == 0).all()


def test_pair_marks_where_the_second_sentence_starts():
    view = lm_layers_explainer["attention_head_view"]("tiny-bert")("the cat sat", "the dog lay")
    assert view.tokens[view.sentence_b_start - 1] == "[SEP]"
    assert view.tokens[view.sentence_b_start] == "the"


def test_html_loads_nothing_from_the_network_and_carries_its_libraries():
    view = lm_layers_explainer["attention_head_view"]("tiny-bert")("the cat sat on the mat")
    document = _document(view.html)
    for tag, attrs in _elements(view.html) + _elements(document):
        for attribute in ("src", "href"):
            value = attrs.get(attribute) or ""
            assert not value.startswith(("http://", "https://", "//")), (tag, value)
    scripts = [attrs for tag, attrs in _elements(document) if tag == "script"]
    # jQuery, d3, the require shim, bertviz's view, the fitting of the drawing to the frame
    assert len(scripts) == 5 and not any("src" in attrs for attrs in scripts)
    assert "d3js.org v5" in document and "jQuery" in document


def test_hostile_text_cannot_leave_its_script_or_attribute():
    view = lm_layers_explainer["attention_head_view"]("tiny-gpt2")(HOSTILE)
    outer = _elements(view.html)
    assert [tag for tag, _ in outer] == ["iframe", "script"]  # the frame and its resizer
    document = _document(view.html)
    tags = [tag for tag, _ in _elements(document)]
    assert "img" not in tags and tags.count("script") == 5
    assert "<script>alert" not in document  # the tokens' "</" is written "<\/" in JSON


def test_static_heatmaps_of_one_layer(tmp_path):
    view = lm_layers_explainer["attention_model_view"]("tiny-bart")("The cat sat", "The cat")
    for kind in ("encoder", "decoder", "cross"):
        path = view.save(tmp_path / f"{kind}.png", layer=1, heads=[0], kind=kind)
        assert path.read_bytes().startswith(b"\x89PNG")
    assert view.save(tmp_path / "view.html").read_text().startswith("<iframe")
    frame = view.to_frame("cross")
    assert set(frame["kind"]) == {"cross"}
    assert len(frame) == 2 * 2 * len(view.tokens) * len(view.encoder_tokens)
    row = frame.iloc[-1]
    assert row["weight"] == view.attentions["cross"][1, 1, -1, -1]


def test_long_inputs_warn_and_suggest_include_layers(monkeypatch):
    from lm_layers_explainer import attention

    monkeypatch.setattr(attention, "LONG_INPUT", 10)  # tiny-bert's context is only 64
    with pytest.warns(UserWarning, match="include_layers"):
        lm_layers_explainer["attention_head_view"]("tiny-bert")(" ".join(["cat"] * 12))


def test_a_model_without_attention_weights_is_refused(monkeypatch):
    lm = load_model("tiny-bert", kind="encoder")
    view = lm_layers_explainer["attention_head_view"](lm)
    original = lm.model.forward

    def no_attentions(*args, **kwargs):
        out = original(*args, **kwargs)
        out.attentions = None
        return out

    monkeypatch.setattr(lm.model, "forward", no_attentions)
    with pytest.raises(ValueError, match="returned no attention weights"):
        view("the cat sat")


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda v: v("  "), ValueError, "sentence_a must contain"),
        (lambda v: v("the cat", layer=2), ValueError, r"layer must be in 0\.\.1"),
        (lambda v: v("the cat", heads=[5]), ValueError, r"heads must be in 0\.\.1"),
        (lambda v: v("the cat", include_layers=[]), ValueError, "at least one"),
        (lambda v: v("the cat", include_layers=[0], layer=1), ValueError, "one of include_layers"),
        (lambda v: v("the cat", layer="0"), TypeError, "layer must be an int"),
    ],
)
def test_head_view_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call(lm_layers_explainer["attention_head_view"]("tiny-bert"))


def test_seq2seq_needs_the_decoder_text_and_model_view_checks_its_options():
    with pytest.raises(ValueError, match="sentence_b is required for a seq2seq model"):
        lm_layers_explainer["attention_head_view"]("tiny-bart")("The cat sat")
    model_view = lm_layers_explainer["attention_model_view"]("tiny-bert")
    with pytest.raises(ValueError, match="display_mode must be"):
        model_view("the cat", display_mode="blue")
    with pytest.raises(ValueError, match=r"include_heads must be in 0\.\.1"):
        model_view("the cat", include_heads=[3])


def test_errors_come_before_the_model_runs(monkeypatch):
    lm = load_model("tiny-gpt2")
    view = lm_layers_explainer["attention_head_view"](lm)
    monkeypatch.setattr(lm.model, "forward", lambda *a, **k: pytest.fail("model ran"))
    with pytest.raises(ValueError):
        view("The cat", layer=7)
    with pytest.raises(ValueError):
        view("The cat", heads=[9])


# --------------------------------------------------------------------------- neuron view


@pytest.mark.parametrize("name", ["tiny-bert", "roberta", "tiny-gpt2", "llama"])
def test_neuron_view_queries_and_keys_reproduce_the_attention(name):
    """softmax(q k^T / sqrt(d) + mask) is the attention the model used, head by head."""
    model = tiny(name) if name in ("llama", "roberta") else name
    view = lm_layers_explainer["attention_neuron_view"](model)("the cat sat on the mat")
    queries, keys, weights = view.queries, view.keys, view.attentions["self"]
    assert queries.shape[:3] == weights.shape[:3] and keys.shape == queries.shape
    scores = queries @ keys.transpose(0, 1, 3, 2) / np.sqrt(queries.shape[-1])
    if name in ("tiny-gpt2", "llama"):  # causal: no looking ahead
        n = scores.shape[-1]
        scores = np.where(np.triu(np.ones((n, n)), 1).astype(bool), -np.inf, scores)
    expected = np.exp(scores - scores.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(weights, expected, atol=1e-5)


def test_neuron_view_pairs_and_draws_offline():
    view = lm_layers_explainer["attention_neuron_view"]("tiny-bert")("the cat sat", "the dog lay")
    assert view.tokens[0] == "[CLS]" and view.tokens.count("[SEP]") == 2
    document = _document(view.html)
    scripts = [attrs for tag, attrs in _elements(document) if tag == "script"]
    assert len(scripts) == 6 and not any("src" in attrs for attrs in scripts)  # + its params
    assert "window.bertviz_params" in document


def test_neuron_view_refuses_unknown_families_and_bad_options():
    with pytest.raises(ValueError, match="family the neuron view knows"):
        lm_layers_explainer["attention_neuron_view"]("tiny-bart")
    neuron_view = lm_layers_explainer["attention_neuron_view"]("tiny-gpt2")
    with pytest.raises(ValueError, match=r"head must be in 0\.\.1"):
        neuron_view("The cat", head=2)
    with pytest.raises(ValueError, match=r"layer must be in 0\.\.1"):
        neuron_view("The cat", layer=5)
    with pytest.raises(ValueError, match="display_mode"):
        neuron_view("The cat", display_mode="sepia")


def test_neuron_view_hostile_text_stays_text():
    view = lm_layers_explainer["attention_neuron_view"]("tiny-gpt2")(HOSTILE)
    document = _document(view.html)
    tags = [tag for tag, _ in _elements(document)]
    assert "img" not in tags and tags.count("script") == 6  # with the view's parameters


def test_without_scripts_the_view_shows_the_heatmaps_of_the_layer_it_opens_on():
    import base64
    import io

    from PIL import Image

    view = lm_layers_explainer["attention_neuron_view"]("tiny-bert")("The cat sat", layer=1)
    page = view.to_html()
    assert page.startswith(view.html)  # the interactive view first, the fallback after it
    fallback = page[len(view.html) :]
    assert fallback.startswith("<noscript><img") and fallback.endswith("</noscript>")
    picture = base64.b64decode(re.search(r"base64,([A-Za-z0-9+/=]+)", fallback)[1])
    width, height = Image.open(io.BytesIO(picture)).size
    assert width > 100 and height > 100
    assert (view.layer, view.heads) == (1, [0])
