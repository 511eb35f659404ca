"""Cached catalog load vs the bare transformers load of the same folder, each in a new process.

    python benchmarks/bench_load.py [--repeats 5]

Prints the median wall time of each (import included: what a user waits for) and the ratio.
The two are run alternately so that machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

BARE = """
import time, json; t = time.perf_counter()
from transformers import AutoModelForCausalLM, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained({folder!r}, trust_remote_code=False)
model = AutoModelForCausalLM.from_pretrained(
    {folder!r}, attn_implementation="eager", trust_remote_code=False
).eval()
print(json.dumps(time.perf_counter() - t))
"""
OURS = """
import time, json; t = time.perf_counter()
from lm_layers_explainer import load_model
lm = load_model("SmolLM2-135M-Instruct")
print(json.dumps(time.perf_counter() - t))
"""


def run(code: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from lm_layers_explainer.catalog import smollm2_folder

    folder = str(smollm2_folder())  # converts once if the cache is empty
    bare, ours = [], []
    for _ in range(args.repeats):
        bare.append(run(BARE.format(folder=folder)))
        ours.append(run(OURS))
    b, o = statistics.median(bare), statistics.median(ours)
    print(f"SmolLM2-135M-Instruct cached load, new process, median of {args.repeats}:")
    print(f"  bare transformers (tokenizer + model): {b:6.2f} s")
    print(f"  load_model('SmolLM2-135M-Instruct'):  {o:6.2f} s")
    print(f"  ratio: {o / b:.2f}x (target <= 1.20x)")


if __name__ == "__main__":
    main()
