"""docs/real_data.md's cluster commands, run as written: a Dask scheduler and workers on loopback,
`make precompute … cluster.address=…`, a worker killed mid-run (the store's bytes equal a clean
run's), and the SLURM job script that `cluster.kind=slurm` would submit."""
import math
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from dask.distributed import Client

from core.config import load_config
from stores.store import Store
from stores.verify import verify
from tests.preprocess.test_precompute import stop_processes

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _doc_commands() -> list[str]:
    """The command lines of the "Stage one on a cluster" code block."""
    text = (ROOT / "docs" / "real_data.md").read_text()
    section = text.split("## Stage one on a cluster", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("  #")[0].strip() for line in block.splitlines()
            if line.strip() and not line.startswith("#")]


def _one(commands, start, needle=""):
    found = [c for c in commands if c.startswith(start) and needle in c]
    assert len(found) == 1, f"docs/real_data.md: expected one '{start} … {needle}' line"
    return found[0]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _files(path: Path) -> dict[str, bytes]:
    """Every file of a store but the group's zarr.json (its attributes record the run)."""
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p != path / "zarr.json"}


def test_scheduler_commands_as_written_and_a_killed_worker(precomputed, small_world,
                                                           body_models, tmp_path):
    stores, _ = precomputed
    commands = _doc_commands()
    address = f"tcp://127.0.0.1:{_free_port()}"
    local = lambda c: c.replace("tcp://scheduler:8786", address)  # noqa: E731
    scheduler = shlex.split(_one(commands, "dask scheduler").replace("0.0.0.0", "127.0.0.1")
                            .replace("8786", address.rsplit(":", 1)[1]))
    worker = shlex.split(local(_one(commands, "dask worker")))
    make = shlex.split(local(_one(commands, "make precompute", "cluster.address=")))
    assert make[:4] == ["make", "precompute", "DATASET=bedlam", "PROFILE=paper"]
    args = make[4].split("=", 1)[1]
    extra = (f" synthetic.root={small_world} body.models={body_models} paths.stores={tmp_path}"
             " precompute.chunk_rows=8")  # the clean run's chunking
    make = ["make", "-o", "setup", f"PY={sys.executable}", "precompute",
            "DATASET=synthetic-train", "PROFILE=synthetic", f"ARGS={args}{extra}"]
    procs = [subprocess.Popen([str(BIN / scheduler[0]), *scheduler[1:]], cwd=ROOT,
                              stderr=subprocess.DEVNULL)]
    killed = []
    try:
        time.sleep(2)
        procs += [subprocess.Popen([str(BIN / worker[0]), *worker[1:]], cwd=ROOT,
                                   stderr=subprocess.DEVNULL) for _ in range(2)]
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
            pid = next(iter(client.run(os.getpid).values()))  # a worker, not its nanny
        store_path = tmp_path / "synthetic-train.zarr"

        def kill_after_the_first_chunk():
            deadline = time.time() + 60
            while time.time() < deadline:
                if (store_path / "zarr.json").exists() and Store(store_path).done().any():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(Store(store_path).done())
                    return
                time.sleep(0.01)

        thread = threading.Thread(target=kill_after_the_first_chunk)
        thread.start()
        subprocess.run(make, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        thread.join()
    finally:
        stop_processes(procs)
    assert killed and not killed[0].all(), "no worker was killed mid-run"
    assert verify(store_path).complete
    clean = stores / "synthetic-train.zarr"  # one LocalCluster worker, no kill
    assert Store(store_path).attrs["fingerprint"] == Store(clean).attrs["fingerprint"]
    got, want = _files(store_path), _files(clean)
    assert got.keys() == want.keys()
    assert [name for name in got if got[name] != want[name]] == []


def test_slurm_job_script_of_the_documented_command():
    pytest.importorskip("dask_jobqueue")
    from preprocess.cluster import slurm_cluster

    line = _one(_doc_commands(), "make precompute", "cluster.kind=slurm")
    args = shlex.split(line)[-1].split("=", 1)[1].split()
    cfg = load_config(args + ["cluster.slurm.account=proj", "cluster.slurm.cores=6",
                              "cluster.slurm.memory=24GB", "cluster.slurm.walltime=02:30:00"])
    cfg.cluster.slurm.job_extra_directives = ["--gres=gpu:1"]
    assert cfg.cluster.kind == "slurm" and cfg.cluster.slurm.jobs == 8
    cluster = slurm_cluster(cfg.cluster)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    sbatch = re.findall(r"^#SBATCH (.+)$", script, re.M)
    assert {"-p gpu", "-A proj", "-n 1", "--cpus-per-task=6", "-t 02:30:00",
            "--gres=gpu:1"} <= set(sbatch)
    assert f"--mem={math.ceil(24e9 / 2**30)}G" in sbatch  # dask-jobqueue rounds up to GiB
    assert "--nthreads 6" in script and "--memory-limit 22.35GiB" in script
