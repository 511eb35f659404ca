"""What is explained: ``f``, a function of the input token embeddings, for one text.

:class:`ExplainedOutput` is ``f`` as an ``nn.Module``; :class:`Explained` holds the text as
the model reads it, where the answer is read, which tokens are attributable, and the
inputs ``f`` is compared with (baselines, texts with tokens deleted). Results keep their
``Explained`` (data, shared by the results of one explainer), never the explainer.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from torch import nn

from ..checks import check_choice
from ..locks import UsesModel, seeded
from ..models import LoadedModel
from ..render import progress
from ..running import (
    capture_outputs,
    embedding_module,
    logits_of_embeddings,
    multi_label,
    takes_logits_to_keep,
)
from ..tasks import (
    Sequence,
    question_text,
    read_position,
    read_position_in,
    special_flags,
    token_texts,
)

SLOW_CALL = 3.0
"""Seconds: an attribution expected to run longer shows a progress bar over its passes."""


class ExplainedOutput(nn.Module):
    """``f``: input token embeddings ``(batch, tokens, features)`` -> the explained output
    ``(batch,)``. An ``nn.Module`` (not a plain function) so that captum's DeepLift and
    guided backpropagation can hook the model's layers inside it."""

    def __init__(
        self,
        lm: LoadedModel,
        read_at: int | None,
        target: int,
        output: str,
        extra,
        foil: int | None = None,
        n_encoder: int = 0,
        head: str = "logits",
        replaces=None,
    ):
        super().__init__()
        self.lm = lm
        self.model = lm.model  # a submodule, so that captum's hooks reach the model's layers
        self.read_at = read_at
        self.target = target
        self.foil = foil  # contrastive: f is the target's output minus the foil's
        self.output = output
        self.extra = extra  # token_type_ids for BERT-style pairs, (1, tokens)
        self.n_encoder = n_encoder  # seq2seq: the first n_encoder tokens are the encoder's
        self.head = head  # which of the model's outputs (question answering: start or end)
        self.sigmoid = multi_label(lm)  # independent labels: a sigmoid each, not a softmax
        # attributed="position" or "token_type": (that embedding module, the fixed word
        # embeddings); f's input then replaces the module's output
        self.replaces = replaces
        # Project only the read position onto the vocabulary where the model allows it (as
        # generate() does): the unembedding of every other position is a fifth of a small
        # model's forward and backward pass, thrown away.
        self.keep = (
            torch.tensor([read_at], device=lm.device)
            if read_at is not None and takes_logits_to_keep(lm)
            else None
        )

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """The model's logits where the answer is read: (batch, vocabulary or classes)."""
        if self.replaces is None:
            logits = logits_of_embeddings(
                self.lm, embeddings, self.extra, self.keep, self.n_encoder, self.head
            )
        else:  # the input is a position or token-type embedding; the words stay
            module, words = self.replaces
            handle = module.register_forward_hook(lambda *_: embeddings)
            try:
                logits = logits_of_embeddings(
                    self.lm, words.expand(len(embeddings), -1, -1), self.extra, self.keep,
                    self.n_encoder, self.head,
                )  # fmt: skip
            finally:
                handle.remove()
        if self.read_at is None:
            return logits
        return logits[:, 0] if self.keep is not None else logits[:, self.read_at]

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        scores = outputs_of(self.logits(embeddings), self.output, self.sigmoid)
        value = scores[:, self.target]
        if self.foil is not None:
            value = value - scores[:, self.foil]
        if self.after_pass is not None:
            self.after_pass()
        return value

    after_pass = None
    """Called after each pass (a progress bar's tick); Ctrl-C lands between passes."""


class PassProgress:
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


def attribute(spec, question, settings: dict, desc: str):
    """Run ``spec`` on ``question`` (see :func:`with_progress`). Returns (attribution,
    delta, seconds)."""
    x = question.x
    passes = spec.passes(x.shape[1], settings["n_steps"], settings["internal_batch_size"],
                         settings["n_samples"])  # fmt: skip
    (attribution, delta), seconds = with_progress(
        question.f, passes, desc, settings["seed"], x.device, lambda: spec.run(question)
    )
    return attribution, delta, seconds


def with_progress(f, passes: int, desc: str, seed: int, device, work):
    """Call ``work()``: a progress bar over ``f``'s ``passes`` (``f`` ticks it), every random
    choice seeded by ``seed`` with the caller's random state untouched, Ctrl-C between
    passes. Returns (what ``work`` returns, seconds)."""
    f.after_pass = PassProgress(passes, desc)
    with seeded(seed, device):  # captum's samplers draw from torch's global generator
        start = time.perf_counter()
        try:
            result = work()
        finally:
            f.after_pass.close()
            f.after_pass = None
        return result, time.perf_counter() - start


def outputs_of(logits: torch.Tensor, output: str, sigmoid: bool = False) -> torch.Tensor:
    """The logits, or the probabilities: a softmax over the last axis, or with ``sigmoid``
    (a multi-label classifier's independent labels) a sigmoid each."""
    if output == "logit":
        return logits
    return logits.sigmoid() if sigmoid else logits.softmax(-1)


def read(
    logits: torch.Tensor, index: int, output: str, foil: int | None = None, sigmoid=False
) -> float:
    """The explained output from one row of logits: the logit or the probability (minus
    the foil's, for a contrastive question)."""
    scores = outputs_of(logits, output, sigmoid)
    return float(scores[index] - (scores[foil] if foil is not None else 0.0))


class Explained(UsesModel):
    """One text's question: where the answer is read, what can be attributed, and ``f`` on
    the text, on its baselines and on the text with tokens deleted (each computed once).

    ``ids`` and ``tokens`` are every token the output depends on: for a seq2seq model the
    encoder's ``n_encoder`` tokens, then the decoder's; ``read_at`` counts in them.

    >>> q = Explained(encode(lm, " Heathrow airport is in the city of"))
    >>> q.read_at, q.attributable.sum(), q.f(target=3, output="logit")(q.embeddings())
    """

    def __init__(self, seq: Sequence, *, read_at: int | None | str = "default", head="logits"):
        lm = seq.lm
        self.lm, self.sequence, self.head = lm, seq, head
        self.ids, self.n_encoder = seq.sources, seq.n_encoder
        self.tokens = token_texts(lm.tokenizer, self.ids)
        self.extra = (
            {"token_type_ids": torch.tensor([seq.token_type_ids], device=lm.device)}
            if seq.token_type_ids is not None
            else {}
        )
        if read_at == "default":  # the task's: in the decoder's tokens, for a seq2seq model
            read_at = read_position(seq)
            read_at = None if read_at is None else self.n_encoder + read_at
        self.read_at = read_at
        kept = special_flags(lm.tokenizer, self.ids)
        if self.read_at is not None and lm.task.explains == "mask":
            kept[self.read_at] = True  # the [MASK] is the question, not evidence
        self.attributable = ~np.array(kept)
        if not self.attributable.any():
            raise ValueError(
                f"text must contain at least one ordinary token to attribute to; got only "
                f"special tokens: {self.tokens}"
            )
        self._logits: torch.Tensor | None = None
        self._baseline_logits: dict[str, torch.Tensor] = {}
        self._deleted_outputs: dict[tuple, float] = {}

    attributed = "word"
    """Which embeddings are attributed: the tokens' ``word`` embeddings (the input),
    or their ``position`` or ``token_type`` embeddings (see :meth:`attributing`)."""
    _replaced = None

    def attributing(self, attributed: str) -> Explained:
        """This question with ``attributed`` embeddings as the input of ``f`` (the word
        embeddings stay as they are): a copy for ``position`` or ``token_type``, this
        object for ``word``."""
        if attributed == self.attributed:
            return self
        module = embedding_module(self.lm, attributed)
        other = copy.copy(self)
        other.attributed, other._baseline_logits, other._deleted_outputs = attributed, {}, {}
        words = self.embeddings()
        with torch.no_grad(), capture_outputs([module]) as captured:
            self.f(0, "logit").logits(words)
        value = captured[0]
        other._replaced = (module, words, value if value.dim() == 3 else value[None])
        return other

    @property
    def question(self) -> str:
        """What is explained, in words."""
        shown = question_text(self.sequence, self.read_at, self.head)
        if self.attributed != "word":
            shown += f" ({self.attributed} embeddings attributed)"
        return shown

    def f(self, target: int, output: str, foil: int | None = None) -> ExplainedOutput:
        """``f`` for a target index and an output (``probability`` or ``logit``); with a
        ``foil``, the target's output minus the foil's."""
        return self._f(self.read_at, target, output, self.extra, foil, self.n_encoder)

    def _f(self, read_at, target, output, extra, foil, n_encoder) -> ExplainedOutput:
        """``f`` of a text whose first ``n_encoder`` tokens are the encoder's, read at
        ``read_at`` (counted in all its tokens)."""
        at = None if read_at is None else read_at - n_encoder
        replaces = None if self._replaced is None else self._replaced[:2]
        return ExplainedOutput(
            self.lm, at, target, output, extra, foil, n_encoder, self.head, replaces
        )

    def extended(self, ids: list[int]) -> Explained:
        """The question on the text followed by the tokens ``ids`` (for a seq2seq model:
        the decoder's tokens followed by them)."""
        return Explained(self.sequence.with_ids(self.sequence.ids + list(ids)), head=self.head)

    # ----------------------------------------------------------------- inputs

    def embeddings(self) -> torch.Tensor:
        """The text's input embeddings (1, tokens, features): the attributed ones."""
        if self._replaced is not None:
            return self._replaced[2]
        ids = torch.tensor([self.ids], device=self.lm.device)
        with torch.no_grad():
            return self.lm.embeddings(ids).detach()

    def baseline(self, x: torch.Tensor, baseline: str) -> torch.Tensor:
        """x with every attributable token replaced (special tokens kept)."""
        tokenizer = self.lm.tokenizer
        replaced = x.clone()
        where = torch.tensor(self.attributable, device=x.device)
        if baseline == "zero":
            replaced[0, where] = 0.0
        else:
            token = tokenizer.pad_token_id if baseline == "pad" else tokenizer.mask_token_id
            with torch.no_grad():
                vector = self.lm.embeddings(torch.tensor([token], device=x.device))[0]
            replaced[0, where] = vector
        return replaced

    def random_baselines(self, x: torch.Tensor, n: int, seed: int) -> torch.Tensor:
        """``n`` copies of x whose attributable tokens are random ordinary tokens."""
        generator = torch.Generator().manual_seed(seed)
        special = torch.tensor(sorted(set(self.lm.tokenizer.all_special_ids)))
        vocabulary = self.lm.embeddings.weight.shape[0]
        where = torch.tensor(self.attributable)
        ids = torch.tensor(self.ids).repeat(n, 1)
        draws = torch.randint(0, vocabulary, (n, int(where.sum())), generator=generator)
        if len(special):  # redraw special ids as their neighbour, deterministically
            draws = torch.where(torch.isin(draws, special), (draws + 1) % vocabulary, draws)
        ids[:, where] = draws
        with torch.no_grad():
            return self.lm.embeddings(ids.to(x.device)).detach()

    # ----------------------------------------------------------------- outputs

    def logits(self) -> torch.Tensor:
        """The model's logits for what is explained (vocabulary or classes); one forward."""
        if self._logits is None:
            self.compute_logits(None)
        return self._logits

    def baseline_logits(self, baseline: str) -> torch.Tensor:
        """The logits of a baseline kind's input (computed with the text's, if not kept)."""
        self.compute_logits(baseline)
        return self._baseline_logits[baseline]

    def compute_logits(self, baseline: str | None) -> None:
        """Keep the logits of the text and, for a ``baseline`` kind, of the baseline: one
        forward pass (a batch of two) for whichever of them is not kept yet."""
        want_x = self._logits is None
        want_baseline = baseline is not None and baseline not in self._baseline_logits
        if not (want_x or want_baseline):
            return
        x = self.embeddings()
        rows = ([x] if want_x else []) + ([self.baseline(x, baseline)] if want_baseline else [])
        with torch.no_grad():
            logits = self.f(0, "logit").logits(torch.cat(rows)).float()
        if want_x:
            self._logits = logits[0]
        if want_baseline:
            self._baseline_logits[baseline] = logits[-1]

    def output_with(
        self, kept: list[int], target: int, output: str, foil: int | None = None
    ) -> float:
        """f of the text made of the tokens at positions ``kept`` only (the others deleted).

        Kept per text: attributions of one text share most of their deleted texts. Where
        nothing is left, f is read after the tokenizer's BOS token (else its EOS token).
        """
        key = (tuple(kept), target, output, foil)
        if self.attributed != "word":
            raise ValueError(
                f"deletion removes whole tokens, not their {self.attributed} embeddings; use "
                "convention='replacement'"
            )
        if key not in self._deleted_outputs and self.lm.task.explains == "span":
            target = self._span_target(kept, target, output)  # a position: where it is now
            if target is None:  # the answer's token is deleted: it cannot be the answer
                self._deleted_outputs[key] = 0.0
        if key not in self._deleted_outputs:
            lm = self.lm
            encoder = [self.ids[i] for i in kept if i < self.n_encoder]
            ids = [self.ids[i] for i in kept if i >= self.n_encoder]
            if self.n_encoder and not encoder:  # an encoder with nothing left
                encoder = [self._empty_text()]
            if not ids:  # a causal LM with nothing left: read after the start of a text
                ids = [self._empty_text()]
            read_at = read_position_in(lm, kept, encoder + ids, self.read_at)
            extra = {name: value[:, kept] for name, value in self.extra.items()}
            with torch.no_grad():
                x = lm.embeddings(torch.tensor([encoder + ids], device=lm.device))
                value = self._f(read_at, target, output, extra, foil, len(encoder))(x)
            self._deleted_outputs[key] = float(value[0])
        return self._deleted_outputs[key]

    def _span_target(self, kept: list[int], target: int, output: str) -> int | None:
        """A question-answering row's target position among the ``kept`` tokens; None where
        it is deleted (its probability is then 0; a logit has no such value: refused)."""
        if target in kept:
            return kept.index(target)
        if output == "logit":
            raise ValueError(
                f"deleting token {target} deletes the position whose logit is explained; use "
                "output='probability' (the probability of a deleted position is 0) or "
                "convention='replacement'"
            )
        return None

    def _empty_text(self) -> int:
        """The token that stands for a text with nothing left: BOS, else EOS."""
        lm = self.lm
        start = lm.tokenizer.bos_token_id
        start = lm.tokenizer.eos_token_id if start is None else start
        if start is None:
            raise ValueError(
                f"{lm.name}'s tokenizer has neither a BOS nor an EOS token to stand for an "
                "empty text; use convention='replacement'"
            )
        return int(start)

    def outputs_replacing(
        self,
        kept_sets: list[list[int]],
        target: int,
        output: str,
        baseline: str,
        batch: int,
        foil: int | None = None,
    ) -> list[float]:
        """f with every token outside each kept set replaced by ``baseline``."""
        x = self.embeddings()
        replaced = self.baseline(x, baseline)
        variants = []
        for kept in kept_sets:
            variant = replaced.clone()
            variant[0, kept] = x[0, kept]
            variants.append(variant)
        variants = torch.cat(variants)
        f = self.f(target, output, foil)
        with torch.no_grad():
            return torch.cat(
                [f(variants[s : s + batch]) for s in range(0, len(variants), batch)]
            ).tolist()


OUTPUTS = ("probability", "logit")
BASELINES = ("zero", "pad", "mask")
ATTRIBUTED = ("word", "position", "token_type")


def check_baseline(lm: LoadedModel, baseline) -> str:
    """``zero``, ``pad`` or ``mask``, where the tokenizer has that token."""
    tokenizer = lm.tokenizer
    check_choice(baseline, "baseline", BASELINES)
    if baseline == "pad" and tokenizer.pad_token_id is None:
        raise ValueError(f"baseline='pad' needs a pad token; {lm.name} has none")
    if baseline == "mask" and tokenizer.mask_token_id is None:
        raise ValueError(
            f"baseline='mask' needs a mask token; {lm.name} has none (use 'zero' or 'pad')"
        )
    return baseline
