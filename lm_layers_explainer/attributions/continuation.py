"""Whole outputs of a causal or seq2seq LM: every token of a continuation attributed to the
tokens before it.

>>> attributions = lm_layers_explainer["attributions"](model, "The capital of France is")
>>> s = attributions(method="feature_ablation", target=" Paris, a city")  # a given target
>>> s = attributions(method="feature_ablation", generate=4)    # the model's own continuation
>>> s.scores.shape            # (target tokens, source tokens); NaN from row t's own token on

Row ``t`` explains the probability (or logit) of target token ``t`` given the text and the
target tokens before it (teacher forcing), with the method's usual single-token question on
that prefix; the sources are the text's tokens and then the target's. For a seq2seq model
the text's tokens are the encoder's, then the decoder's start token.

How it runs: the methods of :data:`TEACHER_FORCED` perturb the whole sequence (text and
target) once per perturbation, and one forward pass reads every target token's output at
once (captum's perturbation classes take a forward function with several outputs per
input), so a continuation costs about one run on its longest prefix. The gradient methods
of :data:`SHARED_FORWARD` make one forward pass per input (per integration step) for all
target tokens, then one backward pass per target token. The other methods run once per
target token, on the text extended by the target tokens before it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..checks import check_unicode
from ..forward import check_generation, extend
from ..render import progress
from ..running import logits_of_embeddings, takes_logits_to_keep
from ..tasks import check_length, token_texts
from .explained import attribute, with_progress
from .methods import METHODS, Question, per_token_mask, token_scores
from .results import ContinuationResult

TEACHER_FORCED = tuple(name for name, m in METHODS.items() if m.teacher_forced)
"""Methods whose every perturbed pass reads all target tokens at once (see the module; each
says so on its line of :data:`~lm_layers_explainer.attributions.methods.METHODS`). For
Shapley value sampling the target tokens after row ``t``'s own are players that change
nothing (causal attention): they get 0, and the others' values are those of the game of the
prefix, so every row still sums to its own f(x) - f(x')."""

SHARED_FORWARD = tuple(name for name, m in METHODS.items() if m.shares_forward)
"""Gradient methods whose forward passes serve every target token (see :class:`_SharedForward`;
``shares_forward`` on their lines of the methods table).
Row ``t``'s gradient is the same as on its own prefix: the positions after its read position
cannot reach it (causal attention), in a seq2seq decoder too."""


class ContinuationOutput(nn.Module):
    """``f`` of a whole continuation: input embeddings (batch, tokens, features) of the text
    and the target but its last token -> (batch, target tokens), each target token's
    probability (or logit) where the model predicts it."""

    def __init__(
        self, lm, extra, n_input: int, targets: list[int], output: str, n_encoder=0, foils=None
    ):
        super().__init__()
        self.lm, self.model, self.extra, self.output = lm, lm.model, extra, output
        self.n_encoder = n_encoder  # seq2seq: the encoder's tokens come first
        first = n_input - 1 - n_encoder  # where the first target is predicted (its logits)
        self.read_at = torch.arange(first, first + len(targets), device=lm.device)
        self.targets = torch.tensor(targets, device=lm.device)
        # contrastive: each target token's output minus its foil token's
        self.foils = None if foils is None else torch.tensor(foils, device=lm.device)
        # only the read positions go through the vocabulary head, where the model allows it
        self.keep = self.read_at if takes_logits_to_keep(lm) else None

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(batch, target tokens, vocabulary): the logits where each target is predicted."""
        logits = logits_of_embeddings(self.lm, embeddings, self.extra, self.keep, self.n_encoder)
        return logits if self.keep is not None else logits[:, self.read_at]

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        value = self.read(self.logits(embeddings))
        if self.after_pass is not None:
            self.after_pass()
        return value

    def read(self, logits: torch.Tensor) -> torch.Tensor:
        """(batch, target tokens): the explained output from the logits where each target
        is predicted (minus the foil's, for a contrast)."""
        scores = logits if self.output == "logit" else logits.softmax(-1)
        value = _gather(scores, self.targets)
        return value if self.foils is None else value - _gather(scores, self.foils)

    after_pass = None


def target_ids(explainer, target, generate) -> list[int] | None:
    """The continuation's token ids, or None when the call explains one token (a target
    that is one token, a token id, or None without ``generate``). Refusals come before any
    model work, except that ``generate`` runs the model to write its continuation."""
    lm = explainer.lm
    if generate is not None and target is not None:
        raise ValueError(
            "give target (a continuation to explain) or generate (the number of tokens the "
            f"model writes itself), not both; got target={target!r}, generate={generate!r}"
        )
    continues = lm.task.explains == "next_token"
    written = len(explainer.sequence.ids)  # the decoder's tokens, for a seq2seq model
    if generate is not None:
        if not continues:
            raise ValueError(
                f"generate is for causal and seq2seq LMs (a continuation of the text); "
                f"{lm.name} is {lm.kind!r}: explain one output with target"
            )
        n = check_generation(lm, generate, written)
        if n < 1:
            raise ValueError(f"generate must be at least 1 (tokens to write); got {generate}")
        extended = extend(explainer.sequence, n)
        return list(extended.ids[written:])
    if not (continues and isinstance(target, str)) or not target:
        return None
    ids = lm.tokenizer(check_unicode(target, "target"), add_special_tokens=False)["input_ids"]
    if len(ids) < 2:
        return None
    check_length(lm, written + len(ids) - 1, "text and target")
    return list(ids)


def _gather(scores: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """scores (batch, tokens, vocabulary) at ``ids`` (tokens,): (batch, tokens)."""
    return scores.gather(2, ids.expand(len(scores), -1)[..., None])[..., 0]


def foil_ids(explainer, foil, targets: list[int]) -> list[int]:
    """The foil of a continuation: a text of as many tokens as the target (refused else)."""
    if not isinstance(foil, str):
        raise TypeError(
            f"foil must be a text for a continuation (as many tokens as the target); got "
            f"{type(foil).__name__}"
        )
    foil = check_unicode(foil, "foil")
    ids = explainer.lm.tokenizer(foil, add_special_tokens=False)["input_ids"]
    if len(ids) != len(targets):
        raise ValueError(
            f"foil must have as many tokens as the target ({len(targets)}) to contrast "
            f"them token by token; got {len(ids)} tokens for foil={foil!r}"
        )
    if list(ids) == list(targets):
        raise ValueError(f"foil must differ from the target; both are {foil!r}")
    return list(ids)


def step_scores(explainer, ids: list[int], n_input: int, foils=None) -> dict[str, np.ndarray]:
    """For each target token: its probability given everything before it, and the entropy
    (nats) of the model's distribution there (and each foil token's probability there); one
    forward pass over text and target."""
    explained = explainer.explained.extended(ids[n_input:])
    n_encoder = explained.n_encoder
    with torch.no_grad():
        logits = logits_of_embeddings(
            explainer.lm, explained.embeddings(), explained.extra, n_encoder=n_encoder
        )
    targets = torch.tensor(ids[n_input:], device=logits.device)
    read = logits[0, n_input - 1 - n_encoder : len(ids) - 1 - n_encoder]
    foils = None if foils is None else torch.tensor(foils, device=logits.device)
    return _steps(read.double().log_softmax(-1), targets, foils)


def _steps(log_p: torch.Tensor, targets: torch.Tensor, foils=None) -> dict[str, np.ndarray]:
    """Step scores from the log-probabilities (target tokens, vocabulary) where each target
    token is predicted."""
    steps = {
        "probability": log_p.gather(1, targets[:, None])[:, 0].exp().cpu().numpy(),
        "entropy": -(log_p.exp() * log_p).sum(-1).cpu().numpy(),
    }
    if foils is not None:
        steps["foil_probability"] = log_p.gather(1, foils[:, None])[:, 0].exp().cpu().numpy()
    return steps


def _result(explainer, spec, ids, n_input, scores, foils, **fields) -> ContinuationResult:
    """The result of either way of running; ``fields``: the rest of ContinuationResult's."""
    full = explainer.explained.extended(ids[n_input:])
    if foils is not None:
        fields["foil_ids"] = list(foils)
        fields["foil_tokens"] = token_texts(explainer.lm.tokenizer, foils)
    return ContinuationResult(
        method=spec.name,
        model_name=explainer.lm.name,
        source_tokens=full.tokens,
        source_ids=ids,
        n_input=n_input,
        scores=scores,
        attributable=full.attributable.copy(),
        output_kind=fields["settings"]["output"],
        n_encoder=full.n_encoder,
        **fields,
    )


def explain_continuation(
    explainer, spec, targets: list[int], settings: dict, foils: list[int] | None = None
) -> ContinuationResult:
    """Every target token's row: from one teacher-forced run (:data:`TEACHER_FORCED`
    methods), else from one run per target token on the text extended by the target tokens
    before it. ``foils``: a contrast, one foil token per target token."""
    if spec.teacher_forced or spec.shares_forward:
        return _one_run(explainer, spec, targets, settings, foils)
    n_input = len(explainer.ids)
    ids = list(explainer.ids) + list(targets)
    n_sources, tokenizer = len(ids), explainer.lm.tokenizer
    scores = np.full((len(targets), n_sources), np.nan)
    outputs, baseline_outputs, deltas, seconds = [], [], [], 0.0
    rows = progress(range(len(targets)), desc=f"{spec.name}, token by token")
    for t in rows:
        prefix = explainer.explained.extended(targets[:t])
        text = tokenizer.decode([targets[t]])
        contrast = None if foils is None else (foils[t], tokenizer.decode([foils[t]]))
        row = explainer._run(spec, targets[t], text, settings, prefix, contrast)
        scores[t, : n_input + t] = row.scores
        outputs.append(row.output)
        baseline_outputs.append(row.baseline_output)
        deltas.append(np.nan if row.delta is None else row.delta)
        seconds += row.seconds
    return _result(
        explainer,
        spec,
        ids,
        n_input,
        scores,
        foils,
        outputs=np.array(outputs),
        baseline_outputs=np.array(baseline_outputs),
        deltas=np.array(deltas, dtype=float),
        step_scores=step_scores(explainer, ids, n_input, foils),
        seconds=seconds,
        settings=dict(settings),
    )


def _one_run(explainer, spec, targets: list[int], settings: dict, foils) -> ContinuationResult:
    """One run of the method over the text and the target (but its last token), each
    forward pass reading every target token's output."""
    n_input, n_targets = len(explainer.ids), len(targets)
    ids = list(explainer.ids) + list(targets)
    inputs = explainer.explained.extended(targets[:-1])
    f = ContinuationOutput(
        explainer.lm, inputs.extra, n_input, targets, settings["output"], inputs.n_encoder, foils
    )
    x = inputs.embeddings()
    baseline = inputs.baseline(x, settings["baseline"])
    n_tokens, n_features = x.shape[1:]
    batch = settings["internal_batch_size"]
    desc = f"{spec.name} ({n_tokens} tokens, {n_targets} targets, batches of {batch})"
    if spec.shares_forward:
        attribution, seconds = _shared_forward(spec, f, x, baseline, settings, desc)
    else:
        question = Question(
            f=f,
            x=x,
            baseline=baseline,
            feature_mask=per_token_mask(x),
            baseline_sampler=None,
            n_steps=settings["n_steps"],
            internal_batch_size=batch,
            n_samples=settings["n_samples"],
            window=settings["window"],
        )
        attribution, _, seconds = attribute(spec, question, settings, desc)
    attribution = attribution.reshape(n_targets, n_tokens, n_features).detach().double()
    scores = np.full((n_targets, len(ids)), np.nan)
    for t in range(n_targets):
        row = token_scores(spec, attribution[t]).cpu().numpy()
        scores[t, : n_input + t] = row[: n_input + t]  # later tokens cannot reach row t
    with torch.no_grad():  # f(x), f(x') and the step scores from one pass
        logits = f.logits(torch.cat([x, baseline])).double()
    outputs, baseline_outputs = f.read(logits).cpu().numpy()
    deltas = np.full(n_targets, np.nan)
    if spec.complete:  # completeness, as captum reports it
        deltas = attribution.sum((1, 2)).cpu().numpy() - (outputs - baseline_outputs)
    return _result(
        explainer,
        spec,
        ids,
        n_input,
        scores,
        foils,
        outputs=outputs,
        baseline_outputs=baseline_outputs,
        deltas=deltas,
        step_scores=_steps(logits[0].log_softmax(-1), f.targets, f.foils),
        seconds=seconds,
        settings=dict(settings, teacher_forced=True),
    )


class _SharedForward:
    """captum's gradient function (``gradient_func``) for ``n`` copies of each input, copy
    ``t`` explaining target token ``t``: one forward pass per distinct input, then one
    backward pass per target token. captum keeps its own math (integration steps, weights,
    sums); only the passes are shared, because a captum run takes one target per copy."""

    def __init__(self, n: int):
        self.n = n

    def __call__(self, forward_fn, inputs, target_ind=None, additional_forward_args=None):
        (copies,) = inputs  # (steps x n, tokens, features): n copies of each step's input
        n, steps = self.n, len(inputs[0]) // self.n
        if list(target_ind) != list(range(n)) * steps:  # captum's layout, checked
            raise RuntimeError(f"unexpected targets from captum: {target_ind}")
        points = copies[::n].detach().requires_grad_(True)
        with torch.enable_grad():
            outputs = forward_fn(points)  # (steps, n)
            grads = [
                torch.autograd.grad(outputs[:, t].sum(), points, retain_graph=t < n - 1)[0]
                for t in range(n)
            ]
        return (torch.stack(grads, 1).reshape(copies.shape),)


def _shared_forward(spec, f, x, baseline, settings: dict, desc: str):
    """A :data:`SHARED_FORWARD` method on every target token of ``f``, with captum's class
    and options as a single-token run uses them: (attribution (targets, tokens, features),
    seconds)."""
    import captum.attr

    n = len(f.targets)
    method = getattr(captum.attr, spec.captum)(f)
    method.gradient_func = _SharedForward(n)
    copies, targets = x.expand(n, -1, -1).clone().requires_grad_(True), list(range(n))
    n_steps, batch = settings["n_steps"], settings["internal_batch_size"]
    passes = -(-n_steps // batch) if spec.batched else 1
    options = dict(spec.attribute_options)

    def work():
        if spec.batched:  # integrated gradients: batch is integration steps per pass
            return method.attribute(
                copies,
                baselines=baseline.expand(n, -1, -1).clone(),
                target=targets,
                n_steps=n_steps,
                internal_batch_size=batch * n,
                **options,
            )
        return method.attribute(copies, target=targets, **options)

    return with_progress(f, passes, desc, settings["seed"], x.device, work)
