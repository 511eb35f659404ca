"""The results of the attributions explainer: one method's scores, the faithfulness of an
attribution, and several methods compared. They hold data (the scores, the settings and
the :class:`~.explained.Explained` question they answer), never the explainer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..checks import check_choice
from ..render import (
    INLINE_FONT,
    NOT_SAVED,
    Result,
    escape,
    grid_figure,
    html_grid,
    inline_png,
    progress,
    score,
    shade,
    signed,
    visible,
)
from .explained import Explained, check_baseline
from .faithfulness import CONVENTIONS, eraser_bins, removal_curves

FAITHFULNESS_PROGRESS = 32
"""Deletion curves over at least this many tokens (2 n + 2 passes) show a progress bar."""


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
    seconds: float | None = field(metadata={NOT_SAVED: True})
    """The run time: not saved (it changes from run to run), None in a loaded result."""
    explained: Explained | None = field(repr=False, metadata={NOT_SAVED: True})
    """The question, with the model: None in a result loaded from a file."""
    settings: dict = field(repr=False)
    _faithfulness: dict = field(default_factory=dict, repr=False)
    foil: int | None = None
    """Contrastive: the token (or class) whose output is subtracted from the target's."""
    foil_text: str | None = None
    n_encoder: int = 0
    """Two blocks of tokens: the first ``n_encoder`` tokens are the first block's (a seq2seq
    model's encoder's, the first text's of a similarity), the rest the second's; 0 for
    one block."""
    block_names: list[str] = field(default_factory=lambda: ["encoder", "decoder"])

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
        """Columns ``position, token, token_id, attribution, normalized``; for a seq2seq
        model also ``block`` (``encoder`` or ``decoder``)."""
        import pandas as pd

        frame = pd.DataFrame(
            {
                "position": range(len(self.tokens)),
                "token": self.tokens,
                "token_id": self.token_ids,
                "attribution": self.scores,
                "normalized": self.normalized,
            }
        )
        if self.n_encoder:
            frame.insert(1, "block", _blocks(self.n_encoder, len(self.tokens), self.block_names))
        return frame

    def explains(self) -> str:
        """What the scores explain, in words: ``probability of ' Paris'``, or for a
        contrast ``probability of ' London' minus probability of ' Manchester'``."""
        if not self.target_text:  # one output that is not a token's or a class's
            return self.output_kind
        shown = f"{self.output_kind} of {visible(self.target_text)!r}"
        if self.foil_text is not None:
            shown += f" minus {self.output_kind} of {visible(self.foil_text)!r}"
        return shown

    def title(self) -> str:
        return (
            f"{self.method} on {self.model_name}: {self.question}; {self.explains()} "
            f"= {self.output:.4g} "
            f"(baseline {self.baseline_output:.4g}); sum of scores {self.scores.sum():.4g}"
        )

    def to_html(self) -> str:
        chips, scale = [], float(np.max(np.abs(self.scores), initial=0.0))
        for token, value, norm, counted in zip(
            self.tokens, self.scores, self.normalized, self.attributable, strict=True
        ):
            background, color = _diverging(norm) if counted else ("#eeeeee", "#666666")
            chips.append(
                '<span style="display:inline-block;margin:1px;text-align:center">'
                f'<span style="display:block;padding:2px 4px;border-radius:3px;'
                f"background:{background};color:{color};font-family:monospace;"
                f'white-space:pre">{escape(visible(token))}</span>'
                '<span style="display:block;font-size:12px;color:#444">'
                f"{score(value, scale)}</span></span>"
            )
        shown = "".join(chips)
        if self.n_encoder:
            shown = _in_blocks(chips, self.n_encoder, self.block_names)
        return (
            f'<div class="lmle-attributions"><div style="margin-bottom:4px">'
            f"{escape(self.title())}</div>{shown}<div><small>"
            "under each token its "
            "score; red raises the output, blue lowers it; grey: kept in the baseline"
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
        if self.n_encoder:  # seq2seq: the encoder's tokens, then the decoder's
            axes.axvline(self.n_encoder - 0.5, color="#333333", linewidth=1.5)
            for x, block in zip((0, self.n_encoder), self.block_names, strict=True):
                axes.annotate(block, (x - 0.4, 1.0), xycoords=("data", "axes fraction"),
                              va="bottom", fontsize=8, style="italic")  # fmt: skip
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
        key = (convention, baseline)
        if key not in self._faithfulness:
            if self.explained is None:
                computed = ", ".join(f"{c!r} (baseline {b!r})" for c, b in self._faithfulness)
                raise ValueError(
                    "this attribution was loaded from a file and keeps no model, so it cannot "
                    f"compute faithfulness; it holds what was computed before it was saved: "
                    f"{computed or 'nothing'}"
                )
            if convention == "replacement":
                check_baseline(self.explained.lm, baseline)
            self._faithfulness[key] = _faithfulness(self, convention, baseline)
        return self._faithfulness[key]


@dataclass
class FaithfulnessResult(Result):
    """How the explained output moves when tokens go, most important first.

    ``deletion[k]``: f with the ``k`` top-scored tokens removed; ``insertion[k]``: f with
    only the ``k`` top-scored tokens (k = 0..n over the n attributable tokens; special tokens
    and a masked LM's ``[MASK]`` always stay). ``convention`` says how a token is removed:
    ``"deletion"`` takes it out of the text (ERASER), ``"replacement"`` puts ``baseline`` in
    its place. Where deletion leaves a causal LM no token at all, f is read after the
    tokenizer's BOS token (else its EOS token): the start of a text. A question-answering
    row reads its position where that token now is; once the token is deleted, its
    probability is 0 (a logit is refused: use replacement).
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
            f"<code>{order}</code></div><table>{rows}</table>"
            + inline_png(self.figure(), "deletion and insertion curves")
            + "</div>"
        )

    def figure(self):
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(5.6, 3.2))
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
        axes.set_title(f"{self.method}: most important tokens first", fontsize=INLINE_FONT + 1)
        axes.legend(fontsize=INLINE_FONT)
        figure.tight_layout()
        return figure


AGGREGATE_RULES = ("sum", "mean", "max_abs")
"""How :meth:`ContinuationResult.aggregate` combines the scores of a word's pieces."""


@dataclass
class ContinuationResult(Result):
    """Every token of a continuation attributed to the tokens before it.

    ``scores`` is (target tokens, source tokens): row ``t`` is what target token ``t``
    depends on; the sources are the text's ``n_input`` tokens, then the target's tokens, and
    row ``t`` is NaN from source ``n_input + t`` (the token itself) on. ``outputs`` and
    ``baseline_outputs`` are f(x) and f(x') of each row, ``deltas`` captum's convergence
    delta where the method reports one (else NaN). ``step_scores`` holds, per target token,
    its ``probability`` given everything before it and the ``entropy`` (nats) of the model's
    distribution there. For a seq2seq model the first ``n_encoder`` sources are the
    encoder's tokens, then come the decoder's (its start token, then the target's).

    A contrast has ``foil_ids`` and ``foil_tokens``, one per target token: row ``t``
    explains target token ``t``'s output minus foil token ``t``'s, both read after the text
    and the target's tokens before ``t``; ``step_scores["foil_probability"]`` is the foil's
    probability there.
    """

    method: str
    model_name: str
    source_tokens: list[str]
    source_ids: list
    n_input: int
    scores: np.ndarray
    attributable: np.ndarray
    output_kind: str
    outputs: np.ndarray
    baseline_outputs: np.ndarray
    deltas: np.ndarray
    step_scores: dict
    seconds: float | None = field(metadata={NOT_SAVED: True})
    """The run time: not saved, None in a loaded result."""
    settings: dict = field(repr=False)
    n_encoder: int = 0
    foil_ids: list | None = None
    foil_tokens: list[str] | None = None

    @property
    def target_tokens(self) -> list[str]:
        return self.source_tokens[self.n_input : self.n_input + len(self.scores)]

    def explains(self) -> str:
        """What each row explains, in words."""
        shown = f"{self.output_kind} of each target token"
        return shown + (f" minus the {self.output_kind} of its foil" if self.foil_ids else "")

    @property
    def target_ids(self) -> list:
        return self.source_ids[self.n_input : self.n_input + len(self.scores)]

    def __repr__(self) -> str:
        return (
            f"ContinuationResult({self.method}, {len(self.target_tokens)} target tokens "
            f"{self.target_tokens!r} over {len(self.source_tokens)} sources)"
        )

    def to_frame(self):
        """Long format, one row per defined cell: ``target_index, target_token,
        source_index, source_token, score``; for a seq2seq model also ``source_block``
        (``encoder`` or ``decoder``)."""
        import pandas as pd

        rows = [
            (t, target, s, self.source_tokens[s], float(self.scores[t, s]))
            for t, target in enumerate(self.target_tokens)
            for s in range(self.n_input + t)
        ]
        frame = pd.DataFrame(
            rows, columns=["target_index", "target_token", "source_index", "source_token", "score"]
        )
        if self.n_encoder:
            blocks = _blocks(self.n_encoder, len(self.source_tokens))
            frame.insert(3, "source_block", [blocks[s] for s in frame["source_index"]])
        return frame

    def words(self) -> list[list[int]]:
        """The source positions grouped into words: a word starts at the text's first token,
        at the target's first token, at the decoder's first token, at a special token or
        after one, at a token that starts with whitespace or follows one that ends with it,
        and at punctuation or after it (a token with no letter or digit). Word pieces
        (" Heath", "row") join."""
        groups: list[list[int]] = []
        tokens = self.source_tokens
        for i, token in enumerate(tokens):
            before = tokens[i - 1] if i else ""
            starts = (
                not groups
                or i in (self.n_input, self.n_encoder)
                or not self.attributable[i]
                or not self.attributable[i - 1]
                or token[:1].isspace()
                or before[-1:].isspace()
                or not any(c.isalnum() for c in token)
                or not any(c.isalnum() for c in before)
            )
            if starts:
                groups.append([i])
            else:
                groups[-1].append(i)
        return groups

    def aggregate(self, unit: str = "words", rule: str = "sum") -> ContinuationResult:
        """The same result over words instead of tokens, on both axes: the score of
        (target word W, source word V) combines, by ``rule`` (``"sum"``, ``"mean"`` or
        ``"max_abs"``, the score of largest magnitude), the scores of W's pieces on V's
        pieces, and is NaN unless V lies entirely before W. A word's probability is the
        product of its pieces' (the chain rule), its entropy their mean. A contrast's foil
        word joins the foil tokens at the word's pieces, and its probability is their
        product (each read after the target's tokens before it).

        >>> s.aggregate("words").to_frame()
        """
        check_choice(unit, "unit", ("words",))
        check_choice(rule, "rule", AGGREGATE_RULES)
        sources = self.words()
        targets = [[i - self.n_input for i in g] for g in sources if g[0] >= self.n_input]
        targets = [t for t in targets if t[0] < len(self.scores)]
        scores = np.full((len(targets), len(sources)), np.nan)
        for w, pieces in enumerate(targets):
            for v, group in enumerate(sources):
                if group[-1] < self.n_input + pieces[0]:
                    block = self.scores[np.ix_(pieces, group)]
                    scores[w, v] = _combine(block, rule)
        probability = np.array([np.prod(self.step_scores["probability"][t]) for t in targets])
        entropy = np.array([np.mean(self.step_scores["entropy"][t]) for t in targets])
        steps = {"probability": probability, "entropy": entropy}
        foil = {}
        if self.foil_ids is not None:
            steps["foil_probability"] = np.array(
                [np.prod(self.step_scores["foil_probability"][t]) for t in targets]
            )
            foil["foil_ids"] = [[self.foil_ids[i] for i in t] for t in targets]
            foil["foil_tokens"] = ["".join(self.foil_tokens[i] for i in t) for t in targets]
        return ContinuationResult(
            method=self.method,
            model_name=self.model_name,
            source_tokens=["".join(self.source_tokens[i] for i in g) for g in sources],
            source_ids=[[self.source_ids[i] for i in g] for g in sources],
            n_input=sum(1 for g in sources if g[0] < self.n_input),
            n_encoder=sum(1 for g in sources if g[0] < self.n_encoder),
            scores=scores,
            attributable=np.array([bool(self.attributable[g].any()) for g in sources]),
            output_kind=self.output_kind,
            outputs=probability
            if self.output_kind == "probability" and self.foil_ids is None
            else np.full(len(targets), np.nan),
            baseline_outputs=np.full(len(targets), np.nan),
            deltas=np.full(len(targets), np.nan),
            step_scores=steps,
            seconds=self.seconds,
            settings=dict(self.settings, aggregated=f"{unit}, {rule}"),
            **foil,
        )

    def _grid(self) -> tuple:
        largest = np.nanmax(np.abs(self.scores)) if np.isfinite(self.scores).any() else 0.0
        largest = largest or 1.0
        cells, values = [], []
        for row in self.scores:
            cells.append(["" if np.isnan(v) else f"{v:+.2g}" for v in row])
            values.append([0.5 if np.isnan(v) else (v / largest + 1) / 2 for v in row])
        labels = [label for label, _ in self._steps()]
        title = (
            f"{self.method} on {self.model_name}: each target token (rows, with its "
            f"probability) attributed to the tokens before it (columns); {self.explains()}, "
            "red raises it, blue lowers it"
        )
        if self.n_encoder:
            title += "; a line parts the encoder's tokens from the decoder's"
        return title, [visible(t) for t in self.source_tokens], labels, cells, values

    def to_html(self) -> str:
        """The explorer: the text and its continuation; hovering a target token, or moving
        the keyboard focus to it (Tab), shades the tokens it depends on, each row on its
        own scale (red raises it, blue lowers it). Under each target token its probability,
        as a number and a bar. Plain HTML and CSS (``:has()``), no script: it works offline,
        from disk and in notebooks that run no scripts. :meth:`matrix` shows every row at
        once."""
        import uuid

        view = f"lmle-{uuid.uuid4()}"
        rules = [
            f"#{view} .tok{{display:inline-block;margin:1px 0;padding:1px 2px;"
            "border-radius:3px;font-family:monospace;white-space:pre;vertical-align:top;"
            "text-align:center}",
            f"#{view} .target{{border-bottom:2px solid #999;cursor:pointer}}",
            f"#{view} .target:focus{{outline:2px solid #333}}",
            f"#{view} .step{{display:block;font-size:11px;color:inherit;opacity:0.8}}",
        ]
        for t, row in enumerate(self.scores):
            largest = np.nanmax(np.abs(row)) if np.isfinite(row).any() else 0.0
            chosen = f"#{view}:has(.t{t}:hover, .t{t}:focus)"
            rules.append(f"{chosen} .t{t}{{outline:2px solid #000}}")
            for s, value in enumerate(row):
                if np.isnan(value) or not largest:
                    continue
                background, color = _diverging(value / largest)
                rules.append(f"{chosen} .s{s}{{background:{background};color:{color}}}")
        steps = self._steps()
        tokens = []
        for s, token in enumerate(self.source_tokens):
            shown = escape(visible(token))
            t = s - self.n_input
            if 0 <= t < len(self.scores):
                label, p = steps[t]
                bar = max(1, round(30 * float(p)))
                tokens.append(
                    f'<span class="tok s{s} target t{t}" tabindex="0" '
                    f'title="target token {t}: {escape(label)}">{shown}'
                    f'<span class="step">p={p:.2f}<br><span style="display:'
                    f'inline-block;width:{bar}px;height:4px;background:#777"></span>'
                    "</span></span>"
                )
            else:
                tokens.append(f'<span class="tok s{s}">{shown}</span>')
        under = "its probability"
        if self.foil_ids is not None:
            under = "its probability (its foil and the foil's probability in its tooltip)"
        caption = (
            f"{escape(self.method)} on {escape(self.model_name)}: hover a target token "
            "(underlined), or Tab to it, to shade the tokens it depends on; under each, "
            f"{under}. {len(self.scores)} target tokens, {escape(self.explains())}."
        )
        return (
            f'<div class="lmle-continuation" id="{view}"><style>{"".join(rules)}</style>'
            f"<div>{caption}</div>{_in_blocks(tokens, self.n_encoder)}</div>"
        )

    def _steps(self) -> list[tuple[str, float]]:
        """Each target token's label, ``' the' (p=0.42)`` or for a contrast ``' the' vs
        ' a' (p=0.42 vs 0.10)``, and its probability."""
        probability = self.step_scores["probability"]
        foils = self.foil_tokens or [None] * len(probability)
        foil_p = self.step_scores.get("foil_probability", foils)
        steps = []
        for token, p, foil, q in zip(self.target_tokens, probability, foils, foil_p, strict=True):
            if foil is None:
                steps.append((f"{visible(token)} (p={p:.2f})", p))
            else:
                steps.append((f"{visible(token)} vs {visible(foil)} (p={p:.2f} vs {q:.2f})", p))
        return steps

    def matrix(self):
        """Every row at once: the scores as a grid (target tokens x sources), for a
        notebook (``IPython.display.HTML``); :meth:`figure` draws the same as a picture."""
        from IPython.display import HTML

        return HTML(html_grid(*self._grid(), cmap="RdBu_r", split=self.n_encoder or None))

    def figure(self):
        return grid_figure(
            *self._grid(), cmap="RdBu_r", row_axis="target token", split=self.n_encoder or None
        )


def _blocks(n_first: int, n: int, names=("encoder", "decoder")) -> list[str]:
    """Which block each of ``n`` tokens is in, the first block's ``n_first`` first."""
    return [names[0]] * n_first + [names[1]] * (n - n_first)


def _in_blocks(chips: list[str], n_first: int, names=("encoder", "decoder")) -> str:
    """Token chips as one line, or as two labelled lines (a seq2seq model's encoder's
    tokens, then the decoder's; a similarity's two texts)."""
    if not n_first:
        return f"<div>{''.join(chips)}</div>"
    label = '<span style="display:inline-block;width:5em;font-style:italic">{}</span>'
    parts = (chips[:n_first], chips[n_first:])
    return "".join(
        f"<div>{label.format(escape(block))}{''.join(part)}</div>"
        for block, part in zip(names, parts, strict=True)
    )


def _combine(block: np.ndarray, rule: str) -> float:
    if rule == "sum":
        return float(block.sum())
    if rule == "mean":
        return float(block.mean())
    flat = block.reshape(-1)
    return float(flat[np.abs(flat).argmax()])


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
            [[signed(v) for v in r.normalized] for r in ran.values()],
            [((r.normalized + 1) / 2).tolist() for r in ran.values()],
        )

    def to_html(self) -> str:
        """The normalized scores of the methods that ran, as a grid, and the names of the
        refused methods. The numbers (sums, faithfulness, run times) are in
        :meth:`to_frame`: run times are left out of the HTML, which books publish, because
        they change from run to run."""
        grid = html_grid(*self._grid(), cmap="RdBu_r")
        refused = [escape(name) for name, reason in self.results.items() if isinstance(reason, str)]
        if refused:
            refused = (
                f"<div>Refused for this model: <code>{'</code>, <code>'.join(refused)}</code> "
                "(the reasons: <code>results[name]</code>, or the explainer's "
                "<code>methods</code>)</div>"
            )
        else:
            refused = ""
        return f'<div class="lmle-comparison">{grid}{refused}</div>'

    def figure(self):
        return grid_figure(*self._grid(), cmap="RdBu_r", row_axis="method")


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def _faithfulness(
    result: AttributionResult, convention: str, baseline: str | None
) -> FaithfulnessResult:
    """The deletion and insertion curves of ``result``, tokens removed by ``convention``."""
    question, settings = result.explained, result.settings
    order = result.top(len(result.tokens))
    always = [i for i in range(len(result.tokens)) if not result.attributable[i]]
    target, output, foil = result.target, settings["output"], result.foil
    if convention == "deletion":  # texts of different lengths: one pass each

        def f_keeping(sets):
            shown = progress(
                sets,
                desc=f"faithfulness ({len(order)} tokens deleted one by one)",
                show=len(order) >= FAITHFULNESS_PROGRESS,
            )
            return [question.output_with(kept, target, output, foil) for kept in shown]

    else:

        def f_keeping(sets):
            batch = settings["internal_batch_size"]
            return question.outputs_replacing(sets, target, output, baseline, batch, foil)

    deletion, insertion = removal_curves(f_keeping, order, always, len(result.tokens))
    return FaithfulnessResult(
        method=result.method,
        order=order,
        tokens=result.tokens,
        deletion=deletion,
        insertion=insertion,
        output_kind=output,
        convention=convention,
        baseline=baseline,
    )


@dataclass
class RowsResult(Result):
    """Several questions about one input, one :class:`AttributionResult` per row: the
    answer's start and end, each labelled token, each candidate label. ``rows`` maps a row's
    label to its result; ``task`` says what the rows are; ``details`` holds what the task
    reports besides (the answer, the label scores).

    >>> r = lm_layers_explainer["question_answering"](qa, question, context)()
    >>> list(r.rows), r.details["answer"]
    (['start', 'end'], 'Paris')
    """

    task: str
    model_name: str
    rows: dict[str, AttributionResult]
    details: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"RowsResult({self.task}, rows {list(self.rows)})"

    def to_frame(self):
        """Long format: ``row, position, token, attribution, normalized, output`` (the
        row's f(x))."""
        import pandas as pd

        frames = []
        for label, result in self.rows.items():
            frame = result.to_frame()
            frame.insert(0, "row", label)
            frame["output"] = result.output
            frames.append(frame)
        columns = ["row", "position", "token", "token_id", "attribution", "normalized", "output"]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)

    def _shared_tokens(self) -> list[str] | None:
        """The tokens, where every row has the same."""
        tokens = [r.tokens for r in self.rows.values()]
        return tokens[0] if tokens and all(t == tokens[0] for t in tokens) else None

    def _grid(self) -> tuple:
        tokens = self._shared_tokens()
        if tokens is None:
            raise ValueError(
                f"the rows of this {self.task} result read different tokens (one input each); "
                "see each row's own view: result.rows[label]"
            )
        rows = self.rows.values()
        return (
            f"{self.task} on {self.model_name}: each row's attribution, normalized on its own "
            "(red raises the row's output, blue lowers it)",
            [visible(t) for t in tokens],
            [f"{label} ({r.output_kind} {r.output:.2f})" for label, r in self.rows.items()],
            [[signed(v) for v in r.normalized] for r in rows],
            [((r.normalized + 1) / 2).tolist() for r in rows],
        )

    def to_html(self) -> str:
        """Each row's tokens coloured by its scores, one block per row (its title says what
        it explains); :meth:`matrix` shows the rows as one grid where they share tokens."""
        shown = "".join(
            f'<div style="margin:6px 0"><b>{escape(label)}</b>{result.to_html()}</div>'
            for label, result in self.rows.items()
        )
        summary = "; ".join(f"{k}: {_shown(v)}" for k, v in self.details.items())
        if not self.rows:
            shown = "<div>No row to explain.</div>"
        return (
            f'<div class="lmle-rows"><div>{escape(self.task)} on {escape(self.model_name)}'
            f"{': ' + escape(summary) if summary else ''}</div>{shown}</div>"
        )

    def matrix(self):
        """The rows as one grid (rows x tokens), where every row reads the same tokens."""
        from IPython.display import HTML

        return HTML(html_grid(*self._grid(), cmap="RdBu_r"))

    def figure(self):
        if self._shared_tokens() is not None and self.rows:
            return grid_figure(*self._grid(), cmap="RdBu_r", row_axis="row")
        import matplotlib.pyplot as plt

        n = max(len(self.rows), 1)
        width = max(5.0, 0.5 * max((len(r.tokens) for r in self.rows.values()), default=8))
        figure, axes = plt.subplots(n, 1, figsize=(width, 2.2 * n), squeeze=False)
        for axis, (label, result) in zip(axes[:, 0], self.rows.items(), strict=False):
            colors = [_diverging(v)[0] for v in result.normalized]
            axis.bar(range(len(result.tokens)), result.scores, color=colors)
            axis.set_xticks(range(len(result.tokens)), [visible(t) for t in result.tokens],
                            rotation=45, ha="right", fontsize=7)  # fmt: skip
            axis.set_title(f"{label}: {result.explains()} = {result.output:.3g}", fontsize=8)
        figure.suptitle(f"{self.task} on {self.model_name}", fontsize=9)
        figure.tight_layout()
        return figure


def _shown(value) -> str:
    """A detail's value in a caption: numbers to 3 digits, dicts as key=value."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={_shown(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
