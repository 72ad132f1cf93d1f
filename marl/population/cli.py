"""`marl population train method=xpmin|selfplay|specialists [preset=...] [key=value ...]`.

`add_population_parser(commands)` adds the `population` command to marl's argparse subparsers
(marl/cli.py) and `run_population(args)` runs it; user errors (`MarlError`) reach marl's main, which prints
them as one paragraph with exit status 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from marl.arguments import MAX_EPISODES, add_trust_argument, count
from marl.errors import MarlError

TRAIN_EPILOG = """\
examples:
  marl population train preset=matrix_game_xpmin            XP-min, 4 members, one-shot matrix game, K=4
  marl population train preset=matrix_game_selfplay         the self-play baseline (independent seeds)
  marl population train preset=matrix_game_specialists      one member per convention (env restricted)
  marl population train method=xpmin population.size=8 env.k=8 population.xp_lambda=0.5
  marl population train preset=cooking_xpmin population.pairs=all     every ordered pair every iteration
  marl population train preset=cooking_xpmin collector.num_workers=2   the pairs' rollouts on 2 Ray workers
  marl population train preset=cooking_xpmin sharing.scheme=hyper       members from a hypernetwork
  marl population train resume=results/runs/matrix_game_xpmin-20261124-101500   continue a stopped run

Sections: experiment (seed, iterations, eval_every, ...), env (name, max_steps, the env's own arguments),
population (method, size, xp_lambda, pairs, partners_per_member, partner_sampling, envs_per_pair,
label_key, restrict_kwarg, specialist_targets), algorithm (PPO: lr, clip_epsilon, entropy_coef, gamma,
gae_lambda, epochs, minibatch_size, rollout_steps, ...), model (hidden_sizes, activation), sharing
(scheme: independent | hyper; hyper.variant, hyper.embedding_dim, hyper.hidden_size as in marl train),
collector (num_workers: Ray rollout workers, the pairs split over them; worker_threads), ray (address,
num_cpus). `marl config show population [preset=...]` lists every key.
Presets live in configs/population/. Ctrl-C saves a checkpoint and prints the resume command.
"""


def add_population_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `population` (with its `train` subcommand) to an argparse subparsers object; returns it."""
    population = commands.add_parser(
        "population",
        help="partner populations: train (XP-min, self-play, specialists), evaluate, extract, generalist",
        description="Partner populations trained as one batched module.",
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
    add_trust_argument(train)
    add_evaluate_parser(sub)
    add_extract_parser(sub)
    add_generalist_parser(sub)
    return population


EVALUATE_EPILOG = """\
examples:
  marl population evaluate results/runs/matrix_game_xpmin-20261124-101500
  marl population evaluate results/runs/cooking_xpmin-<time> \\
      --specialists results/runs/cooking_specialists-<time>
  marl population evaluate <run> --episodes 64 --seed 1 --out results/eval/xpmin

Writes evaluation.json (matrices, D, S, capable members, O, per-specialist success) and xp_matrix.png into
the run directory (or --out) and logs evaluate/... to the run's TensorBoard. Definitions: docs/metrics.md.
"""


def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `evaluate` to the `population` command's subparsers; returns it."""
    evaluate = subparsers.add_parser(
        "evaluate",
        help="cross-play matrix, diversity, specialisation and overfitness of a population run",
        description=(
            "Play every ordered pair of a trained population from held-out starts and report the cross-play "
            "matrix, diversity D = H(Y), specialisation S = I(X;Y)/H(Y), capable members and, with "
            "--specialists, overfitness O against held-out specialists."
        ),
        epilog=EVALUATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument("run", help="a population run directory (or one of its checkpoint files)")
    evaluate.add_argument("--specialists", metavar="RUN", help="a method=specialists run: held-out partners")
    evaluate.add_argument(
        "--episodes", type=count(1, MAX_EPISODES), default=32, help="episodes per pair (default 32)"
    )
    evaluate.add_argument(
        "--seed", type=count(0, 2**31 - 1), help="held-out starts (default: the run's evaluation seed)"
    )
    evaluate.add_argument("--out", metavar="DIR", help="write the files here instead of the run directory")
    evaluate.add_argument("--device", default="auto", help="device to evaluate on (default auto)")
    evaluate.add_argument("--no-tensorboard", action="store_true", help="do not log to the run's TensorBoard")
    add_trust_argument(evaluate)
    return evaluate


GENERALIST_EPILOG = """\
examples:
  marl population generalist results/runs/matrix_game_specialists-20261124-101500
  marl population generalist <population run> experiment.iterations=500 env.num_envs=128 \\
      model.recurrent_size=128 algorithm.chunk_length=16
  marl population generalist <population run> generalist.test_population=<another population run>
  marl population generalist resume=results/runs/generalist-20261124-111500      continue a stopped run

Sections: experiment, generalist (population, test_population, ...), env (num_envs), algorithm, model;
`marl config show generalist` lists every key. The generalist trains with every member of the population
(frozen), in both seats; generalist.test_population is only evaluated. Ctrl-C saves a checkpoint and prints
the resume command.
"""


def add_generalist_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `generalist` to the subparsers of `marl population` (its `population_command`)."""
    parser = commands.add_parser(
        "generalist",
        help="train a recurrent generalist with a frozen partner population",
        description=(
            "Train a GRU agent by PPO over sequence chunks with partners sampled from a trained population "
            "(frozen), in both seats; it is evaluated by its success with each partner and their harmonic "
            "mean."
        ),
        epilog=GENERALIST_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="POPULATION_RUN|key=value", help="the population run, then key=value"
    )
    add_trust_argument(parser)
    return parser


EXTRACT_EPILOG = """\
examples:
  marl population extract results/runs/matrix_game_xpmin-20261124-101500 method=dagger
  marl population extract results/runs/cooking_xpmin-20261124-101500 method=rl extract.reward=modal
  marl population extract <teacher run> method=dagger extract.beta0=1 extract.beta_decay=0.7 \\
      extract.window=0 experiment.iterations=50
  marl population extract resume=results/runs/extract_dagger-20261125-090000    continue a stopped run

The teacher is a population run directory (or checkpoint) of marl population train. Sections: extract
(method, envs_per_member; dagger: beta0, beta_decay, window, student_actions; rl: reward, env_reward_scale,
restrict_env, label_episodes; student_env: env settings for the students only, e.g.
extract.student_env.shaping=paying), algorithm (rollout_steps, lr, epochs, minibatch_size, entropy_coef;
null = the method's default), experiment; `marl config show extract` lists every key, method= is short for
extract.method=. The students get the teacher run's env, networks and other PPO settings. Ctrl-C saves a
checkpoint and prints the resume command. The run directory loads like any population run
(marl population evaluate).
"""


def add_extract_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `extract` to `marl population`'s subcommands (the subparsers of marl/population/cli.py)."""
    parser = commands.add_parser(
        "extract",
        help="extract a population's members into fresh, less overfit partners (dagger or rl)",
        description=(
            "Train a fresh population, student i from member i of a population run, in self-play only: "
            "method=dagger imitates the member's action distribution on the students' own self-play states "
            "(a beta-mixture of teacher and student acts); method=rl runs PPO on a reward that pays only "
            "for the member's self-play label distribution. No cross-play term: the members' specialty "
            "is kept; their responses to strangers (a handshake's sabotage) are copied only where the "
            "students' self-play reaches them (dagger), or not at all (rl)."
        ),
        epilog=EXTRACT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "words", nargs="*", metavar="TEACHER_RUN | key=value", help="the teacher run, then key=value settings"
    )
    add_trust_argument(parser)
    return parser


def run_population(args: argparse.Namespace) -> int:
    """Run a parsed `population` command; MarlError propagates (marl's main prints it)."""
    if args.population_command == "evaluate":
        from marl.population.evaluate import run_evaluate

        return run_evaluate(args)
    if args.population_command == "extract":
        from marl.population.extract import run_extract

        return run_extract(args)
    if args.population_command == "generalist":
        from marl.population.generalist import run_generalist

        return run_generalist(args)
    if args.population_command != "train":
        raise MarlError(
            "marl population needs a subcommand: train (marl population train method=xpmin ...), evaluate "
            "(marl population evaluate <run> --specialists <run>), extract (marl population extract <run> "
            "method=dagger) or generalist (marl population generalist <population run>)."
        )
    return train_command(args.overrides)


SHOWN_CONFIGS = ("population", "generalist", "extract")  # `marl config show <one of these> [key=value ...]`


def show_config(command: str, words: list[str]) -> Any:
    """The config `marl population <command> words...` would run with (`marl config show`); no run is read."""
    from marl.population.config import load_population_config
    from marl.population.extract import extract_config, parse_extract_args
    from marl.population.generalist import load_generalist_config

    if command == "generalist":
        return load_generalist_config(words, need_population=False)
    return (
        load_population_config(words)
        if command == "population"
        else extract_config(parse_extract_args(words)[1])
    )


def train_command(overrides: list[str]) -> int:
    """`marl population train ...`: a new run, or `resume=<run dir>` with optional length overrides."""
    from marl.checkpoint import load_checkpoint
    from marl.population.config import (
        apply_overrides,
        load_population_config,
        parse_population_args,
        population_config_from_dict,
    )
    from marl.population.xpmin import train
    from marl.runs import stop_signals_interrupt
    from marl.storage import check_runs_dir

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
        check_runs_dir(cfg.experiment.runs_dir)
    with stop_signals_interrupt():
        run_dir = train(cfg, resume=resume)
    print(
        f"\nRun saved in {run_dir}\n"
        f"  TensorBoard: tensorboard --logdir {run_dir}\n"
        f"  Summary:     {Path(run_dir) / 'population.json'} (final cross-play matrix, self-play labels)"
    )
    return 0
