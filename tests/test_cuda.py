"""The GPU path (device = cuda), checked where there is a GPU: skipped on machines without one (CI), run by
benchmarks/gpu_check.sh on a lent GPU. A seed's initial parameters are the same numbers on every device (drawn on
the CPU, then moved), its Q values agree to float32 rounding, and a run on the GPU writes the rows a CPU run writes
until learning starts."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from qbench import cli
from qbench.envs.tasks import probe_spaces
from qbench.jobs import build_job
from qbench.training.build import Learner

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.sh)")]


@pytest.mark.parametrize(("variant", "task"), [("dqn", "CartPole-v1"), ("ddpg", "Pendulum-v1"),
                                               ("naf", "Pendulum-v1")])
def test_initial_parameters_are_equal_and_q_agrees_across_devices(variant, task):
    job = build_job(variant, task, 0, {"hidden_sizes": [64, 64]})
    spaces = probe_spaces(job.task, job.config)
    seeds = [0, 1, 2]
    cpu = Learner(job.config, spaces, seeds)
    gpu = Learner(build_job(variant, task, 0, {"hidden_sizes": [64, 64], "device": "cuda"}).config, spaces, seeds)
    assert torch.equal(cpu.online.arena.detach(), gpu.online.arena.detach().cpu())
    obs = torch.randn(len(seeds), 256, spaces.obs_dim, generator=torch.Generator().manual_seed(0))
    if spaces.action_kind == "discrete":
        q_cpu, q_gpu = cpu.online.all_actions(obs), gpu.online.all_actions(obs.cuda()).cpu()
    else:
        actions = torch.rand(len(seeds), 256, spaces.action_dim, generator=torch.Generator().manual_seed(1)) * 2 - 1
        q_cpu, q_gpu = cpu.online.q(obs, actions), gpu.online.q(obs.cuda(), actions.cuda()).cpu()
    torch.testing.assert_close(q_gpu, q_cpu, rtol=1e-4, atol=1e-5)


def test_a_gpu_run_writes_the_cpu_rows_until_learning_starts(tmp_path):
    """Before the first update (at env step 400, the end of the warm-up) the greedy policy is the initial network's,
    the same on both devices: the first evaluation, at 200 env steps, has the same episode returns."""
    common = ["--steps", "600", "--set", "hidden_sizes=[32]", "--set", "warmup_env_steps=400",
              "--set", "eval_interval_env_steps=200", "--set", "eval_episodes=3"]
    for device in ("cpu", "cuda"):
        assert cli.main(["train", "dqn", "CartPole-v1", "--out", str(tmp_path / device), *common,
                         "--set", f"device={device}"]) == 0
    cpu, gpu = (pd.read_csv(tmp_path / d / "evaluations.csv") for d in ("cpu", "cuda"))
    assert list(gpu["env_steps"]) == list(cpu["env_steps"]) == [200, 400, 600]
    assert gpu["return_mean"].iloc[0] == cpu["return_mean"].iloc[0]
