import torch

from qbench.parts.maximisers import ExactMaximiser
from qbench.parts.targets import bootstrap_value, td_targets
from tests.conftest import TableQ, one_hot

# Two next states, three actions. In state 0 the online net prefers action 2, which the target net values at 1.0,
# while the target net's own max is 5.0 (action 0): max and double targets differ there.
ONLINE = [[0.0, 1.0, 9.0],
          [3.0, 2.0, 1.0]]
TARGET = [[5.0, 4.0, 1.0],
          [7.0, 8.0, 6.0]]


def test_max_target_takes_the_target_nets_max():
    v = bootstrap_value("max", ExactMaximiser(), TableQ(ONLINE), TableQ(TARGET), one_hot([0, 1], 2))
    assert v.tolist() == [5.0, 8.0]


def test_double_target_lets_online_select_and_target_evaluate():
    v = bootstrap_value("double", ExactMaximiser(), TableQ(ONLINE), TableQ(TARGET), one_hot([0, 1], 2))
    # online argmax: state 0 -> action 2, state 1 -> action 0; evaluated by the target net: 1.0 and 7.0
    assert v.tolist() == [1.0, 7.0]


def test_td_target_by_hand():
    reward_n = torch.tensor([1.0, 0.5, 2.0])
    discount_n = torch.tensor([0.99, 0.0, 0.99 ** 3])
    bootstrap = torch.tensor([10.0, 10.0, 4.0])
    y = td_targets(reward_n, discount_n, bootstrap)
    torch.testing.assert_close(y, torch.tensor([1.0 + 9.9, 0.5, 2.0 + 0.99 ** 3 * 4.0]))


def test_max_target_equals_double_when_online_is_target():
    q = TableQ(TARGET)
    obs = one_hot([0, 1], 2)
    assert torch.equal(bootstrap_value("max", ExactMaximiser(), q, q, obs),
                       bootstrap_value("double", ExactMaximiser(), q, q, obs))
