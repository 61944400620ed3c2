"""Parametric whole-body motions for the synthetic world (docs/synthetic_world.md "Poses").

A motion is a few curves over a phase φ ∈ [0, 1) (one cycle), each moving one Euler angle of one
body joint away from the rest pose of `synthetic.poses`: `sin` curves for gaits and gestures
(amplitude · sin 2π(φ + offset), plus a bias), `bump` curves for whole-body actions (a raised-cosine
window of half-width w centred at c, repeating every cycle: a squat goes down and up again).
Curves are written for the body's left side in the left joints' sign convention (see the limits
in `synthetic.poses`); a person is mirrored left ↔ right with probability ½.

Per person a motion gets a gain on every curve, a per-curve jitter of gain and phase, a static
posture offset per joint and a speed; per frame a small smooth noise. Everything is clipped to the
joint limits of `synthetic.poses`. Single images draw a random phase; sequences advance it over
the frames at the person's speed (and may cross-fade into a second motion), so consecutive frames
are coherent.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from core.config import load_config
from core.errors import ConfigError

from .poses import LIMITS_HIGH, LIMITS_LOW, REST, interpolate_poses, sample_body_pose

POSE_KINDS = ("motions", "independent")
MOTION_SPLITS = ("train", "test")
FPS = 30.0  # frame rate of the sequence layouts
CURVE_GAIN_SD, CURVE_PHASE_SD = 0.15, 0.03  # per-person jitter of every curve
POSTURE_SD, FRAME_SD = 0.04, 0.015  # static and per-frame noise, × the joint's range
NOISE_KEY_FRAMES = 12  # per-frame noise is interpolated between keys this many frames apart
SWITCH_P, CROSSFADE_FRAMES = 0.5, 15  # a sequence changes motion once, with this probability
_RANGE = LIMITS_HIGH - LIMITS_LOW
_PAIRS = {1: 2, 4: 5, 7: 8, 10: 11, 13: 14, 16: 17, 18: 19, 20: 21}
MIRROR_JOINTS = np.arange(21)
for _l, _r in _PAIRS.items():
    MIRROR_JOINTS[_l - 1], MIRROR_JOINTS[_r - 1] = _r - 1, _l - 1


@dataclass(frozen=True)
class Curve:
    """One Euler angle of one body joint (1..21) over the phase."""

    joint: int
    axis: int  # 0, 1, 2: x, y, z
    amp: float  # rad
    kind: str = "sin"  # "sin": amp·sin 2π(φ + at); "bump": amp · window(φ; at, width)
    at: float = 0.0
    width: float = 0.25
    bias: float = 0.0  # rad, added at every phase (scaled by the gain too)

    def __call__(self, phase: np.ndarray) -> np.ndarray:
        if self.kind == "sin":
            return self.bias + self.amp * np.sin(2 * np.pi * (phase + self.at))
        d = np.abs((phase - self.at + 0.5) % 1.0 - 0.5)  # periodic distance to the centre
        return self.bias + self.amp * np.where(d < self.width,
                                               0.5 * (1 + np.cos(np.pi * d / self.width)), 0.0)


@dataclass(frozen=True)
class Motion:
    name: str
    curves: tuple[Curve, ...]
    cycles_per_s: float  # mean speed of the phase in sequences


def _legs(hip: float, knee: float, ankle: float, **kw) -> tuple[Curve, ...]:
    """The same bump on both legs (hip flexion −x, knee +x, ankle x)."""
    return tuple(Curve(j, 0, a, **kw) for j, a in
                 ((1, hip), (2, hip), (4, knee), (5, knee), (7, ankle), (8, ankle)))


def _spine(amp: float, axis: int = 0, **kw) -> tuple[Curve, ...]:
    """A bend (x: forward) or twist (y) spread over the three spine joints."""
    return tuple(Curve(j, axis, amp / 3, **kw) for j in (3, 6, 9))


def _both(joint: int, axis: int, amp: float, **kw) -> tuple[Curve, Curve]:
    """A curve on a left joint and the same movement on its right partner (y, z mirrored)."""
    sign = 1.0 if axis == 0 else -1.0
    right = {**kw, "bias": sign * kw.get("bias", 0.0)}
    return Curve(joint, axis, amp, **kw), Curve(_PAIRS[joint], axis, sign * amp, **right)


def _gait(hip: float, knee: float, arm: float, elbow: float, lean: float) -> tuple[Curve, ...]:
    """Legs in anti-phase, each arm swinging against its leg, knees flexing in the swing."""
    bias = -hip / 3  # the thighs swing about a slightly flexed hip
    return (Curve(1, 0, -hip, bias=bias), Curve(2, 0, -hip, at=0.5, bias=bias),
            Curve(4, 0, knee, at=0.15, bias=knee), Curve(5, 0, knee, at=0.65, bias=knee),
            Curve(7, 0, 0.2, at=0.1), Curve(8, 0, 0.2, at=0.6),
            Curve(16, 1, arm), Curve(17, 1, arm),  # the left arm back while the left leg leads
            Curve(18, 1, 0.2 * elbow, bias=elbow), Curve(19, 1, 0.2 * elbow, bias=-elbow),
            *_spine(0.15, axis=1, at=0.25), *_spine(0.0, bias=lean / 3),
            Curve(12, 0, 0.0, bias=-0.5 * lean))


def _bump(width: float, at: float = 0.5) -> dict:
    return {"kind": "bump", "at": at, "width": width}


_STAND = (Curve(1, 2, 0.06), Curve(2, 2, 0.06), *_spine(0.1, axis=2, at=0.5),
          *_both(16, 2, 0.1, bias=0.15), *_both(18, 1, 0.1, bias=-0.3), Curve(15, 1, 0.25, at=0.3))
_SQUAT = (*_legs(-1.6, 2.0, 0.35, **_bump(0.4)), *_spine(0.45, **_bump(0.4)),
          *_both(16, 1, -1.1, **_bump(0.4)))
_SIT = (*_legs(-1.55, 1.6, 0.1, **_bump(0.45)), *_spine(0.2, **_bump(0.45)),
        *_both(16, 1, -0.45, **_bump(0.45)), *_both(18, 1, -0.8, **_bump(0.45)))
_REACH = (Curve(16, 1, -1.2, **_bump(0.4)), Curve(16, 2, 1.9, **_bump(0.4)),
          Curve(18, 1, 0.2, bias=-0.2, **_bump(0.4)), *_spine(0.3, axis=1, **_bump(0.4)),
          *_spine(0.15, **_bump(0.4)), Curve(7, 0, -0.3, **_bump(0.4)))
_BEND = (*_spine(0.95, **_bump(0.4)), *_legs(-1.1, 0.35, 0.1, **_bump(0.4)),
         *_both(16, 1, -0.9, **_bump(0.4)), Curve(12, 0, -0.35, **_bump(0.4)))
_KICK = (Curve(1, 0, -1.5, **_bump(0.3)), Curve(4, 0, 1.4, **_bump(0.2, 0.38)),
         Curve(4, 0, 0.3, **_bump(0.12, 0.62)), Curve(5, 0, 0.3, **_bump(0.35)),
         *_both(16, 2, 0.6, **_bump(0.3)), *_spine(-0.25, **_bump(0.3, 0.55)))
_WAVE = (Curve(16, 2, 0.0, bias=2.0), Curve(16, 1, 0.15, bias=-0.3), Curve(18, 1, 0.45, bias=-1.3),
         Curve(20, 2, 0.35, at=0.25), Curve(15, 1, 0.0, bias=0.15))
_THROW = (Curve(16, 2, 1.8, **_bump(0.3, 0.35)), Curve(16, 1, 0.5, **_bump(0.2, 0.3)),
          Curve(16, 1, -1.3, **_bump(0.2, 0.65)), Curve(18, 1, -1.8, **_bump(0.25, 0.35)),
          Curve(17, 1, 0.9, **_bump(0.25, 0.35)), *_spine(0.35, axis=1, **_bump(0.2, 0.3)),
          *_spine(-0.35, axis=1, **_bump(0.2, 0.65)), *_spine(0.3, **_bump(0.2, 0.7)),
          Curve(2, 0, -0.5, **_bump(0.25, 0.55)), Curve(5, 0, 0.5, **_bump(0.25, 0.55)))
_CROUCH = (Curve(1, 0, -1.7, **_bump(0.45)), Curve(4, 0, 2.2, **_bump(0.45)),  # one knee down
           Curve(7, 0, 0.4, **_bump(0.45)), Curve(2, 0, -0.2, **_bump(0.45)),
           Curve(5, 0, 1.8, **_bump(0.45)), Curve(8, 0, -0.4, **_bump(0.45)),
           *_spine(0.6, **_bump(0.45)), *_both(16, 1, -0.7, **_bump(0.45)),
           *_both(18, 1, -0.9, **_bump(0.45)))
_JUMP = (*_legs(-1.1, 1.5, 0.35, **_bump(0.2, 0.2)), *_legs(0.0, 0.0, -0.45, **_bump(0.2, 0.6)),
         *_both(16, 1, 0.5, **_bump(0.2, 0.2)), *_both(16, 2, 2.0, **_bump(0.25, 0.6)),
         *_spine(0.4, **_bump(0.2, 0.2)))

MOTIONS: dict[str, Motion] = {m.name: m for m in (
    Motion("walk", _gait(0.45, 0.3, 0.35, -0.35, 0.03), 0.9),
    Motion("run", _gait(0.65, 0.6, 0.6, -1.4, 0.25), 1.4),
    Motion("stand", _STAND, 0.2), Motion("squat", _SQUAT, 0.4), Motion("sit", _SIT, 0.25),
    Motion("reach", _REACH, 0.35), Motion("bend", _BEND, 0.3), Motion("kick", _KICK, 0.5),
    Motion("wave", _WAVE, 1.5), Motion("throw", _THROW, 0.6), Motion("crouch", _CROUCH, 0.25),
    Motion("jump", _JUMP, 0.7),
)}


@dataclass(frozen=True)
class MotionGroup:
    """Motions drawn uniformly, at a gain drawn from `gain`, by a share `p` of the people."""

    motions: tuple[str, ...]
    gain: tuple[float, float]
    p: float = 1.0


@dataclass(frozen=True)
class _Style:
    motion: Motion
    gains: np.ndarray  # (C,) per curve
    shifts: np.ndarray  # (C,) phase shift per curve
    mirror: bool
    speed: float  # cycles per frame

    def offsets(self, phase: np.ndarray) -> np.ndarray:
        """(T, 21, 3) Euler offsets from the rest pose at the phases (T,)."""
        out = np.zeros((len(phase), 21, 3))
        for curve, gain, shift in zip(self.motion.curves, self.gains, self.shifts):
            out[:, curve.joint - 1, curve.axis] += gain * curve(phase + shift)
        return out[:, MIRROR_JOINTS] * (1.0, -1.0, -1.0) if self.mirror else out


def _style(rng: np.random.Generator, groups: tuple[MotionGroup, ...]) -> _Style:
    p = np.array([g.p for g in groups])
    group = groups[int(rng.choice(len(groups), p=p / p.sum()))]
    motion = MOTIONS[group.motions[int(rng.integers(len(group.motions)))]]
    c = len(motion.curves)
    gains = rng.uniform(*group.gain) * rng.normal(1.0, CURVE_GAIN_SD, c)
    return _Style(motion, gains, rng.normal(0.0, CURVE_PHASE_SD, c), bool(rng.uniform() < 0.5),
                  motion.cycles_per_s * rng.uniform(0.7, 1.3) / FPS)


def _finish(rng: np.random.Generator, offsets: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Rest + offsets + a static posture offset + `noise`, clipped to the joint limits."""
    posture = rng.normal(0.0, POSTURE_SD, (21, 3)) * _RANGE
    return np.clip(REST + offsets + posture + noise, LIMITS_LOW, LIMITS_HIGH)


def image_euler(rng: np.random.Generator, n: int, groups: tuple[MotionGroup, ...]
                ) -> np.ndarray:
    """(n, 21, 3) intrinsic XYZ Euler angles: n people, each at a random phase of a motion."""
    out = np.empty((n, 21, 3))
    for i in range(n):
        style = _style(rng, groups)
        offsets = style.offsets(rng.uniform(0.0, 1.0, 1))[0]
        out[i] = _finish(rng, offsets, rng.normal(0.0, FRAME_SD, (21, 3)) * _RANGE)
    return out


def sequence_euler(rng: np.random.Generator, n_frames: int, groups: tuple[MotionGroup, ...]
                   ) -> np.ndarray:
    """(n_frames, 21, 3) Euler angles of one person: the phase advances at the person's speed,
    the motion may cross-fade once into another, the noise is smooth over frames."""
    frames = np.arange(n_frames)
    first = _style(rng, groups)
    offsets = first.offsets(rng.uniform() + first.speed * frames)
    if rng.uniform() < SWITCH_P:
        second = _style(rng, groups)
        cut = rng.uniform(0.25, 0.75) * n_frames
        w = np.clip((frames - cut) / CROSSFADE_FRAMES + 0.5, 0.0, 1.0)[:, None, None]
        offsets = (1 - w) * offsets + w * second.offsets(rng.uniform() + second.speed * frames)
    keys = np.arange(0, n_frames + NOISE_KEY_FRAMES, NOISE_KEY_FRAMES)
    key_noise = rng.normal(0.0, FRAME_SD, (len(keys), 63)) * _RANGE.reshape(63)
    noise = np.stack([np.interp(frames, keys, key_noise[:, k]) for k in range(63)], 1)
    return _finish(rng, offsets, noise.reshape(n_frames, 21, 3))


def euler_to_axis_angle(euler: np.ndarray) -> np.ndarray:
    """(..., 21, 3) axis-angle of intrinsic XYZ Euler angles."""
    flat = Rotation.from_euler("XYZ", euler.reshape(-1, 3)).as_rotvec()
    return flat.reshape(euler.shape)


class PoseModel:
    """The body poses of one split of the world (`synthetic.poses` in pipelines.yaml):
    "motions" (this module) or "independent" (Euler angles drawn per joint, the generator before
    the motions; its random stream is unchanged, so old worlds are reproduced bit for bit)."""

    def __init__(self, kind: str, groups: tuple[MotionGroup, ...] = ()) -> None:
        self.kind, self.groups = kind, groups

    def images(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """(n, 21, 3) axis-angle poses of n people in one image."""
        if self.kind == "independent":
            return sample_body_pose(rng, n)
        return euler_to_axis_angle(image_euler(rng, n, self.groups))

    def sequence(self, rng: np.random.Generator, n_frames: int) -> np.ndarray:
        """(n_frames, 21, 3) axis-angle poses of one person over consecutive frames."""
        if self.kind == "independent":  # slerp through random key poses every 12 frames
            return interpolate_poses(sample_body_pose(rng, max(2, n_frames // 12)), n_frames)
        return euler_to_axis_angle(sequence_euler(rng, n_frames, self.groups))


def pose_models(cfg: Mapping) -> dict[str, PoseModel]:
    """{"train": …, "test": …} from the `synthetic` section (keys `poses`, `motions`)."""
    kind = cfg["poses"]
    if kind not in POSE_KINDS:
        raise ConfigError(f"synthetic.poses: {kind!r} is not one of {', '.join(POSE_KINDS)}")
    models = {}
    for split in MOTION_SPLITS:
        groups = []
        for i, group in enumerate(cfg["motions"][split]):
            unknown = sorted(set(group["motions"]) - set(MOTIONS))
            if unknown:
                raise ConfigError(f"synthetic.motions.{split}[{i}]: unknown motion(s) "
                                  f"{', '.join(unknown)} (known: {', '.join(MOTIONS)})")
            groups.append(MotionGroup(tuple(group["motions"]), tuple(group["gain"]),
                                      float(group.get("p", 1.0))))
        models[split] = PoseModel(kind, tuple(groups))
    return models


def default_pose_models() -> dict[str, PoseModel]:
    """`pose_models` of pipelines.yaml's `synthetic` section."""
    return pose_models(load_config().synthetic)
