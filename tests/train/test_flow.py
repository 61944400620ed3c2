import math

import numpy as np
import pytest
import torch

from train.flow import (ATAN_SCALE, NICE, ConditionalFlow, CouplingBlock, DiagonalScaling,
                        Permutation, RealNVP, make_flow, soft_clamp)


def _randomize(module: torch.nn.Module, std: float = 0.3, seed: int = 0) -> None:
    """Replace every parameter by N(0, std²) so the blocks are far from the identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * std)


def _flow(dim: int, cond: int, blocks: int = 2, hidden: int = 16, std: float = 0.3,
          **kwargs) -> ConditionalFlow:
    flow = ConditionalFlow(dim, cond, blocks, hidden, **kwargs).double()
    _randomize(flow, std)
    return flow


@pytest.mark.parametrize("dim", [132, 7])
def test_round_trip(dim):
    flow = _flow(dim, 5, blocks=3, std=0.1)  # moderate shifts keep |z| ~ 10 (absolute 1e-10)
    x = torch.randn(6, dim, dtype=torch.float64) * 2
    c = torch.randn(6, 5, dtype=torch.float64)
    z, ld = flow(x, c)
    x_back, ld_back = flow.inverse(z, c)
    assert torch.allclose(x_back, x, atol=1e-10, rtol=0)
    assert torch.allclose(ld_back, -ld, atol=1e-10, rtol=0)
    x2, _ = flow.inverse(x, c)
    assert torch.allclose(flow(x2, c)[0], x, atol=1e-10, rtol=0)
    assert ld.abs().min() > 1e-3  # the blocks really scale


def test_odd_split_like_freia():
    block = CouplingBlock(7, 2, 8)
    assert (block.len1, block.len2) == (3, 4)
    assert block.subnet2[0].in_features == 4 + 2 and block.subnet2[6].out_features == 2 * 3
    assert block.subnet1[0].in_features == 3 + 2 and block.subnet1[6].out_features == 2 * 4


def _jacobian_logdet(fn, x):
    jac = torch.autograd.functional.jacobian(fn, x)
    return torch.linalg.slogdet(jac)[1]


def test_log_det_matches_autograd_jacobian():
    flow = _flow(6, 3, blocks=2, std=0.5)
    c = torch.randn(4, 3, dtype=torch.float64)
    x = torch.randn(4, 6, dtype=torch.float64)
    z, ld = flow(x, c)
    _, ld_inv = flow.inverse(z, c)
    for i in range(4):
        ci = c[i:i + 1]
        fwd = _jacobian_logdet(lambda v: flow(v[None], ci)[0][0], x[i])
        inv = _jacobian_logdet(lambda v: flow.inverse(v[None], ci)[0][0], z[i])
        assert torch.allclose(ld[i], fwd, atol=1e-10)
        assert torch.allclose(ld_inv[i], inv, atol=1e-10)
        assert torch.allclose(inv, -fwd, atol=1e-10)
        assert abs(fwd) > 1e-2


def test_log_prob_integrates_to_one_in_2d():
    flow = _flow(2, 3, blocks=3, hidden=16, std=0.6)
    c = torch.randn(1, 3, dtype=torch.float64)
    samples = flow.sample(c, 20000, generator=torch.Generator().manual_seed(1))[0]
    lo, hi = samples.min(0).values - 1.0, samples.max(0).values + 1.0
    n = 500
    gx = torch.linspace(lo[0].item(), hi[0].item(), n, dtype=torch.float64)
    gy = torch.linspace(lo[1].item(), hi[1].item(), n, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        logp = flow.log_prob(grid, c.expand(grid.shape[0], 3))
    cell = (gx[1] - gx[0]) * (gy[1] - gy[0])
    mass = (logp.exp().sum() * cell).item()
    assert abs(mass - 1.0) < 0.02
    # the density is far from the base Gaussian, so a wrong log-det would show
    base = -0.5 * (grid**2).sum(1) - math.log(2 * math.pi)
    assert (logp - base).abs().max() > 1.0


def test_log_prob_matches_monte_carlo_importance_sampling():
    """E_q[p(x) / q(x)] = 1 for a broad Gaussian proposal q (change of variables, 2D)."""
    flow = _flow(2, 3, blocks=2, hidden=16, std=0.4)
    c = torch.randn(1, 3, dtype=torch.float64)
    samples = flow.sample(c, 5000, generator=torch.Generator().manual_seed(2))[0]
    q = torch.distributions.MultivariateNormal(samples.mean(0), 4 * torch.cov(samples.T))
    x = q.sample((200000,))
    with torch.no_grad():
        ratio = (flow.log_prob(x, c.expand(x.shape[0], 3)) - q.log_prob(x)).exp()
    assert abs(ratio.mean().item() - 1.0) < 0.03


def test_soft_clamp_bounds():
    bound = 2.0 * ATAN_SCALE * math.pi / 2
    s = torch.tensor([-1e8, -1e6, 0.0, 1e6, 1e8], dtype=torch.float64)
    e = soft_clamp(s, 2.0)
    assert (e.abs() < bound).all() and e[2] == 0 and (e.abs()[[0, 4]] > bound - 1e-7).all()
    assert soft_clamp(torch.tensor([-math.inf, math.inf]), 2.0).abs().le(bound).all()
    one = soft_clamp(torch.tensor(1.0, dtype=torch.float64), 2.0)
    assert torch.allclose(one, torch.tensor(2.0 * 0.636 * math.pi / 4, dtype=torch.float64))
    block = CouplingBlock(6, 3, 8).double()
    with torch.no_grad():
        for net in (block.subnet1, block.subnet2):
            net[6].bias.fill_(1e8)  # huge raw s and t
    x = torch.randn(5, 6, dtype=torch.float64)
    y, ld = block(x, torch.randn(5, 3, dtype=torch.float64))
    assert torch.isfinite(y).all()
    assert (ld.abs() < 6 * bound).all() and (ld > 6 * bound * 0.99).all()


def test_state_dict_layout_and_permutations():
    flow = ConditionalFlow(dim=132, cond_dim=10, blocks=3, hidden=8)
    expected = []
    for k in range(3):
        for sub in ("subnet1", "subnet2"):
            for layer in (0, 3, 6):
                expected += [f"module_list.{2 * k}.{sub}.{layer}.weight",
                             f"module_list.{2 * k}.{sub}.{layer}.bias"]
        expected += [f"module_list.{2 * k + 1}.perm", f"module_list.{2 * k + 1}.perm_inv"]
    state = flow.state_dict()
    assert sorted(state) == sorted(expected)
    saved = np.random.get_state()
    try:
        for k in range(3):
            perm = state[f"module_list.{2 * k + 1}.perm"]
            perm_inv = state[f"module_list.{2 * k + 1}.perm_inv"]
            assert perm.dtype == perm_inv.dtype == torch.int64
            ours = np.random.RandomState(k).permutation(132)
            np.random.seed(k)
            legacy = np.random.permutation(132)  # what FrEIA's PermuteRandom(seed=k) does
            assert np.array_equal(ours, legacy)
            assert np.array_equal(perm.numpy(), ours)
            assert torch.equal(perm[perm_inv], torch.arange(132))
    finally:
        np.random.set_state(saved)
    # building a flow leaves numpy's global stream alone
    before = np.random.get_state()[1].copy()
    Permutation(132, seed=5)
    assert np.array_equal(np.random.get_state()[1], before)
    # a state_dict loads back into a fresh flow
    other = ConditionalFlow(dim=132, cond_dim=10, blocks=3, hidden=8)
    other.load_state_dict(state)


def test_permutation_semantics():
    perm = Permutation(5, seed=3)
    x = torch.arange(10.0).reshape(2, 5)
    y, ld = perm(x)
    assert torch.equal(y, x[:, perm.perm]) and torch.equal(ld, torch.zeros(2))
    assert torch.equal(perm(y, rev=True)[0], x)


def test_mode_and_sampling():
    flow = _flow(8, 4, blocks=2)
    c = torch.randn(3, 4, dtype=torch.float64)
    mode = flow.mode(c)
    assert mode.shape == (3, 8)
    assert torch.allclose(mode, flow.inverse(torch.zeros(3, 8, dtype=torch.float64), c)[0],
                          atol=1e-12, rtol=0)
    both = flow.sample_with_mode(c, 5, generator=torch.Generator().manual_seed(7))
    assert both.shape == (3, 6, 8)
    assert torch.allclose(both[:, 0], mode, atol=1e-12, rtol=0)
    a = flow.sample(c, 5, generator=torch.Generator().manual_seed(7))
    b = flow.sample(c, 5, generator=torch.Generator().manual_seed(7))
    assert a.shape == (3, 5, 8) and torch.equal(a, b)
    assert torch.allclose(both[:, 1:], a, atol=1e-12, rtol=0)  # same latents after the mode
    assert not torch.equal(a, flow.sample(c, 5, generator=torch.Generator().manual_seed(8)))
    # sample i of condition b decodes latent i with condition b
    z = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    x1, _ = flow.inverse(z[1], c[1:2].expand(5, 4))
    assert torch.allclose(a[1], x1, atol=1e-12, rtol=0)


def test_dtype_follows_condition_and_samples_are_differentiable():
    flow = ConditionalFlow(dim=6, cond_dim=3, blocks=2, hidden=8)
    c = torch.randn(2, 3)
    x = flow.sample_with_mode(c, 4)
    assert x.dtype == torch.float32 and x.shape == (2, 5, 6)
    x.sum().backward()
    assert flow.module_list[0].subnet1[0].weight.grad is not None


def test_nice_log_det_is_its_constant_scaling():
    """NICE: additive couplings (log-det 0) and the diagonal scaling, whose Σ s is the whole
    log-det, the same for every input and condition; checked against autograd."""
    flow = _flow(6, 3, blocks=2, volume_preserving=True)
    assert flow.module_list[0].subnet1[6].out_features == 3
    scaling = flow.module_list[-1]
    assert isinstance(scaling, DiagonalScaling) and len(flow.module_list) == 5
    x = torch.randn(4, 6, dtype=torch.float64)
    c = torch.randn(4, 3, dtype=torch.float64)
    z, ld = flow(x, c)
    expected = scaling.log_scale.sum().detach().expand(4)
    assert expected.abs().min() > 0.01  # _randomize gave the scaling a non-trivial value
    torch.testing.assert_close(ld, expected, rtol=0, atol=1e-12)
    assert torch.allclose(flow.inverse(z, c)[0], x, atol=1e-12, rtol=0)
    for i in range(2):
        jac_logdet = _jacobian_logdet(lambda v: flow(v[None], c[i:i + 1])[0][0], x[i])
        assert abs(jac_logdet - float(expected[0])) < 1e-10
    assert torch.equal(flow.module_list[0](x, c)[1], torch.zeros(4, dtype=torch.float64))


def test_initial_last_layer_is_scaled():
    torch.manual_seed(0)
    block = CouplingBlock(132, 979, 1024)
    bound = 1 / math.sqrt(1024)  # PyTorch's default uniform bound for fan_in 1024
    w = block.subnet1[6].weight
    assert w.abs().max() <= 0.01 * bound and w.abs().max() > 0.005 * bound
    assert block.subnet1[3].weight.abs().max() > 0.5 * bound


def test_paper_configuration_parameter_count():
    flow = ConditionalFlow(dim=132, cond_dim=979, blocks=8, hidden=1024)
    subnet = (66 + 979) * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 132 + 132
    assert sum(p.numel() for p in flow.parameters()) == subnet * 2 * 8
    assert sum(b.numel() for b in flow.buffers()) == 8 * 2 * 132


def test_coupling_names_build_the_papers_flows_with_one_key_layout():
    """`model.coupling`: realnvp is the affine flow, nice the volume-preserving one (additive
    couplings + a diagonal scaling); both keep FrEIA's key layout, an unknown name is refused."""
    realnvp, nice = (make_flow(name, 6, 3, 2, 8, 2.0, 0.0) for name in ("realnvp", "nice"))
    assert type(realnvp) is RealNVP and type(nice) is NICE
    assert realnvp.state_dict().keys() == ConditionalFlow(6, 3, 2, 8).state_dict().keys()
    assert nice.state_dict().keys() == ConditionalFlow(
        6, 3, 2, 8, volume_preserving=True).state_dict().keys()
    assert isinstance(nice.module_list[-1], DiagonalScaling)
    assert not any(isinstance(m, DiagonalScaling) for m in realnvp.module_list)
    # additive couplings: their subnets output t only (3 entries), the affine ones [s | t]
    assert nice.module_list[0].subnet1[6].out_features == 3
    assert realnvp.module_list[0].subnet1[6].out_features == 6
    with pytest.raises(ValueError, match="model.coupling.*glow"):
        make_flow("glow", 6, 3, 2, 8, 2.0, 0.0)


def _concatenated_inverse(flow: ConditionalFlow, z: torch.Tensor,
                          c_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Oracle: the inverse with every subnet fed [u, c] concatenated (one c row per x row)."""
    log_det = z.new_zeros(z.shape[0])
    for module in reversed(flow.module_list):
        if not isinstance(module, CouplingBlock):
            z, ld = module(z, rev=True)
            log_det = log_det + ld
            continue
        y1, y2 = torch.split(z, [module.len1, module.len2], dim=1)
        a1 = module.subnet1(torch.cat([y1, c_rows], 1))
        s1, t1 = soft_clamp(a1[:, :module.len2], module.clamp), a1[:, module.len2:]
        x2 = (y2 - t1) * torch.exp(-s1)
        a2 = module.subnet2(torch.cat([x2, c_rows], 1))
        s2, t2 = soft_clamp(a2[:, :module.len1], module.clamp), a2[:, module.len1:]
        x1 = (y1 - t2) * torch.exp(-s2)
        z = torch.cat([x1, x2], 1)
        log_det = log_det - s1.sum(1) - s2.sum(1)
    return z, log_det


def test_per_image_condition_matches_the_concatenated_form():
    """One condition row per image, projected once and broadcast over its m hypotheses, gives
    the subnets' concatenated [u, c] result (float32, 1e-5), values and gradients alike."""
    torch.manual_seed(0)
    flow = ConditionalFlow(dim=132, cond_dim=195, blocks=3, hidden=64)
    _randomize(flow, std=0.05)
    b, m = 3, 5
    c = torch.randn(b, 195, requires_grad=True)
    z = torch.randn(b * m, 132)
    x, ld = flow.inverse(z, c)
    x_ref, ld_ref = _concatenated_inverse(flow, z, c.repeat_interleave(m, 0))
    assert ld_ref.abs().max() > 0.5  # the blocks really scale
    torch.testing.assert_close(x, x_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ld, ld_ref, atol=1e-5, rtol=1e-5)
    # a condition given once per row is the same flow
    x_rows, _ = flow.inverse(z, c.repeat_interleave(m, 0))
    torch.testing.assert_close(x, x_rows, atol=1e-5, rtol=1e-5)
    # rows b·m … b·m + m − 1 belong to condition b: another grouping gives another result
    assert not torch.allclose(x, flow.inverse(z, c.repeat(m, 1))[0], atol=1e-3)
    weight = flow.module_list[0].subnet1[0].weight
    g = torch.randn_like(x)
    grads = torch.autograd.grad((x * g).sum() + ld.sum(), (c, weight))
    grads_ref = torch.autograd.grad((x_ref * g).sum() + ld_ref.sum(), (c, weight))
    for ours, ref in zip(grads, grads_ref):
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)
    # the sampling path uses it: sample i of image b decodes latent i with condition b
    zs = torch.randn(b, m, 132, generator=torch.Generator().manual_seed(3))
    xs = flow.sample(c, m, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(xs.flatten(0, 1),
                               _concatenated_inverse(flow, zs.flatten(0, 1),
                                                     c.repeat_interleave(m, 0))[0],
                               atol=1e-5, rtol=1e-5)


def test_per_image_condition_log_det_matches_autograd():
    flow = _flow(6, 3, blocks=2, std=0.5)
    b, m = 2, 3
    c = torch.randn(b, 3, dtype=torch.float64)
    z = torch.randn(b * m, 6, dtype=torch.float64)
    x, ld = flow.inverse(z, c)
    for r in range(b * m):
        ci = c[r // m:r // m + 1]
        assert torch.allclose(ld[r], _jacobian_logdet(lambda v: flow.inverse(v[None], ci)[0][0],
                                                      z[r]), atol=1e-10)
        assert torch.allclose(flow(x[r:r + 1], ci)[0][0], z[r], atol=1e-10)
    assert ld.abs().min() > 1e-2


def test_condition_rows_must_divide_the_rows():
    flow = _flow(6, 3)
    with pytest.raises(ValueError, match="2 conditions for 5 rows"):
        flow.inverse(torch.zeros(5, 6, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64))
