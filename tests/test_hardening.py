"""Hardening across every entry point: bad inputs, hostile text in HTML, safe loading."""

import html
import os
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

from lm_layers_explainer import ModelNotAvailableError, lm_layers_explainer, load_model
from lm_layers_explainer._bertviz import RESIZE, inline_script
from lm_layers_explainer.attributions import MethodNotApplicableError
from lm_layers_explainer.registry import ENTRY_POINTS

E = lm_layers_explainer
LONG = "word " * 100  # the tiny models take 64 positions


def mamba():
    """A causal LM without attention (a state-space model): it has no weights to show."""
    from transformers import MambaConfig, MambaForCausalLM

    tokenizer = load_model("tiny-gpt2").tokenizer
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        config = MambaConfig(
            vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=2, state_size=4
        )
        model = MambaForCausalLM(config).eval()
    return load_model((model, tokenizer))


def encoder():
    return load_model("tiny-bert", kind="encoder")


def vit():
    """A vision transformer: it takes pixels, not token ids."""
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=16, image_size=8, patch_size=4)  # fmt: skip
    return ViTModel(config).eval()


# (entry point, call, error, message naming the parameter and what is valid)
def _qa():
    return load_model("tiny-bert", kind="question_answering")


def _tagger():
    return load_model("tiny-bert", kind="token_classifier")


def _classifier():
    return load_model("tiny-bert", kind="classifier")


def _nli():
    from conftest import _nli_classifier

    return _nli_classifier()


def _multi_label():
    lm = load_model("tiny-bert", kind="classifier")
    lm.config.problem_type = "multi_label_classification"
    return lm


def _image():
    return np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)


def _image_explainer():
    return E["image_classification"]("tiny-vit", _image())


THREE = ["a cat", "a dog", "a bird"]

CASES = [
    ("tokens", lambda: E["tokens"]("tiny-gpt2")(42), TypeError, "text must be a string"),
    ("tokens", lambda: E["tokens"]("tiny-gpt2")(" \n "), ValueError, "text must contain"),
    ("activations", lambda: E["activations"]("tiny-gpt2", "")(), ValueError, "text must"),
    ("activations", lambda: E["activations"]("tiny-gpt2", ["a"])(), TypeError,
     "text must be a string"),
    ("activations", lambda: E["activations"]("tiny-gpt2", "The cat")(n_components=0),
     ValueError, r"n_components must be in 1\.\.2"),
    ("activations", lambda: E["activations"]("tiny-gpt2", "The cat")(n_components=3),
     ValueError, r"n_components must be in 1\.\.2"),
    ("activations", lambda: E["activations"]("tiny-gpt2", "The cat")(1, from_layer=2),
     ValueError, r"from_layer must be in 0\.\.1"),
    ("activations", lambda: E["activations"]("tiny-gpt2", "The cat")(
        n_components=1, from_layer=1, to_layer=1), ValueError, r"to_layer must be in 2\.\.2"),
    ("predictions", lambda: E["predictions"]("tiny-gpt2", "The cat")(position=0),
     ValueError, r"position must be in 1\.\.64"),
    ("predictions", lambda: E["predictions"]("tiny-gpt2", "The cat")(position=65), ValueError,
     r"position must be in 1\.\.64 \(past 2 generates; 64 is tiny-gpt2's context length"),
    ("predictions", lambda: E["predictions"]("tiny-bart", "The cat")(position=10**6),
     ValueError, r"position must be in 1\.\.64"),
    ("predictions", lambda: E["predictions"]("tiny-bert", "the cat")(position=4),
     ValueError, r"position must be in 0\.\.3; got 4"),
    ("predictions", lambda: E["predictions"]("tiny-gpt2", "The cat")(position="2"),
     TypeError, "position must be an int"),
    ("predictions", lambda: E["predictions"]("tiny-gpt2", "The cat")(position=2, layer=2),
     ValueError, r"layer must be in 0\.\.1"),
    ("predictions", lambda: E["predictions"]("tiny-gpt2", "The cat")(position=2, layer=-1),
     ValueError, r"layer must be in 0\.\.1"),
    ("predictions", lambda: E["predictions"]("tiny-gpt2", "The cat")(position=2, topk=0),
     ValueError, r"topk must be in 1\.\.478"),
    ("predictions", lambda: E["predictions"]("tiny-gpt2", "The cat")(position=2, topk=10**6),
     ValueError, r"topk must be in 1\.\.478"),
    ("predictions", lambda: E["predictions"](encoder(), "a b"), ValueError,
     "model must have a language-model head"),
    ("predictions", lambda: E["predictions"]("tiny-gpt2", LONG), ValueError, "context of 64"),
    ("rankings", lambda: E["rankings"]("tiny-bert")("the cat", generate=1), ValueError,
     "generate must be 0 for a masked model"),
    ("rankings", lambda: E["rankings"]("tiny-gpt2")("The cat", generate=63), ValueError,
     r"generate must be in 0\.\.62: the text has 2 tokens and tiny-gpt2 takes at most 64"),
    ("rankings", lambda: E["rankings"]("tiny-gpt2")("The cat", generate=-1), ValueError,
     "generate must be >= 0; got -1"),
    ("rankings", lambda: E["rankings"]("tiny-gpt2")("The cat").rankings_watch(
        watch=["cabinetry drawers"], position=2), ValueError, "not a single token"),
    ("rankings", lambda: E["rankings"]("tiny-gpt2")("The cat").rankings_watch(
        watch=[10**7], position=2), ValueError, r"watch token id must be in 0\.\."),
    ("rankings", lambda: E["rankings"]("tiny-gpt2")("The cat").rankings_watch(
        watch=[" cat"], position=9), ValueError, r"position must be in 1\.\.2"),
    ("attention_head_view", lambda: E["attention_head_view"]("tiny-gpt2")("The cat", layer=2),
     ValueError, r"layer must be in 0\.\.1"),
    ("attention_head_view", lambda: E["attention_head_view"]("tiny-gpt2")("The cat", heads=[2]),
     ValueError, r"heads must be in 0\.\.1"),
    ("attention_head_view", lambda: E["attention_head_view"]("tiny-gpt2")("  "), ValueError,
     "sentence_a must contain"),
    ("attention_head_view", lambda: E["attention_head_view"]("tiny-gpt2")(LONG), ValueError,
     "context of 64"),
    ("attention_head_view", lambda: E["attention_head_view"]("tiny-bart")("a b"), ValueError,
     "sentence_b is required for a seq2seq model"),
    ("attention_head_view", lambda: E["attention_head_view"](mamba())("The cat"), ValueError,
     "model must have attention heads"),
    ("attention_model_view", lambda: E["attention_model_view"]("tiny-bert")(
        "the cat", include_layers=[]), ValueError, "include_layers must list at least one"),
    ("attention_model_view", lambda: E["attention_model_view"]("tiny-bert")(
        "the cat", include_heads=[5]), ValueError, r"include_heads must be in 0\.\.1"),
    ("attention_neuron_view", lambda: E["attention_neuron_view"]("tiny-bart"), ValueError,
     "model must be of a family the neuron view knows"),
    ("attention_neuron_view", lambda: E["attention_neuron_view"](mamba()), ValueError,
     "model must be of a family the neuron view knows"),
    ("attributions", lambda: E["attributions"]("tiny-gpt2", "The cat")(method="smoothgrad"),
     ValueError, "method must be one of saliency, "),
    ("attributions", lambda: E["attributions"]("tiny-gpt2", "The cat")(n_steps=0),
     ValueError, r"n_steps must be in 1\.\.10000"),
    ("attributions", lambda: E["attributions"]("tiny-bert", "a [MASK]")(target="big dogs"),
     ValueError, "target must be one token"),
    ("attributions", lambda: E["attributions"]("tiny-gpt2", "The cat")(baseline="mask"),
     ValueError, "baseline='mask' needs a mask token"),
    ("attributions", lambda: E["attributions"]("tiny-bert", "the cat"), ValueError,
     r"text must contain exactly one \[MASK\]"),
    ("attributions", lambda: E["attributions"](load_model("tiny-bert", kind="encoder"), "a b"),
     ValueError, "model must be a causal LM, a seq2seq LM, a masked LM or a sequence classifier"),
    ("attributions", lambda: E["attributions"]("tiny-bart", "a b", "c"), ValueError,
     "for a seq2seq LM text goes to the encoder"),
    ("load_model", lambda: load_model("no-such-model-anywhere"), ModelNotAvailableError,
     "could not load 'no-such-model-anywhere'.*Models that load offline: SmolLM2"),
    ("load_model", lambda: load_model(42), TypeError, "spec must be a catalog name"),
    ("load_model", lambda: load_model("tiny-gpt2", kind="decoder"), ValueError,
     "kind must be one of causal, masked, encoder, seq2seq, classifier"),
    ("load_model", lambda: load_model("tiny-gpt2", allow_pickle="yes"), TypeError,
     "allow_pickle must be True or False"),
    ("load_model", lambda: load_model("./no/such/folder"), ModelNotAvailableError,
     "looks like a folder, but there is no such folder"),
    # task models (issue 16)
    ("question_answering", lambda: E["question_answering"]("tiny-gpt2", "a", "b"), ValueError,
     "model must be one of the kinds question_answering"),
    ("question_answering", lambda: E["question_answering"](_qa(), "who sat", "the cat sat").scored(
        np.ones(8), "rollout"), TypeError, r"scored\(\) is for the attributions explainer"),
    ("question_answering", lambda: E["question_answering"](_qa(), "where", None), TypeError,
     "context is missing"),
    ("question_answering", lambda: E["question_answering"](_qa(), " ", "the cat"), ValueError,
     "question must contain"),
    ("question_answering", lambda: E["question_answering"](_qa(), "where", "the cat")(
        answer="dog"), ValueError, "answer must occur in the context"),
    ("question_answering", lambda: E["question_answering"](_qa(), "where", "the cat")(
        method="gradcam"), ValueError, "method must be one of"),
    ("token_classification", lambda: E["token_classification"]("tiny-bert", "the cat"),
     ValueError, "model must be one of the kinds token_classifier"),
    ("token_classification", lambda: E["token_classification"](_tagger(), "the cat")(
        ignored_labels=["X"]), ValueError, "ignored_labels must be among the labels"),
    ("token_classification", lambda: E["token_classification"](_tagger(), "the cat")(
        ignored_positions=[50]), ValueError, r"ignored_positions must be in 0\.\.3"),
    ("token_classification", lambda: E["token_classification"](_tagger(), "the cat")(
        n_steps=0), ValueError, r"n_steps must be in 1\.\.10000"),
    ("zero_shot", lambda: E["zero_shot"](_classifier(), "the cat", labels=["a"]), ValueError,
     "model must be an NLI classifier with an entailment label"),
    ("zero_shot", lambda: E["zero_shot"](_nli(), "the cat", labels=None), ValueError,
     "labels must be a non-empty list"),
    ("zero_shot", lambda: E["zero_shot"](_nli(), "the cat", labels=["a"],
     hypothesis_template="x"), ValueError, "hypothesis_template must hold exactly one {}"),
    ("zero_shot", lambda: E["zero_shot"](_nli(), "cat " * 70, labels=["a"]), ValueError,
     "longer than the model's context"),
    ("similarity", lambda: E["similarity"]("tiny-gpt2", "a", "b"), ValueError,
     "model must be one of the kinds encoder"),
    ("similarity", lambda: E["similarity"]("tiny-bert", "a", None), TypeError,
     "text_b is missing"),
    ("similarity", lambda: E["similarity"]("tiny-bert", "a", "cat " * 70), ValueError,
     "longer than the model's context"),
    ("similarity", lambda: E["similarity"]("tiny-bert", "a", "b")(output="logit"), TypeError,
     "output is not an option of similarity"),
    ("attributions", lambda: E["attributions"]("tiny-bart", "a b")(attributed="position"),
     ValueError, "needs a learned position embedding in one stack"),
    ("attributions", lambda: E["attributions"]("tiny-gpt2", "a b")(attributed="words"),
     ValueError, "attributed must be one of word, position, token_type"),
    ("attributions", lambda: E["attributions"](_multi_label(), "the cat")(foil="positive"),
     ValueError, "foil needs a target for a multi-label classifier"),
    # checks that came late, differed or came from deep inside (issue 12.6): one row each
    ("tokens", lambda: E["tokens"]("tiny-gpt2")("abc \ud800 def"), ValueError,
     "text must be valid Unicode; character 4 is a lone surrogate"),
    ("attributions", lambda: E["attributions"]("tiny-bert", "a [MASK]", "b \udfff"),
     ValueError, "text_pair must be valid Unicode"),
    ("activations", lambda: E["activations"]("tiny-gpt2", "The cat")(1, seed="x"), TypeError,
     r"seed must be an int in 0\.\.4294967295; got 'x'"),
    ("activations", lambda: E["activations"]("tiny-gpt2", "The cat")(1, max_iter=0),
     ValueError, r"max_iter must be in 1\.\.1000000; got 0"),
    ("activations", lambda: E["activations"]("tiny-gpt2", "The cat")(1, tol=-1), ValueError,
     "tol must be a finite number >= 0; got -1"),
    ("activations", lambda: E["activations"]("tiny-gpt2", "The cat")(1, tol="small"),
     TypeError, "tol must be a number; got 'small'"),
    ("activations", lambda: E["activations"]("tiny-gpt2", "The cat")(1, to_layer=2.0),
     TypeError, r"to_layer must be an int in 1\.\.2"),
    ("predictions", lambda: E["predictions"]("tiny-gpt2", "The cat")(position=3, do_sample="yes"),
     TypeError, "do_sample must be True or False; got 'yes'"),
    ("predictions", lambda: E["predictions"]("tiny-gpt2", "The cat")(position=3, seed=-1),
     ValueError, r"seed must be in 0\.\.4294967295; got -1"),
    ("rankings", lambda: E["rankings"]("tiny-gpt2")("The cat", generate=1, do_sample=1),
     TypeError, "do_sample must be True or False; got 1"),
    ("rankings", lambda: E["rankings"]("tiny-gpt2")("The cat", generate=1.0), TypeError,
     "generate must be an int >= 0; got 1.0"),
    ("rankings", lambda: E["rankings"]("tiny-gpt2")("The cat").rankings_watch(
        watch=1.5, position=1), TypeError, "watch must be a token .* got float"),
    ("rankings", lambda: E["rankings"]("tiny-gpt2")("The cat").rankings(positions=1.0),
     TypeError, r"positions must be an int or a list of ints in 1\.\.1; got 1.0"),
    ("attention_head_view", lambda: E["attention_head_view"]("tiny-gpt2")(
        "The cat", include_layers=1.0), TypeError,
     r"include_layers must be an int or a list of ints in 0\.\.1; got 1.0"),
    ("attention_model_view", lambda: E["attention_model_view"]("tiny-gpt2")(
        "The cat", include_heads="0"), TypeError,
     r"include_heads must be an int or a list of ints in 0\.\.1; got '0'"),
    ("attention_neuron_view", lambda: E["attention_neuron_view"]("tiny-gpt2")(
        "The cat", "\ud800"), ValueError, "sentence_b must be valid Unicode"),
    ("attributions", lambda: E["attributions"]("tiny-gpt2", "The cat")(output=1), ValueError,
     "output must be one of probability, logit; got 1"),
    ("image_classification", lambda: E["image_classification"]("tiny-gpt2", _image()),
     ValueError, "model must be one of the kinds image_classifier .* tiny-gpt2 is 'causal'"),
    ("image_classification", lambda: E["image_classification"]("tiny-vit", "no/such.png"),
     ValueError, "image must be a readable image file"),
    ("image_classification", lambda: E["image_classification"]("tiny-vit", [[0, 1]]),
     TypeError, "image must be a PIL image, a path, a numpy array or a pixel_values tensor"),
    ("image_classification", lambda: E["image_classification"](
        "tiny-vit", torch.zeros(3, 224, 224)), ValueError,
     r"image as pixel_values must be the model's size \(1, 3, 32, 32\); got \(1, 3, 224, 224\)"),
    ("image_classification", lambda: E["image_classification"](
        "tiny-vit", np.full((4, 4, 3), 1.5)), ValueError,
     r"image as a float array must hold values in 0\.\.1"),
    ("image_classification", lambda: _image_explainer()(target="fish"), ValueError,
     r"target must be one of the labels \['cat', 'dog', 'bird'\]; got 'fish'"),
    ("image_classification", lambda: _image_explainer()(target=3), ValueError,
     r"target must be in 0\.\.2; got 3"),
    ("image_classification", lambda: _image_explainer()(noise_tunnel="smooth"), ValueError,
     "noise_tunnel must be one of smoothgrad, smoothgrad_sq, vargrad; got 'smooth'"),
    ("image_classification", lambda: _image_explainer()("occlusion", noise_tunnel="vargrad"),
     ValueError, "noise_tunnel averages a gradient method .* not occlusion"),
    ("image_classification", lambda: _image_explainer()(baseline="white"), ValueError,
     "baseline must be one of zero, black, blur; got 'white'"),
    ("image_classification", lambda: _image_explainer()("feature_ablation", patch_size=33),
     ValueError, r"patch_size must be in 1\.\.32; got 33"),
    ("image_classification", lambda: _image_explainer()("occlusion", window=17), ValueError,
     r"window must be in 1\.\.4 \(squares of patches of 8 pixels .* 32x32 input\); got 17"),
    ("image_classification", lambda: _image_explainer()(noise_tunnel="smoothgrad", stdevs=-1),
     ValueError, "stdevs must be a finite number >= 0; got -1"),
    ("image_classification", lambda: _image_explainer()(nt_samples=0), ValueError,
     r"nt_samples must be in 1\.\.10000; got 0"),
    ("image_classification", lambda: _image_explainer()("lrp"), ValueError,
     "lrp needs a propagation rule for every layer"),
    ("attributions", lambda: E["attributions"](_classifier(), "the cat", custom_labels=["a"]),
     ValueError, "custom_labels must name each of the model's 2 labels; got 1"),
    ("token_classification", lambda: E["token_classification"](
        _tagger(), "the cat", custom_labels=["O", "O", "a", "b", "c"]), ValueError,
     r"custom_labels must be distinct; \['O'\] appear more than once"),
    ("image_classification", lambda: E["image_classification"](
        "tiny-vit", _image(), custom_labels="cat dog bird"), TypeError,
     "custom_labels must be a list of 3 label names"),
    ("attributions", lambda: E["attributions"]("tiny-vit", "the cat"), ValueError,
     "model must read text for AttributionsExplainer; tiny-vit is an image_classifier"),
    ("load_model", lambda: load_model((torch.nn.Linear(2, 2), load_model("tiny-gpt2").tokenizer)),
     TypeError, "must be a transformers PreTrainedModel .* got Linear"),
    ("load_model", lambda: load_model((vit(), load_model("tiny-gpt2").tokenizer)), ValueError,
     "model must take token ids .* takes 'pixel_values'"),
    ("load_model", lambda: load_model(
        (load_model("tiny-bert").model, load_model("tiny-gpt2").tokenizer)), ValueError,
     "tokenizer does not belong to .* 478 tokens and the model's embedding"),
    ("load_model", lambda: load_model("tiny-gpt2", torch_dtype="float33"), ValueError,
     "torch_dtype must be a floating torch.dtype or one of float32, .* got 'float33'"),
    ("load_model", lambda: load_model("tiny-gpt2", torch_dtype=torch.int8), ValueError,
     "torch_dtype must be a floating torch.dtype"),
    ("load_model", lambda: load_model("tiny-gpt2", device="gpu"), ValueError,
     "device must be a torch device such as 'cpu', 'cuda'.* got 'gpu'"),
    ("load_model", lambda: load_model("tiny-gpt2", device="cuda:99"), ValueError,
     "device 'cuda:99' needs CUDA|device must be cuda:0"),
    ("load_model", lambda: load_model("tiny-gpt2", device=3.5), TypeError,
     "device must be a string or a torch.device"),
    ("embeddings", lambda: E["embeddings"]("tiny-gpt2", "one text"), TypeError,
     "texts must be a list of strings; got str"),
    ("embeddings", lambda: E["embeddings"]("tiny-gpt2", ["a cat", "a dog"]), ValueError,
     r"texts must hold 3\.\.100000 texts; got 2"),
    ("embeddings", lambda: E["embeddings"]("tiny-gpt2", ["a cat", " ", "a dog"]), ValueError,
     r"texts\[1\] must contain something besides whitespace"),
    ("embeddings", lambda: E["embeddings"]("tiny-gpt2", ["cat " * 70, "a", "b"]), ValueError,
     r"texts\[0\] is 72 tokens long, longer than the model's context of 64"),
    ("embeddings", lambda: E["embeddings"]("tiny-gpt2", THREE, labels=["a", "b"]), ValueError,
     r"labels must give one label per text \(3\); got 2"),
    ("embeddings", lambda: E["embeddings"]("tiny-gpt2", THREE, labels=["a", None, "b"]),
     TypeError, r"labels\[1\] must be a string or an int; got None"),
    ("embeddings", lambda: E["embeddings"]("tiny-gpt2", THREE, batch_size=0), ValueError,
     r"batch_size must be in 1\.\.4096; got 0"),
    ("embeddings", lambda: E["embeddings"]("tiny-gpt2", THREE)(layer=2), ValueError,
     r"layer must be in 0\.\.1; got 2"),
    ("embeddings", lambda: E["embeddings"]("tiny-gpt2", THREE)(layer="first"), ValueError,
     r"layer must be None, 'embeddings' or in 0\.\.1; got 'first'"),
    ("embeddings", lambda: E["embeddings"]("tiny-gpt2", THREE)(pooling="max"), ValueError,
     "pooling must be one of mean, cls, last; got 'max'"),
    ("embeddings", lambda: E["embeddings"]("tiny-gpt2", THREE)(projection="mds"), ValueError,
     "projection must be one of pca, tsne, umap; got 'mds'"),
    ("embeddings", lambda: E["embeddings"]("tiny-gpt2", THREE)(projection="tsne", perplexity=3),
     ValueError, r"perplexity must be below the number of texts \(3\); got 3"),
    ("embeddings", lambda: E["embeddings"]("tiny-gpt2", THREE)(projection="umap",
     n_neighbors=3), ValueError, r"n_neighbors must be in 2\.\.2; got 3"),
    ("embeddings", lambda: E["embeddings"]("tiny-vit", THREE), ValueError,
     "model must read text for EmbeddingsExplainer"),
    ("representation_similarity", lambda: E["representation_similarity"]("tiny-gpt2", THREE)(
        method="rsa"), ValueError, "method must be one of cka, cca, svcca, pwcca; got 'rsa'"),
    ("representation_similarity", lambda: E["representation_similarity"]("tiny-gpt2", THREE)(
        unit="words"), ValueError, "unit must be one of tokens, texts; got 'words'"),
    ("representation_similarity", lambda: E["representation_similarity"]("tiny-gpt2", THREE)(
        method="cca", unit="texts"), ValueError,
     "method='cca' needs more datapoints than neurons: 3 texts for 32 neurons"),
    ("representation_similarity", lambda: E["representation_similarity"]("tiny-gpt2", THREE)(
        method="svcca", dims=0), ValueError, r"dims must be in 1\.\.\d+; got 0"),
    ("representation_similarity", lambda: E["representation_similarity"](
        "tiny-gpt2", THREE, other="tiny-bert")(), ValueError,
     "tokenize the texts differently: use unit='texts'"),
    ("representation_similarity", lambda: E["representation_similarity"](
        "tiny-gpt2", THREE, other="tiny-vit"), ValueError, "model must read text"),
    ("attributions", lambda: E["attributions"]("tiny-gpt2", "The cat")(
        method="layer_conductance", layer=2), ValueError, r"layer must be in 0\.\.1; got 2"),
    ("attributions", lambda: E["attributions"]("tiny-gpt2", "The cat")(
        method="saliency", layer=1), ValueError,
     "layer, neuron and position are for the layer and neuron methods"),
    ("attributions", lambda: E["attributions"]("tiny-gpt2", "The cat")(
        method="layer_conductance", neuron=1), ValueError,
     "neuron and position are for neuron_conductance, not layer_conductance"),
    ("attributions", lambda: E["attributions"]("tiny-gpt2", "The cat")(
        method="neuron_conductance", layer=1), ValueError,
     "neuron_conductance needs layer= and neuron="),
    ("attributions", lambda: E["attributions"]("tiny-gpt2", "The cat")(
        method="neuron_conductance", layer=1, neuron=128), ValueError,
     r"neuron must be in 0\.\.127; got 128"),
    ("attributions", lambda: E["attributions"]("tiny-gpt2", "The cat")(
        method="neuron_conductance", layer=1, neuron=3, position=10), ValueError,
     r"position must be in 0\.\.\d; got 10"),
    ("attributions", lambda: E["attributions"]("tiny-bart", "The cat")(
        method="layer_conductance"), ValueError,
     "layer_conductance explains models with one stack of layers"),
    ("attributions", lambda: E["attributions"]("tiny-gpt2", "The cat")(
        method="layer_conductance", generate=2), ValueError,
     "layer_conductance explains one target token"),
    ("attributions", lambda: E["attributions"]("tiny-gpt2", "The cat")(method="layer_lrp"),
     ValueError, "method must be one of saliency, .*, neuron_conductance; got 'layer_lrp'"),
    ("logit_attribution", lambda: E["logit_attribution"]("tiny-bert", "the cat"), ValueError,
     "model must be a causal LM for logit_attribution"),
    ("logit_attribution", lambda: E["logit_attribution"]("tiny-gpt2", ""), ValueError,
     "text must"),
    ("logit_attribution", lambda: E["logit_attribution"]("tiny-gpt2", "The cat")(
        target=" the cat"), ValueError, "target must be one token of tiny-gpt2's vocabulary"),
    ("logit_attribution", lambda: E["logit_attribution"]("tiny-gpt2", "The cat")(
        target=10**6), ValueError, r"target must be in 0\.\.\d+; got 1000000"),
    ("logit_attribution", lambda: E["logit_attribution"]("tiny-gpt2", "The cat")(
        target=" the", foil=" the"), ValueError, "foil must differ from the target"),
    ("patching", lambda: E["patching"]("tiny-gpt2", "The cat sat", "The dog sat down"),
     ValueError, "clean and corrupted must be as many tokens long.*clean is 3 tokens"),
    ("patching", lambda: E["patching"]("tiny-gpt2", "The cat sat", 42), TypeError,
     "corrupted must be a string"),
    ("patching", lambda: E["patching"]("tiny-bert", "the cat", "the dog"), ValueError,
     "model must be a causal LM for patching"),
    ("patching", lambda: E["patching"]("tiny-gpt2", "The cat sat", "The dog sat")(
        over="neurons"), ValueError, "over must be one of residual, attention, mlp, heads"),
    ("patching", lambda: E["patching"]("tiny-gpt2", "The cat sat", "The dog sat")(
        over="heads", positions="each"), ValueError, "over='heads' patches a head at every"),
    ("patching", lambda: E["patching"]("tiny-gpt2", "The cat sat", "The dog sat")(
        positions="some"), ValueError, "positions must be one of each, all"),
    ("patching", lambda: E["patching"]("tiny-gpt2", "The cat sat", "The dog sat")(
        batch_size=0), ValueError, r"batch_size must be in 1\.\.4096; got 0"),
    ("patching", lambda: E["patching"]("tiny-gpt2", "The cat sat", "The dog sat")(
        target=" the", foil=" the cat"), ValueError, "foil must be one token"),
    ("attention_flow", lambda: E["attention_flow"]("tiny-gpt2", "The cat sat")(
        method="lrp"), ValueError, "method must be one of raw, rollout, flow; got 'lrp'"),
    ("attention_flow", lambda: E["attention_flow"]("tiny-gpt2", "The cat sat")(
        position=3), ValueError, r"position must be in 0\.\.2; got 3"),
    ("attention_flow", lambda: E["attention_flow"]("tiny-bart", "The cat sat"), ValueError,
     "attention_flow follows one stack's self-attention"),
    ("attention_flow", lambda: _flow_capped(2, lambda: E["attention_flow"](
        "tiny-gpt2", "The cat sat")(method="flow")), ValueError,
     "method='flow' takes texts of at most 2 tokens.*this text is 3: use method='rollout'"),
    # a hostile user's probe (issue 27): crashes and silent acceptances, one row each
    ("zero_shot", lambda: E["zero_shot"](_nli(), "the cat", labels=["a"],
     hypothesis_template="{} and {}"), ValueError,
     r"hypothesis_template must hold exactly one \{\} .*got '\{\} and \{\}', with \{\}, \{\}"),
    ("zero_shot", lambda: E["zero_shot"](_nli(), "the cat", labels=["a"],
     hypothesis_template="It is {label}. {}"), ValueError, r"with \{label\}, \{\}"),
    ("zero_shot", lambda: E["zero_shot"](_nli(), "the cat", labels=["a"],
     hypothesis_template="It is {} {"), ValueError,
     "hypothesis_template must hold exactly one .*Single '{' encountered"),
    ("image_classification", lambda: _image_explainer()("occlusion", window=5), ValueError,
     r"window must be in 1\.\.4 .*; got 5"),
    ("image_classification", lambda: _image_explainer()(
        "occlusion", window=7, patch_size=5), ValueError, r"window must be in 1\.\.6 .*; got 7"),
    ("similarity", lambda: E["similarity"]("tiny-bert", "a", "b")(method="deeplift"),
     MethodNotApplicableError, "deeplift cannot explain a cosine of two sentence embeddings.*"
     "Methods that work here: saliency, input_x_gradient, integrated_gradients, occlusion"),
    ("zero_shot", lambda: E["zero_shot"](encoder(), "the cat", labels=["a"])(
        method="deeplift_shap"), MethodNotApplicableError, "deeplift_shap cannot explain"),
    ("similarity", lambda: E["similarity"]("tiny-bert", "a", "b").compare(
        ["deeplift", "deeplift_shap"]), MethodNotApplicableError,
     "every method given is refused here: deeplift: deeplift cannot"),
    ("token_classification", lambda: E["token_classification"](_tagger(), "the cat").compare(
        ["saliency"], faithfulness="deletion"), ValueError,
     "faithfulness='deletion' deletes the token whose label is explained; give "
     "faithfulness='replacement' or False"),
    ("token_classification", lambda: E["token_classification"](_tagger(), "the cat").compare(
        ["saliency"], n_steps=0), ValueError, r"n_steps must be in 1\.\.10000"),
    ("question_answering", lambda: E["question_answering"](_qa(), "where", "the cat").compare(
        ["saliency"], output="logit", faithfulness="deletion"), ValueError,
     "faithfulness='deletion' deletes the answer's position, which then has no logit"),
    ("question_answering", lambda: E["question_answering"](_qa(), "where", "the cat").compare(
        ["saliency"], answer="dog"), ValueError, "answer must occur in the context"),
    ("attributions", lambda: E["attributions"]("tiny-gpt2", "The cat")(target="\ud800"),
     ValueError, "target must be valid Unicode; character 0 is a lone surrogate"),
    ("attributions", lambda: E["attributions"]("tiny-gpt2", "The cat")(target=" a \ud800"),
     ValueError, "target must be valid Unicode; character 3"),
    ("attributions", lambda: E["attributions"]("tiny-gpt2", "The cat")(
        target=" the", foil="\ud800"), ValueError, "foil must be valid Unicode"),
    ("rankings", lambda: E["rankings"]("tiny-gpt2")("The cat").rankings_watch(
        watch=["\ud800"], position=2), ValueError, "watch token must be valid Unicode"),
    ("logit_attribution", lambda: E["logit_attribution"]("tiny-gpt2", "The cat")(
        target="\udfff"), ValueError, "target must be valid Unicode"),
    ("patching", lambda: E["patching"]("tiny-gpt2", "The cat sat", "The dog sat")(
        target=" the", foil="\ud800"), ValueError, "foil must be valid Unicode"),
    ("attributions", lambda: E["attributions"](_classifier(), "the cat", "cat " * 70),
     ValueError, r"text_pair is too long: text and text_pair are 75 tokens long together "
     r"\(4 \+ 71\), longer than the model's context of 64"),
    ("question_answering", lambda: E["question_answering"](_qa(), "where", "cat " * 70),
     ValueError, "context is too long: question and context are"),
    ("question_answering", lambda: E["question_answering"](_qa(), "cat " * 70, "where"),
     ValueError, "question is too long: question and context are"),
    ("attention_head_view", lambda: E["attention_head_view"]("tiny-bert")("a", "cat " * 70),
     ValueError, "sentence_b is too long: sentence_a and sentence_b are"),
    ("attributions", lambda: E["attributions"]("tiny-gpt2", "The cat").scored(
        [0.5, np.nan], "rollout"), ValueError, "scores must be finite numbers; got nan at index 1"),
    ("attributions", lambda: E["attributions"]("tiny-gpt2", "The cat").scored(
        [np.inf, -np.inf], "rollout"), ValueError, "got inf at index 0 and 1 more"),
    ("embeddings", lambda: E["embeddings"]("tiny-gpt2", THREE)(perplexity=2), ValueError,
     "perplexity is an option of projection='tsne'; projection='pca' does not use it"),
    ("embeddings", lambda: E["embeddings"]("tiny-gpt2", THREE)(projection="tsne",
     n_neighbors=2), ValueError, "n_neighbors is an option of projection='umap'"),
    ("representation_similarity", lambda: E["representation_similarity"]("tiny-gpt2", THREE)(
        pooling="cls"), ValueError,
     "pooling is for unit='texts' only; method='cka', unit='tokens' does not use it"),
    ("representation_similarity", lambda: E["representation_similarity"]("tiny-gpt2", THREE)(
        dims=5), ValueError, "dims is for method='svcca' only; method='cka'"),
    ("representation_similarity", lambda: E["representation_similarity"](
        "tiny-gpt2", ["a cat"] * 3)(unit="texts"), ValueError,
     "texts must differ for unit='texts': every text is the same tokens"),
]  # fmt: skip


def _flow_capped(cap, call):
    """``call()`` with attention flow refused past ``cap`` tokens."""
    from unittest import mock

    with mock.patch("lm_layers_explainer.attention_flow.FLOW_MAX_TOKENS", cap):
        return call()


def test_the_table_covers_every_entry_point_with_enough_cases():
    covered = {name for name, *_ in CASES}
    assert set(ENTRY_POINTS) <= covered
    assert len(CASES) >= 70


@pytest.fixture
def no_model_runs(monkeypatch):
    """Any forward pass or generation of a transformers model fails the test."""
    from transformers import GenerationMixin, PreTrainedModel

    def forbidden(self, *args, **kwargs):
        raise AssertionError(f"{type(self).__name__} ran before the arguments were checked")

    monkeypatch.setattr(PreTrainedModel, "__call__", forbidden)
    monkeypatch.setattr(GenerationMixin, "generate", forbidden)


@pytest.mark.parametrize(
    ("entry_point", "call", "error", "message"),
    CASES,
    ids=[f"{case[0]}-{index}" for index, case in enumerate(CASES)],
)
def test_bad_input_gets_a_clear_error_before_any_model_work(
    no_model_runs, entry_point, call, error, message
):
    with pytest.raises(error, match=message):
        call()


# --------------------------------------------------------------------------- escaping


class _Document(HTMLParser):
    """Elements, attributes and text of an HTML document; iframe srcdoc parsed as well."""

    def __init__(self):
        super().__init__()
        self.elements, self.text, self.frames = [], [], []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.elements.append((tag, attrs))
        self._in_script = tag == "script"
        if tag == "iframe" and "srcdoc" in attrs:
            self.frames.append(attrs["srcdoc"])  # HTMLParser has unescaped the attribute

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if not self._in_script:
            self.text.append(data)


def _parse(markup: str) -> list[_Document]:
    documents, pending = [], [markup]
    while pending:
        document = _Document()
        document.feed(pending.pop())
        documents.append(document)
        pending.extend(document.frames)
    return documents


def test_hostile_text_is_only_ever_text_in_every_explainers_html(explain_everything, hostile_texts):
    for text in hostile_texts:
        results = explain_everything(text)
        assert set(ENTRY_POINTS) <= set(results)
        for name, result in results.items():
            documents = _parse(result._repr_html_())
            for document in documents:
                for tag, attrs in document.elements:
                    if tag == "img":  # only inline pictures (the activations' factor curves)
                        assert attrs.get("src", "").startswith("data:image/png;base64,"), name
                    assert not any(key.startswith("on") for key in attrs), (name, tag, attrs)
                    if tag == "script":  # only our own inline scripts, nothing loaded
                        assert "src" not in attrs, (name, attrs)
            # views live in sandboxed frames: the outer document's only script is the fixed
            # one that resizes a frame to its drawing (no model text in it)
            markup = result._repr_html_()  # srcdoc is attribute-escaped: "<script" is outer
            assert markup.count("<script") == markup.count(inline_script(RESIZE)), name
            shown = html.unescape(result._repr_html_())
            assert "{{7*7}}" not in text or "49 the" not in shown, name


def test_hostile_text_survives_as_escaped_text(explain_everything):
    results = explain_everything("<script>alert(1)</script> the cat")
    for name in ("tokens", "activations", "predictions", "attributions"):
        markup = results[name]._repr_html_()
        assert "&lt;" in markup and "<script>alert" not in markup, name


# --------------------------------------------------------------------------- safe loading


def _pickled_checkpoint(folder):
    lm = load_model("tiny-gpt2")
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    os.remove(folder / "model.safetensors")
    torch.save(lm.model.state_dict(), folder / "pytorch_model.bin")
    return lm


def test_pickled_weights_load_only_when_allowed(tmp_path):
    original = _pickled_checkpoint(tmp_path)
    with pytest.raises(ModelNotAvailableError, match="allow_pickle=True"):
        load_model(tmp_path)
    loaded = load_model(tmp_path, allow_pickle=True)
    assert torch.equal(loaded.model.transformer.wte.weight, original.model.transformer.wte.weight)


def test_an_index_pointing_at_a_pickle_is_refused_without_allow_pickle(tmp_path, monkeypatch):
    import json

    original = _pickled_checkpoint(tmp_path)
    os.rename(tmp_path / "pytorch_model.bin", tmp_path / "shard.bin")
    weight_map = {name: "shard.bin" for name in original.model.state_dict()}
    index = {"metadata": {}, "weight_map": weight_map}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    unpickled = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: unpickled.append(a) or real_load(*a, **k))
    with pytest.raises(ModelNotAvailableError, match=r"points at weights which are not "
                       r"safetensors \(shard.bin\).*allow_pickle=True"):  # fmt: skip
        load_model(tmp_path)
    assert unpickled == []
    loaded = load_model(tmp_path, allow_pickle=True)
    assert unpickled  # the user's choice: transformers unpickles it (weights_only)
    assert torch.equal(loaded.model.transformer.wte.weight, original.model.transformer.wte.weight)


def test_remote_code_is_never_trusted(tmp_path):
    from lm_layers_explainer.checkpoints import from_pretrained

    load_model("tiny-gpt2").model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="trust_remote_code is not supported"):
        from_pretrained(str(tmp_path), trust_remote_code=True)


MARKER_CODE = """
import pathlib
pathlib.Path({marker!r}).write_text("the checkpoint's code ran")
from transformers import GPT2Config


class MarkerConfig(GPT2Config):
    model_type = "marker-gpt2"
"""


def _checkpoint_with_code(folder, marker, model_type):
    """tiny-gpt2 saved with an auto_map that points at a module writing ``marker``."""
    import json

    lm = load_model("tiny-gpt2")
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    (folder / "configuration_marker.py").write_text(MARKER_CODE.format(marker=str(marker)))
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = model_type
    config["auto_map"] = {
        "AutoConfig": "configuration_marker.MarkerConfig",
        "AutoModelForCausalLM": "configuration_marker.MarkerModel",
    }
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("model_type", ["marker-gpt2", "gpt2"])
def test_a_checkpoint_with_its_own_code_is_refused_even_when_the_user_says_yes(
    tmp_path, model_type
):
    """A config whose auto_map names the checkpoint's own Python: transformers would ask
    "Do you wish to run the custom code? [y/N]" without an explicit trust_remote_code=False.
    Here "y" waits on standard input, and the marker file must never appear."""
    import subprocess
    import sys

    checkpoint, marker = tmp_path / "checkpoint", tmp_path / "marker.txt"
    checkpoint.mkdir()
    _checkpoint_with_code(checkpoint, marker, model_type)
    code = f"from lm_layers_explainer import load_model; load_model({str(checkpoint)!r})"
    run = subprocess.run(
        [sys.executable, "-c", code],
        input="y\ny\ny\n",
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"},
    )
    assert not marker.exists()
    assert run.returncode != 0
    assert "ships its own Python code" in run.stderr, run.stderr[-2000:]
    assert "configuration_marker.MarkerConfig" in run.stderr


# --------------------------------------------------------------------------- saved files

ODD_TEXT = "It costs $5, not $ 6\x01 or 7\x7f"
"""Dollar signs (an odd count: matplotlib's TeX parser fails on it) and control characters
(not allowed anywhere in XML, so not in SVG)."""

SAVE_EVERY_KIND = """
import sys
from pathlib import Path
from lm_layers_explainer import lm_layers_explainer as E

folder, text = Path(sys.argv[1]), sys.argv[2]
results = {
    "tokens": E["tokens"]("tiny-gpt2")(text),
    "predictions": E["predictions"]("tiny-gpt2", text)(position=10, topk=3),
    "rankings": E["rankings"]("tiny-gpt2")(text).rankings_watch(watch=["$"], position=8),
    "activations": E["activations"]("tiny-gpt2", text)(n_components=2),
    "attention": E["attention_head_view"]("tiny-gpt2")(text),
    "attributions": E["attributions"]("tiny-gpt2", text)(method="feature_ablation"),
    "layers": E["attributions"]("tiny-gpt2", text)(method="layer_gradient_x_activation"),
}
for name, result in results.items():
    for suffix in (".png", ".svg", ".json"):
        result.save(folder / (name + suffix))
"""


def _dollar_glyphs() -> set[str]:
    from matplotlib.font_manager import FontProperties, findfont, get_font

    ids = set()
    for family, name in (("DejaVu Sans", "DejaVuSans"), ("DejaVu Sans Mono", "DejaVuSansMono")):
        font = get_font(findfont(FontProperties(family=family)))
        ids.add(f"{name}-{font.get_char_index(ord('$')):x}")
    return ids


DOLLAR_GLYPHS = _dollar_glyphs()


def _save_in_a_new_process(folder, hash_seed: str):
    import subprocess
    import sys

    folder.mkdir()
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    run = subprocess.run(
        [sys.executable, "-c", SAVE_EVERY_KIND, str(folder), ODD_TEXT],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_saved_pictures_and_files_are_valid_literal_and_the_same_bytes_in_two_processes(
    tmp_path,
):
    """Pictures and result files: the same bytes from two processes (run times and the free
    memory, which choose and describe the batches, are not saved)."""
    import xml.etree.ElementTree as ElementTree

    from lm_layers_explainer import load_result

    first = _save_in_a_new_process(tmp_path / "one", "1")
    second = _save_in_a_new_process(tmp_path / "two", "2")
    assert len(first) == 21 and first.keys() == second.keys()
    for name, content in first.items():
        assert content == second[name], f"{name} differs between two processes"
        if name.endswith(".json"):
            assert b"seconds" not in content and b"GiB" not in content
            assert b'"memory"' not in content
    loaded = load_result(tmp_path / "one" / "attributions.json")
    assert loaded.seconds is None and "memory" not in loaded.settings
    for name, content in first.items():
        if name.endswith(".svg"):
            root = ElementTree.fromstring(content)  # raises on control characters
            glyphs = {element.get("id") for element in root.iter() if element.get("id")}
            # matplotlib draws text as glyph paths, one definition per glyph used, named by
            # font and glyph index: "$" is drawn as a dollar sign, not taken for TeX.
            assert glyphs & DOLLAR_GLYPHS, name


def test_tick_labels_with_control_characters_make_valid_svg(tmp_path):
    """Tick labels set with their texts are drawn anew from the axis's formatter at save
    time: they must be escaped there too (grids of tokens, of rows, of labels)."""
    import xml.etree.ElementTree as ElementTree

    text = "the cat\x01 sat\x7f"
    tagger = load_model("tiny-bert", kind="token_classifier")
    labels = [f"L{i}\x02" for i in range(5)]  # BERT's tokenizer drops control characters
    results = {
        "layer_conductance": E["attributions"]("tiny-gpt2", text)(
            method="layer_conductance", n_steps=1),
        "attention_flow": E["attention_flow"]("tiny-gpt2", text)(),
        "token_classification": E["token_classification"](tagger, "cat", custom_labels=labels)(
            method="saliency"),
        "zero_shot": E["zero_shot"](_nli(), "cat", labels=["a\x03"])(method="saliency"),
    }  # fmt: skip
    shown = {"token_classification": "\\x02", "zero_shot": "\\x03"}
    for name, result in results.items():
        path = result.save(tmp_path / f"{name}.svg")
        ElementTree.fromstring(path.read_bytes())  # raises on a control character
        assert shown.get(name, "\\x01") in path.read_text(), name  # drawn as an escape


def test_numpy_integers_are_ints_everywhere():
    """Indices and counts often come out of numpy (argmax, arange): they are ints."""
    n = np.int64
    predictions = E["predictions"]("tiny-gpt2", "The cat")(position=n(2), layer=n(1), topk=n(3))
    assert predictions.layers == [1] and predictions.token_ids.shape == (1, 3)
    assert E["activations"]("tiny-gpt2", "The cat")(n(1), seed=np.uint32(1)).factors.shape[0] == 1
    view = E["attention_head_view"]("tiny-gpt2")("The cat", layer=n(1), heads=np.arange(2))
    assert view.attentions["self"].shape[:2] == (2, 2)
    a = E["attributions"]("tiny-gpt2", "The cat")(method="integrated_gradients", n_steps=n(4))
    assert a.settings["n_steps"] == 4 and type(a.settings["n_steps"]) is int
    out = E["rankings"]("tiny-gpt2")("The cat", generate=n(1), seed=n(3))
    assert len(out) == 3 and out.rankings(positions=np.array([1, 2])).positions == [1, 2]


def test_an_unknown_model_type_is_named_clearly(tmp_path):
    import json

    lm = load_model("tiny-gpt2")
    lm.model.save_pretrained(tmp_path)
    lm.tokenizer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["model_type"] = "gpt-from-the-future"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        ModelNotAvailableError, match="'gpt-from-the-future' model, an architecture"
    ):
        load_model(tmp_path)
