import os

import pytest

# No silent network: every test runs as if the Hub were unreachable.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _fresh_model_cache():
    """Each test sees load_model's reuse cache empty, so tests cannot leak models."""
    from lm_layers_explainer import clear_model_cache

    clear_model_cache()
    yield
    clear_model_cache()
