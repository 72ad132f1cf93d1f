"""Divergence: stop a run whose update has gone wrong, even when every number is still finite.

A NaN loss stops training at once (marl/ppo.py). A learning rate far too high can instead blow the
parameters up to 1e9 and the value loss to 1e18 while staying finite, and such a run would otherwise
continue, and finish, with garbage. After each PPO update `check_health` compares what the update did with
bounds no working run comes near:

- parameters: any non-finite, or any magnitude above PARAMETER_LIMIT (networks start near 1 and stay
  within a few hundred);
- gradients: a non-finite gradient norm before clipping (the clipped step is then NaN);
- value loss: above (VALUE_SLACK x the largest return the batch's rewards allow)^2, i.e. the critic is off
  by a thousand times any return the env can pay (in normalised units with algorithm.value_normalization);
- approx_kl: above KL_LIMIT, where clipped PPO keeps it near 0.01.

The bounds are stateless, so a resumed run is judged exactly as an uninterrupted one. A breach raises a
`DivergenceError` that says what exploded and how to resume with a smaller learning rate; the trainer
saves the last good iteration first (marl/checkpoint.py).
"""

from __future__ import annotations

import math

import torch
from tensordict import TensorDictBase

from marl.errors import DivergenceError

PARAMETER_LIMIT = 1e6
VALUE_SLACK = 1e3
NORMALISED_VALUE_LIMIT = 1e8  # value loss in units of the running return std (value normalisation on)
KL_LIMIT = 20.0


def check_health(trainer, batch: TensorDictBase, stats: dict[str, float]) -> None:
    """Raise `DivergenceError` if the update just made by `trainer` (a marl train `Trainer`) on `batch`,
    with PPO statistics `stats`, left the model diverged."""
    problems = parameter_problems(trainer.model) + statistic_problems(trainer, batch, stats)
    if not problems:
        return
    alg = trainer.cfg.algorithm
    raise DivergenceError(
        f"Training diverged in iteration {trainer.iteration + 1}: {'; '.join(problems)}. Usual causes: a "
        f"learning rate too high for this task (algorithm.lr={alg.lr:g}), rewards of very large magnitude "
        "(try algorithm.value_normalization=true in a new run), or too loose gradient clipping "
        f"(algorithm.max_grad_norm={alg.max_grad_norm:g}). Training stopped at the last good iteration; "
        f"resume it with a smaller learning rate, e.g. by adding algorithm.lr={alg.lr / 10:g} (and, if "
        "needed, a smaller algorithm.max_grad_norm) to the resume command."
    )


def parameter_problems(model: torch.nn.Module) -> list[str]:
    """Non-finite parameters, or parameters larger in magnitude than PARAMETER_LIMIT (named)."""
    with torch.no_grad():
        named = [(name, p) for name, p in model.named_parameters() if p.numel()]
        if not named:
            return []
        largest = torch.stack([p.detach().abs().max() for _, p in named]).float()
        worst = int(largest.nan_to_num(nan=math.inf).argmax())
        value = float(largest[worst])
    if math.isfinite(value) and value <= PARAMETER_LIMIT:
        return []
    name = named[worst][0]
    if not math.isfinite(value):
        return [f"parameter {name} is no longer finite"]
    return [f"parameter {name} reached a magnitude of {value:.3g} (limit {PARAMETER_LIMIT:.0e})"]


def statistic_problems(trainer, batch: TensorDictBase, stats: dict[str, float]) -> list[str]:
    """Gradient norms, value losses and KL divergences of the update beyond their bounds."""
    cfg = trainer.cfg
    problems = []
    for key, value in stats.items():
        name = key.rsplit("/", 1)[-1]
        if name.endswith("grad_norm") and not math.isfinite(value):
            problems.append(f"the {name.replace('_', ' ')} before clipping was {value}")
        elif name == "approx_kl" and value > KL_LIMIT:
            problems.append(
                f"the policy moved by an approximate KL of {value:.3g} in one update (limit {KL_LIMIT:g}; "
                "clipped PPO keeps it near 0.01)"
            )
        elif name == "value_loss":
            limit = value_loss_limit(cfg, batch)
            if value > limit:
                group = f" of {key.rsplit('/', 1)[0]}" if "/" in key else ""
                problems.append(
                    f"the value loss{group} reached {value:.3g}, beyond {limit:.3g} (the critic is off by "
                    "more than a thousand times any return these rewards allow)"
                )
    return problems


def value_loss_limit(cfg, batch: TensorDictBase) -> float:
    """(VALUE_SLACK x the largest |return| the batch's rewards allow)^2: with rewards at most R in
    magnitude, no return exceeds R x min(episode length, 1 / (1 - gamma))."""
    if cfg.algorithm.value_normalization:
        return NORMALISED_VALUE_LIMIT
    rewards = [
        group["reward"].abs().max()
        for group in batch["next"].values()
        if isinstance(group, TensorDictBase) and "reward" in group.keys()  # noqa: SIM118 - TensorDict
    ]
    largest = float(torch.stack(rewards).max()) if rewards else 0.0
    gamma = cfg.algorithm.gamma
    horizon = cfg.env.max_steps if gamma >= 1 else min(cfg.env.max_steps, 1 / (1 - gamma))
    return (VALUE_SLACK * max(largest * horizon, 1.0)) ** 2
