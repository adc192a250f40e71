import torch

from qbench.parts.target_update import hard_update, polyak_update


def nets():
    online, target = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        online.weight.fill_(1.0)
        online.bias.fill_(2.0)
        target.weight.fill_(0.0)
        target.bias.fill_(-2.0)
    return online, target


def test_hard_update_copies():
    online, target = nets()
    hard_update(target, online)
    assert target.weight.tolist() == [[1.0, 1.0]] and target.bias.tolist() == [2.0]
    with torch.no_grad():
        online.weight.fill_(7.0)
    assert target.weight.tolist() == [[1.0, 1.0]]   # a copy, not shared storage


def test_polyak_update_moves_by_tau():
    online, target = nets()
    polyak_update(target, online, 0.25)
    torch.testing.assert_close(target.weight, torch.full((1, 2), 0.25))
    torch.testing.assert_close(target.bias, torch.tensor([-1.0]))   # 0.25 * 2 + 0.75 * -2
    polyak_update(target, online, 1.0)
    torch.testing.assert_close(target.bias, torch.tensor([2.0]))
