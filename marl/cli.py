"""`marl` command line: train, evaluate, and inspect configs.

Every user-facing error (a `MarlError`) is printed as one paragraph and exits with status 2, no traceback.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from marl.errors import MarlError

DESCRIPTION = """\
Multi-agent RL for heterogeneity and role specialisation: MAPPO/IPPO on VMAS with shared, independent,
role-grouped or HyperMARL parameter sharing, logged to TensorBoard.

Commands: train, eval (returns), metrics (diversity and specialisation), config show.

Configs are YAML presets under configs/ (groups: experiment, algorithm, env, sharing), overridden with
key=value on the command line. `marl config show [overrides]` prints the resolved config.
"""

TRAIN_EPILOG = """\
examples:
  marl train                                     the built-in default: a short real run (<5 min on 2 CPUs)
  marl train env=vmas/dispersion sharing=hyper        HyperMARL actor and critic on Dispersion (4 agents)
  marl train algorithm=ippo sharing=independent env.n_agents=5 experiment.total_frames=1_000_000
  marl train sharing=grouped "sharing.roles={fast: [0, 1], slow: [2]}"
  marl train sharing.actor.scheme=hyper sharing.critic.scheme=shared   actor and critic chosen separately
  marl train experiment=my_experiment.yaml            your own YAML file (same layout as configs/default.yaml)
  marl train resume=results/runs/default-20261123-101500   continue a stopped run exactly

Groups: algorithm={mappo,ippo}, env=vmas/<scenario> (any VMAS scenario; presets for navigation, balance,
dispersion), sharing={shared,shared_id,independent,grouped,hyper,hyper_linear}, experiment=<name or file>.
Ctrl-C saves a checkpoint and prints the resume command.
"""


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marl", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="train agents (key=value overrides)",
        description="Train agents with PPO.",
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides and group choices")

    config = commands.add_parser(
        "config", help="inspect configuration", description="Inspect the resolved configuration."
    )
    config_commands = config.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    show = config_commands.add_parser("show", help="print the resolved config as YAML")
    show.add_argument("overrides", nargs="*", metavar="key=value")

    evaluate = commands.add_parser(
        "eval",
        help="evaluate a run or checkpoint and print a table",
        description="Run deterministic evaluation episodes of a trained run and print per-agent returns.",
        epilog="example: marl eval results/runs/default-20261123-101500 --episodes 32 --render rollout.gif",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument("run", help="a run directory (newest checkpoint) or a checkpoint .pt file")
    evaluate.add_argument("--episodes", type=int, default=32, help="evaluation episodes (default 32)")
    evaluate.add_argument(
        "--render", metavar="FILE", help="also render env 0's episode to FILE (.gif or .mp4)"
    )
    evaluate.add_argument(
        "--stochastic", action="store_true", help="sample actions instead of taking the mode"
    )
    evaluate.add_argument("--device", default="auto", help="device to evaluate on (default auto)")

    metrics = commands.add_parser(
        "metrics",
        help="diversity and specialisation metrics of a run or checkpoint",
        description=(
            "Run evaluation episodes of a trained run and print its diversity and specialisation metrics: "
            "SND and its pairwise matrix, I(agent; action | observation), and, where agents have positions, "
            "H(cell), H(cell | agent), I(agent; cell) and each agent's role entropy (docs/metrics.md)."
        ),
        epilog="example: marl metrics results/runs/default-20261123-101500 --episodes 64 --heatmap snd.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    metrics.add_argument("run", help="a run directory (newest checkpoint) or a checkpoint .pt file")
    metrics.add_argument("--episodes", type=int, help="evaluation episodes (default: the run's)")
    metrics.add_argument("--cell-size", type=float, help="grid cell side, world units (default: the run's)")
    metrics.add_argument("--stochastic", action="store_true", help="sample actions instead of the mode")
    metrics.add_argument("--device", default="auto", help="device to evaluate on (default auto)")
    metrics.add_argument("--heatmap", metavar="FILE", help="also save the SND matrix as an image (.png)")
    metrics.add_argument("--json", metavar="FILE", help="also write the metrics to FILE as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return _train(args.overrides)
        if args.command == "config" and args.config_command == "show":
            from marl.config import config_to_yaml, load_config

            print(config_to_yaml(load_config(args.overrides)), end="")
            return 0
        if args.command == "eval":
            from marl.evaluation import evaluate_checkpoint

            evaluate_checkpoint(args.run, args.episodes, args.render, not args.stochastic, args.device)
            return 0
        if args.command == "metrics":
            return _metrics(args)
        parser.print_help()
        return 0 if args.command is None else 2
    except MarlError as error:
        print(_paragraph(f"error: {error}"), file=sys.stderr)
        return 2


def _train(overrides: list[str]) -> int:
    from marl.checkpoint import load_checkpoint
    from marl.config import apply_overrides, config_from_dict, load_config, parse_overrides
    from marl.training import train

    groups, dotted, resume = parse_overrides(overrides)
    if resume is not None:
        if groups:
            raise MarlError(
                f"resume= continues a run with its saved config; group choices ({', '.join(groups)}) cannot "
                f"change what it trains. Drop them, or start a new run without resume=."
            )
        cfg = apply_overrides(config_from_dict(load_checkpoint(resume)["config"]), dotted)
        print(f"Resuming {resume}")
    else:
        cfg = load_config(overrides)
    run_dir = train(cfg, resume=resume)
    print(
        f"\nRun saved in {run_dir}\n"
        f"  TensorBoard: tensorboard --logdir {run_dir}\n"
        f"  Evaluate:    marl eval {run_dir}\n"
        f"  Metrics:     {Path(run_dir) / 'metrics.jsonl'}"
    )
    return 0


def _metrics(args: argparse.Namespace) -> int:
    import json

    from marl.evaluation import measure_checkpoint

    for name in ("episodes", "cell_size"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise MarlError(f"--{name.replace('_', '-')} must be positive, got {value}.")
    scalars = measure_checkpoint(
        args.run, args.episodes, not args.stochastic, args.device, args.cell_size, args.heatmap
    )
    if args.json:
        Path(args.json).write_text(json.dumps(scalars, indent=2) + "\n")
        print(f"Metrics written to {args.json}")
    return 0


def _paragraph(text: str) -> str:
    return "\n".join(textwrap.fill(part, width=110) for part in text.split("\n"))


if __name__ == "__main__":
    sys.exit(main())
