"""The ``attributions`` explainer: how much each input token matters to one prediction.

>>> attributions = lm_layers_explainer["attributions"]("SmolLM2-135M-Instruct",
...                                                    " Heathrow airport is in the city of")
>>> a = attributions(method="integrated_gradients")      # target: the model's top token
>>> a.to_frame().columns.tolist()
['position', 'token', 'token_id', 'attribution', 'normalized']
>>> a.faithfulness().comprehensiveness                   # ERASER, higher is better
0.0...

What is explained is one number ``f(x)``, a function of the input token embeddings ``x``:
the probability (or, with ``output="logit"``, the logit) of ``target`` as the next token
(causal LM), at the ``[MASK]`` (masked LM), or of a class (sequence classifier). Each method
gives captum's attribution for every embedding feature; a token's score is the sum over its
features. Scores are not rescaled (so that sums can be checked against ``f(x) - f(x')``);
``normalized`` divides them by the largest absolute score, and pictures show that.

Gradient methods score each embedding feature and a token's score is the sum over its
features; perturbation methods replace whole tokens, and a token's score is the one value
captum gives all its features.

Special tokens (``[CLS]``, ``[SEP]``, a BOS) and the ``[MASK]`` being predicted are part of
the question, not evidence: the baseline keeps them. Methods that compare with the baseline
(integrated gradients, DeepLift, every perturbation method) therefore give them 0; saliency
and input x gradient still score them. Pictures draw them grey, and the faithfulness curves
leave them in place.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .checks import check_choice, check_int, check_seed, check_text
from .forward import check_length, token_id, token_texts
from .memory import rows_that_fit
from .methods import METHODS, MethodNotApplicableError, Question, check_method
from .models import LoadedModel, load_model
from .render import Result, escape, grid_figure, html_grid, progress, shade, visible

OUTPUTS = ("probability", "logit")
BASELINES = ("zero", "pad", "mask")
ERASER_BINS = (0.01, 0.05, 0.10, 0.20, 0.50)
"""Fractions of the tokens removed (comprehensiveness) or kept (sufficiency): ERASER's AOPC
thresholds (DeYoung et al. 2020). A fraction ``b`` of ``n`` tokens is ``ceil(b * n)`` tokens
(at least one): on short texts several bins are the same single token."""
CONVENTIONS = ("deletion", "replacement")
"""How faithfulness removes a token: ``deletion`` takes it out of the input (ERASER; what is
left is still a text), ``replacement`` puts the baseline (zero vector, pad or mask embedding)
in its place (Petsiuk et al.'s deletion game; an input the model never saw in training)."""
EXPLAINED_KINDS = ("causal", "masked", "classifier")
REFUSE_ABOVE = 0.9
"""A pass whose estimated memory exceeds this share of the free memory is refused."""
FAITHFULNESS_PROGRESS = 32
"""Deletion curves over at least this many tokens (2 n + 2 passes) show a progress bar."""
SLOW_CALL = 3.0
"""Seconds: an attribution expected to run longer shows a progress bar over its passes."""


class ExplainedOutput(nn.Module):
    """``f``: input token embeddings ``(batch, tokens, features)`` -> the explained output
    ``(batch,)``. An ``nn.Module`` (not a plain function) so that captum's DeepLift and
    guided backpropagation can hook the model's layers inside it."""

    def __init__(self, lm: LoadedModel, read_at: int | None, target: int, output: str, extra):
        super().__init__()
        self.model = lm.model
        self.kind = lm.kind
        self.read_at = read_at
        self.target = target
        self.output = output
        self.extra = extra  # token_type_ids for BERT-style pairs, (1, tokens)
        # Project only the read position onto the vocabulary where the model allows it (as
        # generate() does): the unembedding of every other position is a fifth of a small
        # model's forward and backward pass, thrown away.
        self.keep = (
            torch.tensor([read_at], device=lm.device)
            if read_at is not None
            and "logits_to_keep" in inspect.signature(lm.model.forward).parameters
            else None
        )

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """The model's logits where the answer is read: (batch, vocabulary or classes)."""
        batch, length = embeddings.shape[:2]
        options = {k: v.expand(batch, -1) for k, v in self.extra.items()}
        if self.kind == "causal":
            options["use_cache"] = False
        if self.keep is not None:
            options["logits_to_keep"] = self.keep
        mask = torch.ones((batch, length), dtype=torch.long, device=embeddings.device)
        logits = self.model(inputs_embeds=embeddings, attention_mask=mask, **options).logits
        if self.read_at is None:
            return logits
        return logits[:, 0] if self.keep is not None else logits[:, self.read_at]

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        logits = self.logits(embeddings)
        value = (
            logits[:, self.target] if self.output == "logit" else logits.softmax(-1)[:, self.target]
        )
        if self.after_pass is not None:
            self.after_pass()
        return value

    after_pass = None
    """Called after each pass (a progress bar's tick); Ctrl-C lands between passes."""


class _PassProgress:
    """A progress bar over the passes of one attribution, opened after the first pass if
    the whole call looks longer than :data:`SLOW_CALL` seconds."""

    def __init__(self, total: int, desc: str):
        self.total, self.desc = max(total, 1), desc
        self.done, self.bar = 0, None
        self.start = time.perf_counter()

    def __call__(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.done == 1 and (time.perf_counter() - self.start) * self.total > SLOW_CALL:
            self.bar = progress(total=self.total, desc=self.desc)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _read(logits: torch.Tensor, index: int, output: str) -> float:
    """The explained output from one row of logits: the logit or the softmax probability."""
    return float(logits[index] if output == "logit" else logits.softmax(-1)[index])


# --------------------------------------------------------------------------- results


def _diverging(value: float) -> tuple[str, str]:
    """Colours for a normalized score in [-1, 1]: red for positive, blue for negative."""
    return shade((float(value) + 1) / 2, "RdBu_r")


@dataclass
class AttributionResult(Result):
    """One method's attribution: ``scores`` (one per input token), with what was explained.

    ``output`` is f(x), ``baseline_output`` f(x') (for ``deeplift_shap``: the mean over its
    baselines), ``delta`` captum's convergence delta (sum of scores minus
    ``output - baseline_output``) for the methods that report one, else None.
    """

    method: str
    model_name: str
    tokens: list[str]
    token_ids: list[int]
    scores: np.ndarray
    attributable: np.ndarray
    target: int
    target_text: str
    question: str
    output_kind: str
    output: float
    baseline_output: float
    delta: float | None
    seconds: float
    explainer: AttributionsExplainer = field(repr=False)
    settings: dict = field(repr=False)
    _faithfulness: dict = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        top = self.top(3)
        shown = ", ".join(f"{self.tokens[i]!r} {self.scores[i]:+.3g}" for i in top)
        return (
            f"AttributionResult({self.method}, {self.output_kind} of {self.target_text!r} "
            f"= {self.output:.4g}; top tokens: {shown})"
        )

    @property
    def normalized(self) -> np.ndarray:
        """Scores divided by the largest absolute score (all 0 if every score is 0)."""
        largest = float(np.abs(self.scores).max()) if len(self.scores) else 0.0
        return self.scores / largest if largest > 0 else np.zeros_like(self.scores)

    def top(self, k: int) -> list[int]:
        """Positions of the ``k`` highest-scoring attributable tokens, best first."""
        order = [int(i) for i in np.argsort(-self.scores, kind="stable") if self.attributable[i]]
        return order[:k]

    def to_frame(self):
        """Columns ``position, token, token_id, attribution, normalized``."""
        import pandas as pd

        return pd.DataFrame(
            {
                "position": range(len(self.tokens)),
                "token": self.tokens,
                "token_id": self.token_ids,
                "attribution": self.scores,
                "normalized": self.normalized,
            }
        )

    def title(self) -> str:
        return (
            f"{self.method} on {self.model_name}: {self.question}; "
            f"{self.output_kind} of {visible(self.target_text)!r} = {self.output:.4g} "
            f"(baseline {self.baseline_output:.4g}); sum of scores {self.scores.sum():.4g}"
        )

    def to_html(self) -> str:
        chips = []
        for token, score, norm, counted in zip(
            self.tokens, self.scores, self.normalized, self.attributable, strict=True
        ):
            background, color = _diverging(norm) if counted else ("#eeeeee", "#666666")
            chips.append(
                f'<span title="{score:.4g}" style="display:inline-block;margin:1px;'
                f"padding:2px 4px;border-radius:3px;background:{background};color:{color};"
                f'font-family:monospace;white-space:pre">{escape(visible(token))}</span>'
            )
        return (
            f'<div class="lmle-attributions"><div style="margin-bottom:4px">'
            f"{escape(self.title())}</div>{''.join(chips)}<div><small>red raises the "
            "output, blue lowers it; grey: kept in the baseline; hover for the score"
            "</small></div></div>"
        )

    def figure(self):
        import matplotlib.pyplot as plt

        n = len(self.tokens)
        figure, axes = plt.subplots(figsize=(max(5.0, 0.7 * n), 2.6))
        colors = [
            _diverging(v)[0] if counted else "#cccccc"
            for v, counted in zip(self.normalized, self.attributable, strict=True)
        ]
        axes.bar(range(n), self.scores, color=colors, edgecolor="#555555", linewidth=0.5)
        axes.axhline(0, color="#555555", linewidth=0.5)
        axes.set_xticks(range(n), [visible(t) for t in self.tokens], rotation=45, ha="right")
        axes.set_ylabel(f"attribution ({self.output_kind})")
        axes.set_title(_wrap(self.title(), 110), fontsize=8)
        figure.tight_layout()
        return figure

    def faithfulness(
        self, convention: str = "deletion", baseline: str | None = None
    ) -> FaithfulnessResult:
        """Deletion and insertion curves, their areas, and ERASER's comprehensiveness and
        sufficiency for this attribution (computed once per convention, then kept).

        ``convention="deletion"`` (the default, as in ERASER) removes tokens from the text;
        ``"replacement"`` puts ``baseline`` (default: this attribution's own) in their place.

        >>> a.faithfulness().comprehensiveness             # tokens deleted
        >>> a.faithfulness("replacement", baseline="pad")  # tokens replaced by the pad token
        """
        check_choice(convention, "convention", CONVENTIONS)
        if convention == "deletion":
            if baseline is not None:
                raise ValueError(
                    "baseline is for convention='replacement'; deletion removes tokens and "
                    f"puts nothing in their place; got baseline={baseline!r}"
                )
        else:
            baseline = self.settings["baseline"] if baseline is None else baseline
            self.explainer._check_baseline(baseline)
        key = (convention, baseline)
        if key not in self._faithfulness:
            self._faithfulness[key] = self.explainer._faithfulness(self, convention, baseline)
        return self._faithfulness[key]


@dataclass
class FaithfulnessResult(Result):
    """How the explained output moves when tokens go, most important first.

    ``deletion[k]``: f with the ``k`` top-scored tokens removed; ``insertion[k]``: f with
    only the ``k`` top-scored tokens (k = 0..n over the n attributable tokens; special tokens
    and a masked LM's ``[MASK]`` always stay). ``convention`` says how a token is removed:
    ``"deletion"`` takes it out of the text (ERASER), ``"replacement"`` puts ``baseline`` in
    its place. Where deletion leaves a causal LM no token at all, f is read after the
    tokenizer's BOS token (else its EOS token): the start of a text.
    Areas are over the fraction k/n in [0, 1]: a faithful attribution has a small
    ``deletion_auc`` and a large ``insertion_auc``. ``comprehensiveness`` (higher is better)
    and ``sufficiency`` (lower is better) are ERASER's AOPC: ``f(x) - f(x without r_b)`` and
    ``f(x) - f(r_b only)`` averaged over the bins ``b`` in 1, 5, 10, 20, 50 % of the tokens,
    ``r_b`` the ``ceil(b * n)`` top-scored tokens (see :data:`ERASER_BINS`).
    """

    method: str
    order: list[int]
    tokens: list[str]
    deletion: np.ndarray
    insertion: np.ndarray
    output_kind: str
    convention: str = "deletion"
    baseline: str | None = None

    @property
    def fractions(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, len(self.order) + 1)

    @property
    def deletion_auc(self) -> float:
        return float(np.trapezoid(self.deletion, self.fractions))

    @property
    def insertion_auc(self) -> float:
        return float(np.trapezoid(self.insertion, self.fractions))

    def bins(self) -> list[int]:
        """The number of tokens in each ERASER bin: ``ceil(b * n)``, at least 1, at most n."""
        return eraser_bins(len(self.order))

    @property
    def comprehensiveness(self) -> float:
        full = self.deletion[0]
        return float(np.mean([full - self.deletion[k] for k in self.bins()]))

    @property
    def sufficiency(self) -> float:
        full = self.deletion[0]
        return float(np.mean([full - self.insertion[k] for k in self.bins()]))

    def summary(self) -> dict[str, float]:
        """The four numbers: deletion_auc, insertion_auc, comprehensiveness, sufficiency."""
        return {
            "deletion_auc": self.deletion_auc,
            "insertion_auc": self.insertion_auc,
            "comprehensiveness": self.comprehensiveness,
            "sufficiency": self.sufficiency,
        }

    def removal(self) -> str:
        """How tokens were removed, in words."""
        if self.convention == "deletion":
            return "tokens deleted from the text"
        return f"tokens replaced by the {self.baseline} baseline"

    def __repr__(self) -> str:
        numbers = ", ".join(f"{k}={v:.4g}" for k, v in self.summary().items())
        return f"FaithfulnessResult({self.method}, {self.removal()}: {numbers})"

    def to_frame(self):
        """Columns ``k, fraction, token`` (the k-th token removed or added), ``deletion``,
        ``insertion``."""
        import pandas as pd

        return pd.DataFrame(
            {
                "k": range(len(self.order) + 1),
                "fraction": self.fractions,
                "token": [""] + [self.tokens[i] for i in self.order],
                "deletion": self.deletion,
                "insertion": self.insertion,
            }
        )

    def to_html(self) -> str:
        rows = "".join(
            f"<tr><td>{escape(name)}</td><td>{value:.4g}</td></tr>"
            for name, value in self.summary().items()
        )
        order = " &gt; ".join(escape(visible(self.tokens[i])) for i in self.order)
        return (
            f'<div class="lmle-faithfulness"><div>{escape(self.method)} '
            f"({escape(self.removal())}): tokens by score: "
            f"<code>{order}</code></div><table>{rows}</table></div>"
        )

    def figure(self):
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(5.0, 3.0))
        axes.plot(
            self.fractions, self.deletion, "o-", label=f"deletion (AUC {self.deletion_auc:.3g})"
        )
        axes.plot(
            self.fractions, self.insertion, "s-", label=f"insertion (AUC {self.insertion_auc:.3g})"
        )
        axes.set_xlabel(
            f"fraction of tokens removed (deletion) or kept (insertion)\n({self.removal()})"
        )
        axes.set_ylabel(self.output_kind)
        axes.set_title(f"{self.method}: most important tokens first", fontsize=9)
        axes.legend(fontsize=8)
        figure.tight_layout()
        return figure


@dataclass
class ComparisonResult(Result):
    """Several methods on the same question. ``results[name]`` is an
    :class:`AttributionResult`, or for a refused method the reason (a string).
    ``convention`` is the faithfulness convention of the table (None: not computed)."""

    tokens: list[str]
    results: dict[str, AttributionResult | str]
    convention: str | None

    def __repr__(self) -> str:
        return f"ComparisonResult({', '.join(self.results)})"

    def _ran(self) -> dict[str, AttributionResult]:
        return {k: v for k, v in self.results.items() if isinstance(v, AttributionResult)}

    def to_frame(self):
        """One row per method: ``seconds``, ``sum`` of scores, ``output - baseline``,
        ``delta``, the faithfulness numbers (if computed) and ``refused`` (the reason, for
        methods that do not apply)."""
        import pandas as pd

        rows = []
        for name, result in self.results.items():
            row = {"method": name}
            if isinstance(result, AttributionResult):
                row.update(
                    seconds=result.seconds,
                    sum=float(result.scores.sum()),
                    output_minus_baseline=result.output - result.baseline_output,
                    delta=result.delta,
                )
                if self.convention:
                    row.update(result.faithfulness(self.convention).summary())
                row["refused"] = ""
            else:
                row["refused"] = result
            rows.append(row)
        return pd.DataFrame(rows).set_index("method")

    def scores_frame(self):
        """Normalized scores: one row per method that ran, one column per token."""
        import pandas as pd

        ran = self._ran()
        columns = [f"{i}:{token}" for i, token in enumerate(self.tokens)]
        return pd.DataFrame([r.normalized for r in ran.values()], index=list(ran), columns=columns)

    def _grid(self) -> tuple:
        """(title, token labels, method names, cell texts, colour values in [0, 1]) of the
        normalized scores, for the HTML grid and its static twin."""
        ran = self._ran()
        return (
            "normalized attribution (red raises the output, blue lowers it)",
            [visible(t) for t in self.tokens],
            list(ran),
            [[f"{v:+.2f}" for v in r.normalized] for r in ran.values()],
            [((r.normalized + 1) / 2).tolist() for r in ran.values()],
        )

    def to_html(self) -> str:
        grid = html_grid(*self._grid(), cmap="RdBu_r")
        table = self.to_frame().to_html(float_format=lambda v: f"{v:.4g}", escape=True)
        return f'<div class="lmle-comparison">{grid}{table}</div>'

    def figure(self):
        return grid_figure(*self._grid(), cmap="RdBu_r", row_axis="method")


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


# --------------------------------------------------------------------------- the explainer


def token_scores(spec, per_feature: torch.Tensor) -> torch.Tensor:
    """One score per token from captum's (tokens, features) attribution.

    - Perturbation methods replace whole tokens and give every feature of a token the same
      value: that value (their mean) is the score.
    - Methods that return a gradient, not a contribution (saliency, guided backprop,
      deconvolution): the sum of absolute values (L1 norm). A plain sum would be about 0 in
      every model whose embeddings reach the output only through LayerNorm: its gradient is
      orthogonal to the all-ones direction.
    - Contributions (input x gradient, integrated gradients, DeepLift, DeepLiftShap): the
      sum, so that completeness can be checked against f(x) - f(x').
    """
    if spec.family == "perturbation":
        return per_feature.mean(-1)
    if spec.signal == "gradient":
        return per_feature.abs().sum(-1)
    return per_feature.sum(-1)


def eraser_bins(n: int) -> list[int]:
    """Tokens in each of ERASER's bins for ``n`` tokens: ``ceil(b * n)`` clipped to 1..n.

    >>> eraser_bins(8), eraser_bins(30)
    ([1, 1, 1, 2, 4], [1, 2, 3, 6, 15])
    """
    # The small epsilon keeps float noise (0.1 * 30 = 3.0000000000000004) from adding a token.
    return [min(n, max(1, math.ceil(b * n - 1e-9))) for b in ERASER_BINS]


class AttributionsExplainer:
    """Attributions: how much each input token matters to one prediction (captum methods).

    >>> attributions = lm_layers_explainer["attributions"](model, text)
    >>> a = attributions(method="integrated_gradients", target=" Paris")
    >>> a.scores, a.to_frame(), a.faithfulness(), a.save("ig.png")
    >>> attributions.compare(methods=["saliency", "integrated_gradients"])
    >>> attributions.methods            # every method, and why some are refused here

    ``model`` is a causal LM (explains the next token after ``text``), a masked LM (explains
    the one ``[MASK]`` in ``text``) or a sequence classifier (explains a class; give
    ``text_pair`` for two-text tasks such as entailment). ``target`` is a token text, a
    token id, a class label or index, or None for the model's own top prediction.
    """

    def __init__(self, model, text: str, text_pair: str | None = None):
        self.model = lm = load_model(model)
        if lm.kind not in EXPLAINED_KINDS:
            raise ValueError(
                f"model must be a causal LM, a masked LM or a sequence classifier for "
                f"attributions; {lm.name} is {lm.kind!r}. (Seq2seq models and plain encoders "
                "have no single output to explain here yet)"
            )
        self.text = check_text(text)
        if text_pair is not None:
            if lm.kind == "causal":
                raise ValueError(
                    "text_pair is for masked LMs and sequence classifiers (two segments); "
                    "for a causal LM put both texts in text"
                )
            self.text_pair = check_text(text_pair, "text_pair")
            encoding = lm.tokenizer(self.text, self.text_pair)
        else:
            self.text_pair = None
            encoding = lm.tokenizer(self.text)
        self.ids = [int(i) for i in encoding["input_ids"]]
        check_length(lm, len(self.ids))
        self.extra = {}
        if "token_type_ids" in encoding:
            self.extra["token_type_ids"] = torch.tensor(
                [encoding["token_type_ids"]], device=lm.device
            )
        self.tokens = token_texts(lm.tokenizer, self.ids)
        self.read_at = self._read_position()
        special = set(lm.tokenizer.all_special_ids)
        kept = [i in special for i in self.ids]
        if self.read_at is not None and lm.kind == "masked":
            kept[self.read_at] = True
        self.attributable = ~np.array(kept)
        if not self.attributable.any():
            raise ValueError(
                f"text must contain at least one ordinary token to attribute to; got only "
                f"special tokens: {self.tokens}"
            )
        self._logits: torch.Tensor | None = None
        self._baseline_logits: dict[str, torch.Tensor] = {}
        self._deleted_outputs: dict[tuple, float] = {}

    def _read_position(self) -> int | None:
        lm = self.model
        if lm.kind == "causal":
            return len(self.ids) - 1
        if lm.kind == "classifier":
            return None
        mask_id = lm.tokenizer.mask_token_id
        if mask_id is None:
            raise ValueError(f"{lm.name} has no mask token, so a masked-LM question needs one")
        where = [i for i, token in enumerate(self.ids) if token == mask_id]
        if len(where) != 1:
            raise ValueError(
                f"text must contain exactly one {lm.tokenizer.mask_token} for a masked LM "
                f"(the prediction to explain); found {len(where)}"
            )
        return where[0]

    # ----------------------------------------------------------------- what is explained

    @property
    def methods(self):
        """Every method: captum class, family, summary, and the reason it is refused for
        this model (empty where it runs). A pandas DataFrame indexed by method name."""
        import pandas as pd

        return pd.DataFrame(
            [
                (m.name, m.captum, m.family, m.summary, m.refuse(self.model) or "")
                for m in METHODS.values()
            ],
            columns=["method", "captum", "family", "summary", "refused"],
        ).set_index("method")

    def labels(self) -> list[str]:
        """A classifier's class labels, in index order."""
        id2label = self.model.config.id2label
        return [str(id2label[i]) for i in range(len(id2label))]

    def logits(self) -> torch.Tensor:
        """The model's logits for what is explained (vocabulary or classes); one forward."""
        if self._logits is None:
            self._forward(None)
        return self._logits

    def _forward(self, baseline: str | None) -> None:
        """Keep the logits of the text and, for a ``baseline`` kind, of the baseline: one
        forward pass (a batch of two) for whichever of them is not kept yet."""
        want_x = self._logits is None
        want_baseline = baseline is not None and baseline not in self._baseline_logits
        if not (want_x or want_baseline):
            return
        x = self._embeddings()
        rows = ([x] if want_x else []) + ([self._baseline(x, baseline)] if want_baseline else [])
        f = ExplainedOutput(self.model, self.read_at, 0, "logit", self.extra)
        with torch.no_grad():
            logits = f.logits(torch.cat(rows)).float()
        if want_x:
            self._logits = logits[0]
        if want_baseline:
            self._baseline_logits[baseline] = logits[-1]

    def _question_text(self) -> str:
        if self.model.kind == "causal":
            return "next token after the text"
        if self.model.kind == "masked":
            return f"the {self.model.tokenizer.mask_token} at position {self.read_at}"
        return "class of the text" + (" pair" if self.text_pair is not None else "")

    def resolve_target(self, target) -> tuple[int, str]:
        """(index, text) of ``target``: a token text or id (LMs), a label or class index
        (classifiers), or None for the model's top prediction."""
        lm = self.model
        if lm.kind == "classifier":
            labels = self.labels()
            if target is None:
                index = int(self.logits().argmax())
            elif isinstance(target, str):
                if target not in labels:
                    raise ValueError(f"target must be one of the labels {labels}; got {target!r}")
                index = labels.index(target)
            else:
                index = check_int(target, "target", 0, len(labels) - 1)
            return index, labels[index]
        index = int(self.logits().argmax()) if target is None else token_id(lm, target, "target")
        return index, lm.tokenizer.decode([index])

    # ----------------------------------------------------------------- running methods

    def __call__(
        self,
        method: str = "integrated_gradients",
        target=None,
        *,
        output: str = "probability",
        baseline: str = "zero",
        n_steps: int = 50,
        internal_batch_size: int | None = None,
        n_samples: int | None = None,
        window: int = 1,
        seed: int = 0,
    ) -> AttributionResult:
        """Attribute ``target`` with ``method``.

        ``output``: explain the ``probability`` (softmax) or the ``logit``. ``baseline``:
        what replaces a token (``zero`` vector, or the embedding of the ``pad`` or ``mask``
        token). ``n_steps``: integration steps (integrated_gradients). ``internal_batch_size``:
        how many interpolated or perturbed inputs go through the model at once; None
        chooses it from the text's length and the free memory (``result.settings`` says what
        was chosen), and a value whose estimated memory is not free is refused up front.
        ``n_samples``: samples of lime, kernel_shap, shapley_value_sampling (permutations)
        and deeplift_shap (baselines); None for each method's default. ``window``: tokens
        per occlusion window. ``seed``: for every random choice.
        """
        spec = check_method(method)
        settings = self._settings(
            spec,
            output=output,
            baseline=baseline,
            n_steps=n_steps,
            internal_batch_size=internal_batch_size,
            n_samples=n_samples,
            window=window,
            seed=seed,
        )
        reason = spec.refuse(self.model)
        if reason:
            raise MethodNotApplicableError(reason)
        if target is None:  # the top prediction: the same forward pass as f(x')
            self._forward(settings["baseline"])
        index, text = self.resolve_target(target)
        return self._run(spec, index, text, settings)

    def compare(self, methods=None, target=None, *, faithfulness=True, **options):
        """Run several methods (default: all) on the same target; refused methods are
        listed with their reason. Options are those of a single call. ``faithfulness``:
        True (tokens deleted), a convention (``"deletion"``, ``"replacement"`` by each
        method's baseline), or False (not computed).

        >>> attributions.compare(["saliency", "integrated_gradients"]).to_frame()
        """
        if faithfulness is True:
            faithfulness = "deletion"
        elif faithfulness is not False and faithfulness not in CONVENTIONS:
            raise ValueError(
                f"faithfulness must be True, False or one of {', '.join(CONVENTIONS)}; "
                f"got {faithfulness!r}"
            )
        unknown = sorted(set(options) - set(CALL_OPTIONS))
        if unknown:
            raise TypeError(
                f"compare() got unknown options {unknown}; valid: {', '.join(CALL_OPTIONS)}"
            )
        names = list(METHODS) if methods is None else methods
        if isinstance(names, str) or not names:
            raise ValueError(
                f"methods must be a non-empty list of method names ({', '.join(METHODS)}) "
                "or None for all"
            )
        specs = [check_method(name) for name in names]
        if len({s.name for s in specs}) != len(specs):
            raise ValueError(f"methods must not repeat a name; got {names}")
        checked = {s.name: self._settings(s, **{**CALL_OPTIONS, **options}) for s in specs}
        if target is None:
            self._forward(checked[specs[0].name]["baseline"])
        index, text = self.resolve_target(target)
        results: dict[str, AttributionResult | str] = {}
        for spec in progress(specs, desc="attribution methods"):
            reason = spec.refuse(self.model)
            if reason:
                results[spec.name] = reason
                continue
            result = self._run(spec, index, text, checked[spec.name])
            if faithfulness:
                result.faithfulness(faithfulness)
            results[spec.name] = result
        return ComparisonResult(
            tokens=self.tokens, results=results, convention=faithfulness or None
        )

    def _settings(
        self, spec, *, output, baseline, n_steps, internal_batch_size, n_samples, window, seed
    ) -> dict:
        """Check every option before any model work (defaults: those of ``__call__``)."""
        check_choice(output, "output", OUTPUTS)
        self._check_baseline(baseline)
        n_steps = check_int(n_steps, "n_steps", 1, 10_000)
        if internal_batch_size is not None:
            internal_batch_size = check_int(internal_batch_size, "internal_batch_size", 1, 4096)
        if n_samples is not None:
            n_samples = check_int(
                n_samples, "n_samples", 2 if spec.name == "deeplift_shap" else 1, 100_000
            )
        n_samples = n_samples if n_samples is not None else spec.default_samples
        window = check_int(window, "window", 1, len(self.ids))
        seed = check_seed(seed)
        batch, memory = self._batch(spec, internal_batch_size, n_samples)
        return {
            "output": output,
            "baseline": baseline,
            "n_steps": n_steps,
            "internal_batch_size": batch,
            "n_samples": n_samples,
            "window": window,
            "seed": seed,
            "memory": memory,
        }

    def _batch(self, spec, internal_batch_size: int | None, n_samples) -> tuple[int, str]:
        """Inputs per pass through the model, and what was chosen, in words; a ValueError
        with the estimate when what the method needs is not free."""
        n = len(self.ids)
        backward = spec.family == "gradient"
        fit = rows_that_fit(self.model, n, backward=backward)
        limit = int(REFUSE_ABOVE * fit.available // fit.bytes_per_row)
        per_row = f"{fit.bytes_per_row / 2**30:.2f} GiB per input on {n} tokens"
        free = f"{fit.available / 2**30:.1f} GiB available"
        if spec.batched and internal_batch_size is None:
            if limit < 1:
                raise ValueError(
                    f"{spec.name} needs about {per_row}, more than the {free}: shorten the "
                    "text, or free memory"
                )
            return fit.rows, f"internal_batch_size={fit.rows}, chosen: {fit.describe()}"
        rows = internal_batch_size if spec.batched else spec.rows(n_samples)
        if rows > max(limit, 0):
            fix = (
                f"internal_batch_size={max(limit, 1)} or less (None chooses)"
                if spec.batched
                else "fewer n_samples"
                if spec.name == "deeplift_shap"
                else "a shorter text"
            )
            raise ValueError(
                f"{spec.name} would put {rows} inputs through the model at once, about "
                f"{rows * fit.bytes_per_row / 2**30:.1f} GiB ({per_row}), more than the {free}: "
                f"use {fix}"
            )
        batch = internal_batch_size if spec.batched else fit.rows
        return batch, f"internal_batch_size={batch}" + (", given" if spec.batched else "")

    def _check_baseline(self, baseline) -> str:
        tokenizer = self.model.tokenizer
        check_choice(baseline, "baseline", BASELINES)
        if baseline == "pad" and tokenizer.pad_token_id is None:
            raise ValueError(f"baseline='pad' needs a pad token; {self.model.name} has none")
        if baseline == "mask" and tokenizer.mask_token_id is None:
            raise ValueError(
                f"baseline='mask' needs a mask token; {self.model.name} has none "
                "(use 'zero' or 'pad')"
            )
        return baseline

    def _embeddings(self) -> torch.Tensor:
        ids = torch.tensor([self.ids], device=self.model.device)
        with torch.no_grad():
            return self.model.embeddings(ids).detach()

    def _baseline(self, x: torch.Tensor, baseline: str) -> torch.Tensor:
        """x with every attributable token replaced (special tokens kept)."""
        tokenizer = self.model.tokenizer
        replaced = x.clone()
        where = torch.tensor(self.attributable, device=x.device)
        if baseline == "zero":
            replaced[0, where] = 0.0
        else:
            token = tokenizer.pad_token_id if baseline == "pad" else tokenizer.mask_token_id
            with torch.no_grad():
                vector = self.model.embeddings(torch.tensor([token], device=x.device))[0]
            replaced[0, where] = vector
        return replaced

    def _random_baselines(self, x: torch.Tensor, n: int, seed: int) -> torch.Tensor:
        """``n`` copies of x whose attributable tokens are random ordinary tokens."""
        generator = torch.Generator().manual_seed(seed)
        special = torch.tensor(sorted(set(self.model.tokenizer.all_special_ids)))
        vocabulary = self.model.embeddings.weight.shape[0]
        where = torch.tensor(self.attributable)
        ids = torch.tensor(self.ids).repeat(n, 1)
        draws = torch.randint(0, vocabulary, (n, int(where.sum())), generator=generator)
        if len(special):  # redraw special ids as their neighbour, deterministically
            draws = torch.where(torch.isin(draws, special), (draws + 1) % vocabulary, draws)
        ids[:, where] = draws
        with torch.no_grad():
            return self.model.embeddings(ids.to(x.device)).detach()

    def _run(self, spec, index: int, text: str, settings: dict) -> AttributionResult:
        lm = self.model
        x = self._embeddings()
        f = ExplainedOutput(lm, self.read_at, index, settings["output"], self.extra)
        baseline = self._baseline(x, settings["baseline"])
        n_tokens, n_features = x.shape[1:]
        question = Question(
            f=f,
            x=x.clone().requires_grad_(True),  # captum warns when it has to set this itself
            baseline=baseline,
            feature_mask=torch.arange(n_tokens, device=x.device)
            .view(1, n_tokens, 1)
            .expand(1, n_tokens, n_features)
            .clone(),
            baseline_sampler=lambda n: self._random_baselines(x, n, settings["seed"]),
            n_steps=settings["n_steps"],
            internal_batch_size=settings["internal_batch_size"],
            n_samples=settings["n_samples"],
            window=settings["window"],
        )
        batch = settings["internal_batch_size"]
        f.after_pass = _PassProgress(
            spec.passes(n_tokens, settings["n_steps"], batch, settings["n_samples"]),
            f"{spec.name} ({len(self.ids)} tokens, batches of {batch})",
        )
        with torch.random.fork_rng(devices=[] if x.device.type == "cpu" else [x.device]):
            torch.manual_seed(settings["seed"])
            start = time.perf_counter()
            try:
                attribution, delta = spec.run(question)
            finally:
                f.after_pass.close()
                f.after_pass = None
            seconds = time.perf_counter() - start
        scores = token_scores(spec, attribution.detach()[0].double()).cpu().numpy()
        # f(x) and f(x') from the logits the explainer keeps (one forward pass for both, per
        # explainer and baseline kind); deeplift_shap's x' are its random baselines.
        self._forward(settings["baseline"])
        output = _read(self.logits(), index, settings["output"])
        if spec.name == "deeplift_shap":
            with torch.no_grad():
                references = question.baseline_sampler(settings["n_samples"])
                baseline_output = float(f(references).mean())
        else:
            baseline_output = _read(
                self._baseline_logits[settings["baseline"]], index, settings["output"]
            )
        return AttributionResult(
            method=spec.name,
            model_name=lm.name,
            tokens=self.tokens,
            token_ids=list(self.ids),
            scores=scores,
            attributable=self.attributable.copy(),
            target=index,
            target_text=text,
            question=self._question_text(),
            output_kind=settings["output"],
            output=output,
            baseline_output=baseline_output,
            delta=delta,
            seconds=seconds,
            explainer=self,
            settings=dict(settings),
        )

    def _faithfulness(
        self, result: AttributionResult, convention: str, baseline: str | None
    ) -> FaithfulnessResult:
        """f with the top-k tokens removed (deletion curve) and with only them (insertion
        curve), for k = 0..n, tokens removed by ``convention``."""
        settings = result.settings
        order = result.top(len(self.tokens))
        always = [i for i in range(len(self.ids)) if not self.attributable[i]]
        deleted = [
            sorted(set(range(len(self.ids))) - set(order[:k])) for k in range(len(order) + 1)
        ]
        inserted = [sorted(always + order[:k]) for k in range(len(order) + 1)]
        if convention == "deletion":  # texts of different lengths: one pass each
            texts = progress(
                deleted + inserted,
                desc=f"faithfulness ({len(order)} tokens deleted one by one)",
                show=len(order) >= FAITHFULNESS_PROGRESS,
            )
            outputs = [self._output_with(kept, result.target, settings["output"]) for kept in texts]
        else:
            x = self._embeddings()
            replaced = self._baseline(x, baseline)
            variants = []
            for kept in deleted + inserted:
                variant = replaced.clone()
                variant[0, kept] = x[0, kept]
                variants.append(variant)
            variants = torch.cat(variants)
            f = ExplainedOutput(
                self.model, self.read_at, result.target, settings["output"], self.extra
            )
            size = settings["internal_batch_size"]
            with torch.no_grad():
                outputs = torch.cat(
                    [f(variants[s : s + size]) for s in range(0, len(variants), size)]
                ).tolist()
        outputs = np.asarray(outputs, dtype=np.float64)
        return FaithfulnessResult(
            method=result.method,
            order=order,
            tokens=self.tokens,
            deletion=outputs[: len(order) + 1],
            insertion=outputs[len(order) + 1 :],
            output_kind=settings["output"],
            convention=convention,
            baseline=baseline,
        )

    def _output_with(self, kept: list[int], target: int, output: str) -> float:
        """f of the text made of the tokens at positions ``kept`` only (the others deleted).

        Kept per explainer: attributions of one text share most of their deleted texts.
        """
        key = (tuple(kept), target, output)
        if key not in self._deleted_outputs:
            lm = self.model
            ids = [self.ids[i] for i in kept]
            if not ids:  # a causal LM with nothing left: read after the start of a text
                start = lm.tokenizer.bos_token_id
                start = lm.tokenizer.eos_token_id if start is None else start
                if start is None:
                    raise ValueError(
                        f"{lm.name}'s tokenizer has neither a BOS nor an EOS token to stand "
                        "for an empty text; use convention='replacement'"
                    )
                ids = [int(start)]
            if lm.kind == "causal":
                read_at = len(ids) - 1
            elif lm.kind == "masked":
                read_at = kept.index(self.read_at)
            else:
                read_at = None
            extra = {name: value[:, kept] for name, value in self.extra.items()}
            with torch.no_grad():
                x = lm.embeddings(torch.tensor([ids], device=lm.device))
                value = ExplainedOutput(lm, read_at, target, output, extra)(x)
            self._deleted_outputs[key] = float(value[0])
        return self._deleted_outputs[key]


CALL_OPTIONS = {
    name: parameter.default
    for name, parameter in inspect.signature(AttributionsExplainer.__call__).parameters.items()
    if parameter.kind is parameter.KEYWORD_ONLY
}
"""The options of a single call, with their defaults; ``compare`` takes the same."""
