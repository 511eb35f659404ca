"""Task models explained with the methods of ``attributions``: question answering (the
answer's start and end), token classification (each labelled token), zero-shot
classification with an NLI model (each candidate label) and sentence similarity (the
cosine of two mean-pooled sentence embeddings).

>>> qa = lm_layers_explainer["question_answering"](model, "Where is it?", "It is in Paris.")
>>> result = qa(method="integrated_gradients")      # the model's best answer
>>> list(result.rows), result.details["answer"]
(['start', 'end'], 'Paris.')

Each explainer takes the methods and options of a single ``attributions`` call (``output``,
``baseline``, ``n_steps``, ``internal_batch_size``, ``n_samples``, ``window``, ``seed``) and
checks every argument before any model runs. Each row is an ordinary
:class:`~.results.AttributionResult`: ``faithfulness()`` and ``save()`` work on it.
"""

from __future__ import annotations

import torch
from torch import nn

from ..base import Explainer
from ..checks import check_int, check_template, check_text, int_list
from ..render import progress, visible
from ..running import run, sentence_embeddings
from ..tasks import encode, special_flags, token_texts
from .explained import Explained, read
from .explainer import (
    CALL_OPTIONS,
    AttributionsExplainer,
    check_faithfulness,
    check_methods,
    check_options,
)
from .methods import METHODS, MethodNotApplicableError, check_method
from .results import AttributionResult, ComparisonResult, RowsResult


class _TaskExplainer(AttributionsExplainer):
    """What the task explainers share: the model kinds they accept, and one way to check a
    call's method and options."""

    def check_model(self, lm) -> None:
        Explainer.check_model(self, lm)

    def _checked(self, text, text_pair):
        return Explainer._checked(self, text, text_pair)

    runs_model_twice = False
    """True where ``f`` runs the model once per text (a sentence encoder's two texts)."""

    def deletion_refused(self, options: dict) -> str | None:
        """Why faithfulness by deletion cannot work on this task's rows with these call
        options (None where it can)."""
        return None

    def refusal(self, spec) -> str | None:
        reason = spec.refuse(self.lm)
        if reason or not (self.runs_model_twice and spec.one_use_hooks):
            return reason
        working = [n for n, m in METHODS.items() if not m.refuse(self.lm) and not m.one_use_hooks]
        return (
            f"{spec.name} cannot explain a cosine of two sentence embeddings: the encoder runs "
            "once per text, and captum's DeepLift follows each module through one use only "
            f"per pass. Methods that work here: {', '.join(working)}"
        )

    def _method_and_settings(self, method, options: dict, n_tokens: int | None = None):
        """(the method, its checked settings), or a clear error, before any model work."""
        check_options(options, f"{type(self).__name__}()")
        spec = check_method(method)
        settings = self._settings(spec, **{**CALL_OPTIONS, **options}, n_tokens=n_tokens)
        reason = self.refusal(spec)
        if reason:
            raise MethodNotApplicableError(reason)
        return spec, settings

    def scored(self, scores, method: str, *args, **kwargs):
        """Not for task explainers: their outputs are rows (spans, tags, labels, a pair's
        cosine), while ``scored`` turns token scores into an attribution of one output."""
        raise TypeError(
            f"scored() is for the attributions explainer (one output read from the model's "
            f"head); {self.entry_point or type(self).__name__} explains rows. Give the scores "
            "to lm_layers_explainer['attributions'](model, text).scored(...) on a causal, "
            "masked or classifier model"
        )

    def compare(self, methods=None, *, faithfulness=True, **arguments) -> dict:
        """Several methods on every row: ``{row: ComparisonResult}``, each method's row as
        a call with that method alone gives it; refused methods are listed with their
        reason. ``arguments`` are those of a call (options, and the task's own, such as
        ``answer``); ``faithfulness`` as for ``attributions.compare`` (True: by deletion, or
        by replacement for token classification, whose rows cannot lose their own token).

        >>> qa.compare(["saliency", "integrated_gradients"])["start"].to_frame()
        """
        convention = check_faithfulness(faithfulness)
        options = {k: v for k, v in arguments.items() if k in CALL_OPTIONS}
        refused = self.deletion_refused(options)
        if faithfulness is True and refused:
            convention = "replacement"  # the rows' own way of removing tokens
        if convention == "deletion" and refused:
            raise ValueError(
                f"faithfulness='deletion' {refused}; give faithfulness='replacement' or False"
            )
        specs = check_methods(methods)
        running = [spec for spec in specs if not self.refusal(spec)]
        if not running:
            raise MethodNotApplicableError(
                "every method given is refused here: "
                + "; ".join(f"{s.name}: {self.refusal(s)}" for s in specs)
            )
        for spec in running:  # each method's options, before any model work
            self._settings(spec, **{**CALL_OPTIONS, **options})
        ran = {}  # the task's own arguments are checked by the first call, before its work
        for spec in progress(running, desc="attribution methods"):
            ran[spec.name] = self(spec.name, **arguments)
        rows = next(iter(ran.values())).rows
        compared = {}
        for row, first in rows.items():
            results = {
                spec.name: ran[spec.name].rows[row] if spec.name in ran else self.refusal(spec)
                for spec in specs
            }
            if convention:
                for result in results.values():
                    if not isinstance(result, str):
                        result.faithfulness(convention)
            compared[row] = ComparisonResult(
                tokens=first.tokens, results=results, convention=convention
            )
        return compared


# --------------------------------------------------------------------------- question answering


class QuestionAnsweringExplainer(_TaskExplainer):
    """Question answering: which tokens the answer's start and end positions rest on.

    Args:
        model: an extractive question-answering model (``AutoModelForQuestionAnswering``).
        question: the question (the first segment).
        context: the text the answer is taken from (the second segment).

    Example:
        >>> qa = lm_layers_explainer["question_answering"](
        ...     "deepset/roberta-base-squad2", "Where is the Eiffel Tower?",
        ...     "The Eiffel Tower is in Paris.")
        >>> qa(method="integrated_gradients").details["answer"]
        'Paris'
    """

    accepts = ("question_answering",)
    text_names = ("question", "context")

    def deletion_refused(self, options: dict) -> str | None:
        if options.get("output") == "logit":
            return "deletes the answer's position, which then has no logit (its probability is 0)"
        return None

    def __init__(self, model, question: str, context: str):
        if context is None:
            raise TypeError("context is missing: give the question and the context")
        super().__init__(model, question, context)
        seq = self.sequence
        special = special_flags(self.lm.tokenizer, seq.ids)
        self.context_positions = [i for i in range(seq.pair_start, len(seq.ids)) if not special[i]]
        if not self.context_positions:
            raise ValueError("context must contain at least one ordinary token")

    def span(self, answer: str | None = None, max_answer_length: int = 30) -> tuple[int, int]:
        """(start, end) token positions of ``answer`` in the context (its first occurrence),
        or for None the model's best span: the largest start logit + end logit with start
        <= end < start + ``max_answer_length``, both in the context (as transformers'
        question-answering pipeline chooses)."""
        if answer is not None:
            return self._find(check_text(answer, "answer"))
        max_answer_length = check_int(max_answer_length, "max_answer_length", 1, 10_000)
        output, _ = run(self.sequence)
        start, end = output.start_logits[0].float(), output.end_logits[0].float()
        where = torch.tensor(self.context_positions)
        total = start[where][:, None] + end[where][None, :]
        gap = where[None, :] - where[:, None]
        total[(gap < 0) | (gap >= max_answer_length)] = float("-inf")
        best = int(total.argmax())
        return int(where[best // len(where)]), int(where[best % len(where)])

    def _find(self, answer: str) -> tuple[int, int]:
        """The context tokens that cover ``answer``'s first occurrence in the context."""
        context, tokenizer = self.text_pair, self.lm.tokenizer
        at = context.find(answer)
        if at < 0:
            raise ValueError(f"answer must occur in the context; {answer!r} does not")
        if not tokenizer.is_fast:
            raise ValueError(
                "answer= needs a fast tokenizer (character offsets); give answer=None for the "
                "model's own answer"
            )
        offsets = tokenizer(self.text, context, return_offsets_mapping=True)["offset_mapping"]
        covered = [
            i
            for i in self.context_positions
            if offsets[i][0] < at + len(answer) and offsets[i][1] > at
        ]
        return covered[0], covered[-1]

    def __call__(
        self, method: str = "integrated_gradients", answer: str | None = None, **options
    ) -> RowsResult:
        """Explain the answer's start position and its end position: two rows, each the
        probability (softmax over every position, or with ``output="logit"`` the logit)
        that the model gives the position.

        Args:
            method: an attributions method (see ``methods``).
            answer: a text that occurs in the context (its first occurrence is explained);
                None (default) for the model's best span.
            options: those of ``attributions`` (``output``, ``baseline``, ``n_steps``, ...).

        Returns:
            RowsResult: rows ``start`` and ``end``; ``details`` the answer, its token span
            and the two probabilities.
        """
        spec, settings = self._method_and_settings(method, options)
        start, end = self.span(answer)
        tokens = self.tokens
        rows = {}
        for name, position in (("start", start), ("end", end)):
            explained = Explained(self.sequence, head=f"{name}_logits")
            rows[name] = self._run(spec, position, tokens[position], settings, explained)
        answer_text = self.lm.tokenizer.decode(self.ids[start : end + 1]).strip()
        return RowsResult(
            task="question answering",
            model_name=self.lm.name,
            rows=rows,
            details={
                "answer": answer_text,
                "span": [start, end],
                "start probability": _probability(rows["start"]),
                "end probability": _probability(rows["end"]),
            },
        )


def _probability(result: AttributionResult) -> float:
    """A row's probability, whichever output it explains."""
    return read(result.explained.logits(), result.target, "probability")


# --------------------------------------------------------------------------- token classification


class TokenClassificationExplainer(_TaskExplainer):
    """Token classification (NER): which tokens each labelled token's label rests on.

    Args:
        model: a token classifier (``AutoModelForTokenClassification``).
        text: the text (required).
        custom_labels: names for the model's labels, in index order; None (default): its
            ``id2label``.

    Example:
        >>> ner = lm_layers_explainer["token_classification"](
        ...     "dslim/bert-base-NER", "Ada Lovelace lived in London")
        >>> ner(ignored_labels=["O"]).details["labels"]
    """

    accepts = ("token_classifier",)

    def deletion_refused(self, options: dict) -> str | None:
        return "deletes the token whose label is explained"

    def __call__(
        self,
        method: str = "integrated_gradients",
        *,
        ignored_labels=None,
        ignored_positions=None,
        **options,
    ) -> RowsResult:
        """One row per token (special tokens left out): the probability (or the logit) of
        the label the model gives it.

        Args:
            method: an attributions method (see ``methods``).
            ignored_labels: labels whose tokens get no row (for example ``["O"]``); each
                must be one of the model's labels. None (default): none.
            ignored_positions: token positions that get no row, 0 .. tokens - 1. None
                (default): none.
            options: those of ``attributions`` (``output``, ``baseline``, ``n_steps``, ...).

        Returns:
            RowsResult: a row ``"<position> <token>: <label>"`` per explained token;
            ``details["labels"]`` the label of every token.
        """
        labels = self.labels()
        ignored = _checked_list(ignored_labels, "ignored_labels", str)
        unknown = [label for label in ignored if label not in labels]
        if unknown:
            raise ValueError(f"ignored_labels must be among the labels {labels}; got {unknown}")
        last = len(self.ids) - 1
        positions = [
            check_int(position, "ignored_positions", 0, last)
            for position in (
                [] if ignored_positions is None
                else int_list(ignored_positions, "ignored_positions", f"in 0..{last}")
            )
        ]  # fmt: skip
        spec, settings = self._method_and_settings(method, options)
        output, _ = run(self.sequence)
        predicted = output.logits[0].argmax(-1).tolist()
        tokens, special = self.tokens, special_flags(self.lm.tokenizer, self.ids)
        rows = {}
        for i, label in enumerate(predicted):
            if special[i] or labels[label] in ignored or i in positions:
                continue
            explained = Explained(self.sequence, read_at=i)
            row = f"{i} {visible(tokens[i])}: {labels[label]}"
            rows[row] = self._run(spec, label, labels[label], settings, explained)
        return RowsResult(
            task="token classification",
            model_name=self.lm.name,
            rows=rows,
            details={"labels": {f"{i} {visible(t)}": labels[p] for i, (t, p) in
                                enumerate(zip(tokens, predicted, strict=True)) if not special[i]}},
        )  # fmt: skip


def _checked_list(value, name: str, kind: type) -> list:
    """A list (or tuple) of ``kind`` values, or None for an empty list."""
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list of {kind.__name__}; got {value!r}")
    for item in value:
        if not isinstance(item, kind) or isinstance(item, bool):
            raise TypeError(f"{name} must be a list of {kind.__name__}; got {item!r} in it")
    return list(value)


# --------------------------------------------------------------------------- zero-shot


BLOCKS = ("text", "hypothesis")
"""A zero-shot row's two blocks of tokens, with a sentence encoder."""


def entailment_index(lm) -> int | None:
    """The index of an NLI classifier's entailment label (the first label whose name
    starts with "entail", as transformers' zero-shot pipeline finds it), else None."""
    for label, index in lm.config.label2id.items():
        if str(label).lower().startswith("entail"):
            return int(index)
    return None


class ZeroShotExplainer(_TaskExplainer):
    """Zero-shot classification: which tokens tie the text to each candidate label (an NLI
    model's entailment, or a sentence encoder's similarity).

    Each label becomes a hypothesis (``hypothesis_template`` with the label in place of
    ``{}``). With an NLI classifier, the text is the premise of each pair and a row
    explains the probability of entailment of that pair, as transformers-interpret does.
    With a sentence encoder, a row explains the cosine similarity of the text's and the
    hypothesis's mean-pooled embeddings (as the ``similarity`` explainer does), and the
    label with the highest cosine wins.

    Args:
        model: an NLI sequence classifier with an entailment label, or a sentence encoder
            (a plain encoder such as all-MiniLM-L6-v2).
        text: the text to classify (the premise).
        labels: the candidate labels, at least one, each a non-empty text, no repeats.
        hypothesis_template: the hypothesis, with exactly one ``{}`` standing for the label
            and no other format field (``{{`` and ``}}`` for braces); default
            ``"This example is {}."``, transformers' zero-shot pipeline's.

    Example:
        >>> zero_shot = lm_layers_explainer["zero_shot"](
        ...     "facebook/bart-large-mnli", "The match ended 2-1", labels=["sport", "finance"])
        >>> zero_shot().details["label scores"]
    """

    accepts = ("classifier", "encoder")

    def __init__(
        self,
        model,
        text: str,
        labels=None,
        hypothesis_template: str = "This example is {}.",
    ):
        super().__init__(model, text)
        labels = _checked_list(labels, "labels", str)
        if not labels:
            raise ValueError("labels must be a non-empty list of candidate labels")
        for label in labels:
            check_text(label, "labels")
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels must not repeat; got {labels}")
        template = check_template(hypothesis_template, "hypothesis_template")
        self.labels = labels
        self.hypotheses = [template.format(label) for label in labels]
        self.entailment = entailment_index(self.lm)
        names = ("text", "hypothesis_template")
        if self.entailment is None:  # a sentence encoder: the text and each hypothesis
            first = encode(self.lm, self.text, names=names)
            self.pairs = [
                PairExplained(first, encode(self.lm, h, names=names[::-1]), 0, BLOCKS)
                for h in self.hypotheses
            ]
        else:  # an NLI model: each (text, hypothesis) pair
            self.pairs = [
                Explained(encode(self.lm, self.text, h, names=names)) for h in self.hypotheses
            ]

    @property
    def runs_model_twice(self) -> bool:
        return self.entailment is None  # a sentence encoder: the text, then the hypothesis

    def check_model(self, lm) -> None:
        super().check_model(lm)
        if lm.task.explains is not None and entailment_index(lm) is None:
            raise ValueError(
                f"model must be an NLI classifier with an entailment label, or a sentence "
                f"encoder, for zero-shot classification; {lm.name}'s labels are "
                f"{list(lm.config.label2id)}"
            )

    def __call__(self, method: str = "integrated_gradients", **options) -> RowsResult:
        """One row per candidate label: the probability (or logit) of entailment of the
        text and the label's hypothesis; for a sentence encoder, their cosine similarity.

        Args:
            method: an attributions method (see ``methods``).
            options: those of ``attributions`` (``output``, ``baseline``, ``n_steps``,
                ...); not ``output`` for a sentence encoder (the cosine is explained).

        Returns:
            RowsResult: a row per label; ``details["label scores"]``: the softmax over the
            labels of their entailment logits (the pipeline's single-label scores), or each
            label's cosine.
        """
        encoder = self.entailment is None
        if encoder and "output" in options:
            raise TypeError(
                "output is not an option with a sentence encoder: the cosine is explained"
            )
        longest = max(len(pair.ids) for pair in self.pairs)
        options = {**options, "output": "logit"} if encoder else options
        spec, settings = self._method_and_settings(method, options, n_tokens=longest)
        index = 0 if encoder else self.entailment
        rows, logits = {}, []
        for label, explained in zip(self.labels, self.pairs, strict=True):
            rows[label] = self._run(spec, index, label, settings, explained)
            logits.append(explained.logits()[index])
            if encoder:
                _as_similarity(rows[label], BLOCKS)
        scores = torch.stack(logits).float()
        scores = scores.tolist() if encoder else scores.softmax(0).tolist()
        return RowsResult(
            task="zero-shot classification",
            model_name=self.lm.name,
            rows=rows,
            details={"label scores": dict(zip(self.labels, scores, strict=True))},
        )


# --------------------------------------------------------------------------- similarity


class SimilarityOutput(nn.Module):
    """``f`` of a sentence similarity: the embeddings of both texts' tokens, the first
    text's ``n_first`` first -> the cosine similarity of their mean-pooled last hidden
    states, (batch,)."""

    def __init__(self, lm, n_first: int):
        super().__init__()
        self.lm, self.model, self.n_first = lm, lm.model, n_first

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(batch, 1): the cosine, as the one 'logit' the result reads."""
        a = sentence_embeddings(self.lm, embeddings[:, : self.n_first])
        b = sentence_embeddings(self.lm, embeddings[:, self.n_first :])
        return torch.cosine_similarity(a, b, dim=-1)[:, None]

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        value = self.logits(embeddings)[:, 0]
        if self.after_pass is not None:
            self.after_pass()
        return value

    after_pass = None


class PairExplained(Explained):
    """The question of a sentence similarity: both texts' tokens, the first text's first;
    ``side`` (0 or 1): the text whose tokens are attributed, the other one held as it is
    (its tokens are kept in every baseline, like special tokens)."""

    def __init__(self, first, second, side: int = 0, names=("text_a", "text_b")):
        lm = first.lm
        self.lm, self.sequence, self.head = lm, first, "similarity"
        self.names, self.side = list(names), side  # the two texts' names, the attributed one
        self.ids, self.n_encoder = list(first.ids) + list(second.ids), len(first.ids)
        self.tokens = token_texts(lm.tokenizer, self.ids)
        self.extra, self.read_at = {}, None
        self.attributable = ~torch.tensor(special_flags(lm.tokenizer, self.ids)).numpy()
        if (
            not self.attributable[: self.n_encoder].any()
            or not self.attributable[self.n_encoder :].any()
        ):
            raise ValueError("text_a and text_b must each contain an ordinary token")
        if side == 0:
            self.attributable[self.n_encoder :] = False
        else:
            self.attributable[: self.n_encoder] = False
        self._logits, self._baseline_logits, self._deleted_outputs = None, {}, {}

    @property
    def question(self) -> str:
        return (
            f"similarity of the two texts' mean-pooled embeddings, {self.names[self.side]}'s "
            "tokens attributed"
        )

    def f(self, target: int = 0, output: str = "logit", foil=None) -> SimilarityOutput:
        return SimilarityOutput(self.lm, self.n_encoder)

    def extended(self, ids):
        raise ValueError("a similarity has no continuation")

    def attributing(self, attributed: str) -> PairExplained:
        if attributed != "word":
            raise ValueError(
                f"a similarity attributes word embeddings only; got attributed={attributed!r}"
            )
        return self

    def output_with(self, kept, target, output, foil=None) -> float:
        key = tuple(kept)
        if key not in self._deleted_outputs:
            first = [self.ids[i] for i in kept if i < self.n_encoder]
            second = [self.ids[i] for i in kept if i >= self.n_encoder]
            with torch.no_grad():
                x = self.lm.embeddings(torch.tensor([first + second], device=self.lm.device))
                value = SimilarityOutput(self.lm, len(first))(x)
            self._deleted_outputs[key] = float(value[0])
        return self._deleted_outputs[key]


class SimilarityExplainer(_TaskExplainer):
    """Sentence similarity: which tokens of each text make their sentence embeddings close.

    The similarity is the cosine of the two texts' mean-pooled last hidden states, every
    token counted (as sentence-transformers pools all-MiniLM-L6-v2). Both texts' tokens are
    attributed at once, as two blocks.

    Args:
        model: a bidirectional encoder (a sentence encoder such as all-MiniLM-L6-v2; also a
            masked LM or a classifier, whose encoder is used).
        text_a, text_b: the two texts (required).

    Example:
        >>> similarity = lm_layers_explainer["similarity"](
        ...     "all-MiniLM-L6-v2", "A man is playing a guitar.", "Someone plays music.")
        >>> similarity(method="integrated_gradients").output      # the cosine
    """

    accepts = ("encoder", "masked", "classifier")
    text_names = ("text_a", "text_b")
    runs_model_twice = True

    def __init__(self, model, text_a: str, text_b: str):
        if text_b is None:
            raise TypeError("text_b is missing: give the two texts to compare")
        Explainer.__init__(self, model, text_a, text_b)
        names = ("text_a", "text_b")
        first = encode(self.lm, self.text, names=names)
        second = encode(self.lm, self.text_pair, names=(names[1], names[0]))
        self.sides = [PairExplained(first, second, side) for side in (0, 1)]
        self.explained = self.sides[0]

    def __call__(self, method: str = "integrated_gradients", **options) -> RowsResult:
        """Attribute the cosine similarity to each text's tokens, the other text held as it
        is: two rows. (Replacing both texts at once would compare with two empty texts,
        whose embeddings are nearly the same: a baseline similarity near 1.)

        Args:
            method: an attributions method (see ``methods``).
            options: those of ``attributions`` but ``output`` (the cosine is explained):
                ``baseline``, ``n_steps``, ``internal_batch_size``, ``n_samples``,
                ``window``, ``seed``.

        Returns:
            RowsResult: rows ``text_a`` and ``text_b``, each over both texts' tokens (two
            blocks, the other text's grey); ``output`` the cosine, ``baseline_output`` the
            cosine with the row's text's ordinary tokens replaced by the baseline.
        """
        if "output" in options:
            raise TypeError("output is not an option of similarity: the cosine is explained")
        spec, settings = self._method_and_settings(method, {**options, "output": "logit"})
        rows = {
            name: _as_similarity(
                self._run(spec, 0, "", settings, side),
                ("text_a", "text_b"),
            )
            for name, side in zip(("text_a", "text_b"), self.sides, strict=True)
        }
        return RowsResult(
            task="sentence similarity",
            model_name=self.lm.name,
            rows=rows,
            details={"cosine similarity": rows["text_a"].output},
        )


def _as_similarity(result: AttributionResult, names) -> AttributionResult:
    """A row that explains a cosine similarity says so, and names its two blocks."""
    result.output_kind = "cosine similarity"
    result.block_names = list(names)
    return result
