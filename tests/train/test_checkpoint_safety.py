"""Checkpoints cannot be lost: atomic writes with the marker last, fallback to the newest intact
checkpoint when the marker or the newest file is bad, refusal to start over a run whose
checkpoints exist but none is intact."""
import os

import pytest
import torch

from core.config import load_config
from train import checkpoint
from train.checkpoint import (RunExistsError, clear_checkpoints, newest_intact, resume_point,
                              save_checkpoint)


@pytest.fixture
def run(tmp_path):
    """A run with checkpoints at steps 2, 4 and 6 (each model's weight filled with its step)."""
    run = tmp_path / "run"
    cfg = load_config([])
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    for step in (2, 4, 6):
        with torch.no_grad():
            model.weight.fill_(step)
        save_checkpoint(run, model, optimizer, None, step, 4 * step, cfg)
    return run


def _ckpt(run, step):
    return run / "checkpoints" / f"step_{step:08d}.pt"


def _resumed(run, capsys):
    path, state = newest_intact(run)
    assert state["step"] == int(path.stem[5:]) and float(state["model"]["weight"][0, 0]) == \
        state["step"]
    return state["step"], capsys.readouterr().err


def test_intact_run_resumes_at_the_marker_silently(run, capsys):
    assert (run / "checkpoints/latest").read_text() == "step_00000006.pt\n"
    assert _resumed(run, capsys) == (6, "")


def test_dangling_marker_falls_back_to_the_newest_intact(run, capsys):
    _ckpt(run, 6).unlink()
    step, err = _resumed(run, capsys)
    assert step == 4
    assert err.count("\n") == 1 and "latest" in err and "step_00000006.pt" in err
    assert "does not exist" in err


def test_missing_marker_falls_back_to_the_newest_by_step(run, capsys):
    (run / "checkpoints/latest").unlink()
    step, err = _resumed(run, capsys)
    assert step == 6 and err.count("\n") == 1 and "latest" in err and "missing" in err


def test_garbage_marker_is_not_followed(run, capsys):
    (run / "checkpoints/latest").write_text("../../elsewhere.pt\n")
    step, err = _resumed(run, capsys)
    assert step == 6 and "not a checkpoint name" in err


def test_truncated_newest_falls_back_to_the_previous(run, capsys):
    data = _ckpt(run, 6).read_bytes()
    _ckpt(run, 6).write_bytes(data[: len(data) // 2])
    step, err = _resumed(run, capsys)
    assert step == 4
    assert err.count("\n") == 1 and "step_00000006.pt" in err and "truncated" in err


def test_none_intact_refuses_to_start_over_naming_run_and_override(run, capsys):
    for step in (2, 4, 6):
        _ckpt(run, step).write_bytes(b"torn")
    with pytest.raises(RunExistsError, match=rf"run {run}: .*train\.overwrite_run=true") as err:
        resume_point(run, overwrite=False)
    assert "\n" not in str(err.value)
    assert all(_ckpt(run, s).read_bytes() == b"torn" for s in (2, 4, 6))  # nothing touched
    assert capsys.readouterr().err.count("checkpoint skipped") == 3
    assert resume_point(run, overwrite=True) is None
    assert clear_checkpoints(run) == 4  # three files and the marker
    assert resume_point(run, overwrite=False) is None  # an empty run starts at step 0


def test_writes_go_through_a_temporary_file_and_rename_marker_last(run, monkeypatch):
    renames = []
    real_replace = os.replace

    def spy(src, dst):
        renames.append((os.path.basename(src), os.path.basename(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", spy)
    model = torch.nn.Linear(2, 2)
    save_checkpoint(run, model, torch.optim.AdamW(model.parameters()), None, 8, 32,
                    load_config([]))
    assert renames == [("step_00000008.pt.tmp", "step_00000008.pt"), ("latest.tmp", "latest")]
    assert not list((run / "checkpoints").glob("*.tmp"))
    assert (run / "checkpoints/latest").read_text() == "step_00000008.pt\n"


def test_a_write_killed_midway_leaves_the_previous_checkpoint_and_marker(run, monkeypatch):
    def torn_save(state, f):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # killed while writing

    monkeypatch.setattr(checkpoint.torch, "save", torn_save)
    model = torch.nn.Linear(2, 2)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(run, model, torch.optim.AdamW(model.parameters()), None, 8, 32,
                        load_config([]))
    assert not _ckpt(run, 8).exists()
    assert (run / "checkpoints/latest").read_text() == "step_00000006.pt\n"
    path, state = newest_intact(run)
    assert path == _ckpt(run, 6)
