"""The ``attributions`` explainer: options checked, methods run, results assembled."""

from __future__ import annotations

import inspect

import torch

from ..base import Explainer
from ..checks import check_choice, check_finite, check_int, check_labels, check_seed
from ..forward import token_id
from ..memory import MAX_PASSES, REFUSE_ABOVE, check_passes, rows_that_fit
from ..render import progress
from ..running import (
    class_index,
    class_labels,
    embedding_module,
    multi_label,
    shares_input_embeddings,
)
from .continuation import explain_continuation, foil_ids, target_ids
from .explained import ATTRIBUTED, OUTPUTS, Explained, attribute, check_baseline, read
from .faithfulness import CONVENTIONS
from .layers import LAYER_METHODS, LayerAttributionResult, check_layer_options, explain_layers
from .methods import (
    METHODS,
    MethodNotApplicableError,
    Question,
    check_method,
    per_token_mask,
    token_scores,
)
from .results import AttributionResult, ComparisonResult, ContinuationResult, RowsResult


class AttributionsExplainer(Explainer):
    """Attributions: how much each input token matters to one prediction (captum methods).

    Besides the call: ``compare()`` runs several methods on one target, and ``methods``
    lists every method and why some are refused for this model.

    Args:
        model: a catalog name, a Hugging Face Hub id, a folder, a ``(model, tokenizer)``
            pair or a :class:`~lm_layers_explainer.models.LoadedModel`: a causal LM (explains
            the next token after ``text``), a seq2seq LM such as BART or T5 (``text`` goes
            to the encoder; explains the decoder's next token, after its start token), a
            masked LM (explains the one ``[MASK]`` in ``text``) or a sequence classifier
            (explains a class).
        text: the text (required).
        text_pair: a second segment, for masked LMs and classifiers (two-text tasks such as
            entailment); None (default). Refused for a causal LM (put both texts in
            ``text``) and a seq2seq LM (give what the decoder writes as ``target``).
        custom_labels: names for a classifier's labels, one per label in index order, used
            in place of the model's ``id2label`` (in targets and results); None (default).

    Example:
        >>> attributions = lm_layers_explainer["attributions"](
        ...     "SmolLM2-135M-Instruct", "The capital of France is")
        >>> attributions.compare(["saliency", "occlusion"], target=" Paris", faithfulness=False)
        ComparisonResult(saliency, occlusion)
    """

    text_required = True

    def __init__(self, model, text: str, text_pair: str | None = None, *, custom_labels=None):
        super().__init__(model, text, text_pair)
        self.custom_labels = self._custom_labels(custom_labels)
        self.explained = Explained(self.sequence)

    def _custom_labels(self, custom_labels) -> list[str] | None:
        """``custom_labels`` checked: names for a classifier's (or tagger's) labels."""
        if custom_labels is None:
            return None
        if self.lm.task.explains not in ("class", "label"):
            raise ValueError(
                f"custom_labels renames a classifier's labels; {self.lm.name} is a "
                f"{self.lm.kind} model"
            )
        return check_labels(custom_labels, len(self.lm.config.id2label))

    @property
    def ids(self) -> list[int]:
        return self.explained.ids

    @property
    def tokens(self) -> list[str]:
        return self.explained.tokens

    @property
    def read_at(self) -> int | None:
        """Where the answer is read (None for a classifier)."""
        return self.explained.read_at

    @property
    def attributable(self):
        """True for the tokens that can be attributed (not special, not the [MASK])."""
        return self.explained.attributable

    def check_model(self, lm) -> None:
        task_explainers = {"span": "question_answering", "label": "token_classification"}
        if lm.task.explains in task_explainers:
            raise ValueError(
                f"{lm.name} is a {lm.kind} model: explain it with "
                f"lm_layers_explainer[{task_explainers[lm.task.explains]!r}]"
            )
        if lm.task.explains is None:
            raise ValueError(
                f"model must be a causal LM, a seq2seq LM, a masked LM or a sequence "
                f"classifier for attributions; {lm.name} is {lm.kind!r}. (A plain encoder "
                "has no output to explain)"
            )
        if not shares_input_embeddings(lm):
            raise ValueError(
                f"{lm.name}'s encoder and decoder embed tokens differently; attributions "
                "need one input embedding for both (as BART and T5 have)"
            )

    def _checked(self, text, text_pair):
        if text_pair is not None and self.lm.task.second_text == "continuation":
            raise ValueError(
                "text_pair is for masked LMs and sequence classifiers (two segments); "
                "for a causal LM put both texts in text"
            )
        if text_pair is not None and self.lm.task.second_text == "decoder":
            raise ValueError(
                "text_pair is for masked LMs and sequence classifiers (two segments); for a "
                "seq2seq LM text goes to the encoder, the decoder starts from its start "
                "token, and what it writes is target (one token, or a continuation)"
            )
        return super()._checked(text, text_pair)

    # ----------------------------------------------------------------- what is explained

    @property
    def methods(self):
        """Every method, with its captum class, family, summary, and the reason it is
        refused for this model (empty where it runs). A pandas DataFrame indexed by method
        name."""
        import pandas as pd

        return pd.DataFrame(
            [
                (m.name, m.captum, m.family, m.summary, self.refusal(m) or "")
                for m in [*METHODS.values(), *LAYER_METHODS.values()]
            ],
            columns=["method", "captum", "family", "summary", "refused"],
        ).set_index("method")

    def refusal(self, spec) -> str | None:
        """Why ``spec`` cannot explain this model here, or None where it runs."""
        return spec.refuse(self.lm)

    def labels(self) -> list[str]:
        """A classifier's class labels, in index order (``custom_labels`` if given)."""
        return class_labels(self.lm, self.custom_labels)

    def logits(self) -> torch.Tensor:
        """The model's logits for what is explained (vocabulary or classes); one forward."""
        return self.explained.logits()

    def resolve_target(self, target, name: str = "target") -> tuple[int, str]:
        """(index, text) of ``target``: a token text or id (LMs), a label or class index
        (classifiers), or None for the model's top prediction. ``name`` is the parameter
        named in errors (``foil`` for a contrast's)."""
        lm = self.lm
        if lm.task.explains == "class":
            labels = self.labels()
            index = class_index(labels, target, name, lambda: self.logits().argmax())
            return index, labels[index]
        index = int(self.logits().argmax()) if target is None else token_id(lm, target, name)
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
        attributed: str = "word",
        max_passes: int = MAX_PASSES,
        generate: int | None = None,
        foil=None,
        layer: int | None = None,
        neuron: int | None = None,
        position: int | None = None,
    ) -> AttributionResult | ContinuationResult | LayerAttributionResult:
        """Attribute ``target`` to the input tokens with ``method``.

        Args:
            method: one of ``saliency``, ``input_x_gradient``, ``integrated_gradients``
                (default), ``deeplift``, ``deeplift_shap``, ``guided_backprop``,
                ``guided_gradcam``, ``deconvolution``, ``lrp``, ``occlusion``,
                ``feature_ablation``, ``lime``, ``kernel_shap``, ``shapley_value_sampling``;
                those this model cannot run (see ``methods``) raise
                :class:`~lm_layers_explainer.attributions.methods.MethodNotApplicableError`.
            target: what is explained; None (default) for the model's top prediction (for a
                multi-label classifier: every label whose probability is at least 0.5, one
                row each, a :class:`~lm_layers_explainer.attributions.results.RowsResult`). For an
                LM a token text that is exactly one token, or a token id (0 .. vocabulary
                size - 1); for a classifier a class label, or a class index. For a causal or
                seq2seq LM a text of several tokens is a continuation: each of its tokens
                is explained (a
                :class:`~lm_layers_explainer.attributions.results.ContinuationResult`).
            output: explain the ``"probability"`` (softmax, default) or the ``"logit"``.
            baseline: what replaces a token: ``"zero"`` (default) vector, or the embedding of
                the ``"pad"`` or ``"mask"`` token (where the tokenizer has one).
            n_steps: integration steps of integrated_gradients (default 50), 1 .. 10,000.
            internal_batch_size: how many interpolated or perturbed inputs go through the
                model at once, 1 .. 4096; None (default) chooses it from the text's length
                and the free memory (``result.settings`` says what was chosen). A value
                whose estimated memory is not free is refused up front.
            n_samples: samples of lime (default 200), kernel_shap (200),
                shapley_value_sampling (25 permutations) and deeplift_shap (10 baselines, at
                least 2), up to 100,000; None (default) for each method's default.
            window: tokens per occlusion window (default 1), 1 .. the number of tokens.
            seed: for every random choice (default 0), 0 .. ``2**32 - 1``.
            attributed: which embeddings are attributed: the tokens' ``"word"`` embeddings
                (default), or their ``"position"`` or ``"token_type"`` embeddings (models
                with learned ones, such as BERT; the word embeddings then stay as they are),
                as transformers-interpret allows. Not ``"word"``: the zero baseline only,
                no deeplift_shap, one token only (no continuation), faithfulness by
                replacement.
            max_passes: the most forward passes one attribution may make (default 10,000,
                about a day on a CPU), 1 or more. The count (from the text's length,
                ``n_steps``, ``n_samples`` and the batch) is made before any work: more is
                refused, naming what to lower. Anything less runs, with a progress bar once
                it looks longer than a few seconds (feature ablation at 2,000 tokens on
                SmolLM2: 1,001 passes of 2, hours on a CPU).
            generate: causal and seq2seq LMs only: the model writes this many tokens (1 ..
                its context left) after the text (a seq2seq model's decoder: after its start
                token), greedily, and each is explained as a continuation; None (default)
                for none. Not with ``target``.
            foil: a contrast: explain the target's output minus the foil's (a token text
                of one token or a token id; a class label or index), as in contrastive
                explanations (Yin and Neubig 2022); None (default) for none. It must differ
                from the target. With a continuation, a text of as many tokens as the
                target: row t explains target token t's output minus foil token t's, both
                read after the text and the target's tokens before t. Not with
                ``generate``.

            layer: the layer methods (``layer_conductance``, ``layer_integrated_gradients``,
                ``layer_gradient_x_activation``): the layer whose output is attributed, 0 ..
                layers - 1; None (default) for every layer, one row each.
                ``neuron_conductance``: the layer whose feed-forward neuron is followed.
            neuron: ``neuron_conductance`` only: the neuron, an index into the input of the
                layer's last feed-forward linear layer (0 .. its width - 1).
            position: ``neuron_conductance`` only: the token position of the neuron, 0 ..
                tokens - 1; None (default) for where the answer is read (a classifier: 0).

        Returns:
            AttributionResult: ``scores`` (one per token), ``to_frame()``,
            ``faithfulness()``, ``save()``; it shows the tokens coloured by their scores.
            For a continuation, a ContinuationResult: ``scores`` (target tokens, source
            tokens), ``step_scores``, ``to_frame()``, ``aggregate("words")``. For a layer or
            neuron method, a LayerAttributionResult: ``scores`` (layers or the neuron,
            tokens), ``totals``, ``deltas``, ``to_frame()``.

        Example:
            >>> attributions = lm_layers_explainer["attributions"](
            ...     "SmolLM2-135M-Instruct", "The capital of France is")
            >>> result = attributions(target=" Paris", n_steps=20)     # integrated gradients
            >>> result.tokens[result.scores.argmax()]
            ' capital'
        """
        options = {
            "output": output,
            "baseline": baseline,
            "n_steps": n_steps,
            "internal_batch_size": internal_batch_size,
            "n_samples": n_samples,
            "window": window,
            "seed": seed,
            "attributed": attributed,
            "max_passes": max_passes,
        }
        if isinstance(method, str) and method in LAYER_METHODS:
            return self._layers(LAYER_METHODS[method], target, foil, generate, options,
                                layer, neuron, position)  # fmt: skip
        spec = check_method(method, also=tuple(LAYER_METHODS))
        if (layer, neuron, position) != (None, None, None):
            raise ValueError(
                f"layer, neuron and position are for the layer and neuron methods "
                f"({', '.join(LAYER_METHODS)}); {spec.name} attributes the input tokens"
            )
        settings = self._settings(spec, **options)
        reason = spec.refuse(self.lm)
        if reason:
            raise MethodNotApplicableError(reason)
        if foil is not None and generate is not None:  # refused before the model writes
            raise ValueError(
                "foil is for a given target (one token, or a continuation of as many tokens "
                f"as the foil); the model's own continuation has none (got foil={foil!r} "
                "with generate)"
            )
        continuation = target_ids(self, target, generate)
        if continuation is not None and attributed != "word":
            raise ValueError(
                f"attributed={attributed!r} explains one token; a continuation attributes "
                "word embeddings only"
            )
        if continuation is not None:  # the longest prefix sets the batch that fits
            foils = None if foil is None else foil_ids(self, foil, continuation)
            longest = len(self.ids) + len(continuation) - 1
            settings = self._settings(spec, **options, n_tokens=longest)
            return explain_continuation(self, spec, continuation, settings, foils)
        contrast = None if foil is None else self.resolve_target(foil, "foil")
        every_label = target is None and multi_label(self.lm)  # independent labels
        if every_label and contrast is not None:
            raise ValueError(
                "foil needs a target for a multi-label classifier (target=None explains "
                "every label above the threshold)"
            )
        if target is None:  # the top prediction: the same forward pass as f(x')
            self.explained.compute_logits(settings["baseline"])
            if every_label:
                return self._labels_above(spec, settings)
        index, text = self.resolve_target(target)
        _check_contrast(contrast, index, text)
        return self._run(spec, index, text, settings, contrast=contrast)

    def _layers(self, spec, target, foil, generate, options, layer, neuron, position):
        """A layer or neuron method (see :mod:`.layers`), every option checked first."""
        settings = self._settings(spec, **options)
        if options["attributed"] != "word" or generate is not None:
            raise ValueError(
                f"{spec.name} explains one target token through the word embeddings; "
                "attributed and generate are for the token methods"
            )
        layer, neuron, position = check_layer_options(self, spec, layer, neuron, position)
        contrast = None if foil is None else self.resolve_target(foil, "foil")
        if target is None:
            self.explained.compute_logits(settings["baseline"])
        index, text = self.resolve_target(target)
        _check_contrast(contrast, index, text)
        return explain_layers(self, spec, index, text, settings, layer, neuron, position,
                              contrast)  # fmt: skip

    def _labels_above(self, spec, settings: dict, threshold: float = 0.5) -> RowsResult:
        """A multi-label classifier's every label whose probability (a sigmoid each) is at
        least ``threshold``, one row each."""
        labels = self.labels()
        probabilities = self.explained.logits().float().sigmoid().tolist()
        rows = {
            label: self._run(spec, i, label, settings)
            for i, (label, p) in enumerate(zip(labels, probabilities, strict=True))
            if p >= threshold
        }
        return RowsResult(
            task="multi-label classification",
            model_name=self.lm.name,
            rows=rows,
            details={
                "threshold": threshold,
                "probabilities": dict(zip(labels, probabilities, strict=True)),
            },
        )

    def compare(self, methods=None, target=None, *, faithfulness=True, foil=None, **options):
        """Run several methods (default: all) on the same target (one token, or a class),
        and contrast, ``foil``, as a single call takes them; refused methods are listed with
        their reason. Options are those of a single call. ``faithfulness``: True (tokens
        deleted), a convention (``"deletion"``, ``"replacement"`` by each method's
        baseline), or False (not computed).

        >>> attributions.compare(["saliency", "integrated_gradients"]).to_frame()
        >>> attributions.compare(["saliency"], target=" London", foil=" Manchester")
        """
        faithfulness = check_faithfulness(faithfulness)
        check_options(options, "compare()")
        specs = check_methods(methods)
        checked = {s.name: self._settings(s, **{**CALL_OPTIONS, **options}) for s in specs}
        contrast = None if foil is None else self.resolve_target(foil, "foil")
        if target is None:
            self.explained.compute_logits(checked[specs[0].name]["baseline"])
        index, text = self.resolve_target(target)
        _check_contrast(contrast, index, text)
        results: dict[str, AttributionResult | str] = {}
        for spec in progress(specs, desc="attribution methods"):
            reason = self.refusal(spec)
            if reason:
                results[spec.name] = reason
                continue
            result = self._run(spec, index, text, checked[spec.name], contrast=contrast)
            if faithfulness:
                result.faithfulness(faithfulness)
            results[spec.name] = result
        return ComparisonResult(
            tokens=self.tokens, results=results, convention=faithfulness or None
        )

    def _settings(
        self,
        spec,
        *,
        output,
        baseline,
        n_steps,
        internal_batch_size,
        n_samples,
        window,
        seed,
        attributed="word",
        max_passes=MAX_PASSES,
        n_tokens: int | None = None,
    ) -> dict:
        """Check every option before any model work (defaults: those of ``__call__``);
        ``n_tokens``: the longest text the method will read (default: this text)."""
        check_choice(output, "output", OUTPUTS)
        check_baseline(self.lm, baseline)
        n_steps = check_int(n_steps, "n_steps", 1, 10_000)
        if internal_batch_size is not None:
            internal_batch_size = check_int(internal_batch_size, "internal_batch_size", 1, 4096)
        if n_samples is not None:
            n_samples = check_int(n_samples, "n_samples", spec.min_samples, 100_000)
        n_samples = n_samples if n_samples is not None else spec.default_samples
        window = check_int(window, "window", 1, len(self.ids))
        seed = check_seed(seed)
        check_choice(attributed, "attributed", ATTRIBUTED)
        if attributed != "word":
            embedding_module(self.lm, attributed)  # the model has one
            if baseline != "zero":
                raise ValueError(
                    f"attributed={attributed!r} takes the zero baseline only (no token stands "
                    f"for a missing {attributed}); got baseline={baseline!r}"
                )
            if spec.random_baselines:
                raise ValueError(
                    f"{spec.name} draws random tokens as baselines, so it attributes word "
                    f"embeddings only; got attributed={attributed!r}"
                )
        max_passes = check_int(max_passes, "max_passes", 1)
        batch, memory = self._batch(spec, internal_batch_size, n_samples, n_tokens)
        self._check_passes(spec, n_tokens or len(self.ids), n_steps, batch, n_samples,
                           max_passes)  # fmt: skip
        return {
            "output": output,
            "baseline": baseline,
            "n_steps": n_steps,
            "internal_batch_size": batch,
            "n_samples": n_samples,
            "window": window,
            "seed": seed,
            "attributed": attributed,
            "memory": memory,
        }

    def _batch(
        self, spec, internal_batch_size: int | None, n_samples, n_tokens: int | None = None
    ) -> tuple[int, str]:
        """Inputs per pass through the model, and what was chosen, in words; a ValueError
        with the estimate when what the method needs is not free."""
        n = n_tokens or len(self.ids)
        backward = spec.family != "perturbation"  # the layer and neuron methods too
        kept = self.lm.n_layers if spec.family == "layer" else 0  # every layer at once
        fit = rows_that_fit(self.lm, n, backward=backward, kept_layers=kept)
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
                if spec.random_baselines
                else "a shorter text"
            )
            raise ValueError(
                f"{spec.name} would put {rows} inputs through the model at once, about "
                f"{rows * fit.bytes_per_row / 2**30:.1f} GiB ({per_row}), more than the {free}: "
                f"use {fix}"
            )
        batch = internal_batch_size if spec.batched else fit.rows
        return batch, f"internal_batch_size={batch}" + (", given" if spec.batched else "")

    def _check_passes(self, spec, n, n_steps, batch, n_samples, max_passes) -> None:
        """Refuse, before any work, an attribution of more than ``max_passes`` passes."""
        passes = spec.passes(n, n_steps, batch, n_samples)
        if spec.per_layer:  # once per layer (when layer is None)
            passes *= self.lm.n_layers
        if spec.default_samples is not None:
            fewer = "use fewer n_samples"
        elif spec.family == "perturbation":
            fewer = "use a shorter text"
        else:
            fewer = "use fewer n_steps"
        if spec.batched:
            fewer += " or a larger internal_batch_size (up to 4096)"
        check_passes(passes, max_passes, f"{spec.name} on {n} tokens (batches of {batch})",
                     fewer)  # fmt: skip

    def question(self, explained: Explained, index: int, settings: dict, foil=None) -> Question:
        """What every method (token, layer or neuron) is asked about ``explained``: ``f``
        of the input embeddings for target ``index`` (minus ``foil``'s), with the input, the
        baseline and the checked ``settings``."""
        x = explained.embeddings()
        return Question(
            f=explained.f(index, settings["output"], foil),
            x=x.clone().requires_grad_(True),  # captum warns when it has to set this itself
            baseline=explained.baseline(x, settings["baseline"]),
            feature_mask=per_token_mask(x),
            baseline_sampler=lambda n: explained.random_baselines(x, n, settings["seed"]),
            n_steps=settings["n_steps"],
            internal_batch_size=settings["internal_batch_size"],
            n_samples=settings["n_samples"],
            window=settings["window"],
        )

    def outputs(self, explained: Explained, index: int, settings: dict, foil=None):
        """f(x) and f(x') from the logits the explainer keeps (one forward pass for both, per
        explainer and baseline kind), read as ``f`` reads them (a sigmoid for a multi-label
        classifier)."""
        explained.compute_logits(settings["baseline"])
        sigmoid = multi_label(self.lm)
        output = read(explained.logits(), index, settings["output"], foil, sigmoid)
        baseline_logits = explained.baseline_logits(settings["baseline"])
        return output, read(baseline_logits, index, settings["output"], foil, sigmoid)

    def scored(
        self, scores, method: str, target=None, foil=None, *, output: str = "probability"
    ) -> AttributionResult:
        """Token scores computed elsewhere (attention rollout or flow) as an attribution of
        ``target``, so that ``faithfulness()`` ranks their tokens as it ranks any method's.

        >>> attributions.scored(rollout_scores, "attention_rollout").faithfulness()
        """
        scores = check_finite(scores, "scores")
        if scores.shape != (len(self.ids),):
            raise ValueError(
                f"scores must hold one number per token ({len(self.ids)}); got shape {scores.shape}"
            )
        # Faithfulness runs forward passes only: a perturbation method's batch fits them.
        settings = self._settings(METHODS["feature_ablation"], **{**CALL_OPTIONS, "output": output})
        contrast = None if foil is None else self.resolve_target(foil, "foil")
        if target is None:
            self.explained.compute_logits(settings["baseline"])
        index, text = self.resolve_target(target)
        _check_contrast(contrast, index, text)
        foil_index, foil_text = contrast or (None, None)
        output_value, baseline_output = self.outputs(self.explained, index, settings, foil_index)
        explained = self.explained
        return AttributionResult(
            method=method, model_name=self.lm.name, tokens=explained.tokens,
            token_ids=list(explained.ids), scores=scores,
            attributable=explained.attributable.copy(), target=index, target_text=text,
            question=explained.question, output_kind=output, output=output_value,
            baseline_output=baseline_output, delta=None, seconds=0.0, explained=explained,
            settings=dict(settings), foil=foil_index, foil_text=foil_text,
            n_encoder=explained.n_encoder,
        )  # fmt: skip

    def _run(
        self,
        spec,
        index: int,
        text: str,
        settings: dict,
        explained: Explained | None = None,
        contrast: tuple[int, str] | None = None,
    ) -> AttributionResult:
        """One method on one question: this explainer's text, or ``explained`` (the text
        extended by part of a continuation); ``contrast``: the foil's (index, text)."""
        lm = self.lm
        explained = (explained or self.explained).attributing(settings["attributed"])
        foil, foil_text = contrast or (None, None)
        question = self.question(explained, index, settings, foil)
        batch = settings["internal_batch_size"]
        desc = f"{spec.name} ({len(explained.ids)} tokens, batches of {batch})"
        attribution, delta, seconds = attribute(spec, question, settings, desc)
        scores = token_scores(spec, attribution.detach()[0].double()).cpu().numpy()
        output, baseline_output = self.outputs(explained, index, settings, foil)
        if spec.random_baselines:  # x' is a sample: f(x') is its mean
            with torch.no_grad():
                references = question.baseline_sampler(settings["n_samples"])
                baseline_output = float(question.f(references).mean())
        return AttributionResult(
            method=spec.name,
            model_name=lm.name,
            tokens=explained.tokens,
            token_ids=list(explained.ids),
            scores=scores,
            attributable=explained.attributable.copy(),
            target=index,
            target_text=text,
            question=explained.question,
            output_kind=settings["output"],
            output=output,
            baseline_output=baseline_output,
            delta=delta,
            seconds=seconds,
            explained=explained,
            settings=dict(settings),
            foil=foil,
            foil_text=foil_text,
            n_encoder=explained.n_encoder,
        )


def check_faithfulness(faithfulness) -> str | None:
    """compare()'s ``faithfulness``: True (``"deletion"``), a convention, or False (None)."""
    if faithfulness is True:
        return "deletion"
    if faithfulness is not False and faithfulness not in CONVENTIONS:
        raise ValueError(
            f"faithfulness must be True, False or one of {', '.join(CONVENTIONS)}; "
            f"got {faithfulness!r}"
        )
    return faithfulness or None


def check_methods(methods) -> list:
    """compare()'s ``methods``: None for all, or a non-empty list of distinct names."""
    names = list(METHODS) if methods is None else methods
    if isinstance(names, str) or not names:
        raise ValueError(
            f"methods must be a non-empty list of method names ({', '.join(METHODS)}) "
            "or None for all"
        )
    specs = [check_method(name) for name in names]
    if len({s.name for s in specs}) != len(specs):
        raise ValueError(f"methods must not repeat a name; got {names}")
    return specs


def check_options(options: dict, caller: str) -> None:
    """Refuse options that a single call does not take (see :data:`CALL_OPTIONS`)."""
    unknown = sorted(set(options) - set(CALL_OPTIONS))
    if unknown:
        raise TypeError(f"{caller} got unknown options {unknown}; valid: {', '.join(CALL_OPTIONS)}")


def _check_contrast(contrast: tuple[int, str] | None, index: int, text: str) -> None:
    if contrast is not None and contrast[0] == index:
        raise ValueError(f"foil must differ from the target; both are {text!r}")


CALL_OPTIONS = {
    name: parameter.default
    for name, parameter in inspect.signature(AttributionsExplainer.__call__).parameters.items()
    if parameter.kind is parameter.KEYWORD_ONLY
    and name not in ("generate", "foil", "layer", "neuron", "position")
}
"""The options of a single call, with their defaults; ``compare`` takes the same (one
target token, no contrast: no ``generate``, no ``foil``)."""
