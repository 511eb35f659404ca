"""The ``rankings`` explainer: the rank of a token in every layer's logit-lens distribution.

>>> rankings = lm_layers_explainer["rankings"]("SmolLM2-135M-Instruct", "The keys to the cabinet")
>>> out = rankings(generate=1)
>>> out.rankings()                                       # the produced token, every layer
>>> out.rankings_watch(watch=[" is", " are"], position=5)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from .base import Explainer
from .checks import int_list
from .forward import (
    check_generation,
    check_position,
    check_sampling,
    extend,
    position_range,
    token_id,
)
from .lens import LogitLens, ranks_of
from .locks import UsesModel
from .render import Result, grid_figure, html_grid, progress, visible
from .tasks import Sequence, predicted_from, special_flags, token_texts
from .tokens import TokensResult


def _rank_shade(ranks: np.ndarray) -> np.ndarray:
    """1 for rank 1, fading on a log scale to 0 at rank 10,000 and beyond."""
    return 1.0 - np.clip(np.log10(ranks), 0, 4) / 4


@dataclass
class RankingsResult(Result):
    """Ranks (1 = the layer's top candidate) of some tokens at every layer.

    ``ranks`` is an int array (n_layers, columns); column ``c`` is ``token_ids[c]``,
    predicted for ``positions[c]``.
    """

    model_name: str
    title: str
    positions: list[int]
    token_ids: list[int]
    columns: list[str]
    ranks: np.ndarray

    def __repr__(self) -> str:
        last = ", ".join(
            f"{token!r}@{position}: {rank}"
            for token, position, rank in zip(
                self.columns, self.positions, self.ranks[-1], strict=True
            )
        )
        return f"RankingsResult({self.ranks.shape[0]} layers; last layer ranks {last})"

    def to_frame(self):
        """Columns ``layer, position, token, token_id, rank``."""
        import pandas as pd

        rows = [
            (
                layer,
                self.positions[c],
                self.columns[c],
                self.token_ids[c],
                int(self.ranks[layer, c]),
            )
            for layer in range(self.ranks.shape[0])
            for c in range(self.ranks.shape[1])
        ]
        return pd.DataFrame(rows, columns=["layer", "position", "token", "token_id", "rank"])

    def _cells(self):
        return [[str(int(rank)) for rank in row] for row in self.ranks]

    def _labels(self):
        return [
            f"{visible(token)} @{position}"
            for token, position in zip(self.columns, self.positions, strict=True)
        ]

    def to_html(self) -> str:
        rows = [f"layer {layer}" for layer in range(self.ranks.shape[0])]
        return html_grid(
            f"{self.model_name}: {self.title} (1 = the layer's top candidate; darker = better)",
            self._labels(),
            rows,
            self._cells(),
            _rank_shade(self.ranks).tolist(),
            cmap="Purples",
        )

    def figure(self):
        rows = [str(layer) for layer in range(self.ranks.shape[0])]
        return grid_figure(
            f"{self.model_name}: {self.title}",
            self._labels(),
            rows,
            self._cells(),
            _rank_shade(self.ranks),
            cmap="Purples",
        )


class RankingsOutput(Result, UsesModel):
    """A text (and what was generated after it) ready for rank views. Shows as its tokens
    (``text``, ``tokens``, ``token_ids``, ``special``; ``to_frame()`` and the pictures are
    those of its :meth:`token_view`)."""

    def __init__(self, sequence: Sequence):
        lm = sequence.lm
        self.lm, self.sequence = lm, sequence
        self.text, self.model_name = sequence.text, lm.name
        self.tokens, self.token_ids = sequence.tokens, list(sequence.ids)
        self.special = special_flags(lm.tokenizer, sequence.ids)
        self._lens: LogitLens | None = None

    @property
    def n_input(self) -> int:
        return self.sequence.n_input

    @property
    def positions(self) -> list[int]:
        return list(range(len(self.tokens)))

    def __len__(self) -> int:
        return len(self.tokens)

    def token_view(self) -> TokensResult:
        """The tokens as a :class:`~lm_layers_explainer.tokens.TokensResult`."""
        return TokensResult(self.text, self.tokens, self.token_ids, self.special, self.model_name)

    def to_frame(self):
        """Columns ``position, token, token_id, special``."""
        return self.token_view().to_frame()

    def saved_fields(self) -> dict:
        """What ``save("....json")`` keeps: the tokens it shows (it loads as a
        :class:`~lm_layers_explainer.tokens.TokensResult`; the ranks need the model)."""
        view = self.token_view()
        return {"__kind__": "TokensResult"} | {
            f.name: getattr(view, f.name) for f in dataclasses.fields(view)
        }

    def to_html(self) -> str:
        return self.token_view().to_html()

    def figure(self):
        return self.token_view().figure()

    def __repr__(self) -> str:
        generated = self.tokens[self.n_input :]
        return f"RankingsOutput({len(self)} tokens, generated {generated!r})"

    def _lens_once(self) -> LogitLens:
        if self._lens is None:
            self._lens = LogitLens(self.sequence)
        return self._lens

    def rankings(self, positions: list[int] | None = None) -> RankingsResult:
        """Rank, at every layer, of the token that stands at each position.

        By default the generated tokens; without generation every position that has a
        prediction (from 1 for causal models, from 0 for masked ones).
        """
        low, high = position_range(self.lm, self.sequence, allow_generation=False)
        last = min(high, len(self) - 1)
        if positions is None:
            start = self.n_input if len(self) > self.n_input else low
            positions = list(range(start, last + 1))
        else:
            positions = int_list(positions, "positions", f"in {low}..{last}")
            positions = [
                check_position(p, self.lm, self.sequence, allow_generation=False) for p in positions
            ]
            if any(p > last for p in positions):
                raise ValueError(
                    f"positions must be in {low}..{last} (the tokens that exist); got {positions}"
                )
        if not positions:
            raise ValueError("positions must not be empty: the text has no predicted token")
        ids = [self.token_ids[p] for p in positions]
        ranks = self._ranks([predicted_from(self.lm, p) for p in positions], torch.tensor(ids))
        return RankingsResult(
            self.lm.name,
            "rank of the token at each position",
            positions,
            ids,
            [self.tokens[p] for p in positions],
            ranks,
        )

    def rankings_watch(self, watch: list, position: int) -> RankingsResult:
        """Rank, at every layer, of each watched token (text or id) as the token at ``position``."""
        position = check_position(position, self.lm, self.sequence, allow_generation=False)
        ids = [
            token_id(self.lm, token, "watch token", "watch token id") for token in _as_list(watch)
        ]
        ranks = self._ranks([predicted_from(self.lm, position)], torch.tensor(ids)[None, :])
        return RankingsResult(
            self.lm.name,
            f"rank of each watched token for position {position}",
            [position] * len(ids),
            ids,
            token_texts(self.lm.tokenizer, ids),
            ranks,
        )

    def _ranks(self, states: list[int], ids: torch.Tensor) -> np.ndarray:
        """(n_layers, columns) ranks: ``ids`` (n,) one per state, or (1, k) k at one state."""
        lens = self._lens_once()
        lens.check_last_layer(sorted(set(states)))
        layers = progress(range(lens.n_layers), desc="ranks", show=lens.n_layers >= 8)
        rows = [ranks_of(lens.logits(layer, states), ids).reshape(-1).numpy() for layer in layers]
        return np.stack(rows)


def _as_list(watch) -> list:
    """The watched tokens as a list: one token (text or id) or an iterable of them."""
    if isinstance(watch, (str, int, np.integer)):
        return [watch]
    if not hasattr(watch, "__iter__"):
        raise TypeError(
            f"watch must be a token (text or id) or a list of them; got {type(watch).__name__}"
        )
    watch = list(watch)
    if not watch:
        raise ValueError("watch must name at least one token")
    return watch


class RankingsExplainer(Explainer):
    """Rankings: the rank of produced or watched tokens in every layer's logit-lens distribution.

    A rank of 1 at layer ``l`` means the token is that layer's top candidate when its
    residual stream is read through the final norm and unembedding (the logit lens).

    Args:
        model: a catalog name, a Hugging Face Hub id, a folder, a ``(model, tokenizer)``
            pair or a :class:`~lm_layers_explainer.models.LoadedModel`: a causal, masked or
            seq2seq language model (one with a vocabulary head).
        text: the text; or None, and the text is given to each call instead
            (``rankings(model)(text, generate=1)``).
        text_pair: a second text, or None (default): a second segment for a masked model,
            the continuation of ``text`` for a causal one, the decoder's input for a seq2seq
            one (without it the decoder starts from its start token).

    Example:
        >>> rankings = lm_layers_explainer["rankings"](
        ...     "SmolLM2-135M-Instruct", "The capital of France is")
        >>> rankings(generate=1).rankings_watch(watch=[" Paris", " London"], position=5)
        RankingsResult(30 layers; last layer ranks ' Paris'@5: 1, ' London'@5: 3)
    """

    needs_head = True
    entry_point = "rankings"

    def __call__(
        self, text: str | None = None, generate: int = 0, do_sample: bool = False, seed: int = 0
    ) -> RankingsOutput:
        """Encode the text and generate ``generate`` tokens after it, ready for rank views.

        Args:
            text: the text; None (default) for the one given when the explainer was built
                (giving it both ways is refused).
            generate: tokens to generate after the text (default 0), each the model's own
                choice: an int >= 0 with the text's tokens plus ``generate`` at most the
                model's context length; 0 for a masked model (it fills in, it does not
                continue).
            do_sample: False (default) for the most probable token, True for a draw from the
                model's softmax.
            seed: the seed of those draws (default 0), 0 .. ``2**32 - 1``.

        Returns:
            RankingsOutput: shows as its tokens; its ``rankings(positions=None)`` ranks the
            token at each position (by default the generated ones), and
            ``rankings_watch(watch, position)`` ranks the watched tokens (texts or ids) as
            the token at ``position``, both at every layer.

        Example:
            >>> rankings = lm_layers_explainer["rankings"](
            ...     "SmolLM2-135M-Instruct", "The capital of France is")
            >>> rankings(generate=1).rankings()       # rank of ' Paris' in every layer
            RankingsResult(30 layers; last layer ranks ' Paris'@5: 1)
        """
        sequence = self.sequence_for(text)
        generate = check_generation(self.lm, generate, len(sequence))
        do_sample, seed = check_sampling(do_sample, seed)
        return RankingsOutput(extend(sequence, generate, do_sample=do_sample, seed=seed))
