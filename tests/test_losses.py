import pytest
import torch

from qbench.parts.losses import seed_grad_norms, td_loss


def grad_of(kind, error, delta=1.0):
    pred = torch.tensor([[error]], requires_grad=True)          # (K=1, B=1)
    td_loss(pred, torch.tensor([[0.0]]), kind, delta).sum().backward()
    return pred.grad.item()


@pytest.mark.parametrize("error", [0.3, -0.7])
def test_huber_equals_mse_inside_delta(error):
    assert grad_of("huber", error) == pytest.approx(grad_of("mse", error)) == pytest.approx(error)


@pytest.mark.parametrize("error,delta", [(3.0, 1.0), (-5.0, 1.0), (4.0, 2.0)])
def test_huber_gradient_is_clipped_to_delta_outside(error, delta):
    assert grad_of("mse", error, delta) == pytest.approx(error)
    assert grad_of("huber", error, delta) == pytest.approx(delta if error > 0 else -delta)


def test_losses_by_value():
    pred, target = torch.tensor([[0.5, 3.0]]), torch.zeros(1, 2)
    assert td_loss(pred, target, "mse").shape == (1,)
    assert td_loss(pred, target, "mse").item() == pytest.approx((0.125 + 4.5) / 2)
    assert td_loss(pred, target, "huber", 1.0).item() == pytest.approx((0.125 + 2.5) / 2)


def test_losses_are_a_mean_over_the_batch_of_each_seed():
    pred = torch.tensor([[0.5, 3.0], [1.0, -2.0]])              # (K=2, B=2): seed 1 has its own errors
    target = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(td_loss(pred, target, "mse"), torch.tensor([(0.125 + 4.5) / 2, (0.5 + 4.5) / 2]))
    torch.testing.assert_close(td_loss(pred, target, "huber", 1.0), torch.tensor([(0.125 + 2.5) / 2, (0.5 + 2.5) / 2]))


def test_gradient_norm_clipping():
    w = torch.nn.Parameter(torch.zeros(1, 2))                   # seed axis first, K = 1
    w.grad = torch.tensor([[3.0, 4.0]])
    torch.testing.assert_close(seed_grad_norms([w], 0.0), torch.tensor([5.0]))   # off: reports, leaves the gradient
    assert w.grad.tolist() == [[3.0, 4.0]]
    torch.testing.assert_close(seed_grad_norms([w], 1.0), torch.tensor([5.0]))   # on: reports the norm before clipping
    torch.testing.assert_close(w.grad, torch.tensor([[0.6, 0.8]]))


def test_gradient_norm_is_global_over_the_parameters_of_a_seed():
    w, b = torch.nn.Parameter(torch.zeros(1, 2, 1)), torch.nn.Parameter(torch.zeros(1, 1))
    w.grad, b.grad = torch.tensor([[[1.0], [2.0]]]), torch.tensor([[2.0]])   # sqrt(1 + 4 + 4) = 3
    torch.testing.assert_close(seed_grad_norms([w, b], 1.5), torch.tensor([3.0]))
    torch.testing.assert_close(w.grad, torch.tensor([[[0.5], [1.0]]]), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(b.grad, torch.tensor([[1.0]]), atol=1e-6, rtol=1e-6)


def test_each_seed_is_clipped_on_its_own():
    w = torch.nn.Parameter(torch.zeros(2, 2))
    w.grad = torch.tensor([[3.0, 4.0], [0.3, 0.4]])             # seed 0 norm 5 > 1, seed 1 norm 0.5 <= 1
    norms = seed_grad_norms([w], 1.0)
    torch.testing.assert_close(norms, torch.tensor([5.0, 0.5]))  # the norms before clipping
    torch.testing.assert_close(w.grad[0], torch.tensor([0.6, 0.8]))   # clipped to norm 1
    assert torch.equal(w.grad[1], torch.tensor([0.3, 0.4]))            # untouched: its coefficient is capped at 1
