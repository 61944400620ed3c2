import numpy as np
import pytest
import torch

from body.synthetic import write_synthetic_body_models


@pytest.fixture(scope="session")
def body_models(tmp_path_factory):
    """The synthetic body-model root (SMPL/SMPL-X file layouts), generated once per session."""
    return write_synthetic_body_models(tmp_path_factory.mktemp("body_models"))


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)
    torch.manual_seed(0)
