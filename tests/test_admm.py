import pytest
import torch

from admm_pruning.sparsity.admm import ADMMSchedule, ADMMState, converged
from admm_pruning.sparsity.projections import project_topk


def test_initial_state_is_projected_w_and_zero_u():
    w = torch.randn(20, 10)
    s = ADMMState({"fc": w}, {"fc": 0.1}, ADMMSchedule(rho=1e-3))
    assert torch.equal(s.z("fc"), project_topk(w, 0.1))
    assert int((s.z("fc") != 0).sum()) == 20
    assert torch.equal(s.u("fc"), torch.zeros_like(w))
    assert int(s.iteration) == 0


def test_penalty_is_half_rho_times_the_squared_frobenius_norm():
    w = torch.zeros(2, 2)
    s = ADMMState({"fc": w}, {"fc": 0.5}, ADMMSchedule(rho=0.1))
    s.u("fc").fill_(0.0)
    w = torch.full((2, 2), 3.0)  # Z = 0 (projection of zeros), U = 0: ||W - Z + U||^2 = 4 * 9
    assert s.penalty({"fc": w}).item() == pytest.approx(0.5 * 0.1 * 36.0)
    # squared: doubling the residual quadruples the penalty (an unsquared norm would double it)
    assert s.penalty({"fc": 2 * w}).item() == pytest.approx(4 * s.penalty({"fc": w}).item())


def test_in_place_gradient_equals_autograd_of_the_penalty():
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(8, 6, generator=g)
    s = ADMMState({"fc": w0}, {"fc": 0.25}, ADMMSchedule(rho=0.37, rho_scale=0.5))
    s.u("fc").copy_(torch.randn(8, 6, generator=g))
    w = (w0 + 0.1 * torch.randn(8, 6, generator=g)).requires_grad_()
    s.penalty({"fc": w}).backward()
    expected = w.grad.clone()
    w.grad = torch.zeros_like(w)
    s.add_penalty_grad_({"fc": (w, None)})
    assert torch.allclose(w.grad, expected, atol=1e-6)
    assert torch.allclose(expected, 0.37 * (w - s.z("fc") + s.u("fc")).detach(), atol=1e-6)
    # a masked layer gets no penalty gradient on pruned entries
    mask = torch.rand(8, 6, generator=g) > 0.5
    w.grad = torch.zeros_like(w)
    s.add_penalty_grad_({"fc": (w, mask)})
    assert torch.count_nonzero(w.grad[~mask]) == 0


def test_rho_schedule_multiplies_each_update_and_respects_max():
    s = ADMMState({"fc": torch.randn(4, 4)}, {"fc": 0.5},
                  ADMMSchedule(rho=1e-3, rho_multiplier=1.3, rho_max=1.5e-3))
    s.update({"fc": torch.randn(4, 4)})
    assert s.rho.item() == pytest.approx(1.3e-3)
    s.update({"fc": torch.randn(4, 4)})
    assert s.rho.item() == pytest.approx(1.5e-3)
    assert int(s.iteration) == 2


def test_admm_solves_sparse_least_squares_with_a_known_answer():
    """min 1/2 ||A x - b||^2 s.t. card(x) <= k with orthonormal A: the answer is the top-k of A^T b.

    The W-step is done with gradient descent on f + the module's penalty, as in training.
    """
    g = torch.Generator().manual_seed(0)
    n, m, k = 20, 40, 4
    a, _ = torch.linalg.qr(torch.randn(m, n, generator=g))
    c = torch.randn(n, generator=g) * 3
    b = a @ c
    x = torch.zeros(n, requires_grad=True)
    s = ADMMState({"x": x}, {"x": k / n}, ADMMSchedule(rho=1.0))
    opt = torch.optim.SGD([x], lr=0.2)
    for _ in range(40):
        for _ in range(100):  # W-step
            opt.zero_grad()
            loss = 0.5 * (a @ x - b).pow(2).sum() + s.penalty({"x": x})
            loss.backward()
            opt.step()
        res = s.update({"x": x})
    answer = project_topk(c, k / n)
    assert torch.allclose(s.z("x"), answer, atol=1e-4)
    assert torch.allclose(x.detach(), answer, atol=1e-3)
    # fixed point: U = -grad f(Z) / rho = A^T b - Z
    assert torch.allclose(s.u("x"), c - answer, atol=1e-3)
    assert res["primal"]["x"] < 1e-6 and res["dual"]["x"] < 1e-6


def test_one_update_projects_w_plus_u_and_steps_u_with_the_new_z():
    """Hand-worked: W = [3, 1, -2, 0.5], U = [-2.5, 1.5, 0, 0], k = 2. W + U = [0.5, 2.5, -2, 0.5], so
    Z' = Proj(W + U) = [0, 2.5, -2, 0], where Proj(W) would give [3, 0, -2, 0]; and
    U' = U + W - Z' = [0.5, 0, 0, 0.5], where the old Z = [3, 1, 0, 0] would give [-2.5, 1.5, -2, 0.5]."""
    w0 = torch.tensor([[3.0, 1.0, 0.0, 0.0]])
    s = ADMMState({"x": w0}, {"x": 0.5}, ADMMSchedule(rho=1.0))
    assert s.z("x").tolist() == [[3.0, 1.0, 0.0, 0.0]]
    s.u("x").copy_(torch.tensor([[-2.5, 1.5, 0.0, 0.0]]))
    w = torch.tensor([[3.0, 1.0, -2.0, 0.5]])
    res = s.update({"x": w})
    assert s.z("x").tolist() == [[0.0, 2.5, -2.0, 0.0]]
    assert s.u("x").tolist() == [[0.5, 0.0, 0.0, 0.5]]
    assert res["primal"]["x"] == pytest.approx(3.0 ** 2 + 1.5 ** 2 + 0.5 ** 2)  # ||W - Z'||^2
    assert res["dual"]["x"] == pytest.approx(3.0 ** 2 + 1.5 ** 2 + 2.0 ** 2)  # ||Z' - Z||^2


@pytest.mark.parametrize("primal, dual, eps, stop", [
    ({"a": 1e-5, "b": 1e-5}, {"a": 1e-5, "b": 1e-5}, 1e-4, True),
    ({"a": 1e-5, "b": 1e-3}, {"a": 1e-5, "b": 1e-5}, 1e-4, False),   # one layer's primal above: go on
    ({"a": 1e-5, "b": 1e-5}, {"a": 1e-5, "b": 1e-3}, 1e-4, False),   # primal met, dual not: go on
    ({"a": 1e-4, "b": 1e-4}, {"a": 1e-4, "b": 1e-4}, 1e-4, True),    # at eps counts
    ({"a": 0.0}, {"a": 0.0}, None, False),                            # no eps: run every iteration
])
def test_stop_needs_every_layers_primal_and_dual_residual_within_eps(primal, dual, eps, stop):
    assert converged({"primal": primal, "dual": dual}, eps) is stop


def test_the_cached_step_terms_follow_every_update_and_a_restored_checkpoint():
    """The penalty gradient caches c and c * (U - Z) between Z/U updates: after an update, and
    after a checkpoint restores other Z, U and rho, it must equal the formula again."""
    g = torch.Generator().manual_seed(1)
    sched = ADMMSchedule(rho=0.2, rho_scale=0.5, rho_multiplier=1.5)
    s = ADMMState({"fc": torch.randn(8, 6, generator=g)}, {"fc": 0.25}, sched)
    w = torch.randn(8, 6, generator=g).requires_grad_()

    def penalty_grad(state: ADMMState) -> torch.Tensor:
        w.grad = torch.zeros_like(w)
        state.add_penalty_grad_({"fc": (w, None)})
        return w.grad.clone()

    def formula(state: ADMMState) -> torch.Tensor:
        return float(state.rho) * (w - state.z("fc") + state.u("fc")).detach()

    assert torch.allclose(penalty_grad(s), formula(s), atol=1e-6)
    s.update({"fc": torch.randn(8, 6, generator=g)})  # new Z, U, and rho x1.5
    assert torch.allclose(penalty_grad(s), formula(s), atol=1e-6)
    other = ADMMState({"fc": torch.randn(8, 6, generator=g)}, {"fc": 0.25}, sched)
    other.update({"fc": torch.randn(8, 6, generator=g)})
    s.load_state_dict(other.state_dict())
    assert torch.allclose(penalty_grad(s), formula(other), atol=1e-6)
