"""What we change around captum 0.9, in one place.

1. DeepLift's rescale rule. captum applies its "rescale" multiplier (Δoutput / Δinput) only
   to the activation modules listed in ``captum.attr._core.deep_lift.SUPPORTED_NON_LINEAR``
   (ReLU, ELU, Sigmoid, Tanh, Softplus, ...). Transformers use GELU and SiLU, as
   ``nn.GELU``/``nn.SiLU`` or as transformers' own activation classes, which are not in that
   list: captum then passes plain gradients through them, and DeepLift with a zero baseline
   collapses to Input x Gradient. Every one of those activations is elementwise, so the
   rescale rule (the same ``nonlinear`` function captum uses for ReLU) is valid for them.
   :func:`deeplift_rules` adds them for the duration of one attribution call and restores
   captum's table afterwards. Norms, the attention softmax (a function, not a module) and the
   gated products of SwiGLU still get plain gradients; the page says so, and DeepLift's
   convergence delta shows how far that leaves its sum from f(x) - f(baseline).

2. Warnings. captum announces on every call that it sets hooks; the notice says nothing to a
   reader, and a warning in a book page's output fails the ``-W`` build. :func:`quiet`
   silences exactly those notices.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

from torch import nn

# Messages captum emits on every call (not problems): hooks set on activations.
_ROUTINE_NOTICES = (
    r"(?s)Setting forward, backward hooks and attributes on non-linear",
    r"Setting backward hooks on ReLU activations",
)


def elementwise_activations() -> set[type[nn.Module]]:
    """Activation classes that apply one scalar function to each element: torch's GELU and
    SiLU family, and every class transformers' ``ACT2CLS`` maps an activation name to."""
    from transformers.activations import ACT2CLS

    classes = {nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.ReLU6, nn.PReLU}
    for value in ACT2CLS.values():
        cls = value[0] if isinstance(value, tuple) else value
        if isinstance(cls, type) and issubclass(cls, nn.Module):
            classes.add(cls)
    return classes


@contextmanager
def deeplift_rules():
    """Within the block, captum's DeepLift applies its rescale rule to every elementwise
    activation of :func:`elementwise_activations`; captum's own table is restored after."""
    from captum.attr._core import deep_lift

    table = deep_lift.SUPPORTED_NON_LINEAR
    added = [cls for cls in elementwise_activations() if cls not in table]
    for cls in added:
        table[cls] = deep_lift.nonlinear
    try:
        yield
    finally:
        for cls in added:
            table.pop(cls, None)


@contextmanager
def quiet():
    """Silence captum's routine notices (and only those) within the block."""
    with warnings.catch_warnings():
        for message in _ROUTINE_NOTICES:
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        yield
