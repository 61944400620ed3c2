"""Fast joint-only forward kinematics, exact with respect to `smplx`'s own forward.

The losses need a few joints (COCO-17 and the 24 2D-loss joints) for thousands of hypotheses per
step; `smplx` would skin all 10475 vertices for them. Written by hand because no library offers
it: skeleton joints come from the shape-dependent rest joints and the kinematic chain alone; a
vertex joint (nose, eyes, ears, …) is one vertex skinned exactly as `smplx.lbs` does it (shape
and pose blend shapes, then linear blend skinning) — over the few joints that move it.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def rest_joint_basis(model: nn.Module, joints: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The rest positions of `joints` as a linear function of the betas, the regressor folded
    into the shape blend (as `smplx.lbs` computes them from the shaped mesh): template (N, 3)
    and directions (N, 3, n_dirs)."""
    jreg = model.J_regressor[list(joints)]  # (N, V)
    return jreg @ model.v_template, torch.einsum("nv,vck->nck", jreg, model.shapedirs)


def rest_joints(template: torch.Tensor, dirs: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    """(B, N, 3) rest joints of `rest_joint_basis` for betas (B, n_betas ≤ n_dirs); expression
    directions beyond the betas stay at zero."""
    return template + torch.einsum("nck,bk->bnc", dirs[..., :betas.shape[1]], betas)


class FastJoints(nn.Module):
    """Selected output joints of an `smplx` SMPL/SMPL-X *Layer* model, without its vertices.

    `joint_ids` index the model's output joints: skeleton joints [0, J) and the 21 vertex joints
    [J, J + 21) (landmarks are not supported). Joints not posed by the caller stay at identity
    (flat hands, neutral face), as in the paper (docs/method.md §3).
    """

    def __init__(self, model: nn.Module, joint_ids: Sequence[int]) -> None:
        super().__init__()
        parents = model.parents.tolist()
        n_skel = len(parents)
        vertex_ids = model.vertex_joint_selector.extra_joints_idxs.tolist()
        if max(joint_ids) >= n_skel + len(vertex_ids):
            raise ValueError(f"joint ids must be < {n_skel + len(vertex_ids)} (skeleton and "
                             f"vertex joints); got {max(joint_ids)}")
        skel_out = [j for j in joint_ids if j < n_skel]
        verts = [vertex_ids[j - n_skel] for j in joint_ids if j >= n_skel]
        weights = model.lbs_weights[verts]  # (S, J)
        moving = set(skel_out) | set(torch.nonzero(weights.abs().sum(0)).flatten().tolist())
        needed = set()
        for j in moving:
            while j >= 0 and j not in needed:
                needed.add(j)
                j = parents[j]
        needed_sorted = sorted(needed)  # parents precede children in smplx trees
        local = {j: i for i, j in enumerate(needed_sorted)}
        self.n_skeleton = n_skel
        self.joints = needed_sorted
        self.parent_local = [local[parents[j]] if parents[j] >= 0 else -1 for j in needed_sorted]
        depth = [0] * len(needed_sorted)
        for i, p in enumerate(self.parent_local):
            depth[i] = depth[p] + 1 if p >= 0 else 0
        self.levels = [[i for i, d in enumerate(depth) if d == level]
                       for level in range(1, max(depth) + 1)]

        shapedirs = model.shapedirs  # (V, 3, n_betas); expression directions stay at zero
        j_template, j_shapedirs = rest_joint_basis(model, needed_sorted)
        self.register_buffer("j_template", j_template)
        self.register_buffer("j_shapedirs", j_shapedirs)
        self.register_buffer("v_template", model.v_template[verts])
        self.register_buffer("v_shapedirs", shapedirs[verts])
        n_pose = model.posedirs.shape[0]
        posedirs = model.posedirs.reshape(n_pose, -1, 3)[:, verts]  # (P, S, 3)
        self.register_buffer("v_posedirs", posedirs)
        self.register_buffer("v_weights", weights[:, needed_sorted])  # (S, N)
        self.register_buffer("out_skeleton", torch.tensor([local[j] for j in skel_out]))
        order = [("s", skel_out.index(j)) if j < n_skel else ("v", 0) for j in joint_ids]
        v_count = 0
        for k, (kind, _) in enumerate(order):
            if kind == "v":
                order[k] = ("v", v_count)
                v_count += 1
        n_s = len(skel_out)
        self.register_buffer("out_order", torch.tensor(
            [i if kind == "s" else n_s + i for kind, i in order]))

    def forward(self, betas: torch.Tensor, rotmats: torch.Tensor,
                transl: torch.Tensor | None = None) -> torch.Tensor:
        """Joints (B, len(joint_ids), 3) for betas (B, n_betas) and the local rotations
        (B, K, 3, 3) of the first K skeleton joints (the rest stay identity)."""
        batch, n_posed = rotmats.shape[:2]
        n_betas = betas.shape[1]
        eye = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
        rest = rest_joints(self.j_template, self.j_shapedirs, betas)
        rot = [rotmats[:, j] if j < n_posed else None for j in self.joints]
        g_rot, g_pos = [None] * len(self.joints), [None] * len(self.joints)
        g_rot[0] = rot[0] if rot[0] is not None else eye.expand(batch, 3, 3)
        g_pos[0] = rest[:, 0]
        for level in self.levels:
            par = [self.parent_local[i] for i in level]
            p_rot = torch.stack([g_rot[p] for p in par], 1)
            p_pos = torch.stack([g_pos[p] for p in par], 1)
            offset = rest[:, level] - rest[:, par]
            pos = p_pos + torch.einsum("blij,blj->bli", p_rot, offset)
            for k, i in enumerate(level):
                g_rot[i] = p_rot[:, k] if rot[i] is None else p_rot[:, k] @ rot[i]
                g_pos[i] = pos[:, k]
        g_rot, g_pos = torch.stack(g_rot, 1), torch.stack(g_pos, 1)
        out = [g_pos[:, self.out_skeleton]]
        if len(self.v_template):
            feature = (rotmats[:, 1:] - eye).reshape(batch, -1)  # joints ≥ K contribute zero
            shaped = self.v_template + torch.einsum("sck,bk->bsc",
                                                    self.v_shapedirs[..., :n_betas], betas)
            posed = shaped + torch.einsum("bp,psc->bsc", feature,
                                          self.v_posedirs[: feature.shape[1]])
            # blended rigid transforms A_j = [G_R, G_t − G_R·J_rest] (smplx.lbs)
            a_pos = g_pos - torch.einsum("bnij,bnj->bni", g_rot, rest)
            t_rot = torch.einsum("sn,bnij->bsij", self.v_weights, g_rot)
            t_pos = torch.einsum("sn,bni->bsi", self.v_weights, a_pos)
            out.append(torch.einsum("bsij,bsj->bsi", t_rot, posed) + t_pos)
        joints = torch.cat(out, 1)[:, self.out_order]
        return joints if transl is None else joints + transl[:, None]
