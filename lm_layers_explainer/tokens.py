"""The ``tokens`` explainer: how a model's tokenizer splits a text.

Every other explainer takes token positions; this one shows them.

>>> tokens = lm_layers_explainer["tokens"]("SmolLM2-135M-Instruct")
>>> tokens("The capital of France is").to_frame()
   position     token  token_id  special
0         0       The       504    False
...
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Explainer
from .render import Result, escape, visible
from .tasks import special_flags, token_texts


@dataclass
class TokensResult(Result):
    """Tokens of one text: ``positions``, ``tokens`` (as decoded text), ``token_ids``,
    ``special`` (True for tokens the tokenizer added, such as ``[CLS]``)."""

    text: str
    tokens: list[str]
    token_ids: list[int]
    special: list[bool]
    model_name: str

    @property
    def positions(self) -> list[int]:
        return list(range(len(self.tokens)))

    def __len__(self) -> int:
        return len(self.tokens)

    def __repr__(self) -> str:
        return f"TokensResult({len(self)} tokens: {self.tokens!r})"

    def to_frame(self):
        """A pandas DataFrame with columns ``position, token, token_id, special``."""
        import pandas as pd

        return pd.DataFrame(
            {
                "position": self.positions,
                "token": self.tokens,
                "token_id": self.token_ids,
                "special": self.special,
            }
        )

    def to_html(self) -> str:
        chips = "".join(
            '<span style="display:inline-block;margin:2px;padding:2px 5px;border:1px solid '
            f"#999;border-radius:4px;background:{'#eee' if special else '#e8f0fe'};"
            'font-family:monospace;text-align:center">'
            f'<small style="color:#666">{position}</small><br>{escape(visible(token))}</span>'
            for position, token, special in zip(
                self.positions, self.tokens, self.special, strict=True
            )
        )
        caption = f"{len(self)} tokens from {escape(self.model_name)}'s tokenizer"
        return f'<div class="lmle-tokens"><div>{caption}</div>{chips}</div>'

    def figure(self):
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(max(4.0, 0.9 * len(self)), 1.2))
        self.draw(axes)
        axes.set_title(f"{len(self)} tokens ({self.model_name})", fontsize=9)
        return figure

    def draw(self, axes) -> None:
        """Draw the token boxes, positions above, on a matplotlib ``axes``."""
        for position, (token, special) in enumerate(zip(self.tokens, self.special, strict=True)):
            axes.text(
                position,
                0,
                visible(token),
                ha="center",
                va="center",
                family="monospace",
                bbox={"boxstyle": "round", "facecolor": "#eeeeee" if special else "#e8f0fe"},
            )
            axes.text(position, 0.6, str(position), ha="center", color="#666666", fontsize=8)
        axes.set_xlim(-0.7, len(self) - 0.3)
        axes.set_ylim(-0.6, 1.0)
        axes.axis("off")


class TokensExplainer(Explainer):
    """Show how the model's tokenizer splits a text: position, token, id.

    Args:
        model: a catalog name, a Hugging Face Hub id, a folder, a ``(model, tokenizer)``
            pair or a :class:`~lm_layers_explainer.models.LoadedModel` (see
            :func:`~lm_layers_explainer.models.load_model`); any kind of model.
        text: the text to split; or None, and the text is given to each call instead.
        text_pair: not used by this explainer.

    Example:
        >>> tokens = lm_layers_explainer["tokens"]("SmolLM2-135M-Instruct")
        >>> tokens("The capital of France is").tokens
        ['The', ' capital', ' of', ' France', ' is']
    """

    def __call__(self, text: str | None = None) -> TokensResult:
        """Split the text into tokens with the model's tokenizer (special tokens included).

        Args:
            text: the text; None (default) for the one given when the explainer was built
                (giving it both ways is refused). A string with something besides
                whitespace, of any length (the model does not run).

        Returns:
            TokensResult: ``tokens``, ``token_ids``, ``special`` and ``positions`` (from 0, the
            positions the other explainers take); ``to_frame()`` has one row per token.

        Example:
            >>> lm_layers_explainer["tokens"]("all-MiniLM-L6-v2", "The cat sat")().tokens
            ['[CLS]', 'the', 'cat', 'sat', '[SEP]']
        """
        text, _ = self.texts_for(text)
        tokenizer = self.lm.tokenizer
        ids = tokenizer(text)["input_ids"]  # the text as the tokenizer splits it, any length
        return TokensResult(
            text=text,
            tokens=token_texts(tokenizer, ids),
            token_ids=list(ids),
            special=special_flags(tokenizer, ids),
            model_name=self.lm.name,
        )
