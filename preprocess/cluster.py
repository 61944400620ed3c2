"""The Dask cluster of stage one: a LocalCluster by default, an existing scheduler when
`cluster.address` is set, SLURM through dask-jobqueue when `cluster.kind=slurm`."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from dask.distributed import Client, LocalCluster
from omegaconf import DictConfig, OmegaConf

KINDS = ("local", "slurm")


def check_cluster_config(cfg: DictConfig) -> None:
    """Fail before any work on a cluster setting that cannot work, naming the key."""
    if not cfg.address and cfg.kind not in KINDS:
        raise ValueError(f"cluster.kind must be one of {KINDS}, got {cfg.kind!r}")
    if cfg.address and not str(cfg.address).startswith(("tcp://", "tls://", "inproc://")):
        raise ValueError(f"cluster.address must look like tcp://host:port, got {cfg.address!r}")
    if not cfg.address and cfg.kind == "slurm":
        try:
            import dask_jobqueue  # noqa: F401
        except ImportError as err:
            raise ValueError("cluster.kind=slurm needs dask-jobqueue: "
                             "pip install -e '.[cluster]'") from err
    if cfg.workers < 1:
        raise ValueError(f"cluster.workers must be ≥ 1, got {cfg.workers}")


def slurm_cluster(cfg: DictConfig):
    """A dask-jobqueue SLURMCluster from `cluster.slurm` (not yet scaled)."""
    from dask_jobqueue import SLURMCluster

    options = OmegaConf.to_container(cfg.slurm, resolve=True)
    options.pop("jobs")
    return SLURMCluster(**{k: v for k, v in options.items() if v is not None})


@contextmanager
def dask_client(cfg: DictConfig) -> Iterator[Client]:
    """A connected client for the configured cluster, torn down afterwards."""
    check_cluster_config(cfg)
    if cfg.address:
        with Client(cfg.address) as client:
            yield client
    elif cfg.kind == "slurm":
        with slurm_cluster(cfg) as cluster, Client(cluster) as client:
            cluster.scale(jobs=cfg.slurm.jobs)
            yield client
    else:
        with LocalCluster(n_workers=cfg.workers, threads_per_worker=cfg.threads_per_worker,
                          processes=True, memory_limit=cfg.memory_limit,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            yield client
