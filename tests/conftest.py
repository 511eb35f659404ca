import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
# nbval compares each page's outputs with its reference through tools/compare_outputs.py.
from nbval_tolerance import pytest_collection_modifyitems  # noqa: E402, F401

# No silent network: every test runs as if the Hub were unreachable.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _fresh_model_cache():
    """Each test sees load_model's reuse cache empty, so tests cannot leak models."""
    from lm_layers_explainer import clear_model_cache

    clear_model_cache()
    yield
    clear_model_cache()


HOSTILE_TEXTS = [
    "<script>alert(1)</script> the cat",
    '"><img src=x onerror=alert(1)> the cat',
    "{{7*7}} the cat",
]
"""Texts that must only ever appear as text in every explainer's HTML."""


def every_explainer_result(text: str) -> dict:
    """One result of every entry point for ``text``, on the tiny models: name -> result."""
    from lm_layers_explainer import lm_layers_explainer, load_model

    explain = lm_layers_explainer
    gpt2, bert = load_model("tiny-gpt2"), load_model("tiny-bert")
    rankings = explain["rankings"](gpt2)(text, generate=1)
    nli = _nli_classifier()
    return {
        "tokens": explain["tokens"](gpt2)(text),
        "activations": explain["activations"](gpt2, text)(n_components=2),
        "predictions": explain["predictions"](gpt2, text)(position=2, topk=3),
        "rankings": rankings.rankings(),
        "rankings_watch": rankings.rankings_watch(watch=[" cat"], position=2),
        "attention_head_view": explain["attention_head_view"](gpt2)(text),
        "attention_model_view": explain["attention_model_view"](bert)(text, "a dog"),
        "attention_neuron_view": explain["attention_neuron_view"](gpt2)(text),
        "attributions": explain["attributions"](gpt2, text)(method="feature_ablation"),
        "attributions_compare": explain["attributions"](gpt2, text).compare(
            ["saliency", "lime"], n_samples=5
        ),
        "attributions_continuation": explain["attributions"](gpt2, text)(
            method="feature_ablation", target=" " + text
        ),
        "attributions_contrast_continuation": explain["attributions"](gpt2, text)(
            method="input_x_gradient", target=" " + text, foil=" " + text.replace("cat", "dog")
        ),  # every text here has a "cat"; the foil's tokens appear in the view
        "question_answering": explain["question_answering"](
            load_model("tiny-bert", kind="question_answering"), "where", text
        )(method="saliency"),
        "token_classification": explain["token_classification"](
            load_model("tiny-bert", kind="token_classifier"), text
        )(method="saliency"),
        "zero_shot": explain["zero_shot"](nli, text, labels=["<i>cat</i>", "dog"])(
            method="saliency"
        ),
        "similarity": explain["similarity"](bert, text, "a dog")(method="saliency"),
        "image_classification": explain["image_classification"](
            _labelled_vit([text, "dog", "bird"]), _picture()
        )(method="saliency", target=text),
        "attributions_layers": explain["attributions"](gpt2, text)(
            method="layer_gradient_x_activation"
        ),
        "embeddings": explain["embeddings"](
            gpt2, [text, "a dog", "the cat", text + " again"], labels=[text, "b", text, "b"]
        )(),
        "representation_similarity": explain["representation_similarity"](
            bert, [text, "a dog", "the cat"], other=gpt2
        )(unit="texts"),
        "logit_attribution": explain["logit_attribution"](gpt2, text)(foil=" the"),
        "patching": explain["patching"](gpt2, text, text.replace("cat", "dog"))(),
        "attention_flow": explain["attention_flow"](gpt2, text)(method="flow"),
        "attributions_seq2seq": explain["attributions"]("tiny-bart", text)(
            method="input_x_gradient", target=" the"
        ),
        "attributions_seq2seq_continuation": explain["attributions"]("tiny-bart", text)(
            method="feature_ablation", target=" " + text
        ),
    }


def _picture():
    import numpy as np

    return np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)


def _labelled_vit(labels):
    """tiny-vit with other label names (a hostile one, say)."""
    import copy

    from lm_layers_explainer import load_model

    base = load_model("tiny-vit")
    model = copy.deepcopy(base.model)
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {label: i for i, label in enumerate(labels)}
    return load_model((model, base.processor))


def _nli_classifier():
    """tiny-bert's encoder with a new seeded 3-way NLI head (an entailment label)."""
    import torch
    from transformers import BertForSequenceClassification

    from lm_layers_explainer import load_model

    base = load_model("tiny-bert", kind="classifier")
    labels = ["contradiction", "neutral", "entailment"]
    settings = dict(
        base.config.to_dict(),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(1)
    model = BertForSequenceClassification(type(base.config).from_dict(settings)).eval()
    return load_model((model, base.tokenizer))


@pytest.fixture
def explain_everything():
    """``explain_everything(text)``: every entry point's result for a text (tiny models)."""
    return every_explainer_result


@pytest.fixture
def hostile_texts():
    return list(HOSTILE_TEXTS)
