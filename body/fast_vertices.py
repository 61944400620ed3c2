"""Fast SMPL-X vertices for the body-pose-only hypotheses of the evaluation.

The evaluation skins 100 hypotheses of every test crop (and up to 1000 for the PVE-vs-N curve).
`smplx.lbs` does it with a (B, V, 4, 4) transform per vertex and a batched 4 × 4 matrix product
per vertex, and with every pose blend shape although the hands, jaw and eyes stay at identity
(docs/method.md §3), where their pose features are exactly zero. Written by hand because no
library offers the restricted form: the same shape blend and rigid transforms as `smplx.lbs` (its
own `batch_rigid_transform`), the rest joints through the regressor folded into the shape blend
(`body.fast_joints.rest_joint_basis`), the pose blend shapes of the posed joints only, and the
skinning as one weight product plus a per-vertex rotation, optionally for a subset of vertices.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from smplx.lbs import batch_rigid_transform
from torch import nn

from .fast_joints import rest_joint_basis, rest_joints


class FastVertices(nn.Module):
    """Vertices of an `smplx` SMPL-X *Layer* model (betas, zero expression) for the rotations of
    its first K joints, every other joint at identity; `vertex_ids` picks the vertices returned
    (default: all, in order). Bodies are skinned `chunk` at a time: the (chunk, 12, S) blended
    transforms then stay in the CPU's cache (32: 2.4× smplx's forward at 400 bodies, 1 thread)."""

    def __init__(self, model: nn.Module, vertex_ids: Sequence[int] | None = None,
                 chunk: int = 32) -> None:
        super().__init__()
        self.chunk = chunk
        ids = torch.arange(model.v_template.shape[0]) if vertex_ids is None else \
            torch.as_tensor(vertex_ids, dtype=torch.long)
        n_pose = model.posedirs.shape[0]
        self.register_buffer("parents", model.parents.clone())
        j_template, j_shapedirs = rest_joint_basis(model, range(len(model.parents)))
        self.register_buffer("j_template", j_template)
        self.register_buffer("j_shapedirs", j_shapedirs)
        # coordinate-major layouts, (…, 3, S): every elementwise step below runs along the
        # vertices, contiguous
        self.register_buffer("template_t", model.v_template[ids].T.contiguous())
        self.register_buffer("shapedirs_t", model.shapedirs[ids].permute(2, 1, 0).contiguous())
        # posedirs (P, V·3) → (P, 3·S); rows 9·(j − 1) … 9·j − 1 belong to joint j
        self.register_buffer("posedirs_t", model.posedirs.reshape(n_pose, -1, 3)[:, ids]
                             .transpose(1, 2).reshape(n_pose, -1).contiguous())
        # a vertex follows few joints: the skinning weights as a sparse (S, J) matrix
        self.register_buffer("weights", model.lbs_weights[ids].to_sparse_coo().coalesce())

    def forward(self, betas: torch.Tensor, rotmats: torch.Tensor) -> torch.Tensor:
        """(B, S, 3) vertices for betas (B, n_betas) and local rotations (B, K, 3, 3) of the
        first K joints (global orientation first)."""
        return torch.cat([self._skin(betas[i:i + self.chunk], rotmats[i:i + self.chunk])
                          for i in range(0, len(betas), self.chunk)]).transpose(1, 2)

    def _skin(self, betas: torch.Tensor, rotmats: torch.Tensor) -> torch.Tensor:
        """(B, 3, S) vertices of one chunk."""
        batch, n_posed = rotmats.shape[:2]
        n_joints = self.j_template.shape[0]
        rest = rest_joints(self.j_template, self.j_shapedirs, betas)
        eye = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
        full = eye.expand(batch, n_joints, 3, 3).clone()
        full[:, :n_posed] = rotmats
        _, transforms = batch_rigid_transform(full, rest, self.parents, dtype=rotmats.dtype)
        # joints ≥ K have a zero pose feature: only the posed joints' blend shapes contribute
        feature = (rotmats[:, 1:] - eye).reshape(batch, -1)
        shape = betas @ self.shapedirs_t[:betas.shape[1]].flatten(1)
        pose = feature @ self.posedirs_t[: feature.shape[1]]
        posed = (self.template_t.flatten() + shape + pose).view(batch, 3, -1)
        # blended rigid transforms [R | t] per vertex: one sparse (S, J) × (J, B · 12) product
        rigid = transforms[:, :, :3, :].permute(1, 0, 2, 3).reshape(n_joints, -1)
        blended = torch.sparse.mm(self.weights, rigid).T.reshape(batch, 3, 4, -1)
        return blended[:, :, 3] + blended[:, :, 0] * posed[:, None, 0] + \
            blended[:, :, 1] * posed[:, None, 1] + blended[:, :, 2] * posed[:, None, 2]
