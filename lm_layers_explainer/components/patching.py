"""Activation patching: run the corrupted text, put back one activation from the clean run,
and see how much of the clean answer returns (Meng et al. 2022; Heimersheim & Nanda 2024).

The metric is the normalized logit difference
``(d(patched) - d(corrupted)) / (d(clean) - d(corrupted))``, with ``d`` the logit of the
target minus the foil's (the target's logit alone without a foil), read at the last
position: 0 is the corrupted run, 1 the clean one. Every patch is one forward pass; they run
as rows of batches, one row left unpatched to read ``d(corrupted)``.

Runs, passes and memory are counted before any work: a call of more than ``max_passes``
forward passes (default :data:`~lm_layers_explainer.memory.MAX_PASSES`, about a day on a
CPU) or whose estimate (:func:`~lm_layers_explainer.memory.patching_bytes`) does not fit
is refused with the numbers; the rest shows a progress bar over its passes. On SmolLM2 the
residual at each of 507 positions is 15,211 runs, 1,903 passes of 8 with the clean run
(hours on a CPU, with progress); at 8,187 positions 245,611 runs, one a pass: refused (use
``positions="all"``).

>>> patch = lm_layers_explainer["patching"]("SmolLM2-135M-Instruct",
...     "The Eiffel Tower is in the city of", "The Colosseum is in the city of")
>>> patch(target=" Paris", foil=" Rome", over="residual").scores.shape   # layers x tokens
(30, 9)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..base import Explainer
from ..checks import check_choice, check_int, check_text
from ..memory import MAX_PASSES, check_fits, check_passes, patching_bytes, rows_that_fit
from ..render import INLINE_WIDTH, Result, escape, fixed, grid_figure, html_grid, progress
from ..running import takes_logits_to_keep
from ..tasks import encode, token_texts
from .logit_attribution import visible_text
from .stream import (
    SITES,
    Sites,
    check_causal,
    check_target_and_foil,
    logit_read,
    stacked,
    target_or_top,
)

POSITIONS = ("each", "all")
"""Patch one position per run (``each``: a layer x position grid) or every position at
once (``all``: one column per layer; the only way for ``heads``, a layer x head grid)."""


@dataclass
class PatchingResult(Result):
    """``scores[r, c]``: the normalized logit difference after patching the clean ``over``
    activation of ``rows[r]`` at ``columns[c]`` (a position, a head, or ``all``) into the
    corrupted run; 0 is the corrupted run, 1 the clean one. Row ``r`` is block ``r``'s: for
    ``residual`` the stream it reads, named ``embeddings`` (r = 0) or ``layer r - 1`` (the
    stream after the block before)."""

    model_name: str
    over: str
    clean_tokens: list[str]
    corrupted_tokens: list[str]
    rows: list[str]
    columns: list[str]
    scores: np.ndarray
    target: int
    target_text: str
    clean_value: float
    corrupted_value: float
    foil: int | None = None
    foil_text: str | None = None
    settings: dict = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        r, c = np.unravel_index(np.nanargmax(self.scores), self.scores.shape)
        return (
            f"PatchingResult({self.over}, {len(self.rows)} x {len(self.columns)}; "
            f"{self.metric()}: clean {self.clean_value:.4g}, corrupted "
            f"{self.corrupted_value:.4g}; highest {self.rows[r]} {self.columns[c]} "
            f"{self.scores[r, c]:.3f})"
        )

    def metric(self) -> str:
        """What ``d`` is, in words."""
        return logit_read(self.target_text, self.foil_text)

    def to_frame(self):
        """Columns ``layer, column, restored`` (``column``: a position, a head or ``all``),
        one row per patch."""
        import pandas as pd

        cells = [
            (row, column, float(self.scores[r, c]))
            for r, row in enumerate(self.rows)
            for c, column in enumerate(self.columns)
        ]
        return pd.DataFrame(cells, columns=["layer", "column", "restored"])

    def _title(self) -> str:
        return (
            f"{self.model_name}: clean {self.over} patched into the corrupted run; "
            f"normalized {self.metric()} (clean {self.clean_value:.2f} = 1, corrupted "
            f"{self.corrupted_value:.2f} = 0)"
        )

    def _grid(self):
        largest = max(1.0, float(np.nanmax(np.abs(self.scores))))
        cells = [[fixed(v) for v in row] for row in self.scores]
        shades = [[0.5 + 0.5 * v / largest for v in row] for row in self.scores]
        return cells, shades

    def to_html(self) -> str:
        cells, shades = self._grid()
        grid = html_grid(self._title(), self.columns, self.rows, cells, shades, cmap="RdBu_r")
        note = (
            "Red: the patch restores the clean answer (1 = all of it); white: nothing; blue: "
            "it moves further from the clean answer than the corrupted run. Clean: "
            f"{escape(''.join(self.clean_tokens))!s}; corrupted: "
            f"{escape(''.join(self.corrupted_tokens))!s}."
        )
        return f'<div class="lmle-patching">{grid}<div style="font-size:12px">{note}</div></div>'

    def figure(self):
        """The grid, red where the patch restores the clean answer."""
        cells, shades = self._grid()
        figure = grid_figure(self._title(), self.columns, self.rows, cells, shades,
                             cmap="RdBu_r")  # fmt: skip
        figure.set_figwidth(max(INLINE_WIDTH, figure.get_figwidth()))
        return figure


def _row_names(over: str, n_layers: int) -> list[str]:
    """A ``residual`` row is the stream a block reads, named as the book names the stream:
    ``embeddings``, then ``layer k`` (after block k, read by block k + 1); the other rows
    are the blocks themselves."""
    if over == "residual":
        return ["embeddings", *(f"layer {k}" for k in range(n_layers - 1))]
    return [f"layer {k}" for k in range(n_layers)]


class PatchingExplainer(Explainer):
    """Activation patching: which layers, positions and heads carry the clean text's answer
    into a corrupted text's run.

    >>> patch = lm_layers_explainer["patching"]("tiny-gpt2", "The cat sat", "The dog sat")
    >>> patch(over="heads").scores.shape                     # (layers, heads)
    """

    accepts = ("causal",)
    entry_point = "patching"
    text_names = ("clean", "corrupted")
    text_required = True

    def __init__(self, model, clean: str, corrupted: str):
        corrupted = check_text(corrupted, "corrupted")
        super().__init__(model, clean)
        self.corrupted = corrupted
        self.corrupted_sequence = encode(self.lm, corrupted, names=("corrupted", "corrupted"))
        clean_tokens = token_texts(self.lm.tokenizer, self.sequence.ids)
        corrupted_tokens = token_texts(self.lm.tokenizer, self.corrupted_sequence.ids)
        if len(clean_tokens) != len(corrupted_tokens):
            raise ValueError(
                f"clean and corrupted must be as many tokens long, so that positions match; "
                f"clean is {len(clean_tokens)} tokens {clean_tokens}, corrupted "
                f"{len(corrupted_tokens)} {corrupted_tokens}"
            )
        self.clean_tokens, self.corrupted_tokens = clean_tokens, corrupted_tokens
        self.sites = Sites(self.lm)
        self._clean = None

    def check_model(self, lm) -> None:
        check_causal(lm, "patching", "it reads the next token's logits")

    def clean_run(self) -> dict:
        """The clean text's activations at every site and layer (kept)."""
        if self._clean is None:
            ids = torch.tensor([self.sequence.ids], device=self.lm.device)
            self._clean = self.sites.record(ids)
        return self._clean

    def __call__(
        self,
        target=None,
        foil=None,
        *,
        over: str = "residual",
        positions: str | None = None,
        batch_size: int | None = None,
        max_passes: int = MAX_PASSES,
    ) -> PatchingResult:
        """Patch each clean activation of kind ``over`` (``residual``, ``attention``,
        ``mlp`` or ``heads``) into the corrupted run, one run per cell.

        Args:
            target: the token whose logit is read (text or id; None: the clean run's top
                prediction). foil: a token whose logit is subtracted (None: none).
            over: ``residual``, the stream each block reads (rows ``embeddings``, then
                ``layer k``: the stream after block k);
                ``attention`` or ``mlp``, what a block's attention or MLP adds to it;
                ``heads``, one head's output at every position.
            positions: ``each`` (one position per run; the default but for heads) or
                ``all`` (every position at once; the only choice for heads).
            batch_size: runs per forward pass, 1 .. 4,096 (None: as many as fit in half
                the free memory, up to 4,096 tokens). A batch whose estimate does not fit is
                refused before any work.
            max_passes: the most forward passes this call may make (default 10,000, about
                a day on a CPU), 1 or more; a call that needs more (layers x positions runs,
                in batches) is refused before any work, with the count.

        Returns:
            A :class:`PatchingResult`: ``scores`` layers x positions (or heads, or one
            ``all`` column), 0 = corrupted, 1 = clean.
        """
        lm = self.lm
        over = check_choice(over, "over", SITES)
        if positions is None:
            positions = "all" if over == "heads" else "each"
        positions = check_choice(positions, "positions", POSITIONS)
        if over == "heads" and positions == "each":
            raise ValueError(
                "over='heads' patches a head at every position (positions='all'); patch one "
                "position with over='attention' (a layer's heads together)"
            )
        n = len(self.sequence.ids)
        if batch_size is not None:
            batch_size = check_int(batch_size, "batch_size", 1, 4096)
        max_passes = check_int(max_passes, "max_passes", 1)
        target_index, foil_index = check_target_and_foil(lm, target, foil)

        def value(logits: torch.Tensor) -> torch.Tensor:
            d = logits[..., target_index].double()
            return d if foil_index is None else d - logits[..., foil_index].double()

        sites = self.sites
        columns_of = (
            range(sites.n_heads) if over == "heads" else range(n) if positions == "each" else [None]
        )
        cells = [(layer, c) for layer in range(sites.n_layers) for c in columns_of]
        batch = batch_size or rows_that_fit(lm, n, backward=False).rows
        passes = self._check_cost(over, positions, n, len(cells) + 1, batch, batch_size,
                                  max_passes)  # fmt: skip
        with progress(total=passes, desc=f"patching {over} ({len(cells) + 1} runs)") as bar:
            if self._clean is None:
                self.clean_run()
                bar.update(1)
            clean = self.clean_run()
            target_index = target_or_top(target_index, foil_index, foil, clean["logits"],
                                         "the clean run's")  # fmt: skip
            values = self._patched(over, cells, clean, batch, value, bar)
        corrupted_value, patched = float(values[0]), values[1:]
        clean_value = float(value(clean["logits"]))
        if abs(clean_value - corrupted_value) < 1e-6 * max(1.0, abs(clean_value)):
            what = "logit" if foil_index is None else "logit difference"
            raise ValueError(
                f"the clean and corrupted runs give the same {what} ({clean_value:.6g}): "
                "there is nothing for a patch to restore; choose a target (and foil) the two "
                "texts disagree on"
            )
        scores = ((patched - corrupted_value) / (clean_value - corrupted_value)).reshape(
            sites.n_layers, len(columns_of)
        )
        if over == "heads":
            columns = [f"h{h}" for h in columns_of]
        elif positions == "all":
            columns = ["all"]
        else:
            columns = [
                f"{t}:{a}" if a == b else f"{t}:{a}/{b}"
                for t, (a, b) in enumerate(
                    zip(self.clean_tokens, self.corrupted_tokens, strict=True)
                )
            ]
        return PatchingResult(
            model_name=lm.name,
            over=over,
            clean_tokens=self.clean_tokens,
            corrupted_tokens=self.corrupted_tokens,
            rows=_row_names(over, sites.n_layers),
            columns=columns,
            scores=scores,
            target=target_index,
            target_text=visible_text(lm, target_index),
            clean_value=clean_value,
            corrupted_value=corrupted_value,
            foil=foil_index,
            foil_text=None if foil_index is None else visible_text(lm, foil_index),
            settings={
                "positions": positions,
                "batch_size": batch,
                "runs": len(cells),
                "passes": passes,
            },
        )

    def _check_cost(self, over, positions, n, runs, batch, batch_size, max_passes) -> int:
        """The forward passes of a call (the clean run's, if not yet made, and ``runs`` in
        batches of ``batch``), refused when more than ``max_passes`` or when the memory
        estimate does not fit."""
        lm = self.lm
        passes = -(-runs // batch) + (self._clean is None)
        fewer = f"use positions='all' ({self.sites.n_layers + 1} runs), a shorter text, " if (
            positions == "each") else "use "  # fmt: skip
        check_passes(passes, max_passes, f"patching over={over!r} at positions={positions!r} "
                     f"({runs:,} runs, batches of {batch})",
                     fewer + "a larger batch_size (up to 4,096)")  # fmt: skip
        needed = patching_bytes(lm, n, batch, len(SITES))
        fix = (f"use a smaller batch_size (1 .. {batch - 1}; None chooses)"
               if batch_size is not None and batch > 1 else "use a shorter text")  # fmt: skip
        check_fits(lm.device, needed, f"patching {n} tokens in batches of {batch} (the clean "
                   "run's activations at every site and layer, and one batch)", fix)  # fmt: skip
        return passes

    def _patched(self, over: str, cells, clean: dict, batch: int, value, bar) -> np.ndarray:
        """``value`` of the last position's logits for an unpatched corrupted run, then for
        each (layer, column) patch, run as rows of batches of ``batch`` (``bar`` ticks once
        a batch)."""
        lm, sites = self.lm, self.sites
        rows = [None, *cells]  # the first row: nothing patched
        ids = torch.tensor([self.corrupted_sequence.ids], device=lm.device)
        keep = {"logits_to_keep": 1} if takes_logits_to_keep(lm) else {}
        size = sites.head_size
        out = []
        starts = range(0, len(rows), batch)
        for start in starts:
            chunk = rows[start : start + batch]
            by_layer: dict[int, list[tuple[int, int | None]]] = {}
            for r, cell in enumerate(chunk):
                if cell is not None:
                    by_layer.setdefault(cell[0], []).append((r, cell[1]))

            def edit_for(layer, by_layer=by_layer):
                source = clean[over][layer]

                def edit(tensor):
                    tensor = tensor.clone()
                    for r, column in by_layer[layer]:
                        if over == "heads":
                            part = slice(column * size, (column + 1) * size)
                            tensor[r, :, part] = source[:, part]
                        elif column is None:
                            tensor[r] = source
                        else:
                            tensor[r, column] = source[column]
                    return tensor

                return edit

            with stacked(sites.hooked(over, k, edit_for(k)) for k in by_layer), torch.no_grad():
                logits = lm.model(
                    input_ids=ids.expand(len(chunk), -1), use_cache=False, **keep
                ).logits[:, -1]
            out.append(value(logits).cpu().numpy())
            bar.update(1)
        return np.concatenate(out)
