"""Safe from threads: what runs one at a time, and why.

>>> with holding(lm):          # one call at a time on lm's model, from any thread
...     lm.model(input_ids)

- **One call at a time per model** (:func:`holding`). An explainer's hooks, and captum's,
  sit on the model's modules while a call runs, so two calls at once on one model would see
  each other's hooks. Every public method and property of an explainer, and of a result that
  still runs its model, holds its model's lock (:class:`UsesModel`); calls on other models
  run in parallel. The lock is re-entrant: a call may make another on the same model.
- **One load at a time** (:data:`LOADING`). transformers builds a model under process-wide
  settings (parameters created on the meta device, then filled and tied), so two loads at
  once leave each other's weights unfilled. Loads, conversions and the seeded tiny models
  hold this lock; a file lock does the same for the conversion cache across processes
  (:mod:`.cache`).
- **Seeded sampling** (:func:`seeded`). captum's sampling methods (LIME, kernel SHAP,
  Shapley value sampling, the noise of SmoothGrad and GradientSHAP) draw from torch's global
  generator and take no generator of their own. A seeded section holds :data:`SEEDED`, seeds
  the global generator and restores it after, so the caller's random state is untouched and
  two seeded calls cannot interleave their draws. Everything else draws from local
  ``torch.Generator`` or ``numpy.random.default_rng`` objects.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref

import torch

LOADING = threading.RLock()
"""Held while transformers builds or loads a model (see the module doc)."""

SEEDED = threading.RLock()
"""Held while torch's global generator is seeded for a library that has no generator
argument (see :func:`seeded`)."""

_MODEL_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


def model_lock(model: torch.nn.Module) -> threading.RLock:
    """The lock of one model object (shared by every LoadedModel that wraps it)."""
    with _GUARD:
        lock = _MODEL_LOCKS.get(model)
        if lock is None:
            lock = _MODEL_LOCKS[model] = threading.RLock()
        return lock


def holding(lm):
    """A context in which ``lm`` (a LoadedModel) runs only this thread's call."""
    return model_lock(lm.model)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None):
    """torch's global generator seeded with ``seed`` for this block only, one block at a time
    in the process; the generator's state before it is restored after."""
    devices = [] if device is None or device.type == "cpu" else [device]
    with SEEDED, torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _holding_model(function):
    @functools.wraps(function)
    def wrapper(self, *args, **kwargs):
        # the models this object runs (none: not yet built, or a result loaded from a file),
        # locked in one order (by id) so that two objects sharing models cannot deadlock
        found = (self.__dict__.get(name) for name in self.model_attributes)
        models = sorted({id(lm.model): lm.model for lm in found if lm is not None}.items())
        with contextlib.ExitStack() as stack:
            for _, model in models:
                stack.enter_context(model_lock(model))
            return function(self, *args, **kwargs)

    wrapper.__holds_model__ = True
    return wrapper


class UsesModel:
    """A class whose public methods and properties (and ``__call__``) run holding the lock of
    ``self.lm``'s model: subclasses are made safe to call from threads as they are defined.
    ``model_attributes`` names the attributes holding the LoadedModels it runs."""

    model_attributes: tuple[str, ...] = ("lm",)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name, value in list(vars(cls).items()):
            if name.startswith("_") and name != "__call__":
                continue
            if isinstance(value, functools.cached_property):
                locked = functools.cached_property(_holding_model(value.func))
                locked.__set_name__(cls, name)
                setattr(cls, name, locked)
            elif isinstance(value, property) and value.fget is not None:
                setattr(cls, name, value.getter(_holding_model(value.fget)))
            elif (
                callable(value)
                and not isinstance(value, (type, staticmethod, classmethod))
                and not getattr(value, "__holds_model__", False)
            ):
                setattr(cls, name, _holding_model(value))
