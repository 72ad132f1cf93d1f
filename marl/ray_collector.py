"""Ray rollout workers: the batches `LocalCollector` makes, collected by N Ray actors in parallel.

Each worker builds its own environment (env.num_envs / N of the batch) and a CPU copy of the actors from the
config (nothing is pickled but the config and the weights). Every iteration the learner puts its actor
weights into Ray's object store once, every worker collects its share of frames with them, and the shares
are concatenated along the env dim into the `[envs, time]` layout the in-process collector produces. A
worker whose process dies is replaced (with a warning) and its share collected again.

Ray 2.60 turns on token authentication by default. A local instance (`ray.address: null`) keeps that
default: Ray writes a token to ~/.ray/auth_token and hands it to its workers. To join a cluster that uses
tokens, export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH=<token file> (or RAY_AUTH_TOKEN) before `marl
train`, as on every node.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from contextlib import contextmanager

import torch
from tensordict import TensorDictBase

from marl.errors import MarlError

WORKER_SEED_STRIDE = 7919  # worker i's env and RNG seed: seed + stride * (i + 1) (+ 104729 per replacement)
MAX_REPLACEMENTS = 3  # attempts per share and iteration before the run gives up


class RolloutWorker:
    """One Ray actor: an env batch, a CPU copy of the actors, and a `LocalCollector` over them."""

    def __init__(
        self, config: dict, num_envs: int, steps: int, seed: int, threads: int, frozen: dict | None = None
    ):
        from marl.agents.policy import ActorCritic
        from marl.agents.seats import SeatPolicy, build_frozen, frozen_by_source
        from marl.collector import LocalCollector
        from marl.config import config_from_dict
        from marl.envs.factory import describe_env, make_env, needs_global_state

        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        cfg = config_from_dict(config)
        env = make_env(cfg.env, "cpu", seed, num_envs=num_envs, global_state=needs_global_state(cfg))
        info = describe_env(env, cfg.env.name, cfg.env.max_steps, cfg.env.kwargs)
        self.model = ActorCritic(info, cfg).eval()
        seats = frozen_by_source(cfg.collector.frozen)
        frozen_seats = build_frozen(info, seats, frozen or {}, "cpu") if seats else []
        self.policy = SeatPolicy(self.model, frozen_seats) if seats else self.model
        self.collector = LocalCollector(env, info, num_envs * steps)

    def collect(self, actor_weights: dict) -> tuple[TensorDictBase, dict, float]:
        """-> (batch [envs, steps], finished episodes, seconds spent collecting)."""
        self.model.actors.load_state_dict(actor_weights)
        start = time.perf_counter()
        batch, episodes = self.collector.collect(self.policy.act)
        return batch, episodes, time.perf_counter() - start

    def state_dict(self) -> dict:
        return {"collector": self.collector.state_dict(), "rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict) -> None:
        self.collector.load_state_dict(state["collector"])
        torch.set_rng_state(state["rng"])

    def pid(self) -> int:
        return os.getpid()


def stop_workers(workers: list, started_ray: bool) -> None:
    """Kill rollout workers, and shut Ray down if this run started it (a joined instance stays up)."""
    import ray

    for worker in workers:
        ray.kill(worker)
    if started_ray:
        ray.shutdown()


def start_ray(ray_cfg, num_workers: int) -> bool:
    """Start a local Ray instance or join a cluster, unless Ray is already up; -> whether we started it."""
    import ray

    if ray.is_initialized():
        return False
    with _keep_signal_handlers():
        return _init_ray(ray_cfg, num_workers)


@contextmanager
def _keep_signal_handlers():
    """Ray's core installs its own SIGTERM handler (it aborts the process) on init; put ours back, so a
    SIGTERM or Ctrl-C still checkpoints the run and stops the workers cleanly."""
    watched = (signal.SIGINT, signal.SIGTERM)
    in_main_thread = threading.current_thread() is threading.main_thread()
    saved = {s: signal.getsignal(s) for s in watched} if in_main_thread else {}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)


def _init_ray(ray_cfg, num_workers: int) -> bool:
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    quiet = dict(include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    if ray_cfg.address is None:
        ray.init(num_cpus=ray_cfg.num_cpus or num_workers, **quiet)
        return True
    token = os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
    if token and "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"  # a token was given: use it (Ray ignores it otherwise)
    try:
        ray.init(address=ray_cfg.address, **quiet)
    except (ConnectionError, RuntimeError) as error:
        raise MarlError(
            f"Could not join the Ray cluster at ray.address={ray_cfg.address!r}: "
            f"{str(error).splitlines()[0]} "
            "Check that the head node is running (ray status) and reachable. Ray 2.60 clusters use token "
            "authentication by default: export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH=<the cluster's "
            "token file> (or RAY_AUTH_TOKEN) before marl train, as on every node."
        ) from None
    return True


class RayCollector:
    """Drop-in for `LocalCollector` whose `collect(model)` runs on `num_workers` Ray actors."""

    def __init__(self, cfg, env_info, device: torch.device, frozen: dict | None = None):
        import ray

        from marl.config import config_to_dict

        workers = cfg.collector.num_workers
        self.info = env_info
        self.device = device
        self.started_ray = start_ray(cfg.ray, workers)
        self._config = config_to_dict(cfg)
        self._threads = cfg.collector.worker_threads
        self._seed = cfg.experiment.seed
        self.envs_per_worker = cfg.env.num_envs // workers
        self.steps_per_batch = cfg.experiment.frames_per_batch // cfg.env.num_envs
        self._frozen = ray.put(frozen or {})  # frozen partners' weights: sent once, shared by all workers
        self._remote = ray.remote(num_cpus=1)(RolloutWorker)
        self._replacements = [0] * workers
        self.workers = [self._start(i) for i in range(workers)]
        self.last_stats: dict[str, float] = {}

    @property
    def frames_per_batch(self) -> int:
        return self.steps_per_batch * self.envs_per_worker * len(self.workers)

    def _start(self, index: int):
        seed = self._seed + WORKER_SEED_STRIDE * (index + 1) + 104_729 * self._replacements[index]
        shape = (self.envs_per_worker, self.steps_per_batch)
        return self._remote.remote(self._config, *shape, seed, self._threads, self._frozen)

    @torch.no_grad()
    def collect(self, model) -> tuple[TensorDictBase, dict[str, torch.Tensor]]:
        """-> (batch [envs, time] on the learner's device, finished episodes), like `LocalCollector`."""
        import ray
        from ray.exceptions import RayActorError

        start = time.perf_counter()
        weights = ray.put({k: v.detach().cpu() for k, v in model.actors.state_dict().items()})
        broadcast = time.perf_counter() - start
        refs = [worker.collect.remote(weights) for worker in self.workers]
        results = []
        for index in range(len(self.workers)):
            for attempt in range(MAX_REPLACEMENTS + 1):
                try:
                    results.append(ray.get(refs[index]))
                    break
                except RayActorError as error:
                    if attempt == MAX_REPLACEMENTS:
                        raise MarlError(
                            f"Rollout worker {index} died {MAX_REPLACEMENTS + 1} times in one iteration "
                            f"({type(error).__name__}); see the Ray logs (/tmp/ray/session_latest/logs)."
                        ) from None
                    warnings.warn(
                        f"Rollout worker {index} died ({type(error).__name__}); starting a replacement and "
                        f"collecting its share again.",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    self._replacements[index] += 1
                    self.workers[index] = self._start(index)
                    refs[index] = self.workers[index].collect.remote(weights)
        waited = time.perf_counter() - start - broadcast
        batch = torch.cat([r[0] for r in results], dim=0).to(self.device)
        episodes = {key: torch.cat([r[1][key] for r in results]).to(self.device) for key in results[0][1]}
        frames = self.steps_per_batch * self.envs_per_worker
        self.last_stats = {"perf/broadcast_s": broadcast, "perf/worker_wait_s": waited}
        self.last_stats.update({f"perf/worker_{i}_fps": frames / r[2] for i, r in enumerate(results)})
        return batch, episodes

    def state_dict(self) -> dict:
        import ray

        return {"workers": ray.get([w.state_dict.remote() for w in self.workers])}

    def load_state_dict(self, state: dict) -> None:
        import ray

        if len(state["workers"]) != len(self.workers):
            raise MarlError(
                f"The checkpoint was collected by {len(state['workers'])} rollout workers, this run has "
                f"{len(self.workers)}; resume with the same collector.num_workers."
            )
        ray.get([w.load_state_dict.remote(s) for w, s in zip(self.workers, state["workers"], strict=True)])

    def close(self) -> None:
        stop_workers(self.workers, self.started_ray)
        self.workers, self.started_ray = [], False
