#!/usr/bin/env bash
# CI: the project as a user gets it. Builds the wheel, installs it into a fresh virtual environment (no
# editable install, no repository on the path) and, from an empty temporary directory, runs every `marl`
# command shown in README.md: each subcommand's --help, `config show` with the README's presets, a short
# `marl train` (then eval, metrics, resume, compare), a tiny `marl population train
# preset=matrix_game_xpmin` (then evaluate, extract, generalist), the sweep and Pareto files' dry runs, a
# heuristic evaluation, check-env and the config fuzzer. Any failing command fails the check.
#
#   .ci/wheel_check.sh [python]      python: the interpreter that builds the wheel (default python3)
#
# torch==2.13.0 (the CPU build unless TORCH_INDEX_URL says otherwise, as in setup.sh) is installed before
# the wheel so that its dependency range does not pull a CUDA build; pip's cache makes the rest quick.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${1:-python3}
work=$(mktemp -d /tmp/marl-wheel-XXXXXX)
trap 'rm -rf "$work"' EXIT
started=$SECONDS

step() { printf '\n== wheel check: %s\n' "$*" >&2; }
run() { # run a command with a time limit (LIMIT seconds, default 600); show its output only if it fails
  local log="$work/last.log"
  printf '   $ %s\n' "$*" >&2
  if ! timeout "${LIMIT:-600}" "$@" >"$log" 2>&1; then
    cat "$log" >&2
    printf 'wheel check FAILED: %s\n' "$*" >&2
    exit 1
  fi
}

step "build the wheel"
run "$python" -m pip wheel --no-deps --quiet -w "$work/dist" "$repo"
wheel=$(ls "$work"/dist/*.whl)
# The listing goes to a file first: `unzip | grep -q` fails under pipefail when grep stops reading early
# and unzip dies of SIGPIPE, which made this check fail at random on a wheel that had every file.
"$python" -c 'import sys, zipfile; print(*zipfile.ZipFile(sys.argv[1]).namelist(), sep="\n")' "$wheel" \
  >"$work/wheel_files.txt"
for name in default.yaml population/matrix_game_xpmin.yaml sweeps/dispersion.yaml pareto/patrol_search_heuristics.yaml; do
  grep -qx "marl/configs/$name" "$work/wheel_files.txt" || { echo "wheel lacks marl/configs/$name" >&2; exit 1; }
done
if grep -qE '^(envs|agents|configs)/' "$work/wheel_files.txt"; then
  echo "the wheel installs top-level envs/, agents/ or configs/; everything belongs under marl/" >&2
  exit 1
fi

step "install it into a fresh virtual environment"
run "$python" -m venv "$work/venv"
pip=("$work/venv/bin/pip" install --quiet)
LIMIT=1800 run "${pip[@]}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "${TORCH_SPEC:-torch==2.13.0}"
LIMIT=1800 run "${pip[@]}" "$wheel[mpe]"
export PATH="$work/venv/bin:$PATH" MARL_TRUST_KEY="$work/trust_key" RAY_USAGE_STATS_ENABLED=0
unset PYTHONPATH MARL_CONFIG_DIR MARL_TRUST
mkdir "$work/empty" && cd "$work/empty"
[[ $(command -v marl) == "$work/venv/bin/marl" ]]

step "the installed package is the wheel's, under one import name"
run python -c "
import importlib.util, marl, marl.envs, marl.agents, marl.configs
assert '$work/venv' in marl.__file__, marl.__file__
for bare in ('envs', 'agents', 'configs'):
    assert importlib.util.find_spec(bare) is None, bare + ' is installed at the top level'
"

step "every subcommand's help"
run marl --help
for command in train eval metrics sweep compare pareto check-env "config show" population \
  "population train" "population evaluate" "population extract" "population generalist"; do
  # shellcheck disable=SC2086 # split "config show" into two words
  run marl $command --help
done

step "config show with the README's presets"
run marl config show
run marl config show sharing=hyper env.n_agents=8
run marl config show env=vmas/dispersion sharing=hyper
run marl config show algorithm=ippo sharing=independent env.n_agents=5
run marl config show sharing=grouped "sharing.roles={fast: [0, 1], slow: [2]}"
run marl config show sharing.actor.scheme=hyper sharing.critic.scheme=shared
run marl config show experiment=benchmarl_navigation
run marl config show experiment=patrol_search sharing=grouped
run marl config show model.recurrent=true algorithm.chunk_length=20
run marl config show population preset=matrix_game_xpmin
run marl config show generalist
run marl config show extract method=rl
run marl config show env=pettingzoo env.entry_point=mpe2.simple_spread_v3:parallel_env \
  env.kwargs.continuous_actions=true algorithm=mappo algorithm.critic_input=state

step "a short marl train, then eval, metrics, resume and compare"
quick=(experiment.threads=1 experiment.progress=false experiment.eval_every=0 metrics.every=0)
run marl train experiment=smoke experiment.total_frames=600 "${quick[@]}"
runs=(results/runs/smoke-*)
[[ ${#runs[@]} -eq 1 && -f ${runs[0]}/checkpoints/iter_0000001.pt ]]
run marl eval "${runs[0]}" --episodes 2
run marl metrics "${runs[0]}" --episodes 2 --json metrics.json
run marl train "resume=${runs[0]}" experiment.total_frames=1200
run marl compare results/runs --out compared
run marl eval heuristic:fixed_roles/pso env=vmas/patrol_search env.share_signal=true --episodes 2

step "a tiny population: train, evaluate, extract, generalist"
small=(experiment.threads=1 experiment.progress=false experiment.eval_every=0 experiment.iterations=2
  population.size=2 population.envs_per_pair=4)
run marl population train preset=matrix_game_xpmin "${small[@]}"
populations=(results/runs/matrix_game_xpmin-*)
[[ ${#populations[@]} -eq 1 && -f ${populations[0]}/population.json ]]
run marl population evaluate "${populations[0]}" --episodes 2
run marl population extract "${populations[0]}" method=dagger experiment.iterations=1 \
  experiment.progress=false experiment.eval_episodes=2
run marl population generalist "${populations[0]}" experiment.iterations=1 env.num_envs=8 \
  algorithm.rollout_steps=4 algorithm.chunk_length=4 experiment.eval_episodes=2 experiment.progress=false

step "sweep and Pareto files from the package, check-env, the config fuzzer"
run marl sweep configs/sweeps/dispersion.yaml --dry-run
run marl pareto configs/pareto/patrol_search_heuristics.yaml --dry-run
run marl pareto configs/pareto/patrol_search_learned.yaml --dry-run
run marl check-env mpe2.simple_spread_v3:parallel_env continuous_actions=true --steps 20
run python -m marl.benchmarks.config_fuzz --inputs 300 --out fuzz

step "bad input: exit status 2 and one paragraph, from the installed command"
set +e
marl train env.n_agents=0 >/dev/null 2>"$work/err.txt"; status=$?
set -e
[[ $status -eq 2 ]] && grep -q "env.n_agents" "$work/err.txt" && ! grep -q Traceback "$work/err.txt"

printf '\nwheel check passed in %ss\n' $((SECONDS - started)) >&2
