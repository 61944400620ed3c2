"""core/safe_torch_load.py: the one weights-only checkpoint reader, for our checkpoints and
ViTPose's; a crafted file is refused in one line naming it and the global, nothing runs."""
import numpy as np
import pytest
import torch

from core.errors import BadFileError, UserError
from core.safe_torch_load import load_weights_only
from preprocess.detectors.vitpose import _load_file
from preprocess.detectors.vitpose_keys import CheckpointError as ViTPoseCheckpointError
from train.checkpoint import CheckpointError, read_checkpoint

from .test_untrusted_files import FORBIDDEN, Payload


@pytest.fixture
def crafted(tmp_path):
    marker = tmp_path / "payload_ran"
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "meta": Payload(marker)}, path)
    yield path
    assert not marker.exists(), "the payload ran"


def test_plain_weights_and_allowed_globals_load(tmp_path):
    path = tmp_path / "ok.pth"
    torch.save({"w": torch.arange(3.0), "rng": np.arange(2, dtype=np.uint32)}, path)
    with pytest.raises(BadFileError, match="numpy"):
        load_weights_only(path)  # numpy arrays are not on torch's own list
    got = read_checkpoint(path)  # train's allow-list adds numpy's array reconstruction
    assert torch.equal(got["w"], torch.arange(3.0)) and got["rng"].tolist() == [0, 1]


@pytest.mark.parametrize("reader, error", [(read_checkpoint, CheckpointError),
                                           (_load_file, ViTPoseCheckpointError)])
def test_both_readers_refuse_a_crafted_file_naming_it_and_the_global(crafted, reader, error):
    refusal = rf"weights\.pth: refusing to load: it pickles {FORBIDDEN}"
    with pytest.raises(error, match=refusal) as info:
        reader(crafted)
    assert isinstance(info.value, UserError) and "\n" not in str(info.value)
    assert "weights_only=False" not in str(info.value)  # never advises the unsafe load


@pytest.mark.parametrize("reader, error", [(read_checkpoint, CheckpointError),
                                           (_load_file, ViTPoseCheckpointError)])
def test_both_readers_report_a_truncated_file_in_one_line(tmp_path, reader, error):
    path = tmp_path / "cut.pth"
    torch.save({"w": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(error, match=r"cut\.pth: unreadable checkpoint"):
        reader(path)


def test_a_refused_type_is_named_even_when_torch_gives_no_global(tmp_path):
    path = tmp_path / "int64.pth"
    torch.save({"rng": np.arange(2)}, path)  # int64: its dtype class is not on the list
    with pytest.raises(CheckpointError, match=r"int64\.pth: refusing to load: .*Int64DType"):
        read_checkpoint(path)
