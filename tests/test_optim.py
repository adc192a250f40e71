"""FusedAdam: torch's fused Adam kernel called directly must give torch.optim.Adam(fused=True)'s numbers bit for bit,
and share its state_dict format both ways."""

import copy

import pytest
import torch

from qbench.parts.optim import FusedAdam, fused_adam_available

pytestmark = pytest.mark.skipif(not fused_adam_available(), reason="this torch has no fused CPU Adam")


def _pair(seed: int = 0, shape=(3, 70)):
    g = torch.Generator().manual_seed(seed)
    start = torch.randn(shape, generator=g)
    ours = torch.nn.Parameter(start.clone())
    theirs = torch.nn.Parameter(start.clone())
    ours.grad, theirs.grad = torch.zeros(shape), torch.zeros(shape)
    return ours, theirs, g


def _grad_step(params, grad):
    for p in params:
        p.grad.copy_(grad)


def test_fused_adam_equals_torch_fused_adam_bit_for_bit_with_lr_changes():
    ours, theirs, g = _pair()
    mine, reference = FusedAdam([ours], lr=3e-3), torch.optim.Adam([theirs], lr=3e-3, fused=True)
    for step in range(25):
        grad = torch.randn(ours.shape, generator=g) * (10.0 ** (step % 5 - 2))
        _grad_step([ours, theirs], grad)
        if step == 10:   # a learning-rate schedule writes the group's lr between steps
            mine.param_groups[0]["lr"] = reference.param_groups[0]["lr"] = 1e-4
        mine.step()
        reference.step()
        assert torch.equal(ours, theirs), f"parameters differ after step {step + 1}"
    a, b = mine.state_dict(), reference.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for key in ("step", "exp_avg", "exp_avg_sq"):
        assert torch.equal(a["state"][0][key], b["state"][0][key]), key
    assert float(a["state"][0]["step"]) == 25.0


def test_fused_adam_state_dicts_load_both_ways_and_continue_identically():
    ours, theirs, g = _pair(1)
    grads = [torch.randn(ours.shape, generator=g) for _ in range(12)]
    reference = torch.optim.Adam([theirs], lr=1e-3, fused=True)
    for grad in grads[:6]:
        _grad_step([theirs], grad)
        reference.step()
    # torch's state dict -> FusedAdam, then both continue
    ours.data.copy_(theirs.data)
    mine = FusedAdam([ours], lr=0.5)   # the loaded lr replaces this one
    mine.load_state_dict(reference.state_dict())
    assert mine.param_groups[0]["lr"] == 1e-3
    for grad in grads[6:]:
        _grad_step([ours, theirs], grad)
        mine.step()
        reference.step()
    assert torch.equal(ours, theirs)
    # FusedAdam's state dict -> torch.optim.Adam
    again = torch.nn.Parameter(ours.detach().clone())
    again.grad = torch.zeros_like(again)
    loaded = torch.optim.Adam([again], lr=1.0, fused=True)
    loaded.load_state_dict(copy.deepcopy(mine.state_dict()))   # torch keeps the tensors it is given
    _grad_step([again, ours], grads[0])
    loaded.step()
    mine.step()
    assert torch.equal(again, ours)


def test_fused_adam_before_any_step_has_empty_state_and_round_trips():
    ours, _, _ = _pair()
    mine = FusedAdam([ours], lr=1e-3)
    assert mine.state_dict()["state"] == {}
    other = FusedAdam([ours], lr=7.0)
    other.load_state_dict(mine.state_dict())
    assert other.param_groups[0]["lr"] == 1e-3 and other.state_dict()["state"] == {}


def test_fused_adam_refuses_to_drop_gradient_views():
    ours, _, _ = _pair()
    mine = FusedAdam([ours], lr=1e-3)
    ours.grad.fill_(2.0)
    mine.zero_grad(set_to_none=False)
    assert torch.count_nonzero(ours.grad) == 0
    with pytest.raises(ValueError, match="in place"):
        mine.zero_grad(set_to_none=True)
