"""Stage one writes the same bytes whatever the batch, the chunking, the threads and the x86
instruction set (stores/README.md, "Writing and resuming").

The probe: 64 mixed crops of the small synthetic world (rows repeated with jittered boxes, so
heatmaps, boxes and mask images differ), run through the real chunk task. One crop computed alone
must give the bytes it gets inside the batch of 64; and the whole batch, recomputed in a
subprocess under emulated other instruction sets (torch's, numpy's and the BLAS libraries'
dispatch switches) and thread counts, must give the bytes of this process.
"""
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core.config import load_config
from preprocess.chunk_task import process_chunk
from body.detector import CropRequest
from synthetic.detector import SyntheticDetector
from preprocess.settings import ChunkSettings, RuntimeSettings, method_settings
from preprocess.readers import read_bedlam
from stores.schema import result_specs
from stores.store import Store

ROOT = Path(__file__).resolve().parents[2]
ROWS, PROBE = 64, 37
OUTPUTS = [spec.name for spec in result_specs(150)]


def settings(batch_size: int = 64, threads: int = 1) -> ChunkSettings:
    method = method_settings(load_config(), "synthetic-train")
    assert method.detector.name == "synthetic" and method.detector.options == {}
    return ChunkSettings(replace(method, dataset="determinism"),
                         RuntimeSettings(device="cpu", batch_size=batch_size, threads=threads))


def requests(store: Store, root: Path) -> list[CropRequest]:
    rows = store.labels()
    return [CropRequest(root / rows.image[i], rows.center[i].astype(np.float64),
                        float(rows.scale[i])) for i in range(len(rows))]


def compute(store_path: str, root: str, task: ChunkSettings, chunks: list[int],
            heat_path: str) -> None:
    """Run the chunk task on `chunks` of the store and save the detector's heatmaps of the
    chunks' rows (one batch per chunk) to `heat_path`. Also the subprocesses' entry point."""
    store = Store(store_path, mode="r+")
    every = requests(store, Path(root))
    detector = SyntheticDetector(**task.method.detector.options)
    heat = []
    for index in chunks:
        process_chunk(store_path, root, index, task)
        sl = store.chunk_slice(index)
        heat.append(detector(None, every[sl]))
    np.save(heat_path, np.concatenate(heat))


def outputs(store_path: Path, heat_path: Path, rows: slice = slice(None)) -> dict:
    store = Store(store_path)
    found = {name: store.read(name, rows) for name in OUTPUTS}
    return {**found, "detector heatmaps": np.load(heat_path)}


def assert_same_bytes(got: dict, expected: dict, what: str) -> None:
    differ = {}
    for name, value in expected.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape, name
        values = (got[name] != value) & ~(np.isnan(got[name]) & np.isnan(value)) \
            if value.dtype.kind == "f" else got[name] != value
        if got[name].tobytes() != value.tobytes():
            differ[name] = int(values.sum())
    assert not differ, f"{what}: values differing per output: {differ}"


@pytest.fixture(scope="module")
def mixed(small_world, body_models, tmp_path_factory):
    """64 mixed rows (jittered boxes of the small world's crops) and their outputs computed as
    one chunk and one detector batch of 64."""
    root = small_world / "bedlam"
    rows = read_bedlam(root, body_models, train_fraction=1.0)
    rng = np.random.default_rng(12)
    rows = rows.select(rng.integers(0, len(rows), ROWS))
    rows.center = rows.center + rng.normal(0, 6, rows.center.shape).astype(np.float32)
    rows.scale = rows.scale * rng.uniform(0.85, 1.2, ROWS).astype(np.float32)
    work = tmp_path_factory.mktemp("determinism")
    store = Store.create(work / "batch.zarr", rows, {"dataset": "determinism"}, ROWS, 150)
    compute(str(store.path), str(root), settings(), [0], str(work / "batch.npy"))
    return root, rows, work, outputs(store.path, work / "batch.npy")


def test_probe_is_mixed(mixed):
    _, rows, _, batch = mixed
    assert len(np.unique(rows.image)) > 5 and len(np.unique(rows.mask)) > 5
    assert len(np.unique(batch["detector/keypoints"][..., 0])) > 0.9 * ROWS * 17
    assert np.isfinite(batch["samples/mask_distance"]).all()


def test_a_crop_alone_equals_the_crop_in_a_batch_of_64(mixed, tmp_path):
    root, rows, _, batch = mixed
    store = Store.create(tmp_path / "alone.zarr", rows, {"dataset": "determinism"}, 1, 150)
    compute(str(store.path), str(root), settings(batch_size=1), [PROBE], str(tmp_path / "h.npy"))
    alone = outputs(store.path, tmp_path / "h.npy", slice(PROBE, PROBE + 1))
    assert_same_bytes(alone, {k: v[PROBE:PROBE + 1] for k, v in batch.items()}, "alone")


def _numpy_dispatch(keep: tuple[str, ...]) -> str:
    """NPY_DISABLE_CPU_FEATURES value switching off numpy's dispatch targets not in `keep`."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    return " ".join(f for f in __cpu_dispatch__ if f not in keep and __cpu_features__.get(f))


AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
             "OPENBLAS_CORETYPE": "Haswell", "NPY_DISABLE_CPU_FEATURES": ("X86_V3",)}
SWITCHES = (*AVX2_ONLY, "OMP_NUM_THREADS")
EMULATIONS = {
    "torch scalar kernels": {"ATEN_CPU_CAPABILITY": "default"},
    "MKL at SSE4.2": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    "numpy at baseline": {"NPY_DISABLE_CPU_FEATURES": ()},
    "AVX2 machine (Zen 2)": AVX2_ONLY,
    "two threads": {"OMP_NUM_THREADS": "2", "threads": 2},
}


@pytest.mark.parametrize("name", list(EMULATIONS))
def test_other_instruction_sets_and_threads_give_the_same_bytes(mixed, tmp_path, name):
    root, rows, _, batch = mixed
    env = {k: v for k, v in os.environ.items() if k not in SWITCHES}
    emulation = dict(EMULATIONS[name])
    threads = emulation.pop("threads", 1)
    if "NPY_DISABLE_CPU_FEATURES" in emulation:
        emulation["NPY_DISABLE_CPU_FEATURES"] = _numpy_dispatch(
            emulation["NPY_DISABLE_CPU_FEATURES"])
    env.update(emulation)
    store = Store.create(tmp_path / "other.zarr", rows, {"dataset": "determinism"}, ROWS, 150)
    code = ("import sys; from tests.preprocess.test_stage_one_determinism import compute, "
            "report, settings; compute(sys.argv[1], sys.argv[2], "
            "settings(threads=int(sys.argv[3])), [0], sys.argv[4]); print(report())")
    run = subprocess.run([sys.executable, "-c", code, str(store.path), str(root),
                          str(threads), str(tmp_path / "h.npy")],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    if "ATEN_CPU_CAPABILITY" in emulation:
        assert seen["torch"] == emulation["ATEN_CPU_CAPABILITY"].upper()
    for feature in emulation.get("NPY_DISABLE_CPU_FEATURES", "").split():
        assert not seen["numpy"][feature], f"numpy still dispatches {feature}"
    assert_same_bytes(outputs(store.path, tmp_path / "h.npy"), batch, name)


def report() -> str:
    """What the running process dispatches to (torch capability, numpy targets)."""
    import torch
    from numpy._core._multiarray_umath import __cpu_features__

    return json.dumps({"torch": torch.backends.cpu.get_cpu_capability(),
                       "numpy": {k: bool(v) for k, v in __cpu_features__.items()}})
