"""Safe from threads: loads from several threads give working models, and calls from several
threads on one explainer (or on explainers sharing one model) give the serial results."""

import threading

import numpy as np
import pandas as pd
import pytest
import torch

from lm_layers_explainer import clear_model_cache, lm_layers_explainer, load_model, tiny_models
from lm_layers_explainer.locks import holding

E = lm_layers_explainer
TEXT = "The cat sat on the"
THREADS = 4


def in_threads(calls):
    """Run each call in its own thread, all started together; their results, in order (an
    exception raised in a thread is re-raised here)."""
    results, errors = [None] * len(calls), []
    start = threading.Barrier(len(calls))

    def run(index, call):
        start.wait()
        try:
            results[index] = call()
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def next_token(lm) -> str:
    ids = lm.tokenizer(TEXT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return lm.tokenizer.decode(lm.model(ids).logits[0, -1].argmax())


def test_three_threads_loading_one_checkpoint_get_working_models(tmp_path):
    tiny = load_model("tiny-gpt2")
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    expected = next_token(tiny)
    serial = load_model(str(tmp_path)).model.state_dict()
    clear_model_cache()
    # three loads that share nothing (each its own options), so each really loads
    options = [{}, {"kind": "causal"}, {"torch_dtype": "float32"}]
    loaded = in_threads([lambda o=o: load_model(str(tmp_path), **o) for o in options])
    assert len({id(lm.model) for lm in loaded}) == 3
    for lm in loaded:
        assert not [n for n, p in lm.model.named_parameters() if p.device.type == "meta"]
        for name, tensor in lm.model.state_dict().items():
            assert torch.equal(tensor, serial[name]), name
        assert next_token(lm) == expected


def test_tiny_models_built_in_parallel_get_the_same_weights():
    def build():
        return tiny_models.gpt2("causal")[0].state_dict()

    serial = build()
    for built in in_threads([build] * 3):
        assert all(torch.equal(built[name], serial[name]) for name in serial)


def test_loads_from_threads_return_the_one_model_loaded_once():
    clear_model_cache()
    loaded = in_threads([lambda: load_model("tiny-gpt2")] * 3)
    assert len({id(lm) for lm in loaded}) == 1


# (name, explainer built on the tiny GPT-2 with TEXT, a call on it)
CALLS = [
    ("deeplift", "attributions", lambda e: e(method="deeplift")),
    ("deeplift_shap", "attributions", lambda e: e(method="deeplift_shap")),
    ("lime", "attributions", lambda e: e(method="lime", n_samples=20)),
    ("kernel_shap", "attributions", lambda e: e(method="kernel_shap", n_samples=20)),
    ("shapley_value_sampling", "attributions",
     lambda e: e(method="shapley_value_sampling", n_samples=3)),
    ("layer_conductance", "attributions", lambda e: e(method="layer_conductance", layer=1)),
    ("neuron_conductance", "attributions",
     lambda e: e(method="neuron_conductance", layer=1, neuron=3)),
    ("position", "attributions", lambda e: e(method="input_x_gradient", attributed="position")),
    ("compare", "attributions", lambda e: e.compare(["saliency", "lime"], n_samples=10)),
    ("logit_attribution", "logit_attribution", lambda e: e()),
    ("patching", "patching", lambda e: e()),
    ("sampled generation", "predictions", lambda e: e(position=9, topk=3, do_sample=True)),
]  # fmt: skip


def build(entry_point, lm):
    if entry_point == "patching":
        return E["patching"](lm, TEXT, TEXT.replace("cat", "dog"))
    return E[entry_point](lm, TEXT)


def frame(result) -> pd.DataFrame:
    """The result's table, run times left out (they differ from run to run)."""
    table = result.to_frame()
    return table.drop(columns=[c for c in table.columns if "seconds" in str(c)])


@pytest.mark.parametrize(("name", "entry_point", "call"), CALLS, ids=[c[0] for c in CALLS])
def test_threads_calling_one_explainer_get_the_serial_result(name, entry_point, call):
    lm = load_model("tiny-gpt2")
    serial = frame(call(build(entry_point, lm)))
    explainer = build(entry_point, lm)
    for result in in_threads([lambda: call(explainer)] * THREADS):
        pd.testing.assert_frame_equal(frame(result), serial, check_exact=True)


def test_different_calls_at_once_on_explainers_sharing_one_model_get_the_serial_results():
    lm = load_model("tiny-gpt2")
    picked = [CALLS[0], CALLS[2], CALLS[5], CALLS[9], CALLS[10], CALLS[11]]
    serial = [frame(call(build(entry_point, lm))) for _, entry_point, call in picked]
    explainers = [build(entry_point, lm) for _, entry_point, _ in picked]
    pairs = zip(picked, explainers, strict=True)
    results = in_threads([lambda c=call, e=explainer: c(e) for (_, _, call), explainer in pairs])
    for result, expected in zip(results, serial, strict=True):
        pd.testing.assert_frame_equal(frame(result), expected, check_exact=True)
    # nothing is left hooked on the model
    modules = [lm.model, *lm.model.modules()]
    assert not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in modules)


def test_a_call_waits_for_the_models_lock_and_the_callers_random_state_is_untouched():
    lm = load_model("tiny-gpt2")
    explainer = E["attributions"](lm, TEXT)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    done = threading.Event()
    with holding(lm):  # another call on this model is running
        waiting = threading.Thread(target=lambda: (explainer(method="lime", n_samples=5),
                                                   done.set()))  # fmt: skip
        waiting.start()
        waiting.join(timeout=2)
        assert not done.is_set()
    waiting.join()
    assert done.is_set()
    assert torch.equal(torch.random.get_rng_state(), before)
    assert np.isfinite(frame(explainer(method="lime", n_samples=5)).select_dtypes("number")).all(
        axis=None
    )


def test_threads_reading_ranks_of_one_generated_text_get_the_serial_result():
    output = E["rankings"](load_model("tiny-gpt2"))(TEXT, generate=2)
    serial = frame(output.rankings_watch(watch=[" cat", " the"], position=6))
    results = in_threads(
        [lambda: output.rankings_watch(watch=[" cat", " the"], position=6)] * THREADS
    )
    for result in results:
        pd.testing.assert_frame_equal(frame(result), serial, check_exact=True)


def test_two_similarity_explainers_crossing_two_models_neither_deadlock_nor_interfere():
    gpt2, bert = load_model("tiny-gpt2"), load_model("tiny-bert")
    texts = ["a cat sat", "a dog ran", "a bird flew"]
    one = E["representation_similarity"](gpt2, texts, other=bert)
    two = E["representation_similarity"](bert, texts, other=gpt2)
    serial = [one(unit="texts").matrix, two(unit="texts").matrix]
    done = in_threads([lambda: one(unit="texts").matrix, lambda: two(unit="texts").matrix] * 2)
    for matrix, expected in zip(done, serial * 2, strict=True):
        np.testing.assert_array_equal(matrix, expected)
