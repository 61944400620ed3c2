import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from dask.distributed import Client, LocalCluster
from omegaconf import OmegaConf

from core.config import load_config
from preprocess.filtering import filter_reasons
from preprocess.settings import method_settings
from preprocess.precompute import dataset_names, precompute
from stores.schema import (
    FILTER_FAR_FROM_GROUND_TRUTH, FILTER_FEW_CONFIDENT_JOINTS, FILTER_JOINT_OUTSIDE_IMAGE, KEPT,
    SKIP_IMAGE_MISSING, SKIP_IMAGE_UNREADABLE, SKIP_MASK_MISSING, result_specs,
)
from stores.store import Store
from stores.verify import verify

ROOT = Path(__file__).resolve().parents[2]
ARRAYS = [spec.name for spec in result_specs(150)]


def _cfg(small_world, body_models, stores, *extra):
    return load_config([f"synthetic.root={small_world}", f"body.models={body_models}",
                        f"paths.stores={stores}", "precompute.chunk_rows=8", *extra])


def _arrays(path):
    store = Store(path)
    return {name: store.read(name) for name in ARRAYS}


def _assert_same(a, b):
    for name in ARRAYS:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.fixture(scope="module")
def reference(precomputed):
    """synthetic-train and -test precomputed with one LocalCluster worker."""
    return precomputed


def test_reference_stores_are_complete_and_sensible(reference):
    stores, summaries = reference
    train = Store(stores / "synthetic-train.zarr")
    assert verify(train.path).complete and verify(stores / "synthetic-test.zarr").complete
    assert train.attrs["complete"] and train.attrs["schema_version"] == 2
    assert summaries["synthetic-train"]["rows_written"] == train.n_rows
    reasons = train.read("status/reason")
    kept = reasons == KEPT
    assert 0.5 < kept.mean() < 1.0  # the wrong-person filter has work, most rows stay
    assert sum(summaries["synthetic-train"]["filtered"].values()) == (~kept).sum()
    kps, index = train.read("detector/keypoints"), train.read("samples/index")
    gt = train.labels().kp2d_coco
    confident = kps[..., 2] > 0.8
    err = np.linalg.norm(kps[..., :2] - gt, axis=-1)
    assert np.median(err[confident & kept[:, None]]) < 0.05 * np.median(train.read(
        "labels/scale")) * 200  # confident joints sit on the ground truth
    assert (np.diff(index.astype(int), axis=-1) >= 0).all()  # sorted per joint
    dist = train.read("samples/mask_distance")
    assert np.isfinite(dist[kept]).all() and (dist[kept] >= 0).all()
    inside = (dist[kept] <= 0.71).mean()
    assert 0.3 < inside < 1.0
    test = Store(stores / "synthetic-test.zarr")
    assert (test.read("status/reason") == KEPT).all()  # no filter on test splits


def test_worker_count_does_not_change_the_data(reference, small_world, body_models, tmp_path):
    stores, _ = reference
    cfg = _cfg(small_world, body_models, tmp_path, "cluster.workers=2")
    precompute(cfg, "synthetic-train")
    _assert_same(_arrays(tmp_path / "synthetic-train.zarr"),
                 _arrays(stores / "synthetic-train.zarr"))


def test_rerun_skips_done_chunks(reference, small_world, body_models):
    stores, _ = reference
    cfg = _cfg(small_world, body_models, stores)
    summary = precompute(cfg, "synthetic-train")
    assert summary["chunks_run"] == 0 and summary["rows_written"] == 0


def test_sigkill_of_a_worker_mid_run(reference, small_world, body_models, tmp_path):
    stores, _ = reference
    cfg = _cfg(small_world, body_models, tmp_path, "precompute.chunk_rows=2")
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        pids = list(client.run(os.getpid).values())
        killed = []

        def killer():
            store_path = tmp_path / "synthetic-train.zarr"
            deadline = time.time() + 60
            while time.time() < deadline:
                if (store_path / "zarr.json").exists() and Store(store_path).done().any():
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(int(Store(store_path).done().sum()))
                    return
                time.sleep(0.01)

        thread = threading.Thread(target=killer)
        thread.start()
        precompute(cfg, "synthetic-train", client=client)
        thread.join()
    assert killed, "no worker was killed"
    assert verify(tmp_path / "synthetic-train.zarr").complete
    ref = Store(stores / "synthetic-train.zarr")
    got = Store(tmp_path / "synthetic-train.zarr")
    for name in ARRAYS:
        np.testing.assert_array_equal(got.read(name), ref.read(name), err_msg=name)


def test_sigkill_of_the_whole_run_then_rerun(reference, small_world, body_models, tmp_path):
    stores, _ = reference
    args = [f"synthetic.root={small_world}", f"body.models={body_models}",
            f"paths.stores={tmp_path}", "precompute.chunk_rows=2", "cluster.workers=2"]
    proc = subprocess.Popen([sys.executable, "-m", "preprocess", "precompute", "synthetic-train",
                             *args], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store_path = tmp_path / "synthetic-train.zarr"
    done_at_kill = None
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (store_path / "zarr.json").exists() and Store(store_path).done().any():
            os.killpg(proc.pid, signal.SIGKILL)
            done_at_kill = Store(store_path).done()
            break
        time.sleep(0.01)
    proc.wait()
    assert done_at_kill is not None and not done_at_kill.all(), "the run was not interrupted"
    assert not verify(store_path).complete
    precompute(load_config(args), "synthetic-train")
    assert verify(store_path).complete
    _assert_same(_arrays(store_path), _arrays(stores / "synthetic-train.zarr"))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_scheduler_and_two_workers_on_loopback(reference, small_world, body_models,
                                                    tmp_path):
    stores, _ = reference
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = Path(sys.executable).parent / "dask"
    procs = [subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port",
                               str(port), "--no-dashboard"], stderr=subprocess.DEVNULL)]
    try:
        time.sleep(2)
        procs += [subprocess.Popen([str(dask), "worker", address, "--nthreads", "1",
                                    "--no-dashboard", "--no-nanny"], cwd=ROOT,
                                   stderr=subprocess.DEVNULL) for _ in range(2)]
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
        cfg = _cfg(small_world, body_models, tmp_path, f"cluster.address={address}")
        precompute(cfg, "synthetic-train")
    finally:
        stop_processes(procs)
    _assert_same(_arrays(tmp_path / "synthetic-train.zarr"),
                 _arrays(stores / "synthetic-train.zarr"))


def test_verify_catches_a_truncated_and_a_missing_chunk(reference, tmp_path):
    stores, _ = reference
    path = tmp_path / "copy.zarr"
    shutil.copytree(stores / "synthetic-train.zarr", path)
    store = Store(path)
    assert verify(path).complete
    truncated = store.chunk_file("samples/index", 1)
    truncated.write_bytes(truncated.read_bytes()[:20])
    store.chunk_file("samples/value", 2).unlink()
    report = verify(path)
    assert not report.complete and len(report.bad) == 2
    assert (report.bad[0].array, report.bad[0].index) == ("samples/index", 1)
    assert "does not decode" in report.bad[0].problem
    assert (report.bad[1].array, report.bad[1].index) == ("samples/value", 2)
    assert "no chunk file" in report.bad[1].problem
    cli = subprocess.run([sys.executable, "-m", "stores", "verify", str(path)], cwd=ROOT,
                         capture_output=True, text=True)
    assert cli.returncode == 1 and "INCOMPLETE" in cli.stdout
    assert "2 bad chunks" in cli.stdout and "chunk 1 of 'samples/index'" in cli.stdout


def test_bad_input_rows_are_skipped_with_reasons(small_world, body_models, tmp_path):
    world = tmp_path / "synthetic"
    shutil.copytree(small_world, world)
    images = sorted((world / "bedlam/images/synthetic_a/png").glob("*/*.png"))
    images[0].unlink()
    images[1].write_bytes(b"not a png")
    mask = Path(str(images[2]).replace("/png/", "/masks/")[:-4] + "_env.png")
    mask.unlink()
    cfg = _cfg(world, body_models, tmp_path / "stores")
    summary = precompute(cfg, "synthetic-train")
    store = Store(tmp_path / "stores" / "synthetic-train.zarr")
    reasons = store.read("status/reason")
    labels = store.labels()
    by_image = {img: reasons[labels.image == img] for img in np.unique(labels.image)}
    rel = [str(p.relative_to(world / "bedlam")) for p in images[:3]]
    assert (by_image[rel[0]] == SKIP_IMAGE_MISSING).all()
    assert (by_image[rel[1]] == SKIP_IMAGE_UNREADABLE).all()
    assert (by_image[rel[2]] == SKIP_MASK_MISSING).all()
    assert summary["skipped"]["skipped: image missing"] == len(by_image[rel[0]])
    assert verify(store.path).complete


def test_bad_configuration_fails_before_any_work(small_world, body_models, tmp_path):
    cfg = _cfg(small_world, body_models, tmp_path)
    with pytest.raises(KeyError, match="unknown dataset 'nope'"):
        dataset_names(cfg, "nope")
    assert dataset_names(cfg, "synthetic") == ["synthetic-train", "synthetic-test"]
    broken = OmegaConf.merge(cfg, {"datasets": {"synthetic-train": {"format": "bedlm"}}})
    with pytest.raises(ValueError, match="datasets.synthetic-train.format"):
        precompute(broken, "synthetic-train")
    broken = OmegaConf.merge(cfg, {"precompute": {"detector": {"name": "vitpos"}}})
    with pytest.raises(ValueError, match="precompute.detector.name"):
        precompute(broken, "synthetic-train")
    with pytest.raises(KeyError, match="precompute.detektor"):
        load_config(["precompute.detektor=x"])
    assert not list(tmp_path.iterdir())  # nothing was written


def test_filter_rules_on_hand_made_cases():
    cfg = method_settings(load_config([]), "synthetic-train").filter
    gt = np.tile(np.linspace(100, 300, 17)[:, None], (1, 2))[None].repeat(4, 0)
    kps = np.concatenate([gt, np.full((4, 17, 1), 0.9)], -1)
    kps[1, :, :2] += 10  # every joint 14 px (per unit scale) off: mean error ≥ 13
    kps[2, :9, 2] = 0.3  # only 8 confident joints
    kps[3, 0, :2] = [-101, gt[3, 0, 1]]  # a joint > 100 px outside the image
    reasons = filter_reasons(kps, gt, np.ones(4), np.array([[640, 360]] * 4), cfg)
    assert list(reasons) == [KEPT, FILTER_FAR_FROM_GROUND_TRUTH, FILTER_FEW_CONFIDENT_JOINTS,
                             FILTER_JOINT_OUTSIDE_IMAGE]


def test_slurm_cluster_is_configured_from_pipelines_yaml():
    pytest.importorskip("dask_jobqueue")
    from preprocess.cluster import slurm_cluster

    cfg = load_config(["cluster.kind=slurm", "cluster.slurm.queue=gpu", "cluster.slurm.cores=4",
                       "cluster.slurm.memory=16GB"])
    cluster = slurm_cluster(cfg.cluster)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH -p gpu" in script and "--cpus-per-task=4" in script
    assert "#SBATCH --mem=" in script and "--nthreads 4" in script


def _files(path):
    """{relative name: (bytes, mtime_ns)} of every file of a store but the group's zarr.json."""
    return {p.relative_to(path).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(path.rglob("*")) if p.is_file() and p != path / "zarr.json"}


def test_rerun_rewrites_exactly_the_bad_chunks(reference, small_world, body_models, tmp_path):
    stores, _ = reference
    path = tmp_path / "synthetic-train.zarr"
    shutil.copytree(stores / "synthetic-train.zarr", path)
    store = Store(path)
    last = store.n_chunks - 1  # the last row chunk is partial: its rewrite must not read it
    bad = {"detector/keypoints": 1, "labels/center": last}
    for name, index in bad.items():
        data = bytearray(store.chunk_file(name, index).read_bytes())
        data[len(data) // 2] ^= 0x10
        store.chunk_file(name, index).write_bytes(bytes(data))
    before = _files(path)
    assert not verify(path).complete
    summary = precompute(_cfg(small_world, body_models, tmp_path), "synthetic-train")
    assert summary["chunks_run"] == 1
    assert verify(path).complete
    after, ref = _files(path), _files(stores / "synthetic-train.zarr")
    assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in ref.items()}
    changed = {k for k in after if after[k][1] != before[k][1]}
    # row chunk 1 of every result array and its done flag (one task writes them), the label chunk
    expected = {str(store.chunk_file(name, 1).relative_to(path)) for name in ARRAYS}
    expected |= {str(store.chunk_file("status/chunk_done", 1).relative_to(path)),
                 str(store.chunk_file("labels/center", last).relative_to(path))}
    assert changed == expected


def test_two_precomputes_of_one_store_started_together(reference, small_world, body_models,
                                                       tmp_path):
    stores, _ = reference
    args = [f"synthetic.root={small_world}", f"body.models={body_models}",
            f"paths.stores={tmp_path}", "precompute.chunk_rows=8", "cluster.workers=1"]
    procs = [subprocess.Popen([sys.executable, "-m", "preprocess", "precompute",
                               "synthetic-train", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    codes = [p.returncode for p in procs]
    assert codes.count(0) == 1, (codes, errors)  # the other one refused, naming the holder
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    assert f"held by host {socket.gethostname()}, pid {procs[winner].pid}" in errors[loser]
    assert verify(tmp_path / "synthetic-train.zarr").complete
    assert not (tmp_path / "synthetic-train.zarr.lock").exists()
    _assert_same(_arrays(tmp_path / "synthetic-train.zarr"),
                 _arrays(stores / "synthetic-train.zarr"))


def stop_processes(procs: list) -> None:
    """Terminate the started processes (the last started first), killing any that hang."""
    for p in reversed(procs):
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
