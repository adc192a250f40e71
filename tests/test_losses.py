import pytest
import torch

from qbench.parts.losses import global_grad_norm, td_loss


def grad_of(kind, error, delta=1.0):
    pred = torch.tensor([error], requires_grad=True)
    td_loss(pred, torch.tensor([0.0]), kind, delta).backward()
    return pred.grad.item()


@pytest.mark.parametrize("error", [0.3, -0.7])
def test_huber_equals_mse_inside_delta(error):
    assert grad_of("huber", error) == pytest.approx(grad_of("mse", error)) == pytest.approx(error)


@pytest.mark.parametrize("error,delta", [(3.0, 1.0), (-5.0, 1.0), (4.0, 2.0)])
def test_huber_gradient_is_clipped_to_delta_outside(error, delta):
    assert grad_of("mse", error, delta) == pytest.approx(error)
    assert grad_of("huber", error, delta) == pytest.approx(delta if error > 0 else -delta)


def test_losses_by_value():
    pred, target = torch.tensor([0.5, 3.0]), torch.zeros(2)
    assert td_loss(pred, target, "mse").item() == pytest.approx((0.125 + 4.5) / 2)
    assert td_loss(pred, target, "huber", 1.0).item() == pytest.approx((0.125 + 2.5) / 2)


def test_gradient_norm_clipping():
    w = torch.nn.Parameter(torch.zeros(2))
    w.grad = torch.tensor([3.0, 4.0])
    assert global_grad_norm([w], 0.0) == pytest.approx(5.0)      # off: reports, leaves the gradient
    assert w.grad.tolist() == [3.0, 4.0]
    assert global_grad_norm([w], 1.0) == pytest.approx(5.0)      # on: reports the norm before clipping
    torch.testing.assert_close(w.grad, torch.tensor([0.6, 0.8]))
