"""Stepping speed of the native batched-torch envs (envs/native/) with random actions.

    python -m marl.benchmarks.native_env_speed [--envs 1 1024 16384] [--frames 2000000] [--device cpu]
                                               [--threads 1] [--repeats 3] [--out results]

For each env (cooking with its preset settings, the one-shot matrix game with k=3) and batch size, it
pre-draws random actions, steps once to warm up, and then times batched steps two ways:
- `torchrl`: `env.step_and_maybe_reset(td)`, what training does (TensorDict in/out, partial resets of the
  envs whose episode ended; the matrix game resets every env every step);
- `core`: the env's own tensor ops only (`_advance`, `_observe`, `_info`, and `_reset_envs` on the envs
  that ended), which shows how much of the time is TorchRL's step machinery.
frames/s = batched steps x envs / seconds (one frame = one env step for both agents). Best of `--repeats`.
Batched steps per measurement: `--frames / envs`, clamped to [100, 3000]. On CUDA, time is measured after
`torch.cuda.synchronize()`. Writes <out>/native_env_speed.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from marl.benchmarks.machine import hardware, write_json
from marl.envs.native import NATIVE_ENVS

ENV_KWARGS = {
    "cooking": {"max_steps": 200},  # the preset's defaults (configs/env/native/cooking.yaml)
    "matrix_game": {"k": 3, "horizon": 1, "max_steps": 1},
}
ACTION_SETS = 16  # distinct pre-drawn action tensors, cycled


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def torchrl_frames_per_second(env, actions: list[torch.Tensor], steps: int) -> float:
    td = env.reset()
    _sync(env.device)
    start = time.perf_counter()
    for t in range(steps):
        td["agents", "action"] = actions[t % len(actions)]
        _, td = env.step_and_maybe_reset(td)
    _sync(env.device)
    return steps * env.num_envs / (time.perf_counter() - start)


def core_frames_per_second(env, actions: list[torch.Tensor], steps: int) -> float:
    env.reset()
    _sync(env.device)
    start = time.perf_counter()
    for t in range(steps):
        env.step_count += 1
        _, terminated = env._advance(actions[t % len(actions)])
        env._observe()
        env._info()
        ended = terminated | (env.step_count >= env.max_steps)
        env.step_count.masked_fill_(ended, 0)
        env._reset_envs(ended)
    _sync(env.device)
    return steps * env.num_envs / (time.perf_counter() - start)


def measure(name: str, num_envs: int, frames: int, repeats: int, device: torch.device) -> dict:
    env = NATIVE_ENVS[name](num_envs=num_envs, device=device, seed=0, **ENV_KWARGS[name])
    n_actions = env.full_action_spec["agents", "action"].space.n
    generator = torch.Generator().manual_seed(0)
    actions = [
        torch.randint(0, n_actions, (num_envs, 2), generator=generator).to(device) for _ in range(ACTION_SETS)
    ]
    steps = max(100, min(3000, frames // num_envs))
    torchrl_frames_per_second(env, actions, 10)  # warm-up
    core_frames_per_second(env, actions, 10)
    torchrl = max(torchrl_frames_per_second(env, actions, steps) for _ in range(repeats))
    core = max(core_frames_per_second(env, actions, steps) for _ in range(repeats))
    return {
        "env": name,
        "num_envs": num_envs,
        "batched_steps": steps,
        "torchrl_frames_per_s": torchrl,
        "torchrl_batched_steps_per_s": torchrl / num_envs,
        "core_frames_per_s": core,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 1024, 16384])
    parser.add_argument("--frames", type=int, default=2_000_000, help="frames per measurement (clamped)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    header = f"{'env':<12} {'envs':>6} {'steps':>6} {'frames/s (torchrl)':>19} {'batched steps/s':>16}"
    print(f"{header} {'core frames/s':>14}")
    for name in ENV_KWARGS:
        for num_envs in args.envs:
            row = measure(name, num_envs, args.frames, args.repeats, device)
            rows.append(row)
            print(
                f"{name:<12} {num_envs:>6} {row['batched_steps']:>6} {row['torchrl_frames_per_s']:>19,.0f} "
                f"{row['torchrl_batched_steps_per_s']:>16,.1f} {row['core_frames_per_s']:>14,.0f}"
            )
    result = {
        "benchmark": "native env stepping speed, random actions",
        "env_kwargs": ENV_KWARGS,
        "repeats": args.repeats,
        "hardware": hardware(device, ("torch", "torchrl", "tensordict")),
        "rows": rows,
    }
    out = Path(args.out)
    write_json(out / "native_env_speed.json", result)
    print(f"Hardware: {result['hardware']}\nWrote {out / 'native_env_speed.json'}")


if __name__ == "__main__":
    main()
