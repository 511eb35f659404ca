"""Representations through the layers: many texts' states at every depth, projected
(:mod:`.embeddings`) and compared layer by layer (:mod:`.similarity`, with the measures in
:mod:`.measures`), from one batched collection of states (:mod:`.states`)."""

from .embeddings import EmbeddingsExplainer, EmbeddingsResult
from .measures import MEASURES, cca, cka, pwcca, svcca
from .similarity import RepresentationSimilarityExplainer, SimilarityResult

__all__ = [
    "EmbeddingsExplainer", "EmbeddingsResult", "MEASURES", "RepresentationSimilarityExplainer",
    "SimilarityResult", "cca", "cka", "pwcca", "svcca",
]  # fmt: skip
