"""Two-cook, multi-recipe kitchen split by a divider: every dish needs a hand-over. Pure batched torch.

Four layouts (`layout`), 5 rows x 7 columns each; column 3 is the divider, a full wall except the plate
counter P:

    classic (default)        split                    pairs                    pairs_even
    col 0 1 2 3 4 5 6        col 0 1 2 3 4 5 6        col 0 1 2 3 4 5 6        col 0 1 2 3 4 5 6
    row 0   # 0 1 # # # #    row 0   # 0 1 # 2 3 #    row 0   # 0 1 # 4 5 #    row 0   # 0 1 # 4 5 #
    row 1   # . . # . . #    row 1   # . . # . . #    row 1   # . . # . . #    row 1   # . . # . . #
    row 2   B . . P . . S    row 2   B . . P . . B    row 2   2 . . P . . S    row 2   # . . P . . S
    row 3   # . . # . . #    row 3   # . . # . . #    row 3   # . . # . . #    row 3   # . . # . . #
    row 4   # 2 3 # # # #    row 4   # # # # # S #    row 4   # 3 # # 6 7 #    row 4   # 2 3 # 6 7 #

    0-7 ingredient dispensers, B chopping board, P plate counter (divider), S serving counter,
    . floor, # wall / counter

Ingredients: classic and split 0 tomato, 1 lettuce, 2 onion, 3 carrot; pairs and pairs_even 0-3 as those
(left cook) and 4 rice, 5 fish, 6 egg, 7 beans (right cook).

`seat_0` (the left cook) lives on columns 1-2, `seat_1` (the right cook) on columns 4-5; both reach the plate
counter, from (2, 2) and (2, 4), and only the right cook reaches the serving counter. In the classic kitchen
only the left cook reaches the dispensers and the board: it alone decides the dish, and the right cook
carries whatever plate it is handed. In the split kitchen each cook has two ingredients and a board of its
own, and a salad needs one ingredient from each side, so the dish is a joint choice: two cooks who put
ingredients that make no recipe together on the plate fail (see "Why three layouts" below). In the pairs
kitchen each cook holds four ingredients, ready to plate (no board), and each dish pairs one from each
side. `pairs_even` is the pairs kitchen with the dispensers placed so that no dish is nearer than another
(see "Why an even kitchen" below). With `blind=True` (any kitchen) the cooks work blind: neither sees the
other's hands, and the plate is under a lid (a cook sees how many ingredients it holds, not which); with
`observe_partner_cell=False` as well, each cook commits to its half of a dish before it can know its
partner's. Every floor cell touches at most one station, so `interact` needs no facing direction: it acts on
the station next to the cook (nothing, next to none).

Actions (categorical, 6): 0 no-op, 1 up, 2 down, 3 left, 4 right (blocked by walls), 5 interact; with
`signal=True` a seventh, 6 signal: the cook stays where it is and lights its lamp for that step.
Interactions (one per cook and step), resolved left cook first, then right cook:
- dispenser, empty hands: take that raw ingredient (not while carrying the plate; in the pairs kitchen it
  is ready to plate); holding an ingredient: drop it in the dispenser (a bin).
- board, holding a raw ingredient: chop (after `chop_steps` interactions it is chopped in hand).
- plate counter, holding a chopped ingredient: put it on the plate if the plate is on the counter, does
  not already hold that ingredient and holds fewer than 2 (plates hold at most two ingredients).
- plate counter (right cook, holding no ingredient): pick the plate up / put it back.
- serving counter (right cook) with a non-empty plate: deliver. The episode ends at the first delivery
  (whatever is on the plate: there is one plate) or at `max_steps` (default 200).

Recipes (index: plate contents): classic and split 0 tomato, 1 lettuce, 2 onion, 3 carrot (one chopped
ingredient each), and two salads: classic 4 tomato + lettuce, 5 onion + carrot (the top and the bottom
dispensers); split 4 tomato + onion, 5 lettuce + carrot (one ingredient from each cook). Pairs: four
dishes, each one ingredient from each side, 0 tomato + rice, 1 lettuce + fish, 2 onion + egg, 3 carrot +
beans; no single ingredient is a dish. Any other plate is not a recipe.
`recipes` restricts the paying set: delivering a recipe outside it, or a non-recipe, pays nothing and is
not a success (a specialist is trained on one recipe). `shaping="paying"` restricts the shaping rewards
below to the ingredients of the paying recipes as well: then taking, chopping or plating another
ingredient, or picking up a plate that holds one, pays nothing (the default `"any"` pays the first of each,
whatever the ingredient).

Shared reward (both cooks get it; all configurable): `delivery_reward` 10 for delivering a recipe in
`recipes`, plus `order_bonus` (default 0: no orders) when it is the episode's order; once per episode
each `chop_reward` 0.5 (first ingredient chopped), `plate_reward` 0.5 (first ingredient on the plate) and
`pickup_reward` 0.5 (the right cook first picks up a non-empty plate); minus `step_cost` 0.01 every step.

Observation of a cook (40 floats with m = 4 ingredients, 60 in the pairs kitchen's m = 8): side (0 left,
1 right) [1], own cell one-hot among its side's 6 floor cells [6], partner's cell likewise [6], own held
item [2m + 1] (raw ingredient m, chopped ingredient m, plate 1; zeros: empty hands), partner's held item
[2m + 1], plate place one-hot (counter, held, delivered) [3], plate contents (one flag per ingredient) [m],
own chopping progress (fraction of `chop_steps`) [1], time `t / max_steps` [1]; with `signal=True` also
the two lamps, own and partner's, as lit by the last step [2] (seen blind too); with `order_bonus > 0`
also the episode's order, one-hot over the layout's recipes [number of recipes] (seen by both cooks). With
`observe_partner_cell=False` the partner's cell is all zeros: a cook knows
its partner only by what it holds and what lands on the plate, which removes the positional signals
("stand here, then I deliver") that cross-play minimisation can use to tell its self-play partner from
everyone else. With `blind=True` the partner's held item is all zeros, and the plate contents say only
how many ingredients lie under the lid (flag k: at least k + 1).

Info (`("agents", "info", key)`, same value for both cooks, "so far in this episode"; as the episode
ends at the first delivery, the value at the last step is the episode's outcome):
    recipe      index of the recipe delivered (the behaviour label, whether or not it pays), -1 if none
                yet or if the plate held a non-recipe
    success     1.0 once a recipe in `recipes` has been delivered
    delivered   1.0 once any plate has been delivered
    chopped     1.0 once a cook has chopped an ingredient (pairs kitchen: taken one)
    plated      1.0 once a chopped ingredient has gone onto the plate
    picked_up   1.0 once the right cook has picked up a non-empty plate
    signalled   (with `signal=True` only) 1.0 once either cook has lit its lamp
    failed_plates (with `retry=True` only) how many plates were thrown away this episode
    on_order    (with `order_bonus > 0` only) 1.0 once the episode's ordered dish has been delivered and paid
(chopped, plated and picked_up say how far a failed episode got: where a pair of cooks stopped working
together; signalled, whether a pair used the lamp at all)

How this relates to the published multi-recipe Overcooked (Charakorn et al.'s LIPO and "Diversity Is Not
All You Need" line, built on Overcooked-AI by Carroll et al.): there, two cooks on either side of a
counter divider must hand ingredients or dishes over, several recipes are possible and the completed
recipe labels the episode, which is what makes specialists (one recipe each) and held-out test partners
meaningful. We keep exactly that structure: a full divider forcing a hand-over, six recipes, the
delivered recipe as the behaviour label, a shared team reward and a restriction of the paying recipe
set for specialists. We simplified the rest, for speed and to keep the game small enough to learn in
minutes on a CPU: Overcooked-AI's onion/tomato soups cooked in pots with a cooking time, dish
dispensers, orders that arrive over time, facing directions and larger kitchens are replaced by
chopping on a board (an optional `chop_steps` delay plays the role of cooking time), a single plate
that lives on the divider, four ingredients whose single or paired combinations are the six recipes,
and one paid delivery per episode (so the label is unambiguous). The state is a few integer tensors per
environment, so thousands of kitchens step in one batch of tensor ops on CPU or CUDA. We did not
reproduce the published layouts, reward values or horizons; results on this env are not comparable
numbers, only comparable phenomena (conventions, specialisation, cross-play failures).

Why three layouts: in the classic kitchen a cross-play pair of two members that learned different dishes
still succeeds (the right cook delivers whatever it is handed), so the only way for cross-play minimisation
(XP-min) to make members incompatible is sabotage: recognising a stranger and stalling. In the split
kitchen the dish is a convention of both cooks (a right cook who adds onion to its partner's lettuce makes
no recipe), so members can also be made incompatible by choosing different dishes: the incompatibility
that makes an XP-min population diverse in recipes, which is what the published findings describe. But
the right cook sees the plate, so it can follow whatever its partner started, and single-ingredient
dishes need one cook only: XP-min there settles on one-cook dishes. The pairs kitchen removes the second
way out (every dish needs both cooks, and two members with different dishes fail together unless one
follows the other), and `blind=True` with `observe_partner_cell=False` the first (each cook chooses its
half without seeing the other's), so that conventions clash as in a matrix game (four of them).

Why an even kitchen (`layout=pairs_even`): in the pairs kitchen onion and egg are each one step from
their cook's plate cell, carrot and beans two, and tomato+rice and lettuce+fish one and two, so onion+egg is
the quickest dish to find and to cook: every self-play member there cooks it, and no population member
ever cooked carrot+beans. In `pairs_even` each side has two dispensers one step from its plate cell and
two two steps away, mirrored top and bottom, and every dish pairs a near ingredient with a far one (dishes
0 and 2 the left cook's far one and the right cook's near one, 1 and 3 the other way round), so every dish
takes the same number of steps from a random start (8.7 on average, both cooks moving at once), and two
cooks acting at random find each of the four about equally often (blind, with lamps and retries: first in
0.57-0.62% of 100,000 episodes each, against 0.49-0.73% in `pairs`, where onion+egg is the most found;
`python -m marl.benchmarks.cooking_kitchens`).

Why a lamp (`signal=True`): blind and without its partner's cell, a cook can hardly tell its self-play
partner from a stranger, so there is no room for a handshake, and no overfitness (the published finding
that extraction removes). The lamp is a channel that carries nothing about the task: a signal costs its
step and pays nothing, so self-play has no use for it, while cross-play minimisation can use it to tell
"me" from "not me" (and sabotage strangers) as well as, or instead of, cooking a different dish.

Why retries (`retry=True`): blind, with the episode ending at the first delivery, a cook that meets a
partner it does not know cannot find out the partner's dish before it commits, so no agent can succeed with
every specialist (a generalist can at best spread its guesses). With retries a delivered plate that does
not pay is thrown away and the empty plate comes back to the counter (seen by both cooks, blind too); the
episode goes on until a dish pays or time runs out. A cook that remembers its failures (a recurrent
generalist) can then try another half, so robustness to unknown partners is learnable while the dishes
still clash. The shaping rewards stay once per episode, so a retry pays only through the dish.

Why orders (`order_bonus > 0`): blind, a self-play pair must fix one dish, since nothing both cooks see
varies between episodes, so every member, self-play or XP-min, cooks one dish always and specialisation
(S, the share of the dishes' entropy that the member explains) is 1 for every population: it cannot tell
them apart. With orders, each episode one of the layout's recipes is drawn at random (whatever pays) and
shown to both cooks, and delivering it pays `order_bonus` more than another dish. A self-play pair can
then follow the order (its dish varies with the episode: S near 0), and members of a population that must
fail with each other (XP-min) cannot all follow it: the question of specialisation becomes measurable.
Measured at `order_bonus=5`: seven self-play members of eight still fix one dish, so S only falls to 0.93
(results/cooking_populations/README.md, "A kitchen with orders"). A specialist (only its recipe pays)
sees the orders too, and is paid the bonus only when the order is its dish, so it learns to cook its dish
whatever is ordered.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from marl.envs.native.base import NativeEnv, index_mask

from marl.errors import ConfigError


@dataclass(frozen=True)
class Kitchen:
    """One layout (`layout=`): its map, its ingredients (dispenser `i` holds ingredient `i`), its recipes (the
    ingredients on each recipe's plate)."""

    rows: tuple[str, ...]
    ingredients: tuple[str, ...]
    recipes: tuple[tuple[int, ...], ...]

    @property
    def has_board(self) -> bool:
        return any("B" in row for row in self.rows)


# The divider, the plate counter P and the serving counter S are in every kitchen; they differ in who holds
# which ingredients, and so in which dishes need both cooks.
KITCHENS = {
    # the left cook holds every ingredient and the board; the right cook carries the plate
    "classic": Kitchen(
        rows=("#01####", "#..#..#", "B..P..S", "#..#..#", "#23####"),
        ingredients=("tomato", "lettuce", "onion", "carrot"),
        recipes=((0,), (1,), (2,), (3,), (0, 1), (2, 3)),
    ),
    # each cook holds two ingredients and a board; a salad needs one ingredient from each side
    "split": Kitchen(
        rows=("#01#23#", "#..#..#", "B..P..B", "#..#..#", "#####S#"),
        ingredients=("tomato", "lettuce", "onion", "carrot"),
        recipes=((0,), (1,), (2,), (3,), (0, 2), (1, 3)),
    ),
    # four ingredients a side, ready to plate; a dish pairs one from each side
    "pairs": Kitchen(
        rows=("#01#45#", "#..#..#", "2..P..S", "#..#..#", "#3##67#"),
        ingredients=("tomato", "lettuce", "onion", "carrot", "rice", "fish", "egg", "beans"),
        recipes=((0, 4), (1, 5), (2, 6), (3, 7)),
    ),
    # the same dishes, each a near ingredient (one step from its cook's plate cell) with a far one (two)
    "pairs_even": Kitchen(
        rows=("#01#45#", "#..#..#", "#..P..S", "#..#..#", "#23#67#"),
        ingredients=("tomato", "lettuce", "onion", "carrot", "rice", "fish", "egg", "beans"),
        recipes=((0, 4), (1, 5), (2, 6), (3, 7)),
    ),
}
ROWS, COLS = len(KITCHENS["classic"].rows), len(KITCHENS["classic"].rows[0])
DIVIDER_COL = 3
SHAPINGS = ("any", "paying")  # which ingredients earn the shaping rewards: every one, or the paying recipes'
MAX_INGREDIENTS = 8

# Station codes (what a floor cell touches): none, dispensers 1-8 (ingredient + 1), board, plate, serve.
NONE, BOARD, PLATE_COUNTER, SERVE = 0, MAX_INGREDIENTS + 1, MAX_INGREDIENTS + 2, MAX_INGREDIENTS + 3
STATION_OF_CHAR = {str(i): i + 1 for i in range(MAX_INGREDIENTS)} | {
    "B": BOARD,
    "P": PLATE_COUNTER,
    "S": SERVE,
}
# Held-item codes, for a kitchen of m ingredients: 0 empty, 1..m raw ingredient (code - 1), m+1..2m chopped
# (ready to plate) ingredient (code - m - 1), 2m+1 the plate (in observations only).
EMPTY = 0
# Plate places.
ON_COUNTER, HELD, DELIVERED = 0, 1, 2
NOOP, UP, DOWN, LEFT, RIGHT, INTERACT, SIGNAL = range(7)
MOVES = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1), (0, 0), (0, 0))  # per action; SIGNAL only with signal=True
FLOOR_CELLS_PER_SIDE = 6
START_CELLS = ((2, 1), (2, 5))  # fixed starts (random_start=False): next to the board / the serving counter


def observation_size(n_ingredients: int, signal: bool = False, n_orders: int = 0) -> int:
    """Observation floats: side, own and partner's cell and held item, plate place and contents, chop
    progress, time, with ``signal`` both lamps, and the episode's order (one-hot over ``n_orders`` recipes;
    0: a kitchen without orders)."""
    items = 2 * n_ingredients + 1
    return 1 + 2 * FLOOR_CELLS_PER_SIDE + 2 * items + 3 + n_ingredients + 1 + 1 + 2 * signal + n_orders


def _layout_tables(layout: str) -> dict[str, torch.Tensor]:
    """Flat-cell lookup tables built from ``KITCHENS[layout]``: floor mask, the station each floor cell
    touches, each floor cell's index among its side's floor cells, the floor cells of each side, and the
    recipe each plate (a bit mask of ingredients) makes."""
    kitchen = KITCHENS[layout]
    rows = kitchen.rows
    floor = torch.zeros(ROWS * COLS, dtype=torch.bool)
    station = torch.zeros(ROWS * COLS, dtype=torch.long)
    side_index = torch.zeros(ROWS * COLS, dtype=torch.long)
    sides: tuple[list[int], list[int]] = ([], [])
    for r, row in enumerate(rows):
        for c, char in enumerate(row):
            if char != ".":
                continue
            cell = r * COLS + c
            floor[cell] = True
            touching = {rows[r + dr][c + dc] for dr, dc in MOVES[1:5]} & STATION_OF_CHAR.keys()
            assert len(touching) <= 1, f"floor cell {(r, c)} touches several stations: interact is ambiguous"
            station[cell] = STATION_OF_CHAR[touching.pop()] if touching else NONE
            side = sides[int(c > DIVIDER_COL)]
            side_index[cell] = len(side)
            side.append(cell)
    assert len(sides[0]) == len(sides[1]) == FLOOR_CELLS_PER_SIDE
    masks = 1 << len(kitchen.ingredients)
    recipe_of_mask = torch.full((masks,), -1, dtype=torch.long)
    for index, contents in enumerate(kitchen.recipes):
        recipe_of_mask[sum(1 << i for i in contents)] = index
    return {
        "floor": floor,
        "station": station,
        "side_index": side_index,
        "side_cells": torch.tensor(sides),  # [2, 6]
        "recipe_of_mask": recipe_of_mask,
        "popcount": torch.tensor([bin(m).count("1") for m in range(masks)]),
        "move": torch.tensor([dr * COLS + dc for dr, dc in MOVES]),
    }


class CookingEnv(NativeEnv):
    """Two cooks, a divider, six recipes, batched over `num_envs` kitchens (see the module docstring)."""

    agent_names = ("seat_0", "seat_1")
    info_keys = ("recipe", "success", "delivered", "chopped", "plated", "picked_up")
    state_names = (
        "cell",
        "held",
        "chop_progress",
        "plate_place",
        "plate_mask",
        "chopped_once",
        "plated_once",
        "picked_once",
        "shaping_paid",
        "recipe",
        "success",
        "delivered",
        "lamp",
        "signalled",
        "failed_plates",
        "order",
        "on_order",
    )

    def __init__(
        self,
        recipes: list[int] | None = None,
        delivery_reward: float = 10.0,
        chop_reward: float = 0.5,
        plate_reward: float = 0.5,
        pickup_reward: float = 0.5,
        step_cost: float = 0.01,
        chop_steps: int = 1,
        random_start: bool = True,
        observe_partner_cell: bool = True,
        blind: bool = False,
        signal: bool = False,
        retry: bool = False,
        shaping: str = "any",
        order_bonus: float = 0.0,
        layout: str = "classic",
        num_envs: int = 1,
        max_steps: int = 200,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        if chop_steps < 1:
            raise ConfigError(f"CookingEnv needs chop_steps >= 1, got {chop_steps}.")
        if layout not in KITCHENS:
            raise ConfigError(
                f"CookingEnv has no layout {layout!r}; choose one of {', '.join(KITCHENS)} "
                "(env.kwargs.layout=split: each cook holds two ingredients)."
            )
        if shaping not in SHAPINGS:
            raise ConfigError(
                f"CookingEnv has no shaping {shaping!r}; choose one of {', '.join(SHAPINGS)} (paying: only "
                "the ingredients of the paying recipes earn the shaping rewards)."
            )
        if order_bonus < 0:
            raise ConfigError(
                f"CookingEnv needs order_bonus >= 0, got {order_bonus} (0: no orders; e.g. 5: the ordered "
                "dish pays 5 more than the others)."
            )
        super().__init__(num_envs, max_steps, device, seed)
        self.layout, self.kitchen = layout, KITCHENS[layout]
        self.n_ingredients = len(self.kitchen.ingredients)
        self.has_board = self.kitchen.has_board  # without one, ingredients leave the dispenser ready to plate
        self.paying_recipes = index_mask(recipes, len(self.kitchen.recipes), "recipes", self.device)
        # ingredients whose taking, chopping and plating earn the shaping rewards (bit i: ingredient i)
        shaped = range(self.n_ingredients)
        if shaping == "paying":
            paying = self.paying_recipes.tolist()
            shaped = {i for r, contents in enumerate(self.kitchen.recipes) if paying[r] for i in contents}
        self.shaped_ingredients = sum(1 << i for i in shaped)
        self.delivery_reward, self.chop_reward = float(delivery_reward), float(chop_reward)
        self.plate_reward, self.pickup_reward = float(plate_reward), float(pickup_reward)
        self.step_cost, self.chop_steps, self.random_start = float(step_cost), chop_steps, random_start
        self.observe_partner_cell, self.blind, self.signal = observe_partner_cell, blind, signal
        self.retry = retry
        # orders: a dish drawn per episode among all the layout's recipes, seen by both cooks, paying
        # `order_bonus` on top of its delivery reward (when it pays at all)
        self.order_bonus, self.n_orders = float(order_bonus), len(self.kitchen.recipes) if order_bonus else 0
        self.tables = {name: t.to(self.device) for name, t in _layout_tables(layout).items()}
        n, long = num_envs, {"dtype": torch.long, "device": self.device}
        self.cell = torch.zeros(n, 2, **long)  # flat cell index r * COLS + c of each cook
        self.held = torch.zeros(n, 2, **long)  # each cook's ingredient (the plate: see plate_place)
        self.chop_progress = torch.zeros(n, 2, **long)
        self.plate_place = torch.zeros(n, **long)
        self.plate_mask = torch.zeros(n, **long)  # bit i: ingredient i on the plate
        self.recipe = torch.full((n,), -1, **long)
        flag = {"dtype": torch.bool, "device": self.device}
        self.chopped_once, self.plated_once, self.picked_once = (torch.zeros(n, **flag) for _ in range(3))
        self.shaping_paid = torch.zeros(n, 3, **flag)  # the chop, plate and pick-up rewards paid this episode
        self.success, self.delivered = torch.zeros(n, **flag), torch.zeros(n, **flag)
        self.lamp = torch.zeros(n, 2, **flag)  # each cook's lamp, lit by a signal at the last step
        self.signalled = torch.zeros(n, **flag)  # either lamp lit at some step of this episode
        self.failed_plates = torch.zeros(n, **long)  # plates thrown away this episode (retry=True)
        self.order = torch.zeros(n, **long)  # this episode's ordered recipe (order_bonus > 0)
        self.on_order = torch.zeros(n, **flag)  # the ordered dish was delivered and paid
        self.info_keys = (
            *CookingEnv.info_keys,
            *(("signalled",) if signal else ()),
            *(("failed_plates",) if retry else ()),
            *(("on_order",) if self.n_orders else ()),
        )
        n_actions = len(MOVES) if signal else SIGNAL
        obs_dim = observation_size(self.n_ingredients, signal, self.n_orders)
        self._make_specs(obs_dim=obs_dim, n_actions=n_actions)

    def restore(self, state: bytes | None) -> None:
        super().restore(state)
        if self.held.dim() == 1:  # a snapshot from before either cook could hold an ingredient
            self.held = torch.stack([self.held, torch.zeros_like(self.held)], dim=1)
            self.chop_progress = torch.stack([self.chop_progress, torch.zeros_like(self.chop_progress)], 1)

    # ------------------------------------------------------------------------------------------ reset
    def _reset_envs(self, mask: torch.Tensor) -> None:
        n = self.num_envs
        if self.random_start:
            pick = torch.randint(
                0, FLOOR_CELLS_PER_SIDE, (n, 2), generator=self.generator, device=self.device
            )
            start = self.tables["side_cells"].gather(1, pick.T).T  # [n, 2]
        else:
            start = torch.tensor([r * COLS + c for r, c in START_CELLS], device=self.device).expand(n, 2)
        self.cell = torch.where(mask.unsqueeze(-1), start, self.cell)
        if self.n_orders:  # drawn only in a kitchen with orders: the others' random streams stay as they were
            order = torch.randint(0, self.n_orders, (n,), generator=self.generator, device=self.device)
            self.order = torch.where(mask, order, self.order)
        for name in ("held", "chop_progress"):
            getattr(self, name).masked_fill_(mask.unsqueeze(-1), 0)
        self.plate_mask.masked_fill_(mask, 0)
        self.plate_place.masked_fill_(mask, ON_COUNTER)
        self.recipe.masked_fill_(mask, -1)
        self.failed_plates.masked_fill_(mask, 0)
        for name in (
            "chopped_once",
            "plated_once",
            "picked_once",
            "success",
            "delivered",
            "signalled",
            "on_order",
        ):
            getattr(self, name).masked_fill_(mask, False)
        self.lamp.masked_fill_(mask.unsqueeze(-1), False)
        self.shaping_paid.masked_fill_(mask.unsqueeze(-1), False)

    # ------------------------------------------------------------------------------------------- step
    def _advance(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.tables
        target = self.cell + t["move"][actions]
        self.cell = torch.where(t["floor"][target], target, self.cell)
        station = t["station"][self.cell]  # [n, 2]
        interact = actions == INTERACT
        self.lamp = actions == SIGNAL
        self.signalled |= self.lamp.any(-1)
        reward = torch.full((self.num_envs,), -self.step_cost, device=self.device)
        right_hands_free = self.held[:, 1] == EMPTY  # before this step: one interaction per step
        for seat in (0, 1):  # the left cook's interaction first, then the right cook's
            reward += self._ingredient_interacts(seat, interact[:, seat], station[:, seat])
        return self._plate_interacts(interact[:, 1] & right_hands_free, station[:, 1], reward)

    def _ingredient_interacts(self, seat: int, interact: torch.Tensor, station: torch.Tensor) -> torch.Tensor:
        """Dispensers, board and putting a chopped ingredient on the plate, for one cook (the right cook of
        the classic kitchen reaches no dispenser or board and holds no ingredient); -> shaping reward [n].
        In a kitchen without a board (pairs) an ingredient comes out of its dispenser ready to plate, and
        taking it counts as its preparation (`chopped`, `chop_reward`)."""
        held, ready = self.held[:, seat], self.n_ingredients + 1  # code of the first chopped (ready) one
        empty, raw, chopped = held == EMPTY, (held >= 1) & (held < ready), held >= ready
        at_dispenser = (station >= 1) & (station <= self.n_ingredients)
        holds_plate = (self.plate_place == HELD) if seat == 1 else torch.zeros_like(empty)
        take = interact & at_dispenser & empty & ~holds_plate
        drop = interact & at_dispenser & ~empty
        chop = interact & (station == BOARD) & raw
        progress = self.chop_progress[:, seat] + chop.long()
        chop_done = chop & (progress >= self.chop_steps)
        bit = torch.ones_like(held) << (held - ready).clamp(min=0)
        plate_add = (
            interact
            & (station == PLATE_COUNTER)
            & chopped
            & (self.plate_place == ON_COUNTER)
            & ((self.plate_mask & bit) == 0)
            & (self.tables["popcount"][self.plate_mask] < 2)
        )
        # dispenser code = raw ingredient code; + n: the same ingredient ready to plate
        held = torch.where(take, station if self.has_board else station + self.n_ingredients, held)
        held = torch.where(drop | plate_add, EMPTY, held)
        held = torch.where(chop_done, held + self.n_ingredients, held)
        self.held[:, seat] = held
        self.chop_progress[:, seat] = torch.where(chop_done | drop, 0, progress)
        self.plate_mask = torch.where(plate_add, self.plate_mask | bit, self.plate_mask)
        prepared = chop_done if self.has_board else take
        self.chopped_once |= prepared
        self.plated_once |= plate_add
        # the ingredient prepared (now held ready to plate) and the one plated (its bit), if they earn shaping
        prepared_bit = torch.ones_like(held) << (held - ready).clamp(min=0)
        prepared = prepared & ((prepared_bit & self.shaped_ingredients) != 0)
        plate_add = plate_add & ((bit & self.shaped_ingredients) != 0)
        first_chop, first_plate = prepared & ~self.shaping_paid[:, 0], plate_add & ~self.shaping_paid[:, 1]
        self.shaping_paid[:, 0] |= prepared
        self.shaping_paid[:, 1] |= plate_add
        return first_chop * self.chop_reward + first_plate * self.plate_reward

    def _plate_interacts(
        self, interact: torch.Tensor, station: torch.Tensor, reward: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Plate pick-up / put-back and delivery for the right cook, where its hands held no ingredient
        (``interact`` is False elsewhere); -> (reward [n], terminated [n]). With ``retry`` a delivered plate
        that does not pay is thrown away: the empty plate goes back on the counter and the episode goes on."""
        at_plate = interact & (station == PLATE_COUNTER)
        pick = at_plate & (self.plate_place == ON_COUNTER)
        put = at_plate & (self.plate_place == HELD)
        deliver = interact & (station == SERVE) & (self.plate_place == HELD) & (self.plate_mask != 0)
        self.picked_once |= pick & (self.plate_mask != 0)
        shaped_plate = (self.plate_mask & ~self.shaped_ingredients) == 0  # nothing unshaped on it
        first_pick = pick & (self.plate_mask != 0) & shaped_plate & ~self.shaping_paid[:, 2]
        self.shaping_paid[:, 2] |= first_pick
        label = self.tables["recipe_of_mask"][self.plate_mask]
        paid = deliver & (label >= 0) & self.paying_recipes[label.clamp(min=0)]
        self.plate_place = torch.where(pick, HELD, torch.where(put, ON_COUNTER, self.plate_place))
        thrown = deliver & ~paid & self.retry
        back = torch.where(thrown, ON_COUNTER, DELIVERED)  # a thrown plate comes back empty
        self.plate_place = torch.where(deliver, back, self.plate_place)
        self.plate_mask = torch.where(thrown, 0, self.plate_mask)
        self.failed_plates += thrown.long()
        self.recipe = torch.where(deliver, label, self.recipe)
        self.success |= paid
        self.delivered |= deliver
        reward = reward + first_pick * self.pickup_reward + paid * self.delivery_reward
        if self.n_orders:  # a kitchen without orders does no work for them
            on_order = paid & (label == self.order)
            self.on_order |= on_order
            reward = reward + on_order * self.order_bonus
        return reward, deliver & ~thrown

    # ------------------------------------------------------------------------------------ observation
    def _observe(self) -> torch.Tensor:
        t, n, m = self.tables, self.num_envs, self.n_ingredients
        side = torch.tensor([0.0, 1.0], device=self.device).expand(n, 2)
        cells = F.one_hot(t["side_index"][self.cell], FLOOR_CELLS_PER_SIDE).float()  # [n, 2, 6]
        plate_item = 2 * m + 1
        right_item = torch.where(self.plate_place == HELD, plate_item, self.held[:, 1])
        items = F.one_hot(torch.stack([self.held[:, 0], right_item], dim=1), plate_item + 1)[..., 1:].float()
        if self.blind:  # under the lid: how many ingredients the plate holds, not which
            contents = (
                t["popcount"][self.plate_mask].unsqueeze(-1) > torch.arange(m, device=self.device)
            ).float()
        else:
            contents = ((self.plate_mask.unsqueeze(-1) >> torch.arange(m, device=self.device)) & 1).float()
        plate = torch.cat([F.one_hot(self.plate_place, 3).float(), contents], dim=-1)  # [n, 3 + m]
        progress = self.chop_progress.float() / self.chop_steps
        time = (self.step_count.float() / self.max_steps).unsqueeze(-1).expand(n, 2)
        lamps = (
            [self.lamp.float().unsqueeze(-1), self.lamp.flip(1).float().unsqueeze(-1)] if self.signal else []
        )
        orders = (
            [F.one_hot(self.order, self.n_orders).float().unsqueeze(1).expand(n, 2, -1)]
            if self.n_orders
            else []
        )
        return torch.cat(
            [
                side.unsqueeze(-1),
                cells,
                cells.flip(1) if self.observe_partner_cell else torch.zeros_like(cells),
                items,
                torch.zeros_like(items) if self.blind else items.flip(1),
                plate.unsqueeze(1).expand(n, 2, 3 + m),
                progress.unsqueeze(-1),
                time.unsqueeze(-1),
                *lamps,
                *orders,
            ],
            dim=-1,
        )

    def _info(self) -> dict[str, torch.Tensor]:
        return (
            {
                "recipe": self.recipe,
                "success": self.success,
                "delivered": self.delivered,
                "chopped": self.chopped_once,
                "plated": self.plated_once,
                "picked_up": self.picked_once,
            }
            | ({"signalled": self.signalled} if self.signal else {})
            | ({"failed_plates": self.failed_plates} if self.retry else {})
            | ({"on_order": self.on_order} if self.n_orders else {})
        )
