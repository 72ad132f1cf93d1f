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
import time

import torch
from torch import Tensor

from marl.agents.population import seat_layout
from marl.errors import MarlError
from marl.population.pairs import SlotAssignment, assign_slots
from marl.ray_collector import CollectorWorker, RayWorkers, worker_stats


def split_pairs(pairs: Tensor, workers: int) -> list[Tensor]:
    """Contiguous chunks of ``pairs [P, 2]``, one per worker, sizes differing by at most one."""
    if pairs.shape[0] < workers:
        raise MarlError(
            f"{pairs.shape[0]} pairs cannot be spread over collector.num_workers={workers} rollout workers "
            "(each needs at least one pair). Use fewer workers."
        )
    return list(torch.tensor_split(pairs, workers))


class PairWorker(CollectorWorker):
    """One Ray actor: env instances for its pairs, a CPU copy of the population, a `PairCollector`."""

    def __init__(self, config: dict, pairs: Tensor, seed: int, threads: int):
        from marl.population.config import population_config_from_dict
        from marl.population.members import build_population
        from marl.population.rollout import PairCollector, build_shards

        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        cfg = population_config_from_dict(config)
        cfg.experiment = dataclasses.replace(cfg.experiment, seed=seed)
        shards = build_shards(cfg, pairs, torch.device("cpu"))
        self.population = build_population(cfg, shards[0]).eval()
        assignment = assign_slots(pairs, cfg.population.envs_per_pair)
        self.collector = PairCollector(shards, assignment, cfg.population.size, cfg.population.label_key)

    def collect(self, weights: dict, steps: int, pairs: Tensor | None) -> tuple[dict, float]:
        """-> (the rollout's fields as a dict of CPU tensors, seconds spent collecting)."""
        self.population.load_state_dict(weights)
        if pairs is not None:
            self.collector.reset(assign_slots(pairs, self.collector.envs_per_pair))
        start = time.perf_counter()
        rollout = self.collector.collect(self.population, steps)
        return dataclasses.asdict(rollout), time.perf_counter() - start


class RayPairCollector:
    """Drop-in for `PairCollector` whose slots are stepped by ``cfg.collector.num_workers`` Ray actors."""

    def __init__(self, cfg, assignment: SlotAssignment, device: torch.device):
        from marl.population.config import population_config_to_dict

        self.device, self.n_members = device, cfg.population.size
        self.envs_per_pair = cfg.population.envs_per_pair
        self._set_assignment(assignment)
        config, threads = population_config_to_dict(cfg), cfg.collector.worker_threads
        workers = cfg.collector.num_workers
        split_pairs(assignment.pairs, workers)  # enough pairs for every worker?
        self._pending: list[Tensor | None] = [None] * workers

        def arguments(index: int, seed: int) -> tuple:  # a replacement steps its current share of the pairs
            return config, split_pairs(self.assignment.pairs.cpu(), workers)[index], seed, threads

        self.pool = RayWorkers(cfg.ray, workers)
        self.pool.start(PairWorker, cfg.experiment.seed, arguments)
        self.pool.on_restart = lambda index: self._pending.__setitem__(index, None)
        self.last_stats: dict[str, float] = {}

    @property
    def workers(self) -> list:
        return self.pool.workers

    def _set_assignment(self, assignment: SlotAssignment) -> None:
        self.assignment = assignment
        self.layout = seat_layout(assignment.member, self.n_members)

    def reset(self, assignment: SlotAssignment) -> None:
        """New pairs: each worker restarts its slots with its share at the next `collect`."""
        if assignment.pairs.shape != self.assignment.pairs.shape:
            raise MarlError("a Ray population collector keeps its number of pairs from rollout to rollout")
        self._pending = [chunk.cpu() for chunk in split_pairs(assignment.pairs, len(self.pool))]
        self._set_assignment(assignment)

    @torch.no_grad()
    def collect(self, population, steps: int, deterministic: bool = False):
        """``steps`` steps of every slot on the workers (sampled actions); -> one `Rollout` in slot order."""
        import ray

        from marl.population.rollout import Rollout

        if deterministic:
            raise MarlError("Ray rollout workers sample actions; evaluate in-process for the most likely.")
        start = time.perf_counter()
        weights = ray.put({k: v.detach().cpu() for k, v in population.state_dict().items()})
        results = self.pool.gather(
            lambda i: self.workers[i].collect.remote(weights, steps, self._pending[i]), "Pair rollout worker"
        )
        self._pending = [None] * len(self.pool)
        parts = [r[0] for r in results]
        offsets = torch.tensor([0] + [p["done"].shape[0] for p in parts[:-1]]).cumsum(0).tolist()
        fields = {
            key: torch.cat([p[key] for p in parts]).to(self.device)
            for key in parts[0]
            if key != "episode_slot"
        }
        slots = [p["episode_slot"] + offset for p, offset in zip(parts, offsets, strict=True)]
        fields["episode_slot"] = torch.cat(slots).to(self.device)
        frames = [part["done"].numel() for part in parts]
        self.last_stats = worker_stats(frames, [r[1] for r in results], time.perf_counter() - start)
        return Rollout(**fields)

    def state_dict(self) -> dict:
        return {"pairs": self.assignment.pairs.cpu().clone(), "workers": self.pool.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.pool.load_state_dict(state.get("workers"))
        self._pending = [None] * len(self.pool)
        self._set_assignment(assign_slots(state["pairs"].to(self.device), self.envs_per_pair))

    def close(self) -> None:
        self.pool.close()
