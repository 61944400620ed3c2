"""User errors through the command line: one line `error: …`, exit code 2, nothing left behind;
internal errors keep their traceback."""
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import eval.__main__ as eval_main
import preprocess.__main__ as preprocess_main
import stores.__main__ as stores_main
import train.__main__ as train_main
from core.cli import run_cli
from eval.run import note_profile, report_dir

ROOT = Path(__file__).resolve().parents[2]

CASES = {  # name: (entry point, argv, what the one line must name)
    "unknown dataset": (preprocess_main, ["precompute", "nope"], "unknown dataset 'nope'"),
    "unknown dataset (eval)": (eval_main, ["run", "--dataset", "nope"], "unknown dataset 'nope'"),
    "unknown profile": (train_main, ["fit", "profile=nope"], "unknown profile 'nope'"),
    "unknown key": (train_main, ["fit", "train.nope=1"], "'train.nope=1'"),
    "not an integer": (preprocess_main, ["precompute", "synthetic", "precompute.chunk_rows=abc"],
                       "precompute.chunk_rows=abc: must be an integer"),
    "chunk_rows 0": (preprocess_main, ["precompute", "synthetic", "precompute.chunk_rows=0"],
                     "pipelines.yaml key precompute.chunk_rows=0: must be ≥ 1"),
    "batch_size -1": (train_main, ["fit", "train.batch_size=-1"],
                      "train.batch_size=-1: must be ≥ 1"),
    "samples_per_joint 0": (preprocess_main, ["precompute", "synthetic-test",
                                              "sampling.samples_per_joint=0"],
                            "sampling.samples_per_joint=0: must be ≥ 1"),
    "hypotheses 0": (eval_main, ["run", "--dataset", "synthetic-test", "eval.hypotheses=0"],
                     "eval.hypotheses=0: must be ≥ 1"),
    "override without =": (train_main, ["fit", "train.lr"], "'train.lr' is not of the form"),
    "missing dataset root": (preprocess_main, ["precompute", "emdb"], "datasets.emdb.root"),
    "store that does not exist": (eval_main, ["run", "--dataset", "synthetic-test"],
                                  "synthetic-test.zarr: make precompute DATASET=synthetic-test"),
    "train store that does not exist": (train_main, ["fit"], "train.stores: no store at"),
    "verify of a store that does not exist": (stores_main, ["verify", "/nope.zarr"],
                                              "no store at /nope.zarr"),
    "bad command line": (train_main, ["fti"], "invalid choice: 'fti'"),
    "data of a real dataset": (preprocess_main, ["data", "--dataset", "bedlam"],
                               "only DATASET=synthetic"),
}


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("HUMR_DATA", str(root))
    return root


@pytest.mark.parametrize("case", CASES)
def test_a_user_error_is_one_line_exit_2_and_leaves_nothing(case, data_root, capsys):
    module, argv, named = CASES[case]
    assert run_cli(module.main, argv) == 2
    captured = capsys.readouterr()  # a notice (e.g. the profile a real dataset picks) is no error
    lines = [line for line in captured.err.splitlines() if not line.startswith("notice: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert named in lines[0]
    assert _tree(data_root) == []  # no .creating folder, store, run or report folder


def test_a_missing_checkpoint_file_is_named(data_root, capsys):
    store = data_root / "stores" / "synthetic-test.zarr"
    store.mkdir(parents=True)
    (store / "zarr.json").write_text("{}")  # the eval checks the store before the checkpoint
    before = _tree(data_root)
    missing = data_root.parent / "none.pt"
    assert run_cli(eval_main.main, ["run", "--dataset", "synthetic-test", "--ckpt",
                                    str(missing)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"error: checkpoint not found: {missing} (check --ckpt / CKPT=)"]
    assert _tree(data_root) == before


def test_an_internal_error_keeps_its_traceback(data_root, monkeypatch):
    import preprocess.precompute

    def broken(cfg, name):
        raise RuntimeError("a bug")

    monkeypatch.setattr(preprocess.precompute, "dataset_names", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        run_cli(preprocess_main.main, ["precompute", "synthetic"])


def test_in_a_process_a_user_error_exits_2_and_an_internal_error_keeps_its_traceback(data_root):
    user = subprocess.run([sys.executable, "-m", "stores", "verify"], capture_output=True,
                          text=True, cwd=ROOT)
    assert user.returncode == 2
    assert user.stderr == ("error: python -m stores verify: the following arguments are "
                           "required: paths (see python -m stores verify --help)\n")
    code = ("import sys, stores.__main__ as m\n"
            "from core.cli import run_cli\n"
            "def broken(path): raise RuntimeError('a bug')\n"
            "m.verify = broken\n"
            f"sys.exit(run_cli(m.main, ['verify', {str(data_root)!r}]))\n")
    internal = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=ROOT)
    assert internal.returncode == 1
    assert "Traceback" in internal.stderr and "RuntimeError: a bug" in internal.stderr
    assert not internal.stderr.startswith("error: ")


@pytest.mark.parametrize("module", ["preprocess", "train", "eval", "stores", "body",
                                    "benchmarks"])
def test_every_entry_point_runs_through_run_cli(module):
    source = (ROOT / module / "__main__.py").read_text()
    assert source.rstrip().endswith('if __name__ == "__main__":\n    sys.exit(run_cli(main))')
    assert "from core.cli import ArgumentParser, run_cli" in source
    assert "argparse.ArgumentParser(" not in source  # usage errors must be one line too


@pytest.mark.parametrize("module, argv, named", [
    ("stores", ["verify"], "the following arguments are required: paths"),
    ("body", ["convert", "/no/such/SMPL_NEUTRAL.pkl", "out.npz"], "/no/such/SMPL_NEUTRAL.pkl"),
    ("benchmarks", ["--body-models", "/no/such/models"], "/no/such/models"),
])
def test_the_other_entry_points_report_user_errors_in_one_line(module, argv, named, data_root,
                                                               capsys):
    main = importlib.import_module(f"{module}.__main__").main
    assert run_cli(main, argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0]
    assert _tree(data_root) == []


def test_report_folders_are_one_per_checkpoint():
    runs = Path("/r/runs/synthetic/checkpoints")
    a = report_dir("/r/reports", "synthetic", runs / "step_00000250.pt", "synthetic-test")
    b = report_dir("/r/reports", "synthetic", runs / "step_00001500.pt", "synthetic-test")
    assert a != b
    assert b == Path("/r/reports/synthetic/step_00001500/synthetic-test")


def test_a_profile_other_than_the_checkpoints_gets_a_notice(capsys):
    given = OmegaConf.create({"profile": "paper"})
    note_profile(given, OmegaConf.create({"profile": "synthetic"}), Path("step_00000002.pt"))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("notice: step_00000002.pt was trained with "
                                                   "profile=synthetic")
    note_profile(given, OmegaConf.create({"profile": "paper"}), Path("step_00000002.pt"))
    assert capsys.readouterr().err == ""
