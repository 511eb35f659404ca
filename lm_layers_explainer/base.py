"""The small base every explainer stands on: the model as ``self.lm``, its kind checked, and
the text given when the explainer is built (the rule is written in :mod:`.registry`).

>>> class Lengths(Explainer):
...     '''Token counts.'''
...     def __call__(self, text=None):
...         return len(self.sequence_for(text))     # the text given when built, or this one
>>> Lengths("tiny-gpt2", "The cat sat")()
3
"""

from __future__ import annotations

from .checks import check_text
from .locks import UsesModel
from .models import LoadedModel, load_model
from .tasks import TEXT_KINDS, Sequence, encode


class Explainer(UsesModel):
    """Loads the model (``self.lm``, a :class:`~lm_layers_explainer.models.LoadedModel`),
    refuses a model it cannot explain before any work, and keeps the text it explains.
    Safe to call from threads: calls on one model run one at a time (see :mod:`.locks`).

    Subclasses set ``accepts`` (the kinds they explain) or ``needs_head`` (they read the
    vocabulary head), and may override :meth:`check_model` for a clearer refusal;
    ``text_names`` are the names of the text parameters in messages.
    """

    accepts: tuple[str, ...] = TEXT_KINDS
    text_names: tuple[str, str] = ("text", "text_pair")
    needs_head: bool = False  # reads layers through the vocabulary head (the logit lens)
    entry_point: str = ""  # its name in the registry, for messages
    text_required: bool = False  # the text must be given when built (no older call shape)

    def __init__(self, model, text: str | None = None, text_pair: str | None = None):
        self.lm: LoadedModel = load_model(model)
        self.check_reads(self.lm)
        self.check_model(self.lm)
        self.text, self.text_pair = self._checked(text, text_pair)
        self._encoded: Sequence | None = None

    def check_reads(self, lm: LoadedModel) -> None:
        """Refuse a model that takes another kind of input than this explainer reads (an
        image classifier given to a text explainer)."""
        if lm.task.reads != "text" and lm.kind not in self.accepts:
            raise ValueError(
                f"model must read text for {type(self).__name__}; {lm.name} is an "
                f"{lm.kind} (it takes pixel_values): explain it with "
                "lm_layers_explainer['image_classification'](model, image)"
            )

    def check_model(self, lm: LoadedModel) -> None:
        """Raise ValueError if this explainer cannot explain ``lm``."""
        if self.needs_head and lm.unembedding is None:
            raise ValueError(
                f"model must have a language-model head for {self.entry_point}; {lm.name} is a "
                f"plain {lm.kind} (no unembedding). Use a causal, masked or seq2seq LM; "
                "activations and the attention views work on encoders and classifiers too, "
                "and attributions on classifiers"
            )
        if lm.kind not in self.accepts:
            raise ValueError(
                f"model must be one of the kinds {', '.join(self.accepts)} for "
                f"{type(self).__name__}; {lm.name} is {lm.kind!r}"
            )

    def _checked(self, text, text_pair) -> tuple[str | None, str | None]:
        a, b = self.text_names
        if text is None and not self.text_required:
            if text_pair is not None:
                raise ValueError(f"{b} needs {a}")
            return None, None
        text = check_text(text, a)
        return text, None if text_pair is None else check_text(text_pair, b)

    def texts_for(self, text: str | None = None, text_pair: str | None = None):
        """(text, text_pair) this call explains: those given when the explainer was built,
        or (the older call shape, kept) those given to the call; giving both is refused."""
        a = self.text_names[0]
        if text is None and text_pair is None:
            if self.text is None:
                raise TypeError(
                    f"{a} is missing: give it when building the explainer "
                    f"(lm_layers_explainer[name](model, {a})) or to this call"
                )
            return self.text, self.text_pair
        if self.text is not None:
            raise ValueError(
                f"{a} was given when the explainer was built ({self.text!r}); call it without "
                f"{a}, or build another explainer for another text"
            )
        return self._checked(text, text_pair)

    def sequence_for(self, text: str | None = None, text_pair: str | None = None) -> Sequence:
        """The text this call explains, encoded for the model (see :meth:`texts_for`); the
        text given when built is encoded once."""
        if text is None and text_pair is None:  # the text given when built
            if self._encoded is None:
                text, text_pair = self.texts_for()
                self._encoded = encode(self.lm, text, text_pair, names=self.text_names)
            return self._encoded
        text, text_pair = self.texts_for(text, text_pair)
        return encode(self.lm, text, text_pair, names=self.text_names)

    @property
    def sequence(self) -> Sequence:
        """The text given when the explainer was built, encoded for the model."""
        return self.sequence_for()
