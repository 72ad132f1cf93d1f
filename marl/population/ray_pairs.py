"""Population rollouts on Ray: an assignment's pairs split over rollout workers (`collector.num_workers`).

Worker w holds the pairs ``chunks[w]`` of the assignment (contiguous, as even as possible) and steps their
slots with its own env instances and a CPU copy of the population, through the in-process `PairCollector`.
Every iteration the learner puts the population's weights into Ray's object store once (with the new pairs,
when sampled partners change them), each worker collects its slots, and the rollouts are concatenated along
the slot dim in worker order: the same ``[slots, steps]`` layout, slot for slot, as the in-process collector's
for the same assignment (each worker's own env seeds and action samples make the episodes differ).

`RayPairCollector` has `PairCollector`'s interface (`assignment`, `layout`, `reset`, `collect`,
`state_dict`, `load_state_dict`), so the trainer does not know which one it drives. Ray is started and
authenticated as for `marl train` (marl/ray_runtime.py).
"""

from __future__ import annotations

import dataclasses
import os
import time

import torch
from torch import Tensor

from marl.agents.population import seat_layout
from marl.errors import MarlError
from marl.population.pairs import SlotAssignment, assign_slots
from marl.ray_collector import gather_replacing_dead, worker_seed
from marl.ray_runtime import check_alive, start_ray, stop_ray


def split_pairs(pairs: Tensor, workers: int) -> list[Tensor]:
    """Contiguous chunks of ``pairs [P, 2]``, one per worker, sizes differing by at most one."""
    if pairs.shape[0] < workers:
        raise MarlError(
            f"{pairs.shape[0]} pairs cannot be spread over collector.num_workers={workers} rollout workers "
            "(each needs at least one pair). Use fewer workers."
        )
    return list(torch.tensor_split(pairs, workers))


class PairWorker:
    """One Ray actor: env instances for its pairs, a CPU copy of the population, a `PairCollector`."""

    def __init__(self, config: dict, pairs: Tensor, seed: int, threads: int):
        from marl.envs.factory import describe_env
        from marl.population.config import population_config_from_dict
        from marl.population.members import build_population
        from marl.population.rollout import PairCollector, build_shards

        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        cfg = population_config_from_dict(config)
        cfg.experiment = dataclasses.replace(cfg.experiment, seed=seed)
        self.envs_per_pair = cfg.population.envs_per_pair
        shards = build_shards(cfg, pairs, torch.device("cpu"))
        seat = describe_env(shards[0].env, cfg.env.name, cfg.env.max_steps).groups[0]
        self.population = build_population(cfg, seat.obs_dim, seat.action_dim).eval()
        assignment = assign_slots(pairs, self.envs_per_pair)
        self.collector = PairCollector(shards, assignment, cfg.population.size, cfg.population.label_key)

    def collect(self, weights: dict, steps: int, pairs: Tensor | None) -> tuple[dict, float]:
        """-> (the rollout's fields as a dict of CPU tensors, seconds spent collecting)."""
        self.population.load_state_dict(weights)
        if pairs is not None:
            self.collector.reset(assign_slots(pairs, self.envs_per_pair))
        start = time.perf_counter()
        rollout = self.collector.collect(self.population, steps)
        return dataclasses.asdict(rollout), time.perf_counter() - start

    def state_dict(self) -> dict:
        return {"collector": self.collector.state_dict(), "rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict) -> None:
        self.collector.load_state_dict(state["collector"], self.envs_per_pair)
        torch.set_rng_state(state["rng"])

    def pid(self) -> int:
        return os.getpid()


class RayPairCollector:
    """Drop-in for `PairCollector` whose slots are stepped by ``cfg.collector.num_workers`` Ray actors."""

    def __init__(self, cfg, assignment: SlotAssignment, device: torch.device):
        import ray

        from marl.population.config import population_config_to_dict

        workers = cfg.collector.num_workers
        self.device, self.n_members = device, cfg.population.size
        self.started_ray = start_ray(cfg.ray, workers)
        self._remote = ray.remote(num_cpus=1)(PairWorker)
        self._config = population_config_to_dict(cfg)
        self._seed, self._threads = cfg.experiment.seed, cfg.collector.worker_threads
        self._replacements = [0] * workers
        self._set_assignment(assignment)
        chunks = split_pairs(assignment.pairs.cpu(), workers)
        self.workers = [self._start(w, chunk) for w, chunk in enumerate(chunks)]
        self._pending: list[Tensor | None] = [None] * workers
        self.last_stats: dict[str, float] = {}

    def _start(self, index: int, pairs: Tensor):
        seed = worker_seed(self._seed, index, self._replacements[index])
        return self._remote.remote(self._config, pairs, seed, self._threads)

    def _restart(self, index: int) -> None:
        """Replace dead worker `index`; the new one steps its current share of the pairs from fresh
        episodes, with a new seed (so it does not replay the lost ones)."""
        self._replacements[index] += 1
        self._pending[index] = None  # the replacement starts on the current pairs
        chunk = split_pairs(self.assignment.pairs.cpu(), len(self.workers))[index]
        self.workers[index] = self._start(index, chunk)

    def _set_assignment(self, assignment: SlotAssignment) -> None:
        self.assignment = assignment
        self.layout = seat_layout(assignment.member, self.n_members)

    def reset(self, assignment: SlotAssignment) -> None:
        """New pairs: each worker restarts its slots with its share at the next `collect`."""
        if assignment.pairs.shape != self.assignment.pairs.shape:
            raise MarlError("a Ray population collector keeps its number of pairs from rollout to rollout")
        self._pending = [chunk.cpu() for chunk in split_pairs(assignment.pairs, len(self.workers))]
        self._set_assignment(assignment)

    @torch.no_grad()
    def collect(self, population, steps: int, deterministic: bool = False):
        """``steps`` steps of every slot on the workers (sampled actions); -> one `Rollout` in slot order."""
        import ray

        from marl.population.rollout import Rollout

        if deterministic:
            raise MarlError("Ray rollout workers sample actions; evaluate in-process for the most likely.")
        check_alive()
        start = time.perf_counter()
        weights = ray.put({k: v.detach().cpu() for k, v in population.state_dict().items()})
        results = gather_replacing_dead(
            len(self.workers),
            lambda i: self.workers[i].collect.remote(weights, steps, self._pending[i]),
            self._restart,
            "Pair rollout worker",
        )
        self._pending = [None] * len(self.workers)
        parts = [r[0] for r in results]
        offsets = torch.tensor([0] + [p["done"].shape[0] for p in parts[:-1]]).cumsum(0).tolist()
        fields = {
            key: torch.cat([p[key] for p in parts]).to(self.device)
            for key in parts[0]
            if key != "episode_slot"
        }
        slots = [p["episode_slot"] + offset for p, offset in zip(parts, offsets, strict=True)]
        fields["episode_slot"] = torch.cat(slots).to(self.device)
        self.last_stats = {"perf/worker_wait_s": time.perf_counter() - start}
        for i, (part, (_, seconds)) in enumerate(zip(parts, results, strict=True)):
            self.last_stats[f"perf/worker_{i}_fps"] = part["done"].numel() / seconds
        return Rollout(**fields)

    def state_dict(self) -> dict:
        import ray

        check_alive()
        return {
            "pairs": self.assignment.pairs.cpu().clone(),
            "workers": ray.get([w.state_dict.remote() for w in self.workers]),
        }

    def load_state_dict(self, state: dict, envs_per_pair: int) -> None:
        import ray

        saved = state.get("workers")
        if saved is None or len(saved) != len(self.workers):
            found = "in-process" if saved is None else f"{len(saved)} Ray workers"
            raise MarlError(
                f"The checkpoint's rollouts were collected {found}, this run has collector.num_workers="
                f"{len(self.workers)}; resume with the same collector.num_workers."
            )
        ray.get([w.load_state_dict.remote(s) for w, s in zip(self.workers, saved, strict=True)])
        self._pending = [None] * len(self.workers)
        self._set_assignment(assign_slots(state["pairs"].to(self.device), envs_per_pair))

    def close(self) -> None:
        stop_ray(self.workers, self.started_ray)
        self.workers, self.started_ray = [], False
