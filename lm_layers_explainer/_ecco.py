"""ecco 0.1.2, where it still works: its NMF class and its interactive factor explorer.

This is the one place that touches ecco. Its last release (2022) is broken on the current
stack (see the book's overview page):

- ``pip install ecco`` fails on Python 3.11 (it pins scikit-learn~=0.23, PyYAML~=5.4):
  install it with ``pip install --no-deps ecco==0.1.2`` plus ``pip install captum seaborn``;
- ``import ecco`` fails on matplotlib >= 3.9, which removed ``matplotlib.cm.get_cmap``:
  :func:`import_ecco_output` puts that name back (as ``matplotlib.colormaps.get_cmap``)
  before importing;
- its generation loop fails on transformers >= 4.47, so activations are captured by
  :class:`~lm_layers_explainer.activations.ActivationsExplainer`, not by ecco.

ecco's explorer loads require.js, d3 and ecco.js from CDNs: it needs the internet, and the
book does not run it.
"""

from __future__ import annotations

import os


def import_ecco_output():
    """``ecco.output``, imported with the matplotlib >= 3.9 workaround."""
    import matplotlib
    import matplotlib.cm

    if not hasattr(matplotlib.cm, "get_cmap"):  # removed in matplotlib 3.9; ecco imports it
        matplotlib.cm.get_cmap = matplotlib.colormaps.get_cmap
    try:
        import ecco.output
    except ModuleNotFoundError as error:
        raise ImportError(
            f"ecco's explorer needs ecco and its imports ({error.name} is missing): run "
            "`pip install --no-deps ecco==0.1.2` and `pip install captum seaborn`"
        ) from error
    return ecco.output


def ecco_nmf(explainer, n_components: int = 8, from_layer=None, to_layer=None):
    """ecco's ``NMF`` object for the activations an ActivationsExplainer captured.

    ecco wants activations shaped (batch, layer, neuron, position) in a dict.
    """
    output = import_ecco_output()
    import ecco

    activations = explainer.activations.transpose(0, 2, 1)[None]  # (1, layers, neurons, tokens)
    return output.NMF(
        {"activations": activations},
        n_input_tokens=len(explainer.tokens),
        token_ids=[explainer.token_ids],
        _path=os.path.dirname(ecco.__file__),
        n_components=n_components,
        from_layer=from_layer,
        to_layer=to_layer,
        tokens=[explainer.tokens],
    )
