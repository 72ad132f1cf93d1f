"""BenchMARL IPPO on VMAS Dispersion at a given batch layout: the peer run of `marl.benchmarks.scale`.

Runs in BenchMARL's own virtual environment (it pins an older torchrl; see ../shared/bench/README.md), so it
imports nothing from this project:

    $venv/bin/python marl/benchmarks/benchmarl_large_batch.py SCHEME ENVS STEPS MINIBATCH EPOCHS ITERATIONS

SCHEME is shared or independent (actor and critic). The task is BenchMARL's Dispersion (4 agents, 4 food,
max_steps 100, food_radius 0.02, shared reward) with discrete actions, MLP [64, 64] ReLU, as the project's
Dispersion preset. Evaluation and checkpoints are off. Prints one JSON line: the collection, training and
iteration seconds of every iteration, as BenchMARL's own timers measured them.
"""

import json
import sys
import tempfile

import torch
from benchmarl.algorithms import IppoConfig
from benchmarl.environments import VmasTask
from benchmarl.experiment import Experiment, ExperimentConfig
from benchmarl.models.mlp import MlpConfig


def main() -> None:
    scheme, num_envs, steps, minibatch, epochs, iterations = sys.argv[1:7]
    num_envs, steps, minibatch, epochs, iterations = map(
        int, (num_envs, steps, minibatch, epochs, iterations)
    )
    frames_per_batch = num_envs * steps
    shared = scheme == "shared"
    torch.set_num_threads(int(sys.argv[7]) if len(sys.argv) > 7 else torch.get_num_threads())

    config = ExperimentConfig.get_from_yaml()
    config.loggers = []
    config.render = False
    config.create_json = False
    config.evaluation = False
    config.checkpoint_interval = 0
    config.prefer_continuous_actions = False
    config.lr = 1e-3
    config.gamma = 0.99
    config.clip_grad_norm = True
    config.clip_grad_val = 0.5
    config.on_policy_collected_frames_per_batch = frames_per_batch
    config.on_policy_n_envs_per_worker = num_envs
    config.on_policy_n_minibatch_iters = epochs
    config.on_policy_minibatch_size = minibatch
    config.max_n_frames = frames_per_batch * iterations
    config.share_policy_params = shared
    config.save_folder = tempfile.mkdtemp()

    algorithm = IppoConfig.get_from_yaml()
    algorithm.share_param_critic = shared
    algorithm.entropy_coef = 0.01
    algorithm.critic_coef = 0.5
    algorithm.lmbda = 0.95

    model = MlpConfig.get_from_yaml()
    model.num_cells = [64, 64]
    model.activation_class = torch.nn.ReLU

    experiment = Experiment(
        task=VmasTask.DISPERSION.get_from_yaml(),
        algorithm_config=algorithm,
        model_config=model,
        critic_model_config=model,
        seed=0,
        config=config,
    )
    timers: list[dict] = []
    log = experiment.logger.log

    def record(values: dict, step: int) -> None:
        if "timers/iteration_time" in values:
            timers.append({k.split("/")[1]: float(v) for k, v in values.items() if k.startswith("timers/")})
        log(values, step=step)

    experiment.logger.log = record
    experiment.run()
    print(json.dumps({"frames_per_batch": frames_per_batch, "iterations": timers}))


if __name__ == "__main__":
    main()
