"""`marl` command line: train, evaluate, and inspect configs.

Every user-facing error (a `MarlError`) is printed as one paragraph and exits with status 2, no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from pathlib import Path

from marl.arguments import MAX_EPISODES, add_trust_argument, count
from marl.errors import MarlError
from marl.runs import stop_signals_interrupt

DESCRIPTION = """\
Multi-agent RL for heterogeneity and role specialisation: MAPPO/IPPO on VMAS with shared, independent,
role-grouped or HyperMARL parameter sharing, logged to TensorBoard.

Commands: train, eval (returns), metrics (diversity and specialisation), sweep (a grid of runs),
compare (curves and tables from many runs), pareto (trade-off fronts of many teams), population (partner
populations: XP-min and baselines, evaluation, extraction, a generalist), check-env (test a PettingZoo
env), config show.

Configs are YAML presets under configs/ (groups: experiment, algorithm, env, sharing), overridden with
key=value on the command line. `marl config show [overrides]` prints the resolved config; `marl config show
population|generalist|extract [key=value ...]` those commands' configs.
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
  marl train env=pettingzoo env.entry_point=mpe2.simple_spread_v3:parallel_env algorithm=mappo

Groups: algorithm={mappo,ippo}, env=vmas/<scenario> (any VMAS scenario; presets for navigation, balance,
dispersion, and our patrol_search) or env=pettingzoo env.entry_point=package.module:factory (any PettingZoo
env), sharing={shared,shared_id,independent,grouped,hyper,hyper_linear}, experiment=<name or file>.
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
    add_trust_argument(train)

    config = commands.add_parser(
        "config", help="inspect configuration", description="Inspect the resolved configuration."
    )
    config_commands = config.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    show = config_commands.add_parser(
        "show",
        help="print the resolved config as YAML",
        description="Print the resolved config of marl train, or with a first word population, generalist "
        "or extract, of that marl population command (marl config show population preset=matrix_game_xpmin).",
    )
    show.add_argument("overrides", nargs="*", metavar="[population|generalist|extract] key=value")

    evaluate = commands.add_parser(
        "eval",
        help="evaluate a run or checkpoint and print a table",
        description="Run deterministic evaluation episodes of a trained run and print per-agent returns.",
        epilog=(
            "examples:\n"
            "  marl eval results/runs/default-20261123-101500 --episodes 32 --render rollout.gif\n"
            "  marl eval heuristic:fixed_roles/pso env=vmas/patrol_search env.share_signal=true\n"
            "      a hand-designed team (heuristic:<team>[/<search>], teams random, patrol, fixed_roles,\n"
            "      switch; searches ecoli, pso) on the same held-out episodes a run with that seed uses"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_evaluation_arguments(evaluate, episodes_default=32)
    evaluate.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="with a heuristic: the environment to run it in (config overrides, e.g. env=vmas/patrol_search)",
    )
    evaluate.add_argument(
        "--render", metavar="FILE", help="also render env 0's episode to FILE (.gif or .mp4)"
    )
    evaluate.add_argument(
        "--seed", type=count(0, 2**31 - 1), default=0, help="a heuristic's random stream (default 0)"
    )
    add_trust_argument(evaluate)

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
    _add_evaluation_arguments(metrics, episodes_default=None)
    metrics.add_argument("--cell-size", type=float, help="grid cell side, world units (default: the run's)")
    metrics.add_argument("--heatmap", metavar="FILE", help="also save the SND matrix as an image (.png)")
    metrics.add_argument("--json", metavar="FILE", help="also write the metrics to FILE as JSON")
    metrics.add_argument(
        "--position-mi",
        action="store_true",
        help="also estimate I(agent; position) on the continuous positions, with a reliability verdict",
    )
    add_trust_argument(metrics)

    sweep = commands.add_parser(
        "sweep",
        help="train every combination of a grid of settings (resumable)",
        description=(
            "Train every combination of a sweep file's grid, N processes at a time. Running it again skips "
            "finished runs and resumes interrupted ones. The sweep file format is in marl/sweep.py."
        ),
        epilog=(
            "examples:\n"
            "  marl sweep configs/sweeps/dispersion.yaml              the HyperMARL Dispersion reproduction\n"
            "  marl sweep configs/sweeps/dispersion.yaml --dry-run    list the runs and their status only\n"
            "  marl sweep my_sweep.yaml experiment.total_frames=200000   extra overrides for every run"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sweep.add_argument("file", help="sweep YAML file (configs/sweeps/*.yaml)")
    sweep.add_argument("overrides", nargs="*", metavar="key=value", help="overrides added to every run")
    sweep.add_argument("--dry-run", action="store_true", help="list the runs and their status, train nothing")
    sweep.add_argument(
        "--parallel", type=count(1, 256), help="training processes at once (default: the file's)"
    )
    add_trust_argument(sweep)

    compare = commands.add_parser(
        "compare",
        help="learning curves, SND curves and a table from a folder of runs",
        description=(
            "Group the runs under a folder by their settings (seeds pooled), and write curves.png (mean and "
            "95% interval over seeds against frames), table.md and summary.json to --out."
        ),
        epilog="example: marl compare results/sweeps/dispersion --out results/dispersion",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pareto = commands.add_parser(
        "pareto",
        help="Pareto fronts of many teams on minimised objectives (Ray tasks, resumable)",
        description=(
            "Evaluate every member of a Pareto file (hand-designed teams, or learned ones trained first) "
            "with several seeds on the same held-out episodes, then write the non-dominated set, "
            "hypervolumes with seed intervals, a front figure and a table to the file's `out`, and "
            "HParams to TensorBoard. "
            "Members run as Ray tasks (workers: N), so the same command spreads over a cluster "
            "(--ray-address). Each result joins the ledger <out>/results.jsonl; running it again (here or on "
            "a clone that holds the ledger) only runs what is missing. The file format is in "
            "marl/pareto_sweep.py."
        ),
        epilog=(
            "examples:\n"
            "  marl pareto configs/pareto/patrol_search_heuristics.yaml     hand-designed teams, both maps\n"
            "  marl pareto configs/pareto/patrol_search_heuristics.yaml --dry-run   each seed, done or not\n"
            "  marl pareto configs/pareto/patrol_search_heuristics.yaml --front-per env.map env.n_sensing\n"
            "      --out results/patrol_search/by_sensing    the same results, one front per map and\n"
            "      sensing condition\n"
            "  marl pareto configs/pareto/patrol_search_learned.yaml --workers 8 --ray-address auto\n"
            "  marl pareto configs/pareto/patrol_search_learned_20m.yaml --seeds 0 --cached-only\n"
            "      --out /tmp/so_far    an interim front of a long sweep: the members whose seed 0 is\n"
            "      finished, nothing run"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pareto.add_argument("file", help="Pareto YAML file (configs/pareto/*.yaml)")
    pareto.add_argument("overrides", nargs="*", metavar="key=value", help="overrides added to every member")
    pareto.add_argument(
        "--dry-run",
        action="store_true",
        help="list the members, where each seed stands (done, trained part way, to run) and what runs next; "
        "run nothing",
    )
    pareto.add_argument(
        "--workers", type=count(0, 4096), help="Ray tasks at once (default: the file's; 0: in process)"
    )
    pareto.add_argument("--ray-address", help="join this Ray cluster (auto or host:port), not a local one")
    pareto.add_argument("--out", help="write the table, figure and summary here instead of the file's `out`")
    pareto.add_argument(
        "--front-per",
        nargs="+",
        metavar="KEY",
        help="one front per value of these grid keys (default: the file's)",
    )
    pareto.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        metavar="SEED",
        help="run and report only these seeds (default: the file's); the ledger holds every seed's results",
    )
    pareto.add_argument(
        "--first",
        nargs="+",
        metavar="KEY=VALUE",
        default=[],
        help="train the learned members with these grid settings (every seed) before the other learned "
        "members, e.g. --first env.reward_mode=team",
    )
    pareto.add_argument(
        "--cached-only",
        action="store_true",
        help="run nothing: report the members whose seeds are all finished and list the others as left out",
    )
    add_trust_argument(pareto)

    from marl.population.cli import add_population_parser

    add_population_parser(commands)

    check = commands.add_parser(
        "check-env",
        help="check a PettingZoo env before training it (API test, spaces, groups, masks, a rollout)",
        description=(
            "Build the env that ENTRY_POINT(**kwargs) returns, run PettingZoo's own API test and the "
            "adapter's checks, and print a report: agents, spaces and groups, action masks, global state, "
            "and a short rollout with random legal actions and the rewards it earned. Exit code 1 if the "
            "platform cannot train it."
        ),
        epilog=(
            "examples:\n"
            "  marl check-env mpe2.simple_spread_v3:parallel_env continuous_actions=true\n"
            "  marl check-env pettingzoo.classic.connect_four_v3:env\n"
            "  marl check-env my_package.my_env:make_env size=8     then: marl train env=pettingzoo "
            "env.entry_point=my_package.my_env:make_env env.size=8"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("entry_point", help="package.module:factory returning a Parallel or AEC env")
    check.add_argument(
        "kwargs", nargs="*", metavar="key=value", help="arguments for the factory (YAML values)"
    )
    check.add_argument("--steps", type=count(1, 10**6), default=200, help="rollout steps (default 200)")
    check.add_argument(
        "--max-steps", type=count(1, 10**6), default=100, help="episode limit, as env.max_steps (default 100)"
    )
    check.add_argument(
        "--groups",
        metavar="YAML",
        help="agent groups as env.groups takes them, e.g. '{red: [red_0, red_1], blue: [blue_0, blue_1]}' "
        "(default: by name prefix, then spaces)",
    )
    check.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a training config override for the model and memory report and the suggested command, e.g. "
        "--set algorithm=ippo --set model.encoder=cnn (repeatable)",
    )

    compare.add_argument("runs", help="folder holding the runs (searched recursively)")
    compare.add_argument("--out", required=True, help="output folder")
    compare.add_argument(
        "--metric",
        action="append",
        help="metric to plot and tabulate (repeatable; default eval/return_mean and team/*/snd)",
    )
    compare.add_argument(
        "--window", type=count(1, 10**6), default=3, help="final value = mean of the last N (default 3)"
    )
    compare.add_argument("--title", help="figure title")
    compare.add_argument(
        "--finished-only",
        action="store_true",
        help="leave out runs still training (an interim look at a running sweep: a group's curve runs only "
        "as far as all its runs logged)",
    )
    compare.add_argument(
        "--facet",
        nargs="+",
        metavar="KEY",
        help="one column of curves per value of this setting, or per combination of these settings "
        "(default algorithm.name; e.g. --facet env.kwargs.map env.kwargs.n_sensing, as a run's config.yaml "
        "spells them)",
    )
    compare.add_argument(
        "--smooth",
        type=count(1, 10**6),
        default=1,
        help="curves: trailing mean of each run's last N points (default 1)",
    )
    compare.add_argument(
        "--baseline",
        metavar="KEY=VALUE",
        help="e.g. sharing=shared: report from which frame each group stays clearly above its baseline",
    )
    return parser


def _add_evaluation_arguments(parser: argparse.ArgumentParser, episodes_default: int | None) -> None:
    """The arguments `eval` and `metrics` share: which run, how many episodes, how to act, where."""
    parser.add_argument(
        "run", help="a run directory (newest checkpoint), a checkpoint .pt file, or (eval) heuristic:<name>"
    )
    default = f"default {episodes_default}" if episodes_default else "default: the run's metrics.episodes"
    episodes_help = f"evaluation episodes ({default})"
    episodes = count(1, MAX_EPISODES)
    parser.add_argument("--episodes", type=episodes, default=episodes_default, help=episodes_help)
    parser.add_argument("--stochastic", action="store_true", help="sample actions instead of taking the mode")
    parser.add_argument("--device", default="auto", help="device to evaluate on (default auto)")


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "trust", False):
        from marl.trust import trust_everything

        trust_everything()
        os.environ["MARL_TRUST"] = "1"  # and in the processes this command starts (sweep runs)
    try:
        if args.command == "train":
            return _train(args.overrides)
        if args.command == "config" and args.config_command == "show":
            from marl.config import config_to_yaml, load_config
            from marl.population.cli import SHOWN_CONFIGS, show_config

            words = args.overrides
            shown = words and words[0] in SHOWN_CONFIGS
            cfg = show_config(words[0], words[1:]) if shown else load_config(words)
            print(config_to_yaml(cfg), end="")
            return 0
        if args.command == "eval":
            return _eval(args)
        if args.command == "pareto":
            from marl.pareto_sweep import check_keys, load_pareto, run_pareto

            sweep = load_pareto(args.file, args.overrides)
            if args.workers is not None:
                sweep.workers = args.workers
            if args.out:
                sweep.out = args.out
            if args.front_per:
                sweep.front_per = args.front_per
                check_keys(sweep)
            if args.seeds:
                sweep.seeds = list(dict.fromkeys(args.seeds))  # in order, once each
            run_pareto(
                sweep,
                args.ray_address,
                dry_run=args.dry_run,
                cached_only=args.cached_only,
                first=args.first,
            )
            return 0
        if args.command == "metrics":
            return _metrics(args)
        if args.command == "sweep":
            from marl.sweep import load_sweep, run_sweep

            sweep = load_sweep(args.file, args.overrides)
            if args.parallel is not None:
                sweep.parallel = args.parallel
            return 1 if run_sweep(sweep, dry_run=args.dry_run) else 0
        if args.command == "population":
            from marl.population.cli import run_population

            return run_population(args)
        if args.command == "check-env":
            return _check_env(args)
        if args.command == "compare":
            from marl.compare import compare

            metrics = tuple(args.metric or ("eval/return_mean", "team/*/snd"))
            options = dict(
                window=args.window,
                title=args.title,
                baseline=args.baseline,
                smooth=args.smooth,
                facet=tuple(args.facet) if args.facet else None,
                finished_only=args.finished_only,
            )
            compare(args.runs, args.out, metrics, **options)
            print(f"Wrote {args.out}/curves.png, table.md and summary.json")
            return 0
        parser.print_help()
        return 0 if args.command is None else 2
    except MarlError as error:
        print(_paragraph(f"error: {error}"), file=sys.stderr)
        return 2
    except OSError as error:  # a file the command had to write or read; the message says what to do
        if isinstance(error, BrokenPipeError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - output piped into `head`: not an error
            return 0
        from marl.storage import storage_error

        print(_paragraph(f"error: {storage_error(error)}"), file=sys.stderr)
        return 2


def _train(overrides: list[str]) -> int:
    from marl.checkpoint import load_checkpoint
    from marl.config import apply_overrides, config_from_dict, load_config, parse_overrides
    from marl.storage import check_runs_dir
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
        check_runs_dir(cfg.experiment.runs_dir)
    with stop_signals_interrupt():
        run_dir = train(cfg, resume=resume)
    print(
        f"\nRun saved in {run_dir}\n"
        f"  TensorBoard: tensorboard --logdir {run_dir}\n"
        f"  Evaluate:    marl eval {run_dir}\n"
        f"  Diversity:   marl metrics {run_dir}\n"
        f"  Metrics:     {Path(run_dir) / 'metrics.jsonl'}"
    )
    return 0


def _eval(args: argparse.Namespace) -> int:
    from marl.agents.heuristics import is_heuristic
    from marl.evaluation import evaluate_checkpoint, evaluate_heuristic

    if is_heuristic(args.run):
        evaluate_heuristic(args.run, args.overrides, args.episodes, args.seed, args.render)
        return 0
    if args.overrides:
        raise MarlError(
            f"marl eval of a trained run takes no overrides (got {' '.join(args.overrides)}): the run's "
            "saved config is evaluated. Overrides choose the environment of a heuristic "
            "(marl eval heuristic:...)."
        )
    evaluate_checkpoint(args.run, args.episodes, args.render, not args.stochastic, args.device)
    return 0


def _check_env(args: argparse.Namespace) -> int:
    from marl.config import parse_value
    from marl.envs.check import check_env

    kwargs = {}
    for item in args.kwargs:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise MarlError(f"Factory arguments are key=value (e.g. continuous_actions=true), got {item!r}.")
        kwargs[key] = parse_value(key, raw)
    if args.steps < 1 or args.max_steps < 1:
        raise MarlError("--steps and --max-steps must be positive.")
    groups = None if args.groups is None else parse_value("env.groups", args.groups)
    if groups is not None and not isinstance(groups, dict):
        raise MarlError(f"--groups takes a mapping {{group: [agents]}}, got {args.groups!r}.")
    report = check_env(
        args.entry_point,
        kwargs,
        steps=args.steps,
        max_steps=args.max_steps,
        groups=groups,
        overrides=args.overrides,
    )
    print(report.format())
    return 0 if report.ok else 1


def _metrics(args: argparse.Namespace) -> int:
    import json

    from marl.evaluation import measure_checkpoint

    if args.cell_size is not None and not 0 < args.cell_size < float("inf"):
        raise MarlError(f"--cell-size must be a positive number of world units, got {args.cell_size}.")
    scalars = measure_checkpoint(
        args.run,
        args.episodes,
        not args.stochastic,
        args.device,
        args.cell_size,
        args.heatmap,
        args.position_mi,
    )
    if args.json:
        Path(args.json).write_text(json.dumps(scalars, indent=2) + "\n")
        print(f"Metrics written to {args.json}")
    return 0


def _paragraph(text: str) -> str:
    """`text` wrapped to 110 columns, never inside a word: paths and commands stay copyable."""
    wrap = dict(width=110, break_on_hyphens=False, break_long_words=False)
    return "\n".join(textwrap.fill(part, **wrap) for part in text.split("\n"))


if __name__ == "__main__":
    sys.exit(main())
