"""activations, predictions (logit lens) and rankings on the tiny causal, masked, seq2seq models."""

from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from helpers import interrupt_at_pass, restore_forward

from lm_layers_explainer import lm_layers_explainer, load_model
from lm_layers_explainer.lens import LogitLens, ranks_of
from lm_layers_explainer.tasks import encode

TEXTS = {"tiny-gpt2": "The keys to the cabinet", "tiny-bert": "the cat sat on the [MASK] .",
         "tiny-bart": "The cat sat on the mat"}  # fmt: skip
HOSTILE = '<script>alert(1)</script> "><img src=x onerror=alert(1)> {{7*7}}'


def model_distribution(lm, seq, state):
    """The model's own output distribution at a state position, computed without the lens."""
    with torch.no_grad():
        if lm.kind == "seq2seq":
            out = lm.model(
                input_ids=torch.tensor([seq.encoder_ids]), decoder_input_ids=torch.tensor([seq.ids])
            )
        else:
            out = lm.model(input_ids=torch.tensor([seq.ids]))
    return out.logits[0, state].softmax(-1)


# --------------------------------------------------------------------------- logit lens


@pytest.mark.parametrize("name", TEXTS)
def test_last_layer_lens_is_the_models_own_distribution(name):
    lm = load_model(name)
    seq = encode(lm, TEXTS[name])
    lens = LogitLens(seq)
    for state in range(len(seq)):
        last = lens.logits(lm.n_layers - 1, [state])[0].softmax(-1)
        torch.testing.assert_close(last, model_distribution(lm, seq, state), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("name", "position"), [("tiny-gpt2", 5), ("tiny-bert", 6), ("tiny-bart", 1)]
)
def test_predictions_last_layer_top_k_matches_the_model(name, position):
    lm = load_model(name)
    result = lm_layers_explainer["predictions"](lm, TEXTS[name])(position=position, topk=5)
    seq = encode(lm, TEXTS[name])
    state = position if lm.kind == "masked" else position - 1
    top = model_distribution(lm, seq, state).topk(5)
    assert result.layers == list(range(lm.n_layers))
    np.testing.assert_array_equal(result.token_ids[-1], top.indices.numpy())
    np.testing.assert_allclose(result.probabilities[-1], top.values.numpy(), atol=1e-5)


def test_predictions_frame_ranks_are_one_based_and_ordered():
    result = lm_layers_explainer["predictions"]("tiny-gpt2", TEXTS["tiny-gpt2"])(position=3)
    frame = result.to_frame()
    assert list(frame.columns) == ["layer", "rank", "token", "token_id", "probability"]
    assert len(frame) == 2 * 10
    for _, group in frame.groupby("layer"):
        assert group["rank"].tolist() == list(range(1, 11))
        assert (np.diff(group["probability"].to_numpy()) <= 1e-7).all()
    one_layer = lm_layers_explainer["predictions"]("tiny-gpt2", TEXTS["tiny-gpt2"])(
        position=3, layer=1, topk=20
    )
    assert one_layer.layers == [1] and one_layer.token_ids.shape == (1, 20)


def test_position_past_the_text_generates_greedily():
    lm = load_model("tiny-gpt2")
    predictions = lm_layers_explainer["predictions"](lm, "The cat")
    n = len(predictions.tokens)
    result = predictions(position=n + 2, layer=1)
    assert len(result.tokens) == n + 2
    ids = torch.tensor([encode(lm, "The cat").ids])
    expected = lm.model.generate(ids, max_new_tokens=2, do_sample=False, pad_token_id=0)[0]
    assert [lm.tokenizer.decode([int(i)]) for i in expected] == result.tokens
    assert len(predictions.tokens) == n  # the explainer's own text is unchanged


def test_sampling_is_seeded():
    predictions = lm_layers_explainer["predictions"]("tiny-gpt2", "The cat")
    runs = [predictions(position=6, layer=0, do_sample=True, seed=7).tokens for _ in range(2)]
    assert runs[0] == runs[1]


# --------------------------------------------------------------------------- rankings


def test_greedy_produced_tokens_rank_first_at_the_last_layer():
    out = lm_layers_explainer["rankings"]("tiny-gpt2")(TEXTS["tiny-gpt2"], generate=3)
    assert len(out) == out.n_input + 3
    result = out.rankings()
    assert result.positions == [out.n_input, out.n_input + 1, out.n_input + 2]
    assert (result.ranks[-1] == 1).all()
    assert (result.ranks >= 1).all()
    frame = result.to_frame()
    assert list(frame.columns) == ["layer", "position", "token", "token_id", "rank"]


@pytest.mark.parametrize("name", TEXTS)
def test_ranks_agree_with_the_lens_probabilities(name):
    lm = load_model(name)
    out = lm_layers_explainer["rankings"](lm)(TEXTS[name], generate=0 if name == "tiny-bert" else 1)
    position = 2
    predictions = lm_layers_explainer["predictions"](lm, TEXTS[name])
    for layer in range(lm.n_layers):
        best = predictions(position=position, layer=layer, topk=3)
        ids = [int(i) for i in best.token_ids[0]]
        watched = out.rankings_watch(watch=ids, position=position)
        assert watched.ranks[layer].tolist() == [1, 2, 3]


def test_rank_is_one_plus_the_number_of_higher_scores():
    logits = torch.tensor([[0.5, 2.0, -1.0, 2.0, 0.1]])
    assert ranks_of(logits, torch.tensor([[1, 0, 2, 4]])).tolist() == [[1, 3, 5, 4]]
    assert ranks_of(logits, torch.tensor([3])).tolist() == [1]


def test_masked_rankings_cover_every_position_without_generation():
    out = lm_layers_explainer["rankings"]("tiny-bert")(TEXTS["tiny-bert"])
    result = out.rankings()
    assert result.positions == list(range(len(out)))
    assert result.ranks.shape == (2, len(out))


def test_watch_accepts_text_and_ids_alike():
    lm = load_model("tiny-gpt2")
    out = lm_layers_explainer["rankings"](lm)(TEXTS["tiny-gpt2"])
    cabinet_id = lm.tokenizer(" cabinet", add_special_tokens=False)["input_ids"][0]
    by_text = out.rankings_watch(watch=[" cabinet"], position=4)
    by_id = out.rankings_watch(watch=[cabinet_id], position=4)
    assert by_text.ranks.tolist() == by_id.ranks.tolist()
    assert by_text.token_ids == [cabinet_id]


# --------------------------------------------------------------------------- activations


@pytest.mark.parametrize(
    ("name", "neurons"),
    [("tiny-gpt2", 4 * 32), ("tiny-bert", 64), ("tiny-bart", 64)],
)
def test_activations_capture_every_neuron_of_every_layer(name, neurons):
    activations = lm_layers_explainer["activations"](name, TEXTS[name])
    n_tokens = len(activations.tokens)
    assert activations.activations.shape == (2, n_tokens, neurons)
    result = activations(n_components=3)
    assert result.factors.shape == (3, n_tokens)
    assert result.components.shape == (3, 2 * neurons)
    assert (result.factors >= 0).all() and (result.components >= 0).all()


def test_nmf_reconstructs_the_positive_activations():
    activations = lm_layers_explainer["activations"]("tiny-gpt2", TEXTS["tiny-gpt2"])
    result = activations(n_components=4, from_layer=1, to_layer=2)
    data = np.maximum(activations.activations[1], 0)
    approximation = result.factors.T @ result.components
    assert np.linalg.norm(data - approximation) < 0.5 * np.linalg.norm(data)
    assert result.from_layer == 1 and result.to_layer == 2


def test_seq2seq_activations_are_the_encoders_over_the_text():
    activations = lm_layers_explainer["activations"]("tiny-bart", TEXTS["tiny-bart"])
    assert activations.tokens[0] == "<s>" and activations.tokens[-1] == "</s>"
    assert "".join(activations.tokens[1:-1]) == TEXTS["tiny-bart"]


def test_activations_strongest_factor_and_frame():
    result = lm_layers_explainer["activations"]("tiny-gpt2", TEXTS["tiny-gpt2"])(n_components=2)
    assert result.strongest().tolist() == result.factors.argmax(0).tolist()
    frame = result.to_frame()
    assert list(frame.columns) == ["position", "token", "factor", "value"]
    assert len(frame) == 2 * len(result.tokens)


# --------------------------------------------------------------------------- pictures


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _results_for(text):
    lm = load_model("tiny-gpt2")
    out = lm_layers_explainer["rankings"](lm)(text, generate=1)
    return [
        lm_layers_explainer["activations"](lm, text)(n_components=2),
        lm_layers_explainer["predictions"](lm, text)(position=3, topk=3),
        out,
        out.rankings(),
        out.rankings_watch(watch=[" cat"], position=2),
    ]


def test_html_is_self_contained_and_shows_hostile_text_only_as_text():
    for result in _results_for(HOSTILE):
        parser = _Tags()
        parser.feed(result._repr_html_())
        names = [tag for tag, _ in parser.tags]
        assert "script" not in names, type(result).__name__
        for tag, attrs in parser.tags:
            if tag == "img":  # only the inline picture of factor curves
                assert attrs.get("src", "").startswith("data:image/png;base64,")
                assert attrs.get("alt") == "each factor's value along the tokens"
        assert "http://" not in result._repr_html_() and "https://" not in result._repr_html_()


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_every_result_saves_a_static_picture(tmp_path, suffix):
    for index, result in enumerate(_results_for("The cat sat on the mat")):
        path = result.save(tmp_path / f"{index}{suffix}")
        assert path.stat().st_size > 1000


# --------------------------------------------------------------------------- errors


LONG = "word " * 100  # tiny-gpt2 takes 64 positions


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: lm_layers_explainer["predictions"]("tiny-gpt2", "  "), ValueError, "text must"),
        (lambda: lm_layers_explainer["predictions"]("tiny-gpt2", LONG), ValueError, "context of"),
        (lambda: lm_layers_explainer["predictions"]("tiny-gpt2", "The cat")(position=0),
         ValueError, r"position must be in 1\.\.64"),
        (lambda: lm_layers_explainer["predictions"]("tiny-bert", "the cat")(position=4),
         ValueError, r"position must be in 0\.\.3; got 4.*'\[CLS\]'"),
        (lambda: lm_layers_explainer["predictions"]("tiny-gpt2", "The cat")(position=2, layer=2),
         ValueError, r"layer must be in 0\.\.1"),
        (lambda: lm_layers_explainer["predictions"]("tiny-gpt2", "The cat")(position=2, layer=-1),
         ValueError, r"layer must be in 0\.\.1"),
        (lambda: lm_layers_explainer["predictions"]("tiny-gpt2", "The cat")(position=2, topk=0),
         ValueError, r"topk must be in 1\.\.478"),
        (lambda: lm_layers_explainer["predictions"]("tiny-gpt2", "The cat")(position=2, topk=10**6),
         ValueError, "topk"),
        (lambda: lm_layers_explainer["predictions"]("tiny-gpt2", "The cat")(position="2"),
         TypeError, "position must be an int"),
        (lambda: lm_layers_explainer["predictions"](load_model("tiny-bert", kind="encoder"), "a b"),
         ValueError, "language-model head"),
        (lambda: lm_layers_explainer["rankings"]("tiny-bert")("the cat", generate=1),
         ValueError, "generate must be 0 for a masked model"),
        (lambda: lm_layers_explainer["rankings"]("tiny-gpt2")("The cat", generate=-1),
         ValueError, "generate must be >= 0; got -1"),
        (lambda: lm_layers_explainer["rankings"]("tiny-gpt2")(LONG), ValueError, "context"),
        (lambda: lm_layers_explainer["rankings"]("tiny-gpt2")("The cat").rankings_watch(
            watch=["cabinetry drawers"], position=2), ValueError, "not a single token"),
        (lambda: lm_layers_explainer["rankings"]("tiny-gpt2")("The cat").rankings_watch(
            watch=[10**7], position=2), ValueError, r"watch token id must be in 0\.\."),
        (lambda: lm_layers_explainer["rankings"]("tiny-gpt2")("The cat").rankings_watch(
            watch=[], position=2), ValueError, "at least one"),
        (lambda: lm_layers_explainer["rankings"]("tiny-gpt2")("The cat").rankings_watch(
            watch=[" cat"], position=9), ValueError, r"position must be in 1\.\.2"),
        (lambda: lm_layers_explainer["activations"]("tiny-gpt2", "The cat")(n_components=0),
         ValueError, r"n_components must be in 1\.\.2"),
        (lambda: lm_layers_explainer["activations"]("tiny-gpt2", "The cat")(n_components=3),
         ValueError, r"n_components must be in 1\.\.2"),
        (lambda: lm_layers_explainer["activations"]("tiny-gpt2", "The cat")(1, from_layer=2),
         ValueError, r"from_layer must be in 0\.\.1"),
        (lambda: lm_layers_explainer["activations"]("tiny-gpt2", "The cat")(
            n_components=1, from_layer=1, to_layer=1), ValueError, r"to_layer must be in 2\.\.2"),
        (lambda: lm_layers_explainer["activations"]("tiny-gpt2", "")(), ValueError, "text must"),
    ],
)  # fmt: skip
def test_bad_inputs_get_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_errors_come_before_any_model_work(monkeypatch):
    lm = load_model("tiny-gpt2")
    predictions = lm_layers_explainer["predictions"](lm, "The cat")

    def forbidden(*args, **kwargs):
        raise AssertionError("the model ran before the arguments were checked")

    monkeypatch.setattr(lm.model, "forward", forbidden)
    monkeypatch.setattr(lm.model, "generate", forbidden)
    for bad in ({"position": 0}, {"position": 5, "layer": 9}, {"position": 5, "topk": 0}):
        with pytest.raises(ValueError):
            predictions(**bad)
    with pytest.raises(ValueError):
        lm_layers_explainer["rankings"](lm)("The cat", generate=-2)


def test_factors_equal_eccos_nmf_where_ecco_still_runs():
    """Same data, same scikit-learn settings: our factors are ecco's (the workaround works)."""
    from lm_layers_explainer._ecco import ecco_nmf

    activations = lm_layers_explainer["activations"]("tiny-bert", TEXTS["tiny-bert"])
    ours = activations(n_components=3, from_layer=0, to_layer=2, tol=1e-4)  # ecco: sklearn's tol
    theirs = ecco_nmf(activations, n_components=3, from_layer=0, to_layer=2)
    np.testing.assert_allclose(ours.factors, theirs.components, rtol=1e-5, atol=1e-6)


def test_predictions_reuse_one_forward_pass_per_sequence(monkeypatch):
    lm = load_model("tiny-gpt2")
    predictions = lm_layers_explainer["predictions"](lm, "The cat sat")
    calls = []
    original = lm.model.forward
    monkeypatch.setattr(lm.model, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    first = predictions(position=3, layer=0)
    again = predictions(position=3, layer=1, topk=3)
    assert len(calls) == 1  # the same tokens: the lens is reused
    np.testing.assert_array_equal(predictions(position=3, layer=0).token_ids, first.token_ids)
    assert again.layers == [1]
    predictions(position=2, layer=0)  # same tokens, another position: still no new pass
    assert len(calls) == 1


def test_activation_views_keep_the_texts_spacing():
    """WordPiece tokens carry no spaces: the view puts back the ones the text had."""
    bert = lm_layers_explainer["activations"]("tiny-bert", "the cat sat on the mat")(2)
    assert "".join(bert.spaced[1:-1]) == "the cat sat on the mat"
    assert "> cat</span>" in bert.to_html() and "> sat</span>" in bert.to_html()
    gpt2 = lm_layers_explainer["activations"]("tiny-gpt2", "The cat sat")(2)
    assert gpt2.spaced == gpt2.tokens  # byte-level tokens already carry their spaces


def test_long_generation_shows_progress_and_stops_cleanly_on_ctrl_c(monkeypatch):
    from lm_layers_explainer import forward

    lm = load_model("tiny-gpt2")
    predictions = lm_layers_explainer["predictions"](lm, "The cat")
    bars = []
    real_progress = forward.progress

    def recorded(items, **options):
        bars.append(options)
        return real_progress(items, **options)

    monkeypatch.setattr(forward, "progress", recorded)
    calls = interrupt_at_pass(monkeypatch, lm.model, 5)
    with pytest.raises(KeyboardInterrupt):
        predictions(position=40)
    assert len(calls) == 5  # stopped at once, between two tokens
    assert bars == [{"desc": "generating", "show": True}]  # 38 tokens: a progress bar
    restore_forward(monkeypatch, lm.model)
    assert not any(module._forward_hooks for module in lm.model.modules())
    fresh = lm_layers_explainer["predictions"](lm, "The cat")(position=40, layer=1)
    assert predictions(position=40, layer=1).tokens == fresh.tokens
    assert len(fresh.tokens) == 40


def test_pictures_embedded_in_html_fit_the_column_with_legible_text():
    """The figures that results embed in their HTML (factor curves, faithfulness curves, the
    attention views' fallback) show at natural size in the book's column and no text in them
    is smaller than INLINE_FONT."""
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    from lm_layers_explainer.render import INLINE_DPI, INLINE_FONT

    text = "The cat sat on the mat. The dog lay on the rug, and the bird sang."
    factors = lm_layers_explainer["activations"]("tiny-bert", text)(n_components=4)
    attribution = lm_layers_explainer["attributions"]("tiny-gpt2", text)(method="saliency")
    long = " ".join(["the cat sat on the mat"] * 9)  # 54 tokens: labels are thinned
    views = [lm_layers_explainer["attention_head_view"]("tiny-bert")(t) for t in (text, long)]
    figures = [factors.curves_figure(), attribution.faithfulness().figure()]
    figures += [view.figure(layer=1, heads=[0, 1]) for view in views]
    for figure in figures:
        figure.canvas.draw()
        shown = [t for t in figure.findobj(Text) if t.get_text() and t.get_visible()]
        assert shown and min(t.get_fontsize() for t in shown) >= INLINE_FONT
        width = figure.get_tightbbox().width * INLINE_DPI  # inches to pixels
        assert width <= 740, width  # the content column at a 1280 px window
        plt.close(figure)
