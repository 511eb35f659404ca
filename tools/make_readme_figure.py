"""Draw book/images/readme.png: the tokens of a prompt and SmolLM2's next-token distribution.

python tools/make_readme_figure.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from lm_layers_explainer import lm_layers_explainer, load_model  # noqa: E402
from lm_layers_explainer.render import visible  # noqa: E402

PROMPT = "The capital of France is"
OUT = Path(__file__).resolve().parent.parent / "book" / "images" / "readme.png"

lm = load_model("SmolLM2-135M-Instruct")
tokens = lm_layers_explainer["tokens"](lm)(PROMPT)
inputs = lm.tokenizer(PROMPT, return_tensors="pt")
with torch.no_grad():
    top = lm.model(**inputs).logits[0, -1].softmax(-1).topk(6)

figure, (top_axes, bottom_axes) = plt.subplots(
    2, 1, figsize=(7, 3.6), gridspec_kw={"height_ratios": [1, 2.4]}
)
tokens.draw(top_axes)
top_axes.set_title("tokens (positions above) -> next-token probabilities", fontsize=10)
labels = [visible(lm.tokenizer.decode([i])) for i in top.indices]
bottom_axes.barh(labels[::-1], top.values.numpy()[::-1], color="#4c72b0")
bottom_axes.set_xlim(0, 1)
bottom_axes.set_xlabel(f"probability of the next token ({lm.name})")
for side in ("top", "right"):
    bottom_axes.spines[side].set_visible(False)
figure.tight_layout()
figure.savefig(OUT, dpi=110)
print(f"wrote {OUT}")
