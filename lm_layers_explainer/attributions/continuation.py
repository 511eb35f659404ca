"""Whole outputs of a causal LM: every token of a continuation attributed to the tokens before it.

>>> attributions = lm_layers_explainer["attributions"](model, "The capital of France is")
>>> s = attributions(method="feature_ablation", target=" Paris, a city")  # a given target
>>> s = attributions(method="feature_ablation", generate=4)    # the model's own continuation
>>> s.scores.shape            # (target tokens, source tokens); NaN from row t's own token on

Row ``t`` explains the probability (or logit) of target token ``t`` given the text and the
target tokens before it (teacher forcing), with the method's usual single-token question on
that prefix; the sources are the text's tokens and then the target's. This first version
runs the method once per target token, so a continuation of T tokens costs about T
single-token runs.
"""

from __future__ import annotations

import numpy as np
import torch

from ..forward import check_generation, extend
from ..render import progress
from ..tasks import check_length, logits_of_embeddings
from .explained import Explained
from .results import ContinuationResult


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
    if generate is not None:
        if not continues:
            raise ValueError(
                f"generate is for causal LMs (a continuation of the text); {lm.name} is "
                f"{lm.kind!r}: explain one output with target"
            )
        n = check_generation(lm, generate, len(explainer.ids))
        if n < 1:
            raise ValueError(f"generate must be at least 1 (tokens to write); got {generate}")
        extended = extend(explainer.sequence.with_ids(explainer.ids), n)
        return list(extended.ids[len(explainer.ids) :])
    if not (continues and isinstance(target, str)) or not target:
        return None
    ids = lm.tokenizer(target, add_special_tokens=False)["input_ids"]
    if len(ids) < 2:
        return None
    check_length(lm, len(explainer.ids) + len(ids) - 1, "text and target")
    return list(ids)


def step_scores(explainer, ids: list[int], n_input: int) -> dict[str, np.ndarray]:
    """For each target token: its probability given everything before it, and the entropy
    (nats) of the model's distribution there; one forward pass over text and target."""
    explained = Explained(explainer.sequence.with_ids(ids))
    with torch.no_grad():
        logits = logits_of_embeddings(explainer.lm, explained.embeddings(), explained.extra)
    log_p = logits[0, n_input - 1 : len(ids) - 1].double().log_softmax(-1)
    targets = torch.tensor(ids[n_input:], device=log_p.device)
    probability = log_p.gather(1, targets[:, None])[:, 0].exp()
    entropy = -(log_p.exp() * log_p).sum(-1)
    return {"probability": probability.cpu().numpy(), "entropy": entropy.cpu().numpy()}


def explain_continuation(explainer, spec, targets: list[int], settings: dict) -> ContinuationResult:
    """Run ``spec`` once per target token, each on the text extended by the target tokens
    before it, and gather the rows into one matrix."""
    n_input = len(explainer.ids)
    ids = list(explainer.ids) + list(targets)
    n_sources, tokenizer = len(ids), explainer.lm.tokenizer
    scores = np.full((len(targets), n_sources), np.nan)
    outputs, baseline_outputs, deltas, seconds = [], [], [], 0.0
    rows = progress(range(len(targets)), desc=f"{spec.name}, token by token")
    for t in rows:
        prefix = Explained(explainer.sequence.with_ids(ids[: n_input + t]))
        text = tokenizer.decode([targets[t]])
        row = explainer._run(spec, targets[t], text, settings, prefix)
        scores[t, : n_input + t] = row.scores
        outputs.append(row.output)
        baseline_outputs.append(row.baseline_output)
        deltas.append(np.nan if row.delta is None else row.delta)
        seconds += row.seconds
    full = Explained(explainer.sequence.with_ids(ids))
    return ContinuationResult(
        method=spec.name,
        model_name=explainer.lm.name,
        source_tokens=full.tokens,
        source_ids=ids,
        n_input=n_input,
        scores=scores,
        attributable=full.attributable.copy(),
        output_kind=settings["output"],
        outputs=np.array(outputs),
        baseline_outputs=np.array(baseline_outputs),
        deltas=np.array(deltas, dtype=float),
        step_scores=step_scores(explainer, ids, n_input),
        seconds=seconds,
        settings=dict(settings),
    )
