import random

import pytest


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """Every test writes its encoded-corpus cache into a temporary directory."""
    monkeypatch.setenv("SEQGEN_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def seed():
    """A fixed seed for python, numpy and (when installed) torch; returns it."""
    import numpy as np

    value = 1234
    random.seed(value)
    np.random.seed(value)
    try:
        import torch

        torch.manual_seed(value)
    except ImportError:
        pass
    return value
