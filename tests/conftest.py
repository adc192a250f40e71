import numpy as np
import pytest
import torch


class TableQ(torch.nn.Module):
    """A dummy discrete Q function whose values for state i are row i of a fixed table (obs = one-hot of i)."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.as_tensor(table, dtype=torch.float32)

    def all_actions(self, obs):
        return obs @ self.table

    def q(self, obs, actions):
        return self.all_actions(obs).gather(1, actions.long().view(-1, 1)).squeeze(1)


@pytest.fixture
def table_q():
    return TableQ


def one_hot(indices, n):
    out = np.zeros((len(indices), n), dtype=np.float32)
    out[np.arange(len(indices)), indices] = 1.0
    return torch.as_tensor(out)
