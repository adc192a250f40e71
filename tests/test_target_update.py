import torch

from qbench.parts.target_update import hard_update, polyak_update


def params():
    """An online and a target network as lists of tensors (seed axis first, K = 1)."""
    online = [torch.full((1, 1, 2), 1.0), torch.full((1, 1, 1), 2.0)]    # weight, bias
    target = [torch.full((1, 1, 2), 0.0), torch.full((1, 1, 1), -2.0)]
    return online, target


def test_hard_update_copies():
    online, target = params()
    hard_update(target, online)
    assert target[0].tolist() == [[[1.0, 1.0]]] and target[1].tolist() == [[[2.0]]]
    online[0].fill_(7.0)
    assert target[0].tolist() == [[[1.0, 1.0]]]   # a copy, not shared storage


def test_hard_update_copies_parameters_in_place():
    online = [torch.nn.Parameter(torch.ones(1, 3))]
    target = [torch.nn.Parameter(torch.zeros(1, 3))]
    before = target[0]
    hard_update(target, online)
    assert target[0] is before and target[0].tolist() == [[1.0, 1.0, 1.0]]


def test_polyak_update_moves_by_tau():
    online, target = params()
    polyak_update(target, online, 0.25)
    torch.testing.assert_close(target[0], torch.full((1, 1, 2), 0.25))
    torch.testing.assert_close(target[1], torch.tensor([[[-1.0]]]))   # 0.25 * 2 + 0.75 * -2
    polyak_update(target, online, 1.0)
    torch.testing.assert_close(target[1], torch.tensor([[[2.0]]]))


def test_each_seed_follows_its_own_online_parameters():
    online = [torch.tensor([[1.0, 2.0], [10.0, 20.0]])]          # K = 2
    target = [torch.tensor([[0.0, 0.0], [-10.0, 4.0]])]
    polyak_update(target, online, 0.5)
    torch.testing.assert_close(target[0], torch.tensor([[0.5, 1.0], [0.0, 12.0]]))
    hard_update(target, online)
    assert target[0].tolist() == [[1.0, 2.0], [10.0, 20.0]]
