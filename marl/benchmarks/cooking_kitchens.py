"""How far each dish is, and how often cooks acting at random find it, in the pairs kitchens.

    python -m marl.benchmarks.cooking_kitchens [--layouts pairs pairs_even] [--episodes 100000] [--seed 0]
                                               [--out results]

For each layout (envs/native/cooking.py) and dish:
- `mean_steps`: the fewest steps to cook and serve it, averaged over every pair of start cells (random starts
  draw them uniformly): each cook walks to its ingredient's dispenser, takes it and plates it, both at once;
  then the right cook picks the plate up, carries it to the serving counter and serves.
- `random_rate`: the fraction of `--episodes` 200-step episodes of two cooks acting uniformly at random in
  which that dish is the first to pay, in the kitchen the population studies use (blind, without the
  partner's cell, with lamps and retries), with its binomial standard error.
A dish that is nearer, or found more often by chance, is the one populations settle on first. Writes
<out>/cooking_kitchens.json.
"""

from __future__ import annotations

import argparse
import math
from collections import deque
from pathlib import Path

import torch

from marl.benchmarks.machine import hardware, write_json
from marl.envs.native.cooking import KITCHENS, PLATE_COUNTER, SERVE, CookingEnv

# The kitchen of the population studies (results/cooking_populations): both cooks commit blind.
STUDY_KITCHEN = {"blind": True, "observe_partner_cell": False, "signal": True, "retry": True}
PAIRS_LAYOUTS = ("pairs", "pairs_even")  # every dish one ingredient from each cook


def fewest_moves(tables: dict[str, torch.Tensor], start: int) -> dict[int, int]:
    """Floor cell -> fewest moves from floor cell `start` (breadth-first over the kitchen's floor)."""
    floor, moves = tables["floor"], tables["move"][1:5].tolist()
    distance, frontier = {start: 0}, deque([start])
    while frontier:
        cell = frontier.popleft()
        for neighbour in (cell + move for move in moves):
            if 0 <= neighbour < len(floor) and floor[neighbour] and neighbour not in distance:
                distance[neighbour] = distance[cell] + 1
                frontier.append(neighbour)
    return distance


def cell_touching(tables: dict[str, torch.Tensor], station: int, side: int) -> int:
    """The floor cell of `side` (0 left, 1 right) from which a cook reaches `station`."""
    cells = [c for c in tables["side_cells"][side].tolist() if tables["station"][c].item() == station]
    if len(cells) != 1:
        raise ValueError(f"station {station} is reached from {len(cells)} cells of side {side}, not one")
    return cells[0]


def dish_steps(layout: str) -> list[float]:
    """Each dish's fewest steps from start to serve, averaged over all pairs of start cells."""
    tables = CookingEnv(layout=layout).tables
    plate = [cell_touching(tables, PLATE_COUNTER, side) for side in (0, 1)]
    serve_moves = fewest_moves(tables, plate[1])[cell_touching(tables, SERVE, 1)]

    def plating_steps(side: int, ingredient: int) -> list[int]:
        dispenser = cell_touching(tables, ingredient + 1, side)  # station code of dispenser i is i + 1
        to_plate = fewest_moves(tables, dispenser)[plate[side]]
        starts = tables["side_cells"][side].tolist()
        # walk to the dispenser, take, walk to the plate counter, plate
        return [fewest_moves(tables, s)[dispenser] + 1 + to_plate + 1 for s in starts]

    means = []
    for left, right in KITCHENS[layout].recipes:
        totals = [
            max(a, b) + 1 + serve_moves + 1 for a in plating_steps(0, left) for b in plating_steps(1, right)
        ]
        means.append(sum(totals) / len(totals))
    return means


def random_rates(layout: str, episodes: int, seed: int) -> list[float]:
    """Fraction of episodes of two uniformly random cooks in which each dish is the first to pay."""
    env = CookingEnv(layout=layout, num_envs=episodes, seed=seed, **STUDY_KITCHEN)
    env.reset()
    n_actions = env.full_action_spec["agents", "action"].space.n
    generator = torch.Generator().manual_seed(seed)
    first = torch.full((episodes,), -1, dtype=torch.long)
    for _ in range(env.max_steps):  # one episode per env: no resets
        env.step_count += 1
        env._advance(torch.randint(0, n_actions, (episodes, 2), generator=generator))
        newly = env.success & (first < 0)
        first[newly] = env.recipe[newly]
    return [(first == dish).float().mean().item() for dish in range(len(KITCHENS[layout].recipes))]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layouts", nargs="+", default=list(PAIRS_LAYOUTS), choices=PAIRS_LAYOUTS)
    parser.add_argument("--episodes", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    rows = []
    print(f"{'layout':>11} {'dish':>18} {'mean steps':>10} {'random rate':>16}")
    for layout in args.layouts:
        kitchen = KITCHENS[layout]
        for dish, (steps, rate) in enumerate(
            zip(dish_steps(layout), random_rates(layout, args.episodes, args.seed), strict=True)
        ):
            name = "+".join(kitchen.ingredients[i] for i in kitchen.recipes[dish])
            error = math.sqrt(rate * (1 - rate) / args.episodes)
            rows.append(
                {
                    "layout": layout,
                    "dish": dish,
                    "name": name,
                    "mean_steps": steps,
                    "random_rate": rate,
                    "random_rate_stderr": error,
                }
            )
            print(
                f"{layout:>11} {f'{dish} {name}':>18} {steps:>10.2f} {100 * rate:>9.3f}% ±{100 * error:.3f}"
            )
    result = {
        "benchmark": "cooking_kitchens",
        "hardware": hardware(torch.device("cpu")),
        "config": {"episodes": args.episodes, "seed": args.seed, "max_steps": 200, "kitchen": STUDY_KITCHEN},
        "rows": rows,
    }
    print(f"Wrote {write_json(Path(args.out) / 'cooking_kitchens.json', result)}")
    return result


if __name__ == "__main__":
    main()
