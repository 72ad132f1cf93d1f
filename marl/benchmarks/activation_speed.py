"""The hidden layers' tanh on CPU: PyTorch's `torch.tanh` against the project's `tanh` (2 sigmoid(2x) - 1,
`agents/sharing.py`), alone and in a whole training iteration.

    python -m marl.benchmarks.activation_speed [--schemes shared grouped hyper] [--iterations 2]
        [--out results]

Sections:
1. op: forward, and forward + backward, of one [6, 8192, 128] float32 tensor (6 agents, one minibatch of
   8,192 frames, 128 hidden units: a hidden layer of the patrol/search study), best of `--repeats`, beside
   the largest difference from `torch.tanh`.
2. training: frames/s of `train_iteration` (collection, advantages, PPO epochs) on
   experiment=patrol_search_fast (512 envs x 200 steps = 102,400 frames per iteration, 4 epochs of
   8,192-frame minibatches, MLP 128x128) per sharing scheme, the same trainer alternating between
   `torch.tanh` and the project's `tanh` iteration by iteration after one warm-up, so that both meet the
   same load on the machine. Hypernetwork actors at lr 5e-4, as in the study.

Writes <out>/activation_speed.json and prints a table with the hardware. `--quick` shrinks every size (a
smoke test; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from marl.agents import sharing
from marl.benchmarks.machine import hardware, write_json
from marl.config import load_config
from marl.training import build_trainer, train_iteration

OP_SHAPE = (6, 8192, 128)
QUICK_OP_SHAPE = (6, 64, 16)
QUICK_OVERRIDES = [
    "env.num_envs=8", "env.max_steps=20", "experiment.frames_per_batch=160", "algorithm.minibatch_size=80",
    "algorithm.epochs=1",
]  # fmt: skip
SCHEME_OVERRIDES = {"hyper": ["algorithm.lr=5e-4"]}  # the study's hypernetwork learning rate
Activation = Callable[[torch.Tensor], torch.Tensor]
IMPLEMENTATIONS: dict[str, Activation] = {
    "torch.tanh": torch.tanh,
    "sigmoid form": sharing.tanh,
}


def best_ms(fn: Callable[[], object], repeats: int, calls: int = 10) -> float:
    """Fastest mean time of `calls` calls over `repeats` tries, in milliseconds."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e3


def _forward_backward(fn: Activation, x: torch.Tensor, grad: torch.Tensor) -> None:
    fn(x).backward(grad)


def op_times(shape: tuple[int, ...], repeats: int) -> list[dict]:
    x = torch.randn(shape) * 2
    grad = torch.randn(shape)
    rows = []
    for name, fn in IMPLEMENTATIONS.items():
        leaf = x.clone().requires_grad_()
        rows.append({
            "implementation": name,
            "forward_ms": best_ms(partial(fn, x), repeats),
            "forward_backward_ms": best_ms(partial(_forward_backward, fn, leaf, grad), repeats),
            "max_abs_difference_from_torch_tanh": (fn(x) - torch.tanh(x)).abs().max().item(),
        })  # fmt: skip
    return rows


def use_activation(model: torch.nn.Module, fn: Activation) -> None:
    """Point every module's hidden activation that is a tanh at `fn`."""
    for module in model.modules():
        if getattr(module, "activation", None) in IMPLEMENTATIONS.values():
            module.activation = fn


def training_speed(scheme: str, iterations: int, overrides: list[str]) -> dict:
    base = ["experiment=patrol_search_fast", f"sharing={scheme}", *SCHEME_OVERRIDES.get(scheme, [])]
    cfg = load_config(base + overrides)
    trainer = build_trainer(cfg)
    train_iteration(trainer)  # warm-up, not counted
    seconds = dict.fromkeys(IMPLEMENTATIONS, 0.0)
    frames = dict.fromkeys(IMPLEMENTATIONS, 0)
    for _ in range(iterations):
        for name, fn in IMPLEMENTATIONS.items():
            use_activation(trainer.model, fn)
            before = trainer.frames
            start = time.perf_counter()
            train_iteration(trainer)
            seconds[name] += time.perf_counter() - start
            frames[name] += trainer.frames - before
    trainer.close()
    fps = {name: frames[name] / seconds[name] for name in IMPLEMENTATIONS}
    return {"scheme": scheme, "frames_per_s": fps, "speedup": fps["sigmoid form"] / fps["torch.tanh"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--schemes", nargs="+", default=["shared", "grouped", "hyper"])
    parser.add_argument("--iterations", type=int, default=2, help="timed iterations per implementation")
    parser.add_argument("--repeats", type=int, default=5, help="tries of the op timing (best is kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the study's workers: 1)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    machine = hardware(packages=("vmas", "torchrl"))
    print(
        f"tanh on {machine['cpu']} ({machine['cpu_isa']}), {args.threads} thread(s), torch {machine['torch']}"
    )
    ops = op_times(QUICK_OP_SHAPE if args.quick else OP_SHAPE, args.repeats)
    for row in ops:
        difference = row["max_abs_difference_from_torch_tanh"]
        print(f"  {row['implementation']:<14} forward {row['forward_ms']:6.2f} ms, forward+backward "
              f"{row['forward_backward_ms']:6.2f} ms, max |difference| {difference:.1e}")  # fmt: skip
    training = []
    for scheme in args.schemes:
        row = training_speed(scheme, args.iterations, QUICK_OVERRIDES if args.quick else [])
        training.append(row)
        fps = row["frames_per_s"]
        print(f"  training, {scheme:<8} torch.tanh {fps['torch.tanh']:7,.0f} frames/s, sigmoid form "
              f"{fps['sigmoid form']:7,.0f} frames/s: x{row['speedup']:.2f}")  # fmt: skip

    record = {
        "benchmark": "activation_speed",
        "hardware": machine,
        "config": {
            "op_shape": list(QUICK_OP_SHAPE if args.quick else OP_SHAPE),
            "training": "experiment=patrol_search_fast (6 agents, 512 envs x 200 steps, 4 epochs, minibatch "
            "8192, MLP 128x128, MAPPO); hyper at lr 5e-4",
            "quick_overrides": QUICK_OVERRIDES if args.quick else [],
            "iterations_per_implementation": args.iterations,
            "mode": "quick" if args.quick else "full",
        },
        "op": ops,
        "training": training,
    }
    print(f"Wrote {write_json(Path(args.out) / 'activation_speed.json', record)}")
    return record


if __name__ == "__main__":
    main()
