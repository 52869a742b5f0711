import atexit
import random
import shutil
import tempfile

import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

# Property tests write nothing into the checkout (.hypothesis/): no example database, and
# hypothesis's other files in a temporary directory, as every write of a test run.
settings.register_profile("seqgen", database=None)
settings.load_profile("seqgen")
_HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="seqgen-hypothesis-")
set_hypothesis_home_dir(_HYPOTHESIS_HOME)
atexit.register(shutil.rmtree, _HYPOTHESIS_HOME, ignore_errors=True)


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
