"""The conditional normalizing flow over the 132-D pose (docs/method.md §3, paper Sec. 3 and 4.1).

Eight GLOW-style affine coupling blocks, each followed by a fixed random permutation, map a pose
x to a latent z with a standard normal base; samples are x = f⁻¹(z, c), the mode is f⁻¹(0, c).
The blocks are written here, not imported from FrEIA: a small, exact block whose state_dict
matches the reference release's FrEIA GraphINN checkpoint (docs/formats.md, "The reference
release's own files") key for key.

Semantics follow FrEIA's `GLOWCouplingBlock` and `PermuteRandom(seed=k)` exactly, including the
literal 0.636 of its soft clamp and its order of operations. For an odd `dim` the first half
has `dim // 2` entries, as in older FrEIA releases; current FrEIA (`split_len=0.5`) takes
`round(dim / 2)`, which rounds half to even (7 → 4, 5 → 2). All agree on every even `dim`,
including the paper's 132.

`model.coupling` names the flow by its paper: `RealNVP` (affine couplings, the paper's model) or
`NICE` (volume-preserving, ProHMR's rows of Table 3); both are a `ConditionalFlow` with the same
state_dict layout, built by `make_flow`.

Initialisation: PyTorch's default for every Linear, with the weights of each subnet's last
Linear scaled by 0.01, so every block starts close to a pure shift (s ≈ 0) and training starts
stable; the biases keep their default.

Per-image condition: a subnet's first Linear on [u, c] is evaluated as W_u·u + (W_c·c + b),
the two column blocks of the same weight, so the flow accepts one condition row per image for
m rows of x each (rows b·m … b·m + m − 1 share condition b) and projects the condition once per
image instead of once per hypothesis (docs/diagnosis.md §4). Mathematically the concatenated
form; only the floating-point summation order differs.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

ATAN_SCALE = 0.636  # FrEIA's literal stand-in for 2/π, kept for bit-compatibility
LAST_LAYER_GAIN = 0.01  # scale of the subnets' last-layer weights at initialisation


def soft_clamp(s: Tensor, clamp: float) -> Tensor:
    """FrEIA's "ATAN" soft clamp e(s) = clamp · 0.636 · atan(s); |e(s)| < clamp · 0.636 · π/2."""
    return clamp * (ATAN_SCALE * torch.atan(s))


def _subnet(dim_in: int, dim_out: int, hidden: int, dropout: float) -> nn.Sequential:
    """Linear → ReLU → Dropout → Linear → ReLU → Dropout → Linear (Linear at indices 0, 3, 6)."""
    net = nn.Sequential(
        nn.Linear(dim_in, hidden), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(hidden, dim_out),
    )
    with torch.no_grad():
        net[6].weight.mul_(LAST_LAYER_GAIN)
    return net


def _subnet_apply(subnet: nn.Sequential, u: Tensor, c: Tensor | None) -> Tensor:
    """subnet([u, c]) for u (B·m, n) and c (B, cond) shared by m consecutive rows (or None).

    The first Linear is split by columns: W[:, :n]·u + (W[:, n:]·c + b), the condition's part
    computed once per row of c and broadcast over its m rows of u.
    """
    first = subnet[0]
    if c is None:
        h = first(u)
    else:
        # one split (its backward is a concatenation, no zero-filled gradient per slice)
        w_u, w_c = first.weight.split([u.shape[1], c.shape[1]], dim=1)
        shared = F.linear(c, w_c, first.bias)  # (B, hidden)
        h = (F.linear(u, w_u).unflatten(0, (c.shape[0], -1)) + shared[:, None]).flatten(0, 1)
    for layer in subnet[1:]:
        h = layer(h)
    return h


def _rows_per_condition(x: Tensor, c: Tensor | None) -> None:
    """Refuse a condition whose rows do not divide the rows of x evenly."""
    if c is not None and (c.shape[0] == 0 or x.shape[0] % c.shape[0]):
        raise ValueError(f"the flow needs B conditions for B·m rows of x, got {c.shape[0]} "
                         f"conditions for {x.shape[0]} rows")


class CouplingBlock(nn.Module):
    """Conditional two-sided affine coupling, FrEIA `GLOWCouplingBlock` semantics
    (docs/method.md §3).

    x = [x1, x2] (x1 = first dim // 2 entries); (s2, t2) = subnet2([x2, c]),
    y1 = x1 · exp(e(s2)) + t2; (s1, t1) = subnet1([y1, c]), y2 = x2 · exp(e(s1)) + t1; each subnet
    outputs [s | t] and log|det| = Σ e(s2) + Σ e(s1). `volume_preserving=True` gives NICE-style
    additive coupling (s ≡ 0, subnets output t only) for the paper's ablation (Table 3).
    """

    def __init__(self, dim: int, cond_dim: int, hidden: int, clamp: float = 2.0,
                 dropout: float = 0.0, volume_preserving: bool = False) -> None:
        super().__init__()
        if dim < 2:
            raise ValueError(f"coupling needs dim >= 2, got {dim}")
        self.len1, self.len2 = dim // 2, dim - dim // 2
        self.clamp = clamp
        self.volume_preserving = volume_preserving
        per_dim = 1 if volume_preserving else 2
        self.subnet1 = _subnet(self.len1 + cond_dim, per_dim * self.len2, hidden, dropout)
        self.subnet2 = _subnet(self.len2 + cond_dim, per_dim * self.len1, hidden, dropout)

    def _coefficients(self, subnet: nn.Sequential, u: Tensor, c: Tensor | None,
                      n: int) -> tuple[Tensor | None, Tensor]:
        """(e(s), t) for a half of `n` entries from the passive half u; s is None when additive."""
        a = _subnet_apply(subnet, u, c)
        if self.volume_preserving:
            return None, a
        return soft_clamp(a[:, :n], self.clamp), a[:, n:]

    def forward(self, x: Tensor, c: Tensor | None = None,
                rev: bool = False) -> tuple[Tensor, Tensor]:
        """(y, log|det ∂y/∂x|) of shape ((R, dim), (R,)); `rev=True` applies the exact inverse.

        c: (R, cond_dim), or (B, cond_dim) shared by R / B consecutive rows of x each.
        """
        x1, x2 = torch.split(x, [self.len1, self.len2], dim=1)
        if not rev:
            s2, t2 = self._coefficients(self.subnet2, x2, c, self.len1)
            y1 = x1 + t2 if s2 is None else torch.exp(s2) * x1 + t2
            s1, t1 = self._coefficients(self.subnet1, y1, c, self.len2)
            y2 = x2 + t1 if s1 is None else torch.exp(s1) * x2 + t1
        else:  # x = [y1, y2] here: undo the second coupling first
            s1, t1 = self._coefficients(self.subnet1, x1, c, self.len2)
            y2 = x2 - t1 if s1 is None else (x2 - t1) * torch.exp(-s1)
            s2, t2 = self._coefficients(self.subnet2, y2, c, self.len1)
            y1 = x1 - t2 if s2 is None else (x1 - t2) * torch.exp(-s2)
        if self.volume_preserving:
            log_det = x.new_zeros(x.shape[0])
        else:
            log_det = torch.sum(s2, dim=1) + torch.sum(s1, dim=1)
            log_det = -log_det if rev else log_det
        return torch.cat((y1, y2), dim=1), log_det


class Permutation(nn.Module):
    """Fixed permutation, FrEIA `PermuteRandom(seed)`: `np.random.seed(seed)`,
    `np.random.permutation(dim)`, drawn from a private RandomState (the same numbers) so numpy's
    global state is left alone. Buffers `perm`, `perm_inv` (int64); log|det| = 0.
    """

    perm: Tensor
    perm_inv: Tensor

    def __init__(self, dim: int, seed: int) -> None:
        super().__init__()
        perm = np.random.RandomState(seed).permutation(dim)
        self.register_buffer("perm", torch.as_tensor(perm, dtype=torch.int64))
        self.register_buffer("perm_inv", torch.as_tensor(np.argsort(perm), dtype=torch.int64))

    def forward(self, x: Tensor, c: Tensor | None = None,
                rev: bool = False) -> tuple[Tensor, Tensor]:
        """(x[:, perm] or x[:, perm_inv] when `rev`, zeros (B,)); `c` is ignored."""
        return x[:, self.perm_inv if rev else self.perm], x.new_zeros(x.shape[0])


class DiagonalScaling(nn.Module):
    """NICE's last layer (Dinh et al. 2015, Sec. 3.3): z = x · exp(s) with a learned,
    input-independent s (dim,), log|det| = Σ s. The only volume change a NICE flow has: it can
    shrink or widen every dimension, but not per condition. Starts as the identity."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor, c: Tensor | None = None,
                rev: bool = False) -> tuple[Tensor, Tensor]:
        """(x · exp(±s), ±Σ s per row); `c` is ignored."""
        sign = -1.0 if rev else 1.0
        log_det = (sign * self.log_scale.sum()).expand(x.shape[0])
        return x * torch.exp(sign * self.log_scale), log_det


class ConditionalFlow(nn.Module):
    """p(x | c) with a N(0, I) base: blocks × (CouplingBlock, Permutation) (docs/method.md §3).

    `module_list` = [block_0, perm_0, block_1, perm_1, …], permutation k seeded with k, so the
    state_dict keys are FrEIA GraphINN's `module_list.{2k}.subnet{1,2}.{0,3,6}.{weight,bias}` and
    `module_list.{2k+1}.perm` / `.perm_inv` (docs/formats.md). `forward` maps x → z.
    `volume_preserving=True` is NICE (Table 3's ProHMR rows): additive couplings and NICE's
    diagonal scaling as the last module.
    """

    def __init__(self, dim: int = 132, cond_dim: int = 979, blocks: int = 8, hidden: int = 1024,
                 clamp: float = 2.0, dropout: float = 0.0,
                 volume_preserving: bool = False) -> None:
        super().__init__()
        self.dim = dim
        modules: list[nn.Module] = []
        for k in range(blocks):
            modules.append(CouplingBlock(dim, cond_dim, hidden, clamp, dropout, volume_preserving))
            modules.append(Permutation(dim, seed=k))
        if volume_preserving:
            modules.append(DiagonalScaling(dim))
        self.module_list = nn.ModuleList(modules)

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """z = f(x | c) and log|det ∂z/∂x|, shapes (R, dim), (R,); c (R, cond_dim) or one row
        per R / B consecutive rows of x (module docstring)."""
        _rows_per_condition(x, c)
        log_det = x.new_zeros(x.shape[0])
        for module in self.module_list:
            x, ld = module(x, c)
            log_det = log_det + ld
        return x, log_det

    def inverse(self, z: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x = f⁻¹(z | c) and log|det ∂x/∂z|, shapes (R, dim), (R,); c as in `forward`."""
        _rows_per_condition(z, c)
        log_det = z.new_zeros(z.shape[0])
        for module in reversed(self.module_list):
            z, ld = module(z, c, rev=True)
            log_det = log_det + ld
        return z, log_det

    def log_prob(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """log p(x | c) = log N(f(x); 0, I) + log|det ∂f/∂x| (paper Eq. 2), shape (B,)."""
        z, log_det = self(x, c)
        log_base = -0.5 * (z * z).sum(dim=1) - 0.5 * self.dim * math.log(2 * math.pi)
        return log_base + log_det

    def _latents(self, c: Tensor, n: int, generator: torch.Generator | None) -> Tensor:
        """z ~ N(0, I) of shape (B, n, dim) on c's device and dtype."""
        return torch.randn(c.shape[0], n, self.dim, generator=generator, device=c.device,
                           dtype=c.dtype)

    def _decode(self, z: Tensor, c: Tensor) -> Tensor:
        """f⁻¹ of latents z (B, m, dim) for conditions c (B, cond_dim): one (B·m) batched pass,
        each condition projected once for its m latents."""
        b, m, _ = z.shape
        x, _ = self.inverse(z.reshape(b * m, self.dim), c)
        return x.reshape(b, m, self.dim)

    def sample(self, c: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n samples per condition, (B, n, dim); differentiable w.r.t. the flow's parameters.

        `generator` (optional) must live on c's device.
        """
        return self._decode(self._latents(c, n, generator), c)

    def mode(self, c: Tensor) -> Tensor:
        """The sample at latent z = 0 (docs/method.md §3: the mode), (B, dim)."""
        z = c.new_zeros(c.shape[0], self.dim)
        return self.inverse(z, c)[0]

    def sample_with_mode(self, c: Tensor, n: int,
                         generator: torch.Generator | None = None) -> Tensor:
        """(B, 1 + n, dim): the mode first, then n samples, in one batched inverse pass."""
        z = self._latents(c, n, generator)
        z = torch.cat([z.new_zeros(c.shape[0], 1, self.dim), z], dim=1)
        return self._decode(z, c)


class RealNVP(ConditionalFlow):
    """The paper's flow (Sec. 4.1): affine (RealNVP/GLOW) couplings, `model.coupling: realnvp`."""

    def __init__(self, dim: int = 132, cond_dim: int = 979, blocks: int = 8, hidden: int = 1024,
                 clamp: float = 2.0, dropout: float = 0.0) -> None:
        super().__init__(dim, cond_dim, blocks, hidden, clamp, dropout, volume_preserving=False)


class NICE(ConditionalFlow):
    """ProHMR's volume-preserving flow of Table 3: additive couplings and a diagonal scaling,
    `model.coupling: nice`."""

    def __init__(self, dim: int = 132, cond_dim: int = 979, blocks: int = 8, hidden: int = 1024,
                 clamp: float = 2.0, dropout: float = 0.0) -> None:
        super().__init__(dim, cond_dim, blocks, hidden, clamp, dropout, volume_preserving=True)


COUPLINGS = {"realnvp": RealNVP, "nice": NICE}


def make_flow(coupling: str, dim: int, cond_dim: int, blocks: int, hidden: int, clamp: float,
              dropout: float) -> ConditionalFlow:
    """The flow named by `model.coupling` (realnvp | nice)."""
    if coupling not in COUPLINGS:
        raise ValueError(f"model.coupling must be one of {', '.join(COUPLINGS)}, got {coupling!r}")
    return COUPLINGS[coupling](dim, cond_dim, blocks, hidden, clamp, dropout)
