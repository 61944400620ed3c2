"""`make data DATASET=synthetic`: generate the whole synthetic world, in parallel, atomically.

Four layouts under `cfg.root`: `bedlam/` (the training set), `emdb/` (the test set), and the small
`agora/` and `3dpw/` (train and test file splits, SMPL-X fits of the train actors) that exercise
the other real readers. The world is built in a temporary sibling directory and renamed into place
only when complete, so an interrupted run never leaves a dataset that looks finished. Work is
split by sequence, every layout's sequences in one pool; each sequence draws from its own seeded
stream, so the output is identical for any worker count.
"""
from __future__ import annotations

import json
import multiprocessing
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from body.cameras import DetectorCrop, xyxy_to_box
from core.safe_pickle import load_pickle
from synthetic.body_models import write_synthetic_body_models

from .agora_layout import AgoraSequenceWriter
from .bedlam_layout import BedlamSequenceWriter, write_labels
from .detector import SyntheticDetector
from .emdb_layout import EmdbSequenceWriter
from .motions import pose_models
from .sidecar import OBJECT_OCCLUDED, OUTSIDE_IMAGE, PERSON_OCCLUDED, SELF_OCCLUDED, \
    VISIBLE, Scene, sidecar_path
from .threedpw_layout import ThreeDPWSequenceWriter, write_smplx_fits

LABEL_LAYOUTS = ("bedlam", "agora")  # one label file per folder, merged from the sequences

LAYOUTS = {  # task kind → (sequence writer, directory under the root, config section)
    "bedlam": (BedlamSequenceWriter, "bedlam", "bedlam"),
    "emdb": (EmdbSequenceWriter, "emdb", "emdb"),
    "agora": (AgoraSequenceWriter, "agora", "agora"),
    "3dpw": (ThreeDPWSequenceWriter, "3dpw", "threedpw"),
}
_WORKER: dict = {}  # this worker's arguments and writers (one per layout, built on first use)

# bumped whenever the generator draws a different world from the same configuration, so that
# `make data` regenerates an older world instead of reusing it (2: hair, the crossing second
# person of the EMDB layout)
GENERATOR = 2


def _check_replaceable(path: Path, marker: str) -> None:
    """Refuse to replace a non-empty directory that this generator did not write (it lacks
    `marker`): pointing the synthetic roots at real data must never delete it."""
    if path.is_dir() and any(path.iterdir()) and not (path / marker).exists():
        raise FileExistsError(f"{path} exists and was not written by the synthetic generator "
                              f"(no {marker}); move it or choose another root")


def ensure_body_models(path: str | Path) -> Path:
    """The synthetic body-model root, generated on first use."""
    path = Path(path)
    if not (path / "SYNTHETIC.txt").exists():
        _check_replaceable(path, "SYNTHETIC.txt")
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        write_synthetic_body_models(tmp)
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
    return path


def _init_worker(body_models: str, root: str, cfg: dict) -> None:
    torch.set_num_threads(1)
    _WORKER.clear()
    _WORKER.update(body_models=Path(body_models), root=Path(root), cfg=OmegaConf.create(cfg),
                   poses=pose_models(cfg), writers={})


def _run(task: tuple) -> tuple:
    kind, *args = task
    writers = _WORKER["writers"]
    if kind not in writers:
        cls, directory, section = LAYOUTS[kind]
        writers[kind] = cls(_WORKER["body_models"], _WORKER["root"] / directory,
                            _WORKER["cfg"][section], _WORKER["poses"])
    return task, writers[kind](*args)


def _tasks(cfg: DictConfig) -> Iterator[tuple]:
    """Every sequence of the world, the longest first (EMDB, 3DPW) so no worker is left with a
    long sequence at the end."""
    for subject in range(cfg.emdb.subjects):
        for index in range(cfg.emdb.sequences_per_subject):
            yield ("emdb", cfg.seed, subject, index)
    for split in cfg.threedpw.splits:
        for index in range(cfg.threedpw.sequences_per_split):
            yield ("3dpw", cfg.seed, split, index)
    for layout in LABEL_LAYOUTS:
        for folder in cfg[layout].folders:
            for seq in range(cfg[layout].sequences_per_folder):
                yield (layout, cfg.seed, folder, seq)


def generate_world(cfg: DictConfig, body_models: str | Path, workers: int | None = None) -> Path:
    """Write the synthetic world (BEDLAM-layout training set, EMDB-layout test set, AGORA and
    3DPW layouts) under cfg.root."""
    start = time.perf_counter()
    root = Path(cfg.root)
    _check_replaceable(root, "MANIFEST.json")
    body_models = ensure_body_models(body_models)
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    plain = OmegaConf.to_container(cfg, resolve=True)
    pose_models(plain)  # a bad `poses` or motion name fails here, before any work
    tasks = list(_tasks(cfg))
    rows = {layout: {folder: [None] * cfg[layout].sequences_per_folder
                     for folder in cfg[layout].folders} for layout in LABEL_LAYOUTS}
    sequences_3dpw = []
    workers = workers or cfg.workers
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, _init_worker, (str(body_models), str(tmp), plain)) as pool:
        for task, result in tqdm(pool.imap_unordered(_run, tasks), total=len(tasks),
                                 desc="synthetic world", unit="seq"):
            if task[0] in LABEL_LAYOUTS:
                rows[task[0]][task[2]][task[3]] = result
            elif task[0] == "3dpw":
                sequences_3dpw.append(result)
    counts = {}
    for layout, folders in rows.items():
        counts[layout] = {}
        for folder, per_seq in folders.items():
            if not per_seq:  # sequences_per_folder: 0 leaves the layout out
                continue
            merged = {k: sum((r[k] for r in per_seq), []) for k in per_seq[0]}
            write_labels(tmp / layout, folder, merged)
            counts[layout][folder] = len(merged["imgname"])
    if any(r.split == "train" for r in sequences_3dpw):
        write_smplx_fits(tmp / "3dpw", sequences_3dpw)
    manifest = {"config": plain, "generator": GENERATOR, "bedlam_rows": counts["bedlam"],
                "agora_rows": counts["agora"],
                "emdb_sequences": len(list((tmp / "emdb").glob("P*/*/P*_data.pkl"))),
                "3dpw_sequences": {split: sum(r.split == split for r in sequences_3dpw)
                                   for split in cfg.threedpw.splits},
                "statistics": scene_statistics(tmp),
                "seconds": round(time.perf_counter() - start, 1), "synthetic": True}
    (tmp / "MANIFEST.json").write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return root


_STATES = {"self": SELF_OCCLUDED, "person": PERSON_OCCLUDED, "object": OBJECT_OCCLUDED,
           "outside": OUTSIDE_IMAGE}


def scene_statistics(root: str | Path) -> dict:
    """How hard the world is, from the scene side-cars: the test joints (the EMDB subject's COCO
    joints in the good frames of the emdb1 sequences: the synthetic-test split) hidden in total
    and per cause; the share of test crops (the subject's box, as the EMDB reader makes it) in
    which the simulated detector (default options) reports another person; and the people per
    training image (BEDLAM layout)."""
    root = Path(root)
    detector = SyntheticDetector()
    states, wrong = [], []
    for path in sorted(root.glob("emdb/P*/*/P*_data.pkl")):
        data = load_pickle(path)
        if data["emdb1"]:
            frames = np.flatnonzero(data["good_frames_mask"])
            centers, scales = xyxy_to_box(np.asarray(data["bboxes"]["bboxes"], np.float64)[frames])
            for frame, center, scale in zip(frames, centers, scales):
                scene = Scene.load(sidecar_path(path.parent / "images" / f"{frame:05d}.jpg"))
                states.append(scene.coco_state[0])
                chosen = detector.choose_person(scene, DetectorCrop(center, scale), center,
                                                200.0 * float(scale))
                wrong.append(chosen > 0)
    states = np.array(states).reshape(-1)
    people = [Scene.load(p).num_people
              for p in sorted(root.glob("bedlam/images/*/png/*/*.synthetic_scene.npz"))]
    share = (lambda mask: round(float(np.mean(mask)), 4) if len(states) else None)
    return {"test_joints": int(len(states)), "test_occluded": share(states != VISIBLE),
            **{f"test_{name}": share(states == value) for name, value in _STATES.items()},
            "test_crops": len(wrong), "test_wrong_person": share(wrong),
            "train_people_per_image": [min(people, default=0), max(people, default=0)],
            "train_images": len(people)}


def is_complete(root: str | Path) -> bool:
    return (Path(root) / "MANIFEST.json").exists()


def is_current(root: str | Path, config: dict) -> bool:
    """The world at `root` is complete and was made by this generator with `config`."""
    if not is_complete(root):
        return False
    info = manifest(root)
    return info["config"] == config and info.get("generator") == GENERATOR


def manifest(root: str | Path) -> dict:
    return json.loads((Path(root) / "MANIFEST.json").read_text())


def summary(root: Path) -> str:
    info = manifest(root)
    n_rows = sum(info["bedlam_rows"].values())
    pw3d = ", ".join(f"{n} {split}" for split, n in info.get("3dpw_sequences", {}).items())
    return (f"synthetic world at {root}: {n_rows} training rows (BEDLAM layout, "
            f"{len(info['bedlam_rows'])} folders), {info['emdb_sequences']} EMDB-layout "
            f"sequences, {sum(info.get('agora_rows', {}).values())} AGORA-layout rows, 3DPW-layout "
            f"sequences {pw3d}; {_hardness(info.get('statistics'))}generated in "
            f"{info['seconds']} s")


def _hardness(stats: dict | None) -> str:
    if not stats or stats["test_occluded"] is None:
        return ""
    causes = ", ".join(f"{name} {100 * stats[f'test_{name}']:.1f}" for name in _STATES)
    wrong = stats.get("test_wrong_person")
    crops = "" if wrong is None else \
        f", the detector on another person in {100 * wrong:.1f} % of {stats['test_crops']} crops"
    return (f"{100 * stats['test_occluded']:.1f} % of {stats['test_joints']} test joints "
            f"occluded ({causes}){crops}; ")
