"""The ``predictions`` explainer: the logit lens, layer by layer candidates for one position.

>>> predictions = lm_layers_explainer["predictions"]("SmolLM2-135M-Instruct",
...                                                  " Heathrow airport is in the city of")
>>> predictions(position=8, layer=29).to_frame().head(1)
   layer  rank   token  token_id  probability
0     29     1  London      ...        0.6...
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Explainer
from .checks import check_index, check_int
from .forward import check_position, check_sampling, extend
from .lens import LogitLens
from .render import Result, grid_figure, html_grid, progress, visible
from .tasks import predicted_from, token_texts


def check_topk(topk, vocabulary: int) -> int:
    """1..the vocabulary size."""
    return check_int(topk, "topk", 1, vocabulary)


@dataclass
class PredictionsResult(Result):
    """Top candidates for the token at ``position``, for each layer in ``layers``.

    ``token_ids`` and ``probabilities`` are arrays (len(layers), topk), best first.
    """

    model_name: str
    tokens: list[str]
    position: int
    layers: list[int]
    token_ids: np.ndarray
    candidates: list[list[str]]
    probabilities: np.ndarray

    def __repr__(self) -> str:
        best = ", ".join(
            f"layer {layer}: {self.candidates[i][0]!r} {self.probabilities[i][0]:.3f}"
            for i, layer in list(enumerate(self.layers))[-3:]
        )
        return f"PredictionsResult(position={self.position}, {best})"

    def to_frame(self):
        """Columns ``layer, rank, token, token_id, probability`` (rank 1 = most probable)."""
        import pandas as pd

        rows = [
            (
                layer,
                rank + 1,
                self.candidates[i][rank],
                int(self.token_ids[i][rank]),
                float(self.probabilities[i][rank]),
            )
            for i, layer in enumerate(self.layers)
            for rank in range(self.token_ids.shape[1])
        ]
        return pd.DataFrame(rows, columns=["layer", "rank", "token", "token_id", "probability"])

    def _context(self) -> str:
        before = "".join(self.tokens[: self.position])
        return f"{before}[{self.position}: ?]"

    def _grid(self):
        cells = [[visible(token) for token in row] for row in self.candidates]
        tips = [[f"{p:.4f}" for p in row] for row in self.probabilities]
        return cells, tips

    def to_html(self) -> str:
        cells, tips = self._grid()
        labels = [f"#{rank}" for rank in range(1, self.token_ids.shape[1] + 1)]
        title = (
            f"{self.model_name}: candidates for position {self.position}, by layer "
            f"(shade = probability; hover for the value). Context: {self._context()}"
        )
        return html_grid(
            title,
            labels,
            [f"layer {layer}" for layer in self.layers],
            cells,
            self.probabilities.tolist(),
            tooltips=tips,
        )

    def figure(self):
        cells, _ = self._grid()
        annotated = [
            [f"{cell}\n{p:.3f}" for cell, p in zip(row, probabilities, strict=True)]
            for row, probabilities in zip(cells, self.probabilities, strict=True)
        ]
        labels = [f"#{rank}" for rank in range(1, self.token_ids.shape[1] + 1)]
        return grid_figure(
            f"{self.model_name}: candidates for position {self.position} "
            f"(after {visible(''.join(self.tokens[max(0, self.position - 6) : self.position]))!r})",
            labels,
            [str(layer) for layer in self.layers],
            annotated,
            self.probabilities,
        )


class PredictionsExplainer(Explainer):
    """The logit lens: what each layer would predict for a position.

    Each layer's residual stream is read through the model's final norm and unembedding; at
    the last layer this is the model's own output distribution. The forward pass is made
    once per token sequence and reused by later calls.

    Args:
        model: a catalog name, a Hugging Face Hub id, a folder, a ``(model, tokenizer)``
            pair or a :class:`~lm_layers_explainer.models.LoadedModel`: a causal, masked or
            seq2seq language model (one with a vocabulary head).
        text: the text (required); for a seq2seq model it goes to the encoder, and the
            positions are the decoder's, which starts from its start token.

    Example:
        >>> predictions = lm_layers_explainer["predictions"](
        ...     "SmolLM2-135M-Instruct", "The capital of France is")
        >>> predictions(position=5, layer=29, topk=3).candidates
        [[' Paris', ' the', ' London']]
    """

    needs_head = True
    entry_point = "predictions"

    text_required = True

    def __init__(self, model, text: str):
        super().__init__(model, text)
        self.sequence_for()  # encoded now: a bad text is refused when the explainer is built
        self._lens: tuple[list[int], LogitLens] | None = None  # (token ids, their lens)

    @property
    def tokens(self) -> list[str]:
        return self.sequence.tokens

    def __call__(
        self,
        position: int,
        layer: int | None = None,
        topk: int = 10,
        *,
        do_sample: bool = False,
        seed: int = 0,
    ) -> PredictionsResult:
        """The ``topk`` most probable tokens for ``position``, at one layer or every layer.

        Args:
            position: the token predicted, counted from 0 as the tokenizer splits the text
                (see the ``tokens`` explainer). A causal model (or seq2seq decoder) predicts
                it from the hidden state at ``position - 1``, so 1 .. its context length: a
                position past the text is reached by generating tokens first. A masked
                model reads the state at ``position`` (put ``[MASK]`` there): 0 .. tokens - 1.
            layer: 0 .. layers - 1; None (default) for every layer.
            topk: candidates per layer (default 10), 1 .. the vocabulary size.
            do_sample: how generated tokens are chosen: False (default) the most probable,
                True a draw from the model's softmax.
            seed: the seed of those draws (default 0), 0 .. ``2**32 - 1``.

        Returns:
            PredictionsResult: ``candidates`` and ``token_ids`` (layers, topk) and
            ``probabilities``, best first; it shows as a grid, layers by rank.

        Example:
            >>> predictions = lm_layers_explainer["predictions"](
            ...     "SmolLM2-135M-Instruct", "The capital of France is")
            >>> result = predictions(position=5, topk=5)      # every layer, 5 candidates each
            >>> result.candidates[-1]                         # the last layer's
            [' Paris', ' the', ' London', ' Le', ' New']
        """
        lm = self.lm
        position = check_position(position, lm, self.sequence, allow_generation=True)
        layers = (
            list(range(lm.n_layers))
            if layer is None
            else [check_index(layer, lm.n_layers, "layer")]
        )
        topk = check_topk(topk, lm.vocab_size)
        do_sample, seed = check_sampling(do_sample, seed)
        sequence = extend(
            self.sequence, position - len(self.sequence), do_sample=do_sample, seed=seed
        )
        state = predicted_from(lm, position)
        lens = self._lens_for(sequence)
        lens.check_last_layer([state])
        ids, probabilities = [], []
        for index in progress(layers, desc="logit lens", show=len(layers) >= 8):
            top = lens.logits(index, [state])[0].softmax(-1).topk(topk)
            ids.append(top.indices.numpy())
            probabilities.append(top.values.numpy())
        ids = np.stack(ids)
        return PredictionsResult(
            model_name=lm.name,
            tokens=sequence.tokens,
            position=position,
            layers=layers,
            token_ids=ids,
            candidates=[token_texts(lm.tokenizer, row) for row in ids],
            probabilities=np.stack(probabilities),
        )

    def _lens_for(self, sequence) -> LogitLens:
        """One forward pass per distinct token sequence: later calls on it reuse the lens."""
        if self._lens is None or self._lens[0] != sequence.ids:
            self._lens = (list(sequence.ids), LogitLens(sequence))
        return self._lens[1]
