"""The learner's optimizer: Adam for the actors and Adam for the critics, each clipped to its own norm.

PPO clips the gradient norm of each network separately (the actor's loss and the critic's loss have
different scales). `torch.nn.utils.clip_grad_norm_` does that with two passes over every gradient (one for
the norm, one to scale it) before Adam's own pass. Here the scaling is folded into the fused Adam step as its
`grad_scale` (Adam divides every gradient by it as it reads them, the same hook mixed-precision training
uses), so the gradients are read once for the norm and once by Adam. For a hypernetwork, whose
generated-weight layers hold millions of parameters, that pass is about a tenth of a minibatch step.
"""

from __future__ import annotations

import torch
from torch import nn


class ActorCriticAdam:
    """Two Adams (``"actor"`` and ``"critic"`` parameter lists) behind one optimizer-like object.

    `clip_and_step(max_norm)` clips each network's gradient to `max_norm` (by total L2 norm, as
    `clip_grad_norm_`) and steps; it returns the norms before clipping. `param_groups` lists both Adams'
    groups (to set the learning rate); the state dict holds one entry per network.
    """

    def __init__(self, params: dict[str, list[nn.Parameter]], lr: float, eps: float, fused: bool = True):
        self.params = {name: list(group) for name, group in params.items() if group}
        self.adams = {
            name: torch.optim.Adam(group, lr=lr, eps=eps, fused=fused) for name, group in self.params.items()
        }
        self.fused = fused

    @property
    def param_groups(self) -> list[dict]:
        return [group for adam in self.adams.values() for group in adam.param_groups]

    def zero_grad(self) -> None:
        for adam in self.adams.values():
            adam.zero_grad(set_to_none=True)

    def clip_and_step(self, max_norm: float) -> dict[str, torch.Tensor]:
        """Clip each network's gradient to `max_norm`, then take an Adam step; -> {name: norm before}."""
        norms = {}
        for name, adam in self.adams.items():
            grads = [p.grad for p in self.params[name] if p.grad is not None]
            norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
            scale = (norm / max_norm).clamp_min(1.0)  # clip_grad_norm_ multiplies by 1 / this (no eps)
            if self.fused:
                adam.grad_scale = scale
            else:
                torch._foreach_div_(grads, scale)
            adam.step()
            norms[name] = norm
        return norms

    def state_dict(self) -> dict:
        return {name: adam.state_dict() for name, adam in self.adams.items()}

    def load_state_dict(self, state: dict) -> None:
        if "state" in state and "param_groups" in state:
            state = self._split_single_adam(state)
        for name, adam in self.adams.items():
            adam.load_state_dict(state[name])

    def _split_single_adam(self, state: dict) -> dict:
        """A checkpoint from before the split held one Adam over actor parameters, then critic ones."""
        result, start = {}, 0
        for name, group in self.params.items():
            indices = range(start, start + len(group))
            groups = [dict(g, params=list(range(len(group)))) for g in state["param_groups"]]
            result[name] = {
                "state": {i - start: state["state"][i] for i in indices if i in state["state"]},
                "param_groups": groups,
            }
            start += len(group)
        return result


def build_optimizer(model, algo, device: torch.device) -> ActorCriticAdam:
    """The learner's optimizer for an `ActorCritic` (agents/policy.py) and the algorithm config."""
    actors = [p for actor in model.actors.values() for p in actor.parameters()]
    critics = [p for critic in model.critics.values() for p in critic.parameters()]
    # Fused Adam updates every tensor in one kernel: half the step time for a hypernetwork's millions of
    # generated-weight parameters, and ~20% less for small nets (measured on CPU).
    fused = torch.device(device).type in ("cpu", "cuda")
    return ActorCriticAdam({"actor": actors, "critic": critics}, algo.lr, algo.adam_eps, fused)
