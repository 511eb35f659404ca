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

The package: :mod:`.explainer` (the explainer), :mod:`.explained` (what is explained, ``f``),
:mod:`.methods` (the methods table), :mod:`.results` (the result classes) and
:mod:`.faithfulness` (deletion and insertion curves, ERASER's bins), :mod:`.continuation`
(whole outputs) and :mod:`.task_models` (question answering, token classification,
zero-shot classification, sentence similarity) and :mod:`.images` (image classifiers).
"""

from .explained import BASELINES, OUTPUTS, Explained, ExplainedOutput
from .explainer import CALL_OPTIONS, AttributionsExplainer
from .faithfulness import CONVENTIONS, ERASER_BINS, eraser_bins
from .images import ImageAttributionResult, ImageClassificationExplainer
from .methods import METHODS, Method, MethodNotApplicableError, Question, check_method, token_scores
from .results import AttributionResult, ComparisonResult, FaithfulnessResult, RowsResult
from .task_models import (
    QuestionAnsweringExplainer,
    SimilarityExplainer,
    TokenClassificationExplainer,
    ZeroShotExplainer,
)

__all__ = [
    "BASELINES",
    "CALL_OPTIONS",
    "CONVENTIONS",
    "ERASER_BINS",
    "METHODS",
    "OUTPUTS",
    "AttributionResult",
    "AttributionsExplainer",
    "ComparisonResult",
    "Explained",
    "ExplainedOutput",
    "FaithfulnessResult",
    "ImageAttributionResult",
    "ImageClassificationExplainer",
    "Method",
    "MethodNotApplicableError",
    "Question",
    "QuestionAnsweringExplainer",
    "RowsResult",
    "SimilarityExplainer",
    "TokenClassificationExplainer",
    "ZeroShotExplainer",
    "check_method",
    "eraser_bins",
    "token_scores",
]
