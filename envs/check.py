"""`marl check-env`: PettingZoo's own API test plus the adapter's checks, as a readable report.

Each check either passes with a one-line summary or fails with the message of the error it raised (those
name the agent, the key and the fix). A rollout with random legal actions then shows what the learner
will see: group shapes, masks, global state, rewards per agent and episode ends.
"""

from __future__ import annotations

import io
import traceback
import warnings
from contextlib import redirect_stdout
from dataclasses import dataclass, field

import torch

from marl.errors import ConfigError


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class CheckReport:
    entry_point: str
    kwargs: dict = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # the description and rollout summary

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks if c.name != "pettingzoo api_test")

    def format(self) -> str:
        out = [f"marl check-env {self.entry_point}", ""]
        out += self.lines
        out.append("")
        for c in self.checks:
            out.append(f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}")
        if not self.ok:
            return "\n".join([*out, "", "Result: fix the failures above before training."])
        arguments = "".join(f" env.kwargs.{k}={_cli_value(v)}" for k, v in self.kwargs.items())
        command = f"marl train env=pettingzoo env.entry_point={self.entry_point}{arguments}"
        return "\n".join([*out, "", "Result: ready to train:", f"  {command}"])


def _cli_value(value) -> str:
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    return text if " " not in text else f"'{text}'"


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return f"{type(error).__name__}: {text}" if not isinstance(error, ConfigError) else text


def check_env(
    entry_point: str,
    kwargs: dict | None = None,
    steps: int = 200,
    copies: int = 2,
    seed: int = 0,
    max_steps: int = 100,
) -> CheckReport:
    """Run every check on the env that `entry_point(**kwargs)` builds; never raises for env faults."""
    from marl.envs.pettingzoo_env import PettingZooEnv, is_aec, load_factory

    kwargs = dict(kwargs or {})
    report = CheckReport(entry_point, kwargs)
    try:
        factory = load_factory(entry_point)
        raw = PettingZooEnv._build(factory, kwargs)
    except ConfigError as error:
        report.checks.append(Check("load", False, _first_line(error)))
        return report
    aec = is_aec(raw)
    report.checks.append(Check("load", True, f"{type(raw).__name__} ({'AEC' if aec else 'parallel'} API)"))
    report.checks.append(_pettingzoo_api_test(factory, kwargs, aec))

    try:
        env = PettingZooEnv(factory, kwargs, num_envs=copies, max_steps=max_steps, seed=seed)
    except ConfigError as error:
        report.checks.append(Check("adapter", False, _first_line(error)))
        return report
    description = env.description
    report.checks.append(
        Check("adapter", True, f"{len(description.agents)} agents in {len(description.groups)} group(s)")
    )
    for g in description.groups:
        head = g.head
        if head.kind == "continuous":
            action = f"Box({head.size}) in [{min(head.low):g}, {max(head.high):g}]"
        else:
            action = (
                f"Discrete({head.size})" if head.kind == "discrete" else f"MultiDiscrete{list(head.nvec)}"
            )
        report.lines.append(f"group {g.name!r}: {', '.join(g.agents)}")
        report.lines.append(f"    observation: {g.layout.size} features  ({g.layout.describe()})")
        report.lines.append(f"    action:      {action}" + ("  + action_mask" if g.has_mask else ""))
    if description.state_dim:
        report.lines.append(
            f"global state: {description.state_dim} features (used by algorithm.critic_input=state)"
        )
    else:
        report.lines.append("global state: none (the MAPPO critic sees all agents' observations)")
    report.checks.append(_rollout(env, steps, report))
    env.close()
    return report


def _pettingzoo_api_test(factory, kwargs: dict, aec: bool) -> Check:
    """PettingZoo's own conformance test on a fresh env; its verdict is advisory (the adapter tolerates
    a few deviations), so a failure is reported but does not fail the whole check."""
    from pettingzoo.test import api_test, parallel_api_test

    try:
        with redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if aec:
                api_test(factory(**kwargs), num_cycles=50)
            else:
                parallel_api_test(factory(**kwargs), num_cycles=50)
    except Exception as error:  # noqa: BLE001 - any failure of the external test is reported, not raised
        where = traceback.extract_tb(error.__traceback__)[-1]
        return Check(
            "pettingzoo api_test",
            False,
            f"{_first_line(error)} (at {where.name}:{where.lineno}); "
            f"the adapter may still cope, see the checks below",
        )
    return Check("pettingzoo api_test", True, "passed")


def _rollout(env, steps: int, report: CheckReport) -> Check:
    """Random legal actions for `steps` batched steps; checks masks are honoured and shapes are stable."""
    generator = torch.Generator().manual_seed(0)
    try:
        td = env.reset()
        returns = {g.name: torch.zeros(len(g.agents)) for g in env.description.groups}
        episodes, left_early, masked = 0, 0, 0
        for _ in range(steps):
            for g in env.description.groups:
                td.set(
                    (g.name, "action"),
                    _random_action(g, td.get((g.name, "action_mask"), None), env, generator),
                )
                if (g.name, "action_mask") in td.keys(include_nested=True):
                    masked += int((~td[g.name, "action_mask"]).sum())
            td, next_td = env.step_and_maybe_reset(td)
            for g in env.description.groups:
                returns[g.name] += td["next", g.name, "reward"].squeeze(-1).sum(0)
                left_early += int(
                    (td[g.name, "alive"] & ~td["next", g.name, "alive"])
                    .any(-1)
                    .logical_and(~td["next", "done"].squeeze(-1))
                    .sum()
                )
            episodes += int(td["next", "done"].sum())
            td = next_td
    except Exception as error:  # noqa: BLE001 - report, with the adapter's or the env's message
        return Check("rollout", False, _first_line(error))
    report.lines.append(
        f"rollout: {steps} steps x {len(env.copies)} copies, {episodes} episodes ended"
        + (f", {left_early} agent exits before the episode end" if left_early else "")
        + (f", {masked} actions masked out (illegal at their step)" if masked else "")
    )
    for name, total in returns.items():
        agents = next(g.agents for g in env.description.groups if g.name == name)
        per_agent = ", ".join(f"{a} {r:+.3g}" for a, r in zip(agents, total.tolist()))
        report.lines.append(f"    summed rewards {name}: {per_agent}")
    return Check(
        "rollout", True, "random legal actions ran; observations, rewards and dones have stable shapes"
    )


def _random_action(group, mask: torch.Tensor | None, env, generator: torch.Generator) -> torch.Tensor:
    n = len(env.copies)
    head, k = group.head, len(group.agents)
    if head.kind == "continuous":
        low, high = torch.tensor(head.low), torch.tensor(head.high)
        return low + (high - low) * torch.rand(n, k, head.size, generator=generator)
    logits = torch.zeros(n, k, head.size)
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    parts = [logits] if head.kind == "discrete" else logits.split(list(head.nvec), dim=-1)
    choices = [
        torch.multinomial(p.softmax(-1).reshape(-1, p.shape[-1]), 1, generator=generator).reshape(n, k)
        for p in parts
    ]
    return choices[0] if head.kind == "discrete" else torch.stack(choices, dim=-1)
