import numpy as np
import pytest
import torch

from synthetic.body_models import write_synthetic_body_models
from core.config import load_config
from synthetic import world

# a small synthetic world: 20 training images (BEDLAM layout), 2 EMDB-layout sequences, 4 AGORA-
# layout images, one 3DPW-layout sequence per split
SMALL_WORLD = [
    "synthetic.bedlam.folders=[synthetic_a]", "synthetic.bedlam.sequences_per_folder=4",
    "synthetic.bedlam.frames_per_sequence=5", "synthetic.bedlam.occluder_p=0.6",
    "synthetic.emdb.subjects=1", "synthetic.emdb.sequences_per_subject=2",
    "synthetic.emdb.frames_per_sequence=10",
    "synthetic.agora.sequences_per_folder=1", "synthetic.agora.frames_per_sequence=2",
    "synthetic.threedpw.sequences_per_split=1", "synthetic.threedpw.frames_per_sequence=6",
]


@pytest.fixture(scope="session")
def body_models(tmp_path_factory):
    """The synthetic body-model root (SMPL/SMPL-X file layouts), generated once per session."""
    return write_synthetic_body_models(tmp_path_factory.mktemp("body_models"))


@pytest.fixture(scope="session")
def small_world(tmp_path_factory, body_models):
    """The root of a small synthetic world, generated once per session."""
    root = tmp_path_factory.mktemp("world") / "synthetic"
    cfg = load_config(SMALL_WORLD + [f"synthetic.root={root}"])
    return world.generate_world(cfg.synthetic, body_models, workers=2)


@pytest.fixture(scope="session")
def precomputed(small_world, body_models, tmp_path_factory):
    """Stores of the small world (synthetic-train and -test, chunks of 8 rows, one worker)."""
    from preprocess.precompute import precompute

    stores = tmp_path_factory.mktemp("stores")
    cfg = load_config([f"synthetic.root={small_world}", f"body.models={body_models}",
                       f"paths.stores={stores}", "precompute.chunk_rows=8", "cluster.workers=1"])
    summaries = {name: precompute(cfg, name) for name in ("synthetic-train", "synthetic-test")}
    return stores, summaries


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)
    torch.manual_seed(0)
