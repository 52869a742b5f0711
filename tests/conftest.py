import random

import pytest
from hypothesis import settings

# Property tests keep no example database in the checkout (.hypothesis/): every write of a
# test run goes to a temporary directory, and the examples are seeded by the tests themselves.
settings.register_profile("seqgen", database=None)
settings.load_profile("seqgen")


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


@pytest.fixture
def scale_training_loss(monkeypatch):
    """install(factor): from now on the n-th training loss (the mean cross-entropy; validation
    sums pass through) is multiplied by factor(n), n counting from 1."""
    import torch

    real = torch.nn.functional.cross_entropy

    def install(factor):
        calls = [0]

        def scaled(logits, target, reduction="mean", **kw):
            loss = real(logits, target, reduction=reduction, **kw)
            if reduction != "mean":
                return loss
            calls[0] += 1
            return loss * factor(calls[0])

        monkeypatch.setattr(torch.nn.functional, "cross_entropy", scaled)

    return install
