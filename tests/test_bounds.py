"""Memory and time bounded up front (issue 27): every explainer counts its passes and
estimates its memory before any work (lm_layers_explainer/memory.py), refuses what does not
fit or takes more than max_passes with the numbers and what to change, and computes the
rest in bounded pieces with a progress bar. The free memory is faked small here, so that
the refusals happen on the tiny models."""

import gc

import numpy as np
import pytest
import torch

from lm_layers_explainer import lm_layers_explainer as E
from lm_layers_explainer import load_model, memory

TEXT = "The cat sat on the mat and the dog"


@pytest.fixture(scope="module")
def gpt2():
    return load_model("tiny-gpt2")


@pytest.fixture
def no_model_runs(monkeypatch):
    """Any forward pass of a transformers model fails the test."""
    from transformers import PreTrainedModel

    def forbidden(self, *args, **kwargs):
        raise AssertionError(f"{type(self).__name__} ran before the estimate was checked")

    monkeypatch.setattr(PreTrainedModel, "__call__", forbidden)


def _free(monkeypatch, n_bytes: float):
    monkeypatch.setattr(memory, "available_bytes", lambda device: int(n_bytes))


class Bars:
    """A stand-in for render.progress that records each bar: its total and its ticks."""

    def __init__(self):
        self.made = []

    def __call__(self, iterable=None, *, desc, total=None, show=True):
        bar = _Bar(iterable, desc, total, show)
        self.made.append(bar)
        return bar


class _Bar:
    def __init__(self, iterable, desc, total, show):
        self.iterable, self.desc, self.show, self.n = iterable, desc, show, 0
        self.total = len(iterable) if total is None and iterable is not None else total

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __iter__(self):
        for item in self.iterable:
            self.n += 1
            yield item

    def update(self, n=1):
        self.n += n


# --------------------------------------------------------------------------- attributions


def test_layer_methods_are_batched_by_the_gradient_estimate(monkeypatch, gpt2):
    explainer = E["attributions"](gpt2, TEXT)
    n = len(explainer.ids)
    per_row = memory.bytes_per_row(gpt2, n, backward=True, kept_layers=gpt2.n_layers)
    assert per_row > memory.bytes_per_row(gpt2, n, backward=True)  # the layers kept count
    _free(monkeypatch, 3.5 * per_row / memory.SHARE)  # 3 rows with gradients, 32 without
    assert memory.rows_that_fit(gpt2, n, backward=False).rows > 3
    result = explainer(method="layer_conductance", target=3, n_steps=4)
    assert result.settings["internal_batch_size"] == 3


class SavedBytes:
    """Counts the bytes autograd keeps for backward (every saved tensor, through
    torch.autograd.graph.saved_tensors_hooks), as they are saved and freed, and the most
    held at once."""

    def __init__(self):
        self.held = self.peak = 0

    def hooks(self):
        counter = self

        class Saved:
            def __init__(self, tensor):
                # detached: the tensor's own grad_fn would make a cycle through the graph
                self.tensor, self.size = tensor.detach(), tensor.untyped_storage().nbytes()
                counter.held += self.size
                counter.peak = max(counter.peak, counter.held)

            def __del__(self):
                counter.held -= self.size

        return torch.autograd.graph.saved_tensors_hooks(Saved, lambda saved: saved.tensor)


@pytest.mark.parametrize(
    "method, options",
    [
        ("layer_conductance", {}),
        ("layer_conductance", {"layer": 1}),
        ("layer_integrated_gradients", {"layer": 1}),
        ("neuron_conductance", {"layer": 1, "neuron": 3}),
        ("integrated_gradients", {}),
    ],
)
def test_a_gradient_method_holds_no_more_memory_after_many_passes_than_after_two(
    gpt2, method, options
):
    """Each pass's graph must be freed before the next: the peak of what autograd holds is
    the same for 2 passes and for 8. (layer_conductance's layer outputs, kept in the graph,
    once kept every earlier layer's activations alive: SmolLM2 at 507 tokens grew past
    23 GB.)"""
    explainer = E["attributions"](gpt2, TEXT)
    peaks = {}
    for n_steps in (2, 8):  # about one pass a step (conductance: one more)
        saved = SavedBytes()
        with saved.hooks():
            explainer(method=method, target=3, n_steps=n_steps, internal_batch_size=1,
                      **options)  # fmt: skip
        peaks[n_steps] = saved.peak
        gc.collect()
        assert saved.held == 0  # nothing of any pass outlives the call
    assert peaks[2] > 0
    assert peaks[8] <= 1.05 * peaks[2], peaks


def test_a_layer_method_that_cannot_fit_is_refused_before_any_model_work(
    monkeypatch, gpt2, no_model_runs
):
    explainer = E["attributions"](gpt2, TEXT)
    n = len(explainer.ids)
    per_row = memory.bytes_per_row(gpt2, n, backward=True, kept_layers=gpt2.n_layers)
    _free(monkeypatch, 0.5 * per_row)
    with pytest.raises(ValueError, match=rf"layer_conductance needs about .* GiB per input on {n} "
                       r"tokens, more than the .* GiB available: shorten the text"):  # fmt: skip
        explainer(method="layer_conductance", target=3)


def test_an_attribution_of_more_than_max_passes_is_refused_before_any_model_work(
    gpt2, no_model_runs
):
    explainer = E["attributions"](gpt2, TEXT)
    n = len(explainer.ids)
    with pytest.raises(
        ValueError,
        match=rf"feature_ablation on {n} tokens \(batches of 1\) "
        rf"takes {n + 1} forward passes, more than max_passes=5 .*: use a "
        r"shorter text or a larger internal_batch_size .*, or raise max_passes",
    ):
        explainer(method="feature_ablation", target=3, internal_batch_size=1, max_passes=5)
    with pytest.raises(ValueError, match=r"max_passes must be >= 1; got 0"):
        explainer(method="saliency", target=3, max_passes=0)
    with pytest.raises(ValueError, match=r"takes 12 forward passes.*use fewer n_steps"):
        explainer(method="integrated_gradients", target=3, n_steps=10, internal_batch_size=1,
                  max_passes=11)  # fmt: skip


# --------------------------------------------------------------------------- rollout


def _rollout_by_the_paper(lm, text, position):
    """Abnar & Zuidema 2020, written out: every layer's attention averaged over its heads,
    the identity added, rows renormalized, the layers multiplied."""
    ids = lm.tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        attentions = lm.model(input_ids=ids, output_attentions=True).attentions
    rolled, rows = np.eye(ids.shape[1]), []
    for layer in attentions:
        a = layer[0].double().mean(0).numpy() + np.eye(ids.shape[1])
        a /= a.sum(-1, keepdims=True)
        rolled = a @ rolled
        rows.append(rolled[position])
    return np.array(rows)


def test_rollout_a_layer_at_a_time_equals_the_paper_formula(monkeypatch, gpt2):
    from lm_layers_explainer import attention_flow

    bars = Bars()
    monkeypatch.setattr(attention_flow, "progress", bars)
    monkeypatch.setattr(attention_flow, "SLOW_WORK", 0)  # every pass counts as long
    explain = E["attention_flow"](gpt2, TEXT)
    for position in (None, 3):
        result = explain(method="rollout", position=position)
        expected = _rollout_by_the_paper(gpt2, TEXT, result.position)
        np.testing.assert_allclose(result.scores, expected, atol=1e-10)
    assert explain._attention is None  # no layers x tokens x tokens array was kept
    layers = gpt2.n_layers
    assert [(bar.total, bar.n, bar.show) for bar in bars.made] == [(layers, layers, True)] * 2


@pytest.mark.parametrize("method", ["raw", "rollout"])
def test_the_rows_kept_of_a_streamed_rollout_hold_no_matrix_alive(method):
    """Each layer keeps one row, its own copy: a view of a row would keep the layer's
    tokens x tokens matrix alive (30 of them at 8,187 tokens ran SmolLM2 out of memory)."""
    import weakref

    from lm_layers_explainer.attention_flow import _Rows

    class NoBar:
        def update(self, n):
            pass

    rows, matrices, generator = _Rows(method, 1, NoBar()), [], torch.Generator().manual_seed(0)
    for _ in range(3):
        mean = torch.softmax(torch.randn(4, 4, dtype=torch.float64, generator=generator), -1)
        matrices.append(weakref.ref(mean))
        rows(len(matrices) - 1, mean)
        del mean
    rows.current = None
    assert all(row.base is None and row.shape == (4,) for row in rows.rows)
    assert all(matrix() is None for matrix in matrices)


def test_rollout_that_cannot_fit_is_refused_with_its_estimate(monkeypatch, gpt2, no_model_runs):
    explain = E["attention_flow"](gpt2, TEXT)
    n = len(explain.sequence.ids)
    needed = memory.rollout_bytes(gpt2, n)
    _free(monkeypatch, needed)  # more than 90 % of what is free
    with pytest.raises(
        ValueError,
        match=rf"attention rollout on {n} tokens .* needs about "
        rf"{needed / 2**30:.2f} GiB, more than the .* available: use a shorter",
    ):
        explain(method="rollout")


# --------------------------------------------------------------------------- patching


def test_patching_of_more_than_max_passes_is_refused_before_any_model_work(
    monkeypatch, gpt2, no_model_runs
):
    patch = E["patching"](gpt2, "The cat sat on the mat", "The dog is in the mat")
    n, layers = len(patch.clean_tokens), gpt2.n_layers
    runs = layers * n + 1
    with pytest.raises(
        ValueError,
        match=rf"patching over='residual' at positions='each' "
        rf"\({runs} runs, batches of 2\) takes {runs // 2 + 2} forward passes, "
        rf"more than max_passes=5 .*: use positions='all' \({layers + 1} runs\)",
    ):
        patch(over="residual", batch_size=2, max_passes=5)
    per_site = n * memory.hidden_size(gpt2) * memory.element_size(gpt2)
    _free(monkeypatch, memory.patching_bytes(gpt2, n, 2, 4) / 0.9 - per_site)
    with pytest.raises(
        ValueError,
        match=r"patching \d+ tokens in batches of 4 .* needs about "
        r".* GiB, .*: use a smaller batch_size \(1 .. 3; None chooses\)",
    ):
        patch(over="mlp", batch_size=4)


def test_patching_counts_its_passes_and_shows_each(monkeypatch, gpt2):
    from lm_layers_explainer.components import patching

    bars = Bars()
    monkeypatch.setattr(patching, "progress", bars)
    patch = E["patching"](gpt2, "The cat sat on the mat", "The dog is in the mat")
    result = patch(" mat", over="mlp", batch_size=3)
    (bar,) = bars.made
    passes = -(-(result.settings["runs"] + 1) // 3) + 1  # the clean run's, then batches of 3
    assert bar.total == bar.n == result.settings["passes"] == passes
    patch(" mat", over="mlp", positions="all")  # the clean run is kept: one pass fewer
    assert bars.made[1].total == bars.made[1].n == 1


# --------------------------------------------------------------------------- similarity


def test_cka_in_chunks_of_rows_equals_cka_of_each_pair(monkeypatch):
    from lm_layers_explainer.representations import measures

    rng = np.random.default_rng(0)
    arrays = rng.normal(size=(4, 50, 6)) * np.array([1, 10, 100, 0.1])[:, None, None] + 3
    arrays[1] = np.tanh(arrays[0] @ rng.normal(size=(6, 6)))
    arrays = arrays.astype(np.float32)  # as the states are kept
    rows = np.array([1, 2, 5, 7, 8, 20, 33, 40, 49])
    monkeypatch.setattr(measures, "CHUNK_BYTES", 8 * 6 * 5 * 3)  # 3 rows a chunk
    for chosen in (None, rows):
        use = arrays if chosen is None else arrays[:, chosen]
        expected = [[measures.cka(x.astype(float), y.astype(float)) for y in use] for x in use]
        got = measures.matrix("cka", arrays, rows=chosen)
        np.testing.assert_allclose(got, expected, rtol=1e-10)
        cross = [[measures.cka(x.astype(float), y.astype(float)) for y in use[:2]] for x in use]
        np.testing.assert_allclose(measures.matrix("cka", arrays, arrays[:2], rows=chosen), cross,
                                   rtol=1e-10)  # fmt: skip


def test_similarity_that_cannot_fit_is_refused_before_any_model_work(
    monkeypatch, gpt2, no_model_runs
):
    texts = ["The cat sat on the mat.", "A dog barked.", "Rain fell all day long."]
    sim = E["representation_similarity"](gpt2, texts)
    _free(monkeypatch, 1000)
    with pytest.raises(ValueError, match=r"cka over \d+ tokens of 3 texts \(.* GiB to compute the "
                       r"states\) needs about .* GiB, more than the 0.00 GiB available: give "
                       r"fewer or shorter texts, or use unit='texts'"):  # fmt: skip
        sim(method="cka")


def test_similarity_shows_progress_over_the_depths(monkeypatch, gpt2):
    from lm_layers_explainer.representations import measures, similarity

    bars = Bars()
    monkeypatch.setattr(measures, "progress", bars)
    monkeypatch.setattr(similarity, "SLOW_WORK", 0)
    texts = ["The cat sat on the mat.", "A dog barked.", "Rain fell all day long."]
    depths = gpt2.n_layers + 1
    E["representation_similarity"](gpt2, texts)(method="cka")
    E["representation_similarity"](gpt2, texts)(method="svcca", unit="texts", dims=1)
    assert [(b.total, b.n, b.show) for b in bars.made] == [
        (depths, depths, True),
        (depths**2, depths**2, True),
    ]


# --------------------------------------------------------------------------- NMF


def test_nmf_iterated_here_is_scikit_learns_nmf():
    from sklearn.decomposition import NMF

    from lm_layers_explainer.activations import nmf

    data = np.maximum(np.random.default_rng(1).normal(size=(20, 60)), 0)
    for tol, max_iter in ((1e-2, 200), (0.0, 10)):
        reference = NMF(4, init="random", random_state=7, max_iter=max_iter, tol=tol)
        w = reference.fit_transform(data)
        bar = _Bar(None, "", max_iter, True)
        ours, components, iterations = nmf(data, 4, 7, max_iter, tol, bar)
        assert iterations == reference.n_iter_ == bar.n
        np.testing.assert_allclose(ours, w, atol=1e-10)
        np.testing.assert_allclose(components, reference.components_, atol=1e-10)


def test_nmf_that_cannot_fit_is_refused_before_any_model_work(monkeypatch, gpt2, no_model_runs):
    activations = E["activations"](gpt2, TEXT)
    _free(monkeypatch, 1000)
    with pytest.raises(ValueError, match=r"NMF of \d+ tokens x \d+ neurons needs about .* GiB, "
                       r"more than .*: use fewer layers \(from_layer, to_layer\)"):  # fmt: skip
        activations(2)


# --------------------------------------------------------------------------- real sizes


@pytest.mark.slow
def test_the_issues_probe_sizes_on_smollm2_fit_in_20_gb_or_are_refused():
    """The estimates only (the model built on the meta device from its config, no pass):
    each size the issue probed either fits in 20 GB or is refused before any work."""
    from types import SimpleNamespace

    from transformers import AutoConfig, AutoModelForCausalLM

    from lm_layers_explainer.catalog import smollm2_folder

    config = AutoConfig.from_pretrained(smollm2_folder(progress=False))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    lm = SimpleNamespace(config=config, model=model, vocab_size=config.vocab_size,
                         unembedding=True, n_layers=30, device=torch.device("cpu"))  # fmt: skip
    gb = 10**9
    # layer conductance at 507 tokens: gradients and the layers kept, 5 rows on 22 GB free
    fit_free = 22 * gb
    per_row = memory.bytes_per_row(lm, 507, backward=True, kept_layers=30)
    rows = int(memory.SHARE * fit_free // per_row)
    assert rows == 5 and rows * per_row < 11 * gb  # 8 rows, before, peaked at 17 GB
    assert memory.rollout_bytes(lm, 8187) < 12 * gb  # rollout at 8,187 tokens runs
    assert memory.patching_bytes(lm, 507, 8, 4) < gb  # 1,903 passes of 8: runs
    assert memory.MAX_PASSES < 30 * 8187 + 2  # 8,187 positions, one a pass: refused
    for texts, tokens in ((500, 64), (64, 2000)):
        rows = min(memory.MAX_ROWS, memory.TOKENS_PER_PASS // tokens)
        needed = memory.states_bytes(lm, 31, tokens, rows, texts, texts * tokens)
        needed += memory.measure_bytes("cka", texts * tokens, [576, 576], 31)
        assert needed < 12 * gb
    assert memory.states_bytes(lm, 31, 20, 32, 100_000, 2_000_000) > 100 * gb  # refused
