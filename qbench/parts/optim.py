"""Adam stepped by torch's fused kernel directly, for the engine's one-tensor parameter arenas.

torch.optim.Adam(fused=True) runs the same kernel, but around it every step pays the Optimizer machinery (hooks,
grouping tensors by device and dtype, profiler records): its step took 92 us at K = 1 on a CartPole update, of
which the kernel 32 us; FusedAdam.step takes 58 us there. And constructing any torch.optim optimiser imports torch._dynamo (with
sympy and the inductor), 1.2 s of a 15 s run. FusedAdam calls the kernel with the arguments torch's fused Adam
passes, so its numbers are torch's bit for bit (tests/test_optim.py), and its state_dict is torch's format, so a
checkpoint written by either loads in the other.
"""

from __future__ import annotations

import functools
from typing import Any

import torch


@functools.cache
def fused_adam_available() -> bool:
    """Whether this torch has the fused Adam kernel for CPU tensors (torch >= 2.4)."""
    if not hasattr(torch, "_fused_adam_"):
        return False
    try:
        p, g = torch.zeros(1), torch.zeros(1)
        torch._fused_adam_([p], [g], [torch.zeros(1)], [torch.zeros(1)], [], [torch.ones(())], amsgrad=False,
                           lr=0.0, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8, maximize=False,
                           grad_scale=None, found_inf=None)
    except (RuntimeError, NotImplementedError):
        return False
    return True


class FusedAdam:
    """Adam (no weight decay, no amsgrad) over a few tensors, typically one arena of shape (K, P).

    The interface the engine uses of a torch optimiser: step(), zero_grad(set_to_none=False), param_groups (one
    group; its "lr" may be changed between steps), state_dict() and load_state_dict()."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        self.param_groups = [{"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": 0, "amsgrad": False,
                              "maximize": False, "foreach": None, "capturable": False, "differentiable": False,
                              "fused": True, "decoupled_weight_decay": False, "params": self.params}]
        self._steps: list[torch.Tensor] = []
        self._exp_avgs: list[torch.Tensor] = []
        self._exp_avg_sqs: list[torch.Tensor] = []

    def _init_state(self) -> None:
        # As torch does at the first step: a float32 0-d step on the parameter's device, zero moments.
        self._steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]
        self._exp_avgs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self._exp_avg_sqs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]

    @torch.no_grad()
    def step(self) -> None:
        if not self._steps:
            self._init_state()
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        torch._foreach_add_(self._steps, 1)
        torch._fused_adam_(self.params, [p.grad for p in self.params], self._exp_avgs, self._exp_avg_sqs, [],
                           self._steps, amsgrad=False, lr=float(group["lr"]), beta1=beta1, beta2=beta2,
                           weight_decay=0.0, eps=group["eps"], maximize=False, grad_scale=None, found_inf=None)

    @property
    def state(self) -> dict[torch.Tensor, dict[str, torch.Tensor]]:
        """Per parameter, its step and moments (torch's optimiser.state[param]); empty before the first step."""
        return {p: {"step": s, "exp_avg": m, "exp_avg_sq": v}
                for p, s, m, v in zip(self.params, self._steps, self._exp_avgs, self._exp_avg_sqs, strict=False)}

    def zero_grad(self, set_to_none: bool = False) -> None:
        if set_to_none:
            raise ValueError("the arenas' gradients are views that must stay allocated: zero them in place")
        for p in self.params:
            if p.grad is not None:
                p.grad.zero_()

    def state_dict(self) -> dict[str, Any]:
        state = {i: {"step": s, "exp_avg": m, "exp_avg_sq": v}
                 for i, (s, m, v) in enumerate(zip(self._steps, self._exp_avgs, self._exp_avg_sqs, strict=True))}
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": list(range(len(self.params)))}
                  for g in self.param_groups]
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """From this class's state_dict or torch.optim.Adam's (the same format)."""
        (group,) = state_dict["param_groups"]
        self.param_groups[0]["lr"] = group["lr"]
        self.param_groups[0]["betas"] = tuple(group["betas"])
        self.param_groups[0]["eps"] = group["eps"]
        state = state_dict["state"]
        if not state:
            self._steps, self._exp_avgs, self._exp_avg_sqs = [], [], []
            return
        entries = [state[i] for i in group["params"]]
        self._steps = [torch.as_tensor(e["step"], dtype=torch.float32).clone().to(p.device)
                       for e, p in zip(entries, self.params, strict=True)]
        self._exp_avgs = [e["exp_avg"].to(p.device, p.dtype).clone() for e, p in zip(entries, self.params, strict=True)]
        self._exp_avg_sqs = [e["exp_avg_sq"].to(p.device, p.dtype).clone()
                             for e, p in zip(entries, self.params, strict=True)]
