"""Ray rollout workers: the batches `LocalCollector` makes, collected by N Ray actors in parallel.

Each worker builds its own environment (env.num_envs / N of the batch) and a CPU copy of the actors from the
config (nothing is pickled but the config and the weights). Every iteration the learner puts its actor
weights into Ray's object store once, every worker collects its share of frames with them, and the shares
are concatenated along the env dim into the `[envs, time]` layout the in-process collector produces. A
worker whose process dies is replaced (with a warning) and its share collected again.

Ray is started (on loopback, with a private token file), joined, watched and stopped by
marl/ray_runtime.py. If the local instance itself dies (its raylet or GCS), `collect` raises `RayLostError`
before calling into it, and the trainer saves its last finished iteration and prints the resume command.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from tensordict import TensorDictBase
from torch import nn

from marl.errors import MarlError
from marl.ray_runtime import check_alive, start_ray, stop_ray

WORKER_SEED_STRIDE = 7919  # worker i's env and RNG seed: seed + stride * (i + 1) (+ 104729 per replacement)
MAX_REPLACEMENTS = 3  # attempts per share and iteration before the run gives up


def worker_seed(seed: int, index: int, replacements: int = 0) -> int:
    """Env and RNG seed of rollout worker `index` after `replacements` replacements."""
    return seed + WORKER_SEED_STRIDE * (index + 1) + 104_729 * replacements


class RayWorkers:
    """`n` Ray actors of one class (`start`), each with its own seed, replaced when its process dies.

    `arguments(index, seed)` gives a worker's constructor arguments; it is called again when the worker is
    replaced (with a new seed, so the replacement does not replay the lost episodes), so it may read the
    caller's current state. Both rollout collectors (this module's, and marl/population/ray_pairs.py's)
    drive their workers through this pool: replacement, resume and shutdown are the same for both.
    """

    def __init__(self, ray_cfg, n: int):
        self.started_ray = start_ray(ray_cfg, n)  # first: any Ray call before it would start a default Ray
        self.n, self.workers = n, []
        self.on_restart: Callable[[int], None] = lambda index: None

    def start(self, worker_class: type, seed: int, arguments: Callable[[int, int], tuple]) -> None:
        """Start the `n` workers."""
        import ray

        self._remote = ray.remote(num_cpus=1)(worker_class)
        self._seed, self._arguments = seed, arguments
        self._replacements = [0] * self.n
        self.workers = [self._start(index) for index in range(self.n)]

    def __len__(self) -> int:
        return len(self.workers)

    def _start(self, index: int):
        seed = worker_seed(self._seed, index, self._replacements[index])
        return self._remote.remote(*self._arguments(index, seed))

    def restart(self, index: int) -> None:
        """Replace worker `index` (after its death)."""
        self._replacements[index] += 1
        self.workers[index] = self._start(index)
        self.on_restart(index)

    def gather(self, call: Callable[[int], Any], name: str) -> list:
        """`ray.get` of `call(index)` (a remote call on worker `index`) for every worker, in order. A worker
        that died is replaced and called again, up to `MAX_REPLACEMENTS` times per share; a worker lost with
        the whole Ray instance stops the run."""
        import ray
        from ray.exceptions import RayActorError

        check_alive()  # a dead local instance must not be called into (Ray could end this process)
        refs = [call(index) for index in range(len(self.workers))]
        results = []
        for index in range(len(self.workers)):
            for attempt in range(MAX_REPLACEMENTS + 1):
                try:
                    results.append(ray.get(refs[index]))
                    break
                except RayActorError as error:
                    check_alive()  # a worker lost with the whole instance cannot be replaced
                    if attempt == MAX_REPLACEMENTS:
                        raise MarlError(
                            f"{name} {index} died {MAX_REPLACEMENTS + 1} times in one iteration "
                            f"({type(error).__name__}); see the Ray logs (/tmp/ray/session_latest/logs)."
                        ) from None
                    warnings.warn(
                        f"{name} {index} died ({type(error).__name__}); starting a replacement and "
                        "collecting its share again.",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                    self.restart(index)
                    refs[index] = call(index)
        return results

    def state_dict(self) -> list:
        import ray

        check_alive()
        return ray.get([w.state_dict.remote() for w in self.workers])

    def load_state_dict(self, saved: list | None) -> None:
        """Every worker's saved state; the checkpoint must come from as many workers."""
        import ray

        if saved is None or len(saved) != len(self.workers):
            found = "in-process" if saved is None else f"by {len(saved)} Ray workers"
            raise MarlError(
                f"The checkpoint's rollouts were collected {found}, this run has collector.num_workers="
                f"{len(self.workers)}; resume with the same collector.num_workers."
            )
        ray.get([w.load_state_dict.remote(s) for w, s in zip(self.workers, saved, strict=True)])

    def close(self) -> None:
        stop_ray(self.workers, self.started_ray)
        self.workers, self.started_ray = [], False


def worker_stats(frames: list[int], seconds: list[float], waited: float) -> dict[str, float]:
    """Per-worker frames/s and the learner's wait for them, as `perf/...` metrics."""
    stats = {"perf/worker_wait_s": waited}
    stats.update({f"perf/worker_{i}_fps": f / s for i, (f, s) in enumerate(zip(frames, seconds))})
    return stats


class CollectorWorker:
    """What every Ray rollout worker has: a `collector` whose state, with the worker's RNG, is its state."""

    collector: Any

    def state_dict(self) -> dict:
        return {"collector": self.collector.state_dict(), "rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict) -> None:
        self.collector.load_state_dict(state["collector"])
        torch.set_rng_state(state["rng"])

    def pid(self) -> int:
        return os.getpid()


class RolloutWorker(CollectorWorker):
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


class RayRolloutCollector:
    """Drop-in for `LocalCollector` whose `collect(model)` runs on `num_workers` Ray actors."""

    def __init__(self, cfg, env_info, device: torch.device, frozen: dict | None = None):
        import ray

        from marl.config import config_to_dict

        workers = cfg.collector.num_workers
        self.info = env_info
        self.device = device
        self.envs_per_worker = cfg.env.num_envs // workers
        self.steps_per_batch = cfg.experiment.frames_per_batch // cfg.env.num_envs
        config, threads = config_to_dict(cfg), cfg.collector.worker_threads
        self.pool = RayWorkers(cfg.ray, workers)
        frozen_ref = ray.put(frozen or {})  # frozen partners' weights: sent once, shared by all workers
        shape = (self.envs_per_worker, self.steps_per_batch)
        arguments = lambda index, seed: (config, *shape, seed, threads, frozen_ref)  # noqa: E731
        self.pool.start(RolloutWorker, cfg.experiment.seed, arguments)
        self.last_stats: dict[str, float] = {}

    @property
    def workers(self) -> list:
        return self.pool.workers

    @property
    def frames_per_batch(self) -> int:
        return self.steps_per_batch * self.envs_per_worker * len(self.pool)

    @torch.no_grad()
    def collect(self, policy, actors: nn.Module) -> tuple[TensorDictBase, dict[str, torch.Tensor]]:
        """-> (batch [envs, time] on the learner's device, finished episodes), like `LocalCollector`; the
        workers act with their own copies of `actors`, loaded with its weights (`policy` is not sent)."""
        import ray

        start = time.perf_counter()
        weights = ray.put({k: v.detach().cpu() for k, v in actors.state_dict().items()})
        broadcast = time.perf_counter() - start
        results = self.pool.gather(lambda i: self.workers[i].collect.remote(weights), "Rollout worker")
        waited = time.perf_counter() - start - broadcast
        batch = torch.cat([r[0] for r in results], dim=0).to(self.device)
        episodes = {key: torch.cat([r[1][key] for r in results]).to(self.device) for key in results[0][1]}
        frames = [self.steps_per_batch * self.envs_per_worker] * len(results)
        self.last_stats = {
            "perf/broadcast_s": broadcast,
            **worker_stats(frames, [r[2] for r in results], waited),
        }
        return batch, episodes

    def state_dict(self) -> dict:
        return {"workers": self.pool.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.pool.load_state_dict(state.get("workers"))

    def close(self) -> None:
        self.pool.close()
