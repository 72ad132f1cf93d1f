"""`marl population train method=xpmin|selfplay|specialists [preset=...] [key=value ...]`.

`add_population_parser(commands)` adds the `population` command to marl's argparse subparsers
(marl/cli.py) and `run_population(args)` runs it; user errors (`MarlError`) reach marl's main, which prints
them as one paragraph with exit status 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from marl.errors import MarlError

TRAIN_EPILOG = """\
examples:
  marl population train preset=matrix_game_xpmin            XP-min, 4 members, one-shot matrix game, K=4
  marl population train preset=matrix_game_selfplay         the self-play baseline (independent seeds)
  marl population train preset=matrix_game_specialists      one member per convention (env restricted)
  marl population train method=xpmin population.size=8 env.k=8 population.xp_lambda=0.5
  marl population train preset=cooking_xpmin population.pairs=sampled population.partners_per_member=2
  marl population train preset=cooking_xpmin population.scheme=hyper    members from a hypernetwork
  marl population train resume=results/runs/matrix_game_xpmin-20261124-101500   continue a stopped run

Sections: experiment (seed, iterations, eval_every, ...), env (name, max_steps, the env's own arguments),
population (method, size, scheme, xp_lambda, pairs, partners_per_member, partner_sampling, envs_per_pair,
label_key, restrict_kwarg, specialist_targets), algorithm (PPO: lr, clip_epsilon, entropy_coef, gamma,
gae_lambda, epochs, minibatches, rollout_steps, ...), model (hidden_sizes, activation, hyper_*). Presets live
in configs/population/. Ctrl-C saves a checkpoint and prints the resume command.
"""


def add_population_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `population` (with its `train` subcommand) to an argparse subparsers object; returns it."""
    population = commands.add_parser(
        "population",
        help="train partner populations (XP-min, self-play, specialists)",
        description="Partner populations trained as one batched module (issue 9).",
    )
    sub = population.add_subparsers(dest="population_command", metavar="SUBCOMMAND")
    train = sub.add_parser(
        "train",
        help="train a population (key=value overrides)",
        description=(
            "Train N members at once: method=xpmin maximises each member's self-play return minus lambda "
            "times its cross-play return with its best other member; selfplay trains N independent "
            "self-play members; specialists trains member i in self-play where only label i pays."
        ),
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument(
        "overrides", nargs="*", metavar="key=value", help="method=, preset=, resume= and section.key=value"
    )
    from marl.population.evaluate import add_evaluate_parser

    add_evaluate_parser(sub)
    return population


def run_population(args: argparse.Namespace) -> int:
    """Run a parsed `population` command; MarlError propagates (marl's main prints it)."""
    if args.population_command == "evaluate":
        from marl.population.evaluate import run_evaluate

        return run_evaluate(args)
    if args.population_command != "train":
        raise MarlError(
            "marl population needs a subcommand: train (marl population train method=xpmin ...) or evaluate "
            "(marl population evaluate <run> --specialists <run>)."
        )
    return train_command(args.overrides)


def train_command(overrides: list[str]) -> int:
    """`marl population train ...`: a new run, or `resume=<run dir>` with optional length overrides."""
    from marl.checkpoint import load_checkpoint
    from marl.cli import stop_signals_interrupt
    from marl.population.config import (
        apply_overrides,
        load_population_config,
        parse_population_args,
        population_config_from_dict,
    )
    from marl.population.xpmin import train

    preset, dotted, resume = parse_population_args(overrides)
    if resume is not None:
        if preset is not None:
            raise MarlError(
                "resume= continues a run with its saved config; drop preset= (overrides such as "
                "experiment.iterations=... may still extend it)."
            )
        cfg = apply_overrides(population_config_from_dict(load_checkpoint(resume)["config"]), dotted)
        print(f"Resuming {resume}")
    else:
        cfg = load_population_config(overrides)
    with stop_signals_interrupt():
        run_dir = train(cfg, resume=resume)
    print(
        f"\nRun saved in {run_dir}\n"
        f"  TensorBoard: tensorboard --logdir {run_dir}\n"
        f"  Summary:     {Path(run_dir) / 'population.json'} (final cross-play matrix, self-play labels)"
    )
    return 0
