"""`marl check-env`: PettingZoo's own API test plus the adapter's checks, as a readable report.

Each check passes with a one-line summary, passes with a note (what the adapter did about a deviation from
the PettingZoo API, or something to know before training), or fails with the message of the error it
raised (those name the agent and the fix). It never raises for a fault of the env: whatever the env's code
throws is reported with where it was thrown. A rollout with random legal actions then shows what the
learner will see: group shapes, masks, global state, rewards per agent and episode ends; and the model
the training config builds: its parameter count and the memory a batch will need.
"""

from __future__ import annotations

import io
import math
import os
import traceback
import warnings
from contextlib import redirect_stdout
from dataclasses import dataclass, field

import numpy as np
import torch

from marl.errors import ConfigError, MarlError

MEMORY_SHARE = 0.5  # a suggested config should need at most this share of the memory available now


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    mark: str | None = None  # "note" (the adapter adapted, or something to know) or "warn"; else ok/FAIL


@dataclass
class CheckReport:
    entry_point: str
    kwargs: dict = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # the description and rollout summary
    groups: dict | None = None
    overrides: list[str] = field(default_factory=list)  # config overrides (check-env --set)
    suggested: list[str] = field(default_factory=list)  # overrides the checks recommend (memory)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks if c.name != "pettingzoo api_test")

    def format(self) -> str:
        out = [f"marl check-env {self.entry_point}", ""]
        out += self.lines
        out.append("")
        for c in self.checks:
            out.append(f"  [{c.mark or ('ok' if c.ok else 'FAIL')}] {c.name}: {c.detail}")
        if not self.ok:
            return "\n".join([*out, "", "Result: fix the failures above before training."])
        return "\n".join([*out, "", "Result: ready to train:", f"  {self.command()}"])

    def command(self) -> str:
        arguments = [f"env.kwargs.{k}={_cli_value(v)}" for k, v in self.kwargs.items()]
        if self.groups:
            arguments.append(_quoted(f"env.groups={_cli_value(self.groups, quote=False)}"))
        arguments += [_quoted(o) for o in [*self.overrides, *self.suggested]]
        return " ".join(["marl train env=pettingzoo", f"env.entry_point={self.entry_point}", *arguments])


def _cli_value(value, quote: bool = True) -> str:
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    text = text.removesuffix("...").strip()
    return _quoted(text) if quote else text


def _quoted(text: str) -> str:
    return text if not any(c in text for c in " {}[]'") else f'"{text}"'


def _first_line(error: BaseException) -> str:
    """The error's message; for anything but our own errors with its type and where the env raised it."""
    if isinstance(error, MarlError):
        return str(error).strip()
    text = str(error).strip()
    where = traceback.extract_tb(error.__traceback__)
    at = (
        f" (at {os.path.basename(where[-1].filename)}:{where[-1].lineno} in {where[-1].name})"
        if where
        else ""
    )
    return f"{type(error).__name__}: {text}{at}" if text else f"{type(error).__name__}{at}"


def check_env(
    entry_point: str,
    kwargs: dict | None = None,
    steps: int = 200,
    copies: int = 2,
    seed: int = 0,
    max_steps: int = 100,
    groups: dict | None = None,
    overrides: list[str] | None = None,
) -> CheckReport:
    """Run every check on the env that `entry_point(**kwargs)` builds; never raises for env faults.

    `groups` is `env.groups` ({group: [agents]}); `overrides` are training config overrides (e.g.
    `algorithm=ippo`, `model.encoder=cnn`) for the model and memory report and the suggested command."""
    from marl.envs.pettingzoo_env import BatchedPettingZooEnv, is_aec, load_factory

    kwargs = dict(kwargs or {})
    report = CheckReport(entry_point, kwargs, groups=groups, overrides=list(overrides or []))
    try:
        factory = load_factory(entry_point)
        raw = BatchedPettingZooEnv._build(factory, kwargs)
    except Exception as error:  # noqa: BLE001 - a fault of the env or its module is reported, not raised
        report.checks.append(Check("load", False, _first_line(error)))
        return report
    aec = is_aec(raw)
    report.checks.append(Check("load", True, f"{type(raw).__name__} ({'AEC' if aec else 'parallel'} API)"))
    report.checks.append(_pettingzoo_api_test(factory, kwargs, aec))

    def build(global_state: bool):
        return BatchedPettingZooEnv(
            factory, kwargs, num_envs=copies, max_steps=max_steps, seed=seed, groups=groups,
            global_state=global_state,
        )  # fmt: skip

    try:
        env = build(global_state=True)
    except Exception as error:  # noqa: BLE001
        report.checks.append(Check("adapter", False, _first_line(error)))
        return report
    description = env.description
    how = description.grouping
    change = "" if groups else "; regroup with --groups '{name: [agents], ...}' (env.groups in training)"
    report.checks.append(
        Check(
            "adapter",
            True,
            f"{len(description.agents)} agents in {len(description.groups)} group(s), grouped {how}{change}",
        )
    )
    for note in description.notes:
        report.checks.append(Check("adapted", True, note, mark="note"))
    _describe_groups(env, report)
    report.checks.append(_first_observations(raw, env))
    rollout = _rollout(env, steps, report)
    if not rollout.ok and "state()" in rollout.detail and env.global_state:
        # state() only matters to algorithm.critic_input=state: say so, and check the rest without it
        env.close()
        report.checks.append(Check("global state", True, rollout.detail.replace("\n", " "), mark="warn"))
        report.lines = [line for line in report.lines if not line.startswith(("rollout", "    summed"))]
        env = build(global_state=False)
        rollout = _rollout(env, steps, report)
    report.checks.append(rollout)
    if rollout.ok:
        report.checks.append(_model_and_memory(env, report))
    env.close()
    return report


def _describe_groups(env, report: CheckReport) -> None:
    from marl.agents.encoders import AUTO_MIN_SIDE, CNN_MIN_SIDE

    description = env.description
    for g in description.groups:
        head = g.head
        if head.kind == "continuous":
            action = f"Box({head.size}) in [{min(head.low):g}, {max(head.high):g}]"
        else:
            action = (
                f"Discrete({head.size})" if head.kind == "discrete" else f"MultiDiscrete{list(head.nvec)}"
            )
        report.lines.append(f"group {g.name!r}: {', '.join(g.labels)}")
        report.lines.append(f"    observation: {g.layout.size} features  ({g.layout.describe()})")
        for image in env.image_fields[g.name]:
            side = min(image.height, image.width)
            how = (
                "model.encoder=auto convolves it"
                if side >= AUTO_MIN_SIDE
                else "model.encoder=cnn convolves it"
            )
            report.lines.append(
                f"    image:       {image.describe()} ({how if side >= CNN_MIN_SIDE else 'flat'})"
            )
        report.lines.append(f"    action:      {action}" + ("  + action_mask" if g.has_mask else ""))
    if description.state_dim:
        report.lines.append(
            f"global state: {description.state_dim} features (used by algorithm.critic_input=state)"
        )
    else:
        report.lines.append("global state: none (the MAPPO critic sees all agents' observations)")


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
        return Check(
            "pettingzoo api_test",
            False,
            f"{_first_line(error)}; the adapter may still cope, see the checks below",
        )
    return Check("pettingzoo api_test", True, "passed")


def _first_observations(raw, env) -> Check:
    """Each agent's first observations against its declared space, field by field: a shape that differs
    (even with the same number of values, e.g. [C, H, W] for [H, W, C]) is named with agent and field."""
    from marl.envs.pettingzoo_env import _reset_raw
    from marl.envs.spaces import _leaf

    try:
        observations, _ = _reset_raw(raw, 0, env.aec)
        problems = []
        for g in env.description.groups:
            for agent, label in zip(g.agents, g.labels):
                if agent not in observations:
                    continue
                for f in g.layout.fields:
                    if f.kind not in ("box", "binary"):
                        continue
                    got = np.shape(_leaf(observations[agent], f.path))
                    if math.prod(got) != f.size or (len(f.shape) > 1 and got != f.shape):
                        where = f" field {f.path!r}" if f.path else ""
                        problems.append(f"agent {label!r}{where}: expected shape {f.shape}, got {got}")
    except Exception as error:  # noqa: BLE001
        return Check("observations", False, _first_line(error))
    if problems:
        return Check(
            "observations",
            False,
            f"{'; '.join(problems)}. In your own code, subclass the env and override "
            f"observation_space(agent) to declare the shape the observations really have (or transpose them "
            f"in step() and reset()), and point env.entry_point at it.",
        )
    return Check("observations", True, "first observations match the declared spaces")


def _rollout(env, steps: int, report: CheckReport) -> Check:
    """Random legal actions for `steps` batched steps; checks masks are honoured, shapes are stable and
    rewards and observations are finite."""
    generator = torch.Generator().manual_seed(0)
    try:
        td = env.reset()
        _check_finite(env, td, "reset", 0)
        returns = {g.name: torch.zeros(len(g.agents)) for g in env.description.groups}
        episodes, left_early, masked = 0, 0, 0
        for step in range(steps):
            for g in env.description.groups:
                td.set(
                    (g.name, "action"),
                    _random_action(g, td.get((g.name, "action_mask"), None), env, generator),
                )
                if (g.name, "action_mask") in td.keys(include_nested=True):
                    masked += int((~td[g.name, "action_mask"]).sum())
            td, next_td = env.step_and_maybe_reset(td)
            _check_finite(env, td["next"], "step", step + 1)
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
        labels = next(g.labels for g in env.description.groups if g.name == name)
        per_agent = ", ".join(f"{a} {r:+.3g}" for a, r in zip(labels, total.tolist()))
        report.lines.append(f"    summed rewards {name}: {per_agent}")
    return Check(
        "rollout",
        True,
        "random legal actions ran; observations, rewards and dones have stable shapes and finite values",
    )


def _check_finite(env, td, when: str, step: int) -> None:
    """Raise a ConfigError naming the first agent whose observation or reward is NaN or infinite."""
    for g in env.description.groups:
        for key in ("observation", "reward"):
            value = td.get((g.name, key), None)
            if value is None or not value.is_floating_point():
                continue
            bad = ~torch.isfinite(value.reshape(*value.shape[:2], -1)).all(-1)  # [copies, agents]
            if bad.any():
                copy, agent = (int(i) for i in bad.nonzero()[0])
                what = "an observation" if key == "observation" else "a reward"
                raise ConfigError(
                    f"Agent {g.labels[agent]!r} got {what} with NaN or infinite values after {when} (copy "
                    f"{copy}, step {step}). They poison the policy and value networks (training would stop "
                    f"with a NaN loss). In your own code, wrap the env (a subclass whose step() returns "
                    f"np.nan_to_num of them) and point env.entry_point at it; if the env is yours, guard "
                    f"its divisions and logs."
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


# ---------------------------------------------------------------------------------------- model, memory
def _model_and_memory(env, report: CheckReport) -> Check:
    """The actor and critic the training config builds for this env (parameter counts, encoders) and an
    estimate of the memory one training iteration needs; a lower experiment.frames_per_batch is suggested
    when that would not fit."""
    from marl.agents.encoders import convolved
    from marl.agents.policy import ActorCritic
    from marl.envs.factory import describe_env

    from marl.config import load_config

    try:
        cfg = load_config(["env=pettingzoo", f"env.entry_point={report.entry_point}", *report.overrides])
        cfg.env.kwargs, cfg.env.groups = dict(report.kwargs), report.groups
        info = describe_env(env, "pettingzoo", env.max_steps, report.kwargs)
        model = ActorCritic(info, cfg)
        estimate = _memory_estimate(env, model, cfg)
    except Exception as error:  # noqa: BLE001 - a config or model fault is reported, not raised
        return Check("model", False, _first_line(error))
    counts = model.parameter_counts()
    actor = sum(v for k, v in counts.items() if k.endswith("/actor"))
    critic = sum(v for k, v in counts.items() if k.endswith("/critic"))
    encoders = [g.name for g in info.groups if convolved(g, cfg.model.encoder)]
    encoded = f", conv encoder for {', '.join(encoders)}" if encoders else ""
    flat = [g.name for g in info.groups if convolved(g, "auto") and not convolved(g, cfg.model.encoder)]
    if flat:
        report.checks.append(
            Check(
                "model",
                True,
                f"the images of {', '.join(flat)} go flat into the MLP (model.encoder={cfg.model.encoder}): "
                f"{actor + critic:,} parameters; model.encoder=auto would convolve them",
                mark="warn",
            )
        )
    exp = cfg.experiment
    report.lines.append(
        f"model: {cfg.algorithm.name.upper()}, actor {cfg.sharing.actor.scheme} {actor:,} parameters, critic "
        f"{cfg.sharing.critic.scheme} {critic:,} parameters (model.encoder={cfg.model.encoder}{encoded})"
    )
    peak, per_frame = estimate["peak"], estimate["per_frame"]
    report.lines.append(
        f"memory: a batch of {exp.frames_per_batch:,} frames holds {_gb(estimate['batch'])} "
        f"({per_frame / 1e3:,.1f} kB per frame); one training iteration peaks near {_gb(peak)} "
        f"(available now: {_gb(estimate['available'])})"
    )
    budget = MEMORY_SHARE * estimate["available"]
    if peak <= budget:
        return Check("memory", True, f"about {_gb(peak)} per iteration fits in memory")
    frames = _frames_that_fit(cfg, estimate, budget)
    if frames is None:
        return Check(
            "memory",
            False,
            f"one iteration needs about {_gb(peak)}, more than this machine can give even with the smallest "
            f"batch. Shrink the observations (e.g. downscale images in a wrapper) or use a machine with "
            f"more memory.",
        )
    minibatch = min(cfg.algorithm.minibatch_size, frames // 2)
    report.suggested += [f"experiment.frames_per_batch={frames}", f"algorithm.minibatch_size={minibatch}"]
    return Check(
        "memory",
        True,
        f"one iteration with experiment.frames_per_batch={exp.frames_per_batch} needs about {_gb(peak)}, "
        f"more than half the memory available; the command below uses experiment.frames_per_batch={frames} "
        f"and algorithm.minibatch_size={minibatch}",
        mark="warn",
    )


def _memory_estimate(env, model, cfg) -> dict[str, float]:
    """Bytes: a stored batch (every frame's step with its next observation, x2 while the collector
    stacks it), the critic's pass over the whole batch when computing advantages, and the tensors autograd
    keeps for one PPO minibatch (measured on a real step, scaled), plus parameters with Adam's state."""
    n = len(env.copies)
    td = env.reset()
    for g in env.description.groups:
        td.set((g.name, "action"), env.full_action_spec[g.name, "action"].rand())
    step, _ = env.step_and_maybe_reset(model.act(td))
    per_frame = step.bytes() / n
    float_inputs = sum(  # the critic's encoder converts every image of the batch to float32 at once
        4 * len(g.agents) * g.layout.size for g in env.description.groups if env.image_fields[g.name]
    )
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    if not model.recurrent:  # (a recurrent actor replays chunks: not measured, its inputs are small)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = sum(v.sum() for v in model.values(step).values())
            for name, actor in model.actors.items():
                observation, sample = step[name, "observation"], step[name, "sample"]
                log_prob, _, _ = actor.evaluate(observation, sample, step.get((name, "action_mask"), None))
                loss = loss + log_prob.sum()
        loss.backward()
    activations = sum(saved.values()) / n
    frames, minibatch = cfg.experiment.frames_per_batch, cfg.algorithm.minibatch_size
    params = sum(p.numel() for p in model.parameters()) * 4 * 4  # weights, gradients, Adam's two moments
    batch = frames * per_frame
    peak = 2 * batch + max(frames * float_inputs, minibatch * (activations + per_frame)) + params
    return {
        "batch": batch,
        "per_frame": per_frame,
        "float_inputs": float_inputs,
        "activations": activations,
        "params": params,
        "peak": peak,
        "available": _available_memory(),
    }


def _frames_that_fit(cfg, estimate: dict, budget: float) -> int | None:
    """The largest frames_per_batch (a multiple of env.num_envs, at most the configured one) whose
    iteration fits in `budget` bytes, or None."""
    num_envs = cfg.env.num_envs
    per_frame = 2 * estimate["per_frame"] + max(estimate["float_inputs"], estimate["activations"] / 2)
    frames = int((budget - estimate["params"]) // per_frame) // num_envs * num_envs
    frames = min(frames, cfg.experiment.frames_per_batch)
    return frames if frames >= 2 * num_envs else None


def _available_memory() -> float:
    """MemAvailable from /proc/meminfo (bytes), or the physical memory where that is not readable."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def _gb(n_bytes: float) -> str:
    if n_bytes >= 2**28:
        return f"{n_bytes / 2**30:.2f} GB"
    return f"{n_bytes / 2**20:.{0 if n_bytes >= 10 * 2**20 else 1}f} MB"
