"""Native batched-torch envs: matrix game payoffs and horizon, cooking dynamics on hand-built cases,
partial resets, exact snapshot/restore, seeding, the factory's errors, and short runs through the platform."""

import io

import pytest
import torch
from marl.envs.factory import describe_env, make_env
from marl.envs.native import NATIVE_ENVS, CookingEnv, MatrixGameEnv
from marl.envs.native.cooking import (
    COLS,
    DELIVERED,
    DOWN,
    HELD,
    INTERACT,
    KITCHENS,
    LEFT,
    NOOP,
    ON_COUNTER,
    PLATE_COUNTER,
    RIGHT,
    SIGNAL,
    UP,
)
from tensordict import TensorDict

from marl.benchmarks.cooking_kitchens import cell_touching, dish_steps, fewest_moves
from marl.config import load_config
from marl.errors import ConfigError
from marl.run_logger import read_metrics
from marl.training import train


def _step(env, actions) -> TensorDict:
    """One env step with `actions` [envs, 2]; -> the "next" TensorDict."""
    td = TensorDict({"agents": {"action": torch.as_tensor(actions).view(-1, 2)}}, batch_size=env.batch_size)
    return env.step(td)["next"]


def _info(out: TensorDict, key: str) -> torch.Tensor:
    """An info value per env (both seats carry the same one)."""
    values = out["agents", "info", key].squeeze(-1)
    assert torch.equal(values[:, 0], values[:, 1])
    return values[:, 0]


def _reward(out: TensorDict) -> torch.Tensor:
    return out["agents", "reward"][:, 0, 0]


def _cell(row: int, col: int) -> int:
    return row * COLS + col


# --------------------------------------------------------------------------------------------------------
# Matrix game
# --------------------------------------------------------------------------------------------------------


def test_matrix_game_pays_only_when_both_seats_pick_the_same_block():
    env = MatrixGameEnv(k=3, actions_per_convention=2, num_envs=4)
    env.reset()
    out = _step(env, [[0, 1], [0, 2], [4, 5], [2, 3]])  # blocks (0,0) (0,1) (2,2) (1,1)
    assert _reward(out).tolist() == [1.0, 0.0, 1.0, 1.0]
    assert _info(out, "convention").tolist() == [0, -1, 2, 1]
    assert _info(out, "success").tolist() == [1, 0, 1, 1]
    assert out["done"].all() and out["terminated"].all() and not out["truncated"].any()


def test_matrix_game_restricted_conventions_pay_only_their_blocks():
    env = MatrixGameEnv(k=3, conventions=[1], num_envs=3)
    env.reset()
    out = _step(env, [[0, 0], [1, 1], [2, 2]])
    assert _reward(out).tolist() == [0.0, 1.0, 0.0]
    assert _info(out, "convention").tolist() == [0, 1, 2]  # the behaviour label, paying or not
    assert _info(out, "success").tolist() == [0, 1, 0]


def test_repeated_matrix_game_pays_at_the_end_and_shows_previous_actions():
    env = MatrixGameEnv(k=2, horizon=3, num_envs=1)
    first = env.reset()["agents", "observation"]
    assert first.shape == (1, 2, 5) and first.abs().sum() == 0
    out = _step(env, [[0, 1]])
    obs = out["agents", "observation"][0]
    assert obs[0].tolist() == pytest.approx([0, 1, 1, 0, 1 / 3])  # seat 0: partner played 1, itself 0
    assert obs[1].tolist() == pytest.approx([1, 0, 0, 1, 1 / 3])  # step 1 of 3
    assert _reward(out).item() == 0 and not out["done"].any() and _info(out, "convention").item() == -1
    out = _step(env, [[1, 1]])
    assert _reward(out).item() == 0 and not out["done"].any()  # agreement before the end: free signalling
    out = _step(env, [[1, 1]])
    assert _reward(out).item() == 1 and out["terminated"].all() and _info(out, "convention").item() == 1

    every = MatrixGameEnv(k=2, horizon=2, reward_every_step=True, num_envs=1)
    every.reset()
    assert _reward(_step(every, [[0, 0]])).item() == pytest.approx(0.5)


def test_matrix_game_horizon_longer_than_max_steps_is_an_error():
    with pytest.raises(ConfigError, match="max_steps=5"):
        MatrixGameEnv(horizon=5, max_steps=2)


# --------------------------------------------------------------------------------------------------------
# Cooking
# --------------------------------------------------------------------------------------------------------


def _kitchen(num_envs: int = 1, **kwargs) -> CookingEnv:
    env = CookingEnv(num_envs=num_envs, random_start=False, **kwargs)  # left at (2, 1), right at (2, 5)
    env.reset()
    return env


def test_single_ingredient_dish_from_dispenser_to_delivery():
    env = _kitchen()
    _step(env, [UP, LEFT])  # left next to the tomato dispenser, right next to the plate counter
    assert env.cell.tolist() == [[_cell(1, 1), _cell(2, 4)]]
    out = _step(env, [INTERACT, INTERACT])  # take a tomato; the right cook picks up the empty plate
    assert env.held[0, 0].item() == 1 and env.plate_place.item() == HELD
    assert [_info(out, key).item() for key in ("chopped", "plated", "picked_up")] == [0, 0, 0]
    assert out["agents", "observation"][0, 0, 13:22].tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0]  # raw tomato
    assert _reward(out).item() == pytest.approx(-0.01)  # no pickup reward for an empty plate
    _step(env, [DOWN, INTERACT])  # right cook puts the plate back
    out = _step(env, [INTERACT, NOOP])  # chop at the board
    assert env.held[0, 0].item() == 5 and _reward(out).item() == pytest.approx(0.49)
    _step(env, [RIGHT, NOOP])
    out = _step(env, [RIGHT, NOOP])  # the divider blocks the left cook
    assert env.cell[0, 0].item() == _cell(2, 2)
    out = _step(env, [INTERACT, NOOP])  # onto the plate on the divider
    assert env.held[0, 0].item() == 0 and env.plate_mask.item() == 0b0001
    assert [_info(out, key).item() for key in ("chopped", "plated", "picked_up")] == [1, 1, 0]
    assert _reward(out).item() == pytest.approx(0.49)
    out = _step(env, [NOOP, INTERACT])  # hand-over: the right cook takes the plate
    assert env.plate_place.item() == HELD and _reward(out).item() == pytest.approx(0.49)
    _step(env, [NOOP, RIGHT])
    out = _step(env, [NOOP, INTERACT])  # deliver
    assert _reward(out).item() == pytest.approx(9.99)
    assert out["terminated"].all() and not out["truncated"].any()
    assert _info(out, "recipe").item() == 0 and _info(out, "success").item() == 1
    assert _info(out, "picked_up").item() == 1  # the episode's outcome stays in the last step's info
    assert env.plate_place.item() == DELIVERED


def test_salad_label_and_restricted_recipe_set():
    env = _kitchen(num_envs=3, recipes=[0])
    env.cell[:, 1] = _cell(2, 5)
    env.plate_place[:] = HELD
    env.plate_mask[:] = torch.tensor([0b0011, 0b0001, 0b0101])  # salad 4, tomato 0, not a recipe
    out = _step(env, [[NOOP, INTERACT]] * 3)
    assert out["done"].all()
    assert _info(out, "recipe").tolist() == [4, 0, -1]
    assert _info(out, "success").tolist() == [0, 1, 0]
    assert _info(out, "delivered").tolist() == [1, 1, 1]
    assert _reward(out).tolist() == pytest.approx([-0.01, 9.99, -0.01])  # out of set: nothing


def test_paying_shaping_pays_only_the_ingredients_of_the_paying_recipes():
    """shaping=paying: where only lettuce pays, chopping and plating a tomato and picking up its plate earn
    nothing (the stages still count them), and the lettuce then earns each shaping reward once."""
    env = _kitchen(recipes=[1], shaping="paying")
    tomato = [UP, INTERACT, DOWN, INTERACT, RIGHT, RIGHT, INTERACT]  # take, chop, plate
    rewards = [_reward(_step(env, [action, NOOP])).item() for action in tomato]
    assert rewards == pytest.approx([-0.01] * len(tomato))
    out = _step(env, [NOOP, LEFT])
    out = _step(env, [NOOP, INTERACT])  # the right cook picks up the tomato's plate
    assert _reward(out).item() == pytest.approx(-0.01) and env.plate_place.item() == HELD
    assert [_info(out, key).item() for key in ("chopped", "plated", "picked_up")] == [1, 1, 1]
    env.reset()
    lettuce = [UP, RIGHT, INTERACT, LEFT, DOWN, INTERACT, RIGHT, RIGHT, INTERACT]
    rewards = [_reward(_step(env, [action, NOOP])).item() for action in lettuce]
    assert rewards == pytest.approx([-0.01] * 5 + [0.49, -0.01, -0.01, 0.49])
    with pytest.raises(ConfigError, match="no shaping 'some'"):
        CookingEnv(shaping="some")


def test_default_shaping_is_any_and_paying_pays_no_more():
    """Random cooks in restricted kitchens: shaping=any is the default, step for step; shaping=paying pays
    the same delivery and step cost and never more shaping."""
    kitchens = {
        shaping: CookingEnv(num_envs=256, seed=2, layout="pairs_even", recipes=[3], **kwargs)
        for shaping, kwargs in (
            ("default", {}),
            ("any", {"shaping": "any"}),
            ("paying", {"shaping": "paying"}),
        )
    }
    tds = {name: env.reset() for name, env in kitchens.items()}
    generator = torch.Generator().manual_seed(0)
    totals = {name: torch.zeros(256) for name in kitchens}  # per kitchen over its episodes (same resets)
    for _ in range(120):
        actions = torch.randint(0, 6, (256, 2), generator=generator)
        for name, env in kitchens.items():
            tds[name]["agents", "action"] = actions
            out, tds[name] = env.step_and_maybe_reset(tds[name])
            totals[name] += out["next", "agents", "reward"][:, 0, 0]
    assert torch.equal(totals["default"], totals["any"])
    assert (totals["paying"] <= totals["any"] + 1e-4).all()
    assert (totals["paying"] < totals["any"] - 0.4).any()  # random cooks take unpaid ingredients


def test_plate_takes_two_different_ingredients_only_while_on_the_counter():
    env = _kitchen(num_envs=3)
    env.cell[:, 0] = _cell(2, 2)
    env.held[:, 0] = torch.tensor([5, 7, 8])  # chopped tomato, onion, carrot
    env.plate_mask[:] = torch.tensor([0b0001, 0b0011, 0b0000])
    env.plate_place[2] = HELD
    _step(env, [[INTERACT, NOOP]] * 3)
    assert env.plate_mask.tolist() == [0b0001, 0b0011, 0b0000]  # duplicate, full, plate away
    assert env.held[:, 0].tolist() == [5, 7, 8]
    env.held[0, 0] = 6  # chopped lettuce onto the tomato: a salad
    _step(env, [[INTERACT, NOOP]] * 3)
    assert env.plate_mask[0].item() == 0b0011 and env.held[0, 0].item() == 0


def test_dispenser_takes_items_back_and_the_divider_blocks_the_right_cook():
    env = _kitchen()
    _step(env, [UP, LEFT])
    _step(env, [INTERACT, LEFT])
    assert env.held[0, 0].item() == 1 and env.cell[0, 1].item() == _cell(2, 4)
    _step(env, [INTERACT, NOOP])  # back into the dispenser
    assert env.held[0, 0].item() == 0


def test_episode_ends_at_the_horizon_without_delivery():
    env = _kitchen(max_steps=4)
    for t in range(4):
        out = _step(env, [NOOP, NOOP])
        assert bool(out["done"]) == (t == 3)
    assert out["truncated"].all() and not out["terminated"].any()
    assert _info(out, "recipe").item() == -1 and _info(out, "success").item() == 0


@pytest.mark.parametrize("layout", ["classic", "split", "pairs", "pairs_even"])
def test_random_rollout_keeps_the_kitchen_consistent(layout):
    env = CookingEnv(num_envs=256, max_steps=50, seed=1, layout=layout)
    td = env.reset()
    generator = torch.Generator().manual_seed(0)
    for _ in range(150):
        td["agents", "action"] = torch.randint(0, 6, (256, 2), generator=generator)
        _, td = env.step_and_maybe_reset(td)
        left_col, right_col = env.cell[:, 0] % COLS, env.cell[:, 1] % COLS
        assert ((left_col >= 1) & (left_col <= 2)).all() and ((right_col >= 4) & (right_col <= 5)).all()
        assert ((env.held >= 0) & (env.held <= 2 * env.n_ingredients)).all()
        assert not ((env.held[:, 1] != 0) & (env.plate_place == HELD)).any()  # an ingredient or the plate
        if layout == "classic":
            assert (env.held[:, 1] == 0).all()  # the right cook reaches no dispenser
        if layout.startswith("pairs"):  # ingredients come ready (9-16): the left cook's 0-3, the right's 4-7
            assert torch.isin(env.held[:, 0], torch.tensor([0, 9, 10, 11, 12])).all()
            assert torch.isin(env.held[:, 1], torch.tensor([0, 13, 14, 15, 16])).all()
        assert (env.tables["popcount"][env.plate_mask] <= 2).all()
    assert td["agents", "observation"].shape == (256, 2, 60 if layout.startswith("pairs") else 40)


def _cook(env: CookingEnv, left: list[int], right: list[int]) -> TensorDict:
    """Both cooks' action scripts, the shorter padded with no-ops; -> the last step's outcome."""
    length = max(len(left), len(right))
    left, right = left + [NOOP] * (length - len(left)), right + [NOOP] * (length - len(right))
    for a, b in zip(left, right, strict=True):
        out = _step(env, [a, b])
    return out


# The split kitchen: left cook tomato (1, 1) / lettuce (1, 2) / board (2, 1) / plate (2, 2); right cook
# onion (1, 4) / carrot (1, 5) / board (2, 5) / plate (2, 4) / serving counter from (3, 5).
LEFT_PLATES_TOMATO = [UP, INTERACT, DOWN, INTERACT, RIGHT, INTERACT]
LEFT_PLATES_LETTUCE = [UP, RIGHT, INTERACT, LEFT, DOWN, INTERACT, RIGHT, INTERACT]
RIGHT_PLATES_ONION = [UP, LEFT, INTERACT, DOWN, RIGHT, INTERACT, LEFT, INTERACT]
RIGHT_DELIVERS = [INTERACT, RIGHT, DOWN, INTERACT]  # from (2, 4): pick the plate up, serve


def test_split_kitchen_salad_needs_an_ingredient_from_each_cook():
    env = _kitchen(layout="split")
    out = _cook(env, LEFT_PLATES_TOMATO, RIGHT_PLATES_ONION)
    assert env.plate_mask.item() == 0b0101 and env.held.tolist() == [[0, 0]]
    assert [_info(out, key).item() for key in ("chopped", "plated")] == [1, 1]
    out = _cook(env, [], RIGHT_DELIVERS)
    assert _info(out, "recipe").item() == 4 and _info(out, "success").item() == 1  # tomato+onion salad
    assert _reward(out).item() == pytest.approx(9.99)


def test_split_kitchen_cooks_that_disagree_on_the_dish_fail():
    env = _kitchen(layout="split")
    _cook(env, LEFT_PLATES_LETTUCE, RIGHT_PLATES_ONION)  # lettuce + onion: not a recipe here
    out = _cook(env, [], RIGHT_DELIVERS)
    assert out["terminated"].all()
    assert _info(out, "recipe").item() == -1 and _info(out, "success").item() == 0
    assert _info(out, "delivered").item() == 1 and _reward(out).item() == pytest.approx(-0.01)


def test_split_kitchen_right_cook_carries_an_ingredient_or_the_plate_not_both():
    env = _kitchen(layout="split")
    _cook(env, [], [UP, LEFT, INTERACT, DOWN])  # the right cook takes an onion to the plate counter
    assert env.held[0, 1].item() == 3
    _step(env, [NOOP, INTERACT])  # a raw onion: neither onto the plate nor a pick-up
    assert env.plate_place.item() == ON_COUNTER and env.plate_mask.item() == 0 and env.held[0, 1].item() == 3
    assert env._observe()[0, 1, 13:22].tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0]  # own item: raw onion
    _cook(env, [], [UP, INTERACT, DOWN, INTERACT])  # back into the dispenser, then pick up the empty plate
    assert env.held[0, 1].item() == 0 and env.plate_place.item() == HELD
    _cook(env, [], [UP, INTERACT])  # holding the plate: the dispenser gives nothing
    assert env.held[0, 1].item() == 0 and env.plate_place.item() == HELD


# The pairs kitchen: left cook tomato (1, 1) / lettuce (1, 2) / onion (2, 1) / carrot (3, 1) / plate (2, 2);
# right cook rice (1, 4) / fish (1, 5) / plate (2, 4) / serving counter (2, 5) / egg (3, 4) / beans (3, 5).
PAIRS_LEFT_PLATES_ONION = [INTERACT, RIGHT, INTERACT]  # from its start (2, 1)
PAIRS_RIGHT_PLATES_EGG = [LEFT, DOWN, INTERACT, UP, INTERACT]  # from its start (2, 5)
PAIRS_RIGHT_PLATES_FISH = [UP, INTERACT, LEFT, DOWN, INTERACT]
PAIRS_RIGHT_DELIVERS = [INTERACT, RIGHT, INTERACT]  # from (2, 4): pick the plate up, serve


def test_pairs_kitchen_dish_pairs_an_ingredient_from_each_cook_and_blind_cooks_see_neither():
    env = _kitchen(layout="pairs", blind=True, observe_partner_cell=False)
    out = _cook(env, PAIRS_LEFT_PLATES_ONION, [])
    assert env.plate_mask.item() == 0b100 and [_info(out, k).item() for k in ("chopped", "plated")] == [1, 1]
    assert _reward(out).item() == pytest.approx(0.49)  # no board: taken is prepared (paid one step earlier)
    observation = env._observe()[0]  # [2 cooks, 60]
    assert observation.shape == (2, 60)
    own_item, partner_item, contents = slice(13, 30), slice(30, 47), slice(50, 58)
    assert (observation[:, 7:13] == 0).all()  # partner's cell hidden (its hands: below, once held)
    assert observation[1, contents].tolist() == [1, 0, 0, 0, 0, 0, 0, 0]  # one ingredient, not which
    out = _cook(env, [], PAIRS_RIGHT_PLATES_EGG[:3])
    assert env.held[0, 1].item() == 15 and env._observe()[0, 1, own_item].argmax().item() == 14  # ready egg
    assert env._observe()[0, 0, partner_item].sum().item() == 0
    _cook(env, [], PAIRS_RIGHT_PLATES_EGG[3:])
    assert env._observe()[0, 0, contents].tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    out = _cook(env, [], PAIRS_RIGHT_DELIVERS)
    assert out["terminated"].all() and _info(out, "recipe").item() == 2  # onion + egg
    assert _info(out, "success").item() == 1 and _reward(out).item() == pytest.approx(9.99)


@pytest.mark.parametrize("right", [PAIRS_RIGHT_PLATES_FISH, []], ids=["other-dish", "one-cook"])
def test_pairs_kitchen_cooks_that_chose_different_dishes_fail(right):
    env = _kitchen(layout="pairs")
    _cook(env, PAIRS_LEFT_PLATES_ONION, right)  # onion + fish, or onion alone: neither is a dish
    out = _cook(env, [], ([] if right else [LEFT]) + PAIRS_RIGHT_DELIVERS)
    assert out["terminated"].all() and _info(out, "delivered").item() == 1
    assert _info(out, "recipe").item() == -1 and _info(out, "success").item() == 0


def test_even_pairs_kitchen_puts_every_dish_equally_far_and_pairs_puts_onion_egg_nearest():
    assert KITCHENS["pairs_even"].recipes == KITCHENS["pairs"].recipes
    even, pairs = dish_steps("pairs_even"), dish_steps("pairs")
    assert even == pytest.approx([8 + 2 / 3] * 4)  # averaged over the 36 pairs of start cells
    assert pairs[2] == min(pairs) < even[0] < pairs[3] == max(pairs)  # onion+egg nearest, carrot+beans last
    tables = CookingEnv(layout="pairs_even").tables
    plate = cell_touching(tables, PLATE_COUNTER, 0)
    dispensers = [cell_touching(tables, ingredient + 1, 0) for ingredient in range(4)]
    assert [fewest_moves(tables, plate)[c] for c in dispensers] == [2, 1, 2, 1]  # the left cook's, mirrored


def test_with_retries_a_plate_that_does_not_pay_comes_back_and_the_cooks_try_again():
    env = _kitchen(layout="pairs", blind=True, observe_partner_cell=False, retry=True)
    assert "failed_plates" not in _kitchen(layout="pairs").reset()["agents", "info"]  # only with retries
    _cook(env, PAIRS_LEFT_PLATES_ONION, PAIRS_RIGHT_PLATES_FISH)  # onion + fish: no dish
    out = _cook(env, [], PAIRS_RIGHT_DELIVERS)
    assert not out["done"].any() and _info(out, "failed_plates").item() == 1
    assert _info(out, "success").item() == 0 and _info(out, "recipe").item() == -1
    assert _reward(out).item() == pytest.approx(-0.01)  # no pay, and the shaping was paid once already
    plate_place, contents = slice(47, 50), slice(50, 58)
    seen = env._observe()[0]  # both cooks, blind too, see the empty plate back on the counter
    assert (seen[:, plate_place] == torch.tensor([1.0, 0.0, 0.0])).all() and (seen[:, contents] == 0).all()
    _cook(env, [LEFT, INTERACT, RIGHT, INTERACT], PAIRS_RIGHT_PLATES_EGG)  # the left cook plates onion again
    out = _cook(env, [], PAIRS_RIGHT_DELIVERS)  # onion + egg
    assert out["terminated"].all() and _info(out, "success").item() == 1 and _info(out, "recipe").item() == 2
    assert _reward(out).item() == pytest.approx(9.99) and _info(out, "failed_plates").item() == 1
    env.reset()
    assert env.failed_plates.item() == 0


@pytest.mark.parametrize("paying", [None, [2]], ids=["all-pay", "specialist"])
def test_an_order_is_drawn_per_episode_seen_by_both_cooks_and_pays_its_bonus_only_when_cooked(paying):
    """order_bonus > 0: one of the layout's recipes per episode, one-hot at the end of both cooks'
    observations; the ordered dish pays the bonus on top of its delivery (only if it pays at all)."""
    plain = CookingEnv(num_envs=512, seed=4, layout="pairs", blind=True)
    env = CookingEnv(num_envs=512, seed=4, layout="pairs", blind=True, recipes=paying, order_bonus=5.0)
    seen = env.reset()["agents", "observation"]
    assert seen.shape[-1] == plain.reset()["agents", "observation"].shape[-1] + 4  # four dishes
    orders = seen[..., -4:]
    assert torch.equal(orders[:, 0], orders[:, 1]) and (orders.sum(-1) == 1).all()
    assert torch.equal(orders[:, 0].argmax(-1), env.order)
    assert torch.bincount(env.order, minlength=4).min() > 90  # every dish ordered (512 kitchens, 4 dishes)
    assert "on_order" not in plain.reset()["agents", "info"]
    for order, reward in ((2, 14.99), (1, 9.99)):  # onion + egg ordered (the bonus), or lettuce + fish
        env = _kitchen(layout="pairs", blind=True, recipes=paying, order_bonus=5.0)
        env.order[:] = order
        _cook(env, PAIRS_LEFT_PLATES_ONION, PAIRS_RIGHT_PLATES_EGG)
        out = _cook(env, [], PAIRS_RIGHT_DELIVERS)  # onion + egg delivered
        assert _info(out, "recipe").item() == 2 and _info(out, "success").item() == 1
        assert _reward(out).item() == pytest.approx(reward)
        assert _info(out, "on_order").item() == (order == 2)
        env.reset()
        assert not env.on_order.any()
    if paying is not None:
        return
    env = _kitchen(layout="pairs", blind=True, recipes=[1], order_bonus=5.0)  # onion + egg does not pay
    env.order[:] = 2
    _cook(env, PAIRS_LEFT_PLATES_ONION, PAIRS_RIGHT_PLATES_EGG)
    out = _cook(env, [], PAIRS_RIGHT_DELIVERS)
    assert _reward(out).item() == pytest.approx(-0.01) and _info(out, "on_order").item() == 0
    with pytest.raises(ConfigError, match="order_bonus >= 0"):
        CookingEnv(order_bonus=-1.0)


def test_blind_cooks_see_their_partners_cell_unless_it_is_hidden_too():
    seen = CookingEnv(num_envs=4, seed=3, layout="pairs").reset()["agents", "observation"]
    blind = CookingEnv(num_envs=4, seed=3, layout="pairs", blind=True).reset()["agents", "observation"]
    assert torch.equal(seen[..., 7:13], blind[..., 7:13]) and (blind[..., 7:13].sum(-1) == 1).all()


def test_cooking_restores_a_snapshot_saved_when_only_the_left_cook_held_ingredients():
    env = CookingEnv(num_envs=2, seed=0)
    env.reset()
    state = torch.load(io.BytesIO(env.snapshot()), weights_only=True)
    state["tensors"].update(held=torch.tensor([5, 0]), chop_progress=torch.tensor([0, 1]))  # [envs]
    buffer = io.BytesIO()
    torch.save(state, buffer)
    env.restore(buffer.getvalue())
    assert env.held.tolist() == [[5, 0], [0, 0]] and env.chop_progress.tolist() == [[0, 0], [1, 0]]
    env.rand_step()  # and it steps


def test_a_lit_lamp_is_seen_by_both_cooks_blind_too_and_costs_the_step():
    """signal=True: a seventh action keeps the cook in place and lights its lamp for one step; both cooks
    see both lamps (own, partner's: the last two floats), with the plate and the partner hidden too."""
    plain = _kitchen(layout="pairs", blind=True, observe_partner_cell=False)
    env = _kitchen(layout="pairs", blind=True, observe_partner_cell=False, signal=True)
    choices = [e.action_spec["agents", "action"].space.n for e in (env, plain)]
    assert choices == [7, 6]
    reset = env.reset()
    first = reset["agents", "observation"]
    assert first.shape[-1] == plain.reset()["agents", "observation"].shape[-1] + 2
    assert "signalled" not in plain.reset()["agents", "info"]  # only a kitchen with lamps says
    assert reset["agents", "info", "signalled"].sum() == 0
    assert (first[..., -2:] == 0).all()  # unlit at the start
    start = env.cell.clone()
    lit = _step(env, [[SIGNAL, UP]])
    lamps = lit["agents", "observation"][0, :, -2:]
    assert lamps.tolist() == [[1.0, 0.0], [0.0, 1.0]]  # the left cook's own lamp, the right cook's partner's
    assert env.cell[0, 0] == start[0, 0] and env.cell[0, 1] != start[0, 1]  # signalling is not moving
    assert _reward(lit).item() == pytest.approx(-0.01)  # it pays nothing
    assert lit["agents", "info", "signalled"][0].flatten().tolist() == [1.0, 1.0]  # this episode used a lamp
    unlit = _step(env, [[NOOP, SIGNAL]])
    assert unlit["agents", "observation"][0, :, -2:].tolist() == [[0.0, 1.0], [1.0, 0.0]]
    dark = _step(env, [[NOOP, NOOP]])
    assert not dark["agents", "observation"][..., -2:].any()  # a lamp is lit for one step
    assert dark["agents", "info", "signalled"][0].flatten().tolist() == [1.0, 1.0]  # the episode remembers
    env.reset()
    assert not env.lamp.any() and not env.signalled.any()


def test_cooking_rejects_an_unknown_layout():
    with pytest.raises(ConfigError, match="no layout 'spilt'.*classic, split, pairs"):
        CookingEnv(layout="spilt")


def test_cooking_can_hide_the_partners_cell():
    seen, hidden = CookingEnv(num_envs=4, seed=3), CookingEnv(num_envs=4, seed=3, observe_partner_cell=False)
    a, b = seen.reset()["agents", "observation"], hidden.reset()["agents", "observation"]
    partner = slice(7, 13)  # after side [1] and own cell [6]
    assert (a[..., partner].sum(-1) == 1).all() and (b[..., partner] == 0).all()
    assert torch.equal(torch.cat([a[..., :7], a[..., 13:]], -1), torch.cat([b[..., :7], b[..., 13:]], -1))


# --------------------------------------------------------------------------------------------------------
# Shared machinery: partial resets, snapshot/restore, seeding
# --------------------------------------------------------------------------------------------------------


def test_partial_reset_only_resets_finished_envs():
    env = CookingEnv(num_envs=3, random_start=False)
    td = env.reset()
    env.cell[:, 1] = _cell(2, 5)
    env.plate_place[:] = HELD
    env.plate_mask[:] = torch.tensor([0b0001, 0b0000, 0b0010])  # env 1 has an empty plate: no delivery
    env.held[1] = 3
    td["agents", "action"] = torch.tensor([[NOOP, INTERACT]] * 3)
    step, following = env.step_and_maybe_reset(td)
    assert step["next", "done"].squeeze(-1).tolist() == [True, False, True]
    assert env.step_count.tolist() == [0, 1, 0]
    assert env.plate_place.tolist() == [ON_COUNTER, HELD, ON_COUNTER]
    assert env.held[:, 0].tolist() == [0, 3, 0] and env.plate_mask.tolist() == [0, 0, 0]
    assert torch.equal(following["agents", "observation"][1], step["next", "agents", "observation"][1])
    assert torch.equal(following["agents", "observation"], env._observe())


def _random_rollout(env, td, steps: int, seed: int) -> tuple[list[torch.Tensor], TensorDict]:
    generator = torch.Generator().manual_seed(seed)
    n_actions = env.full_action_spec["agents", "action"].space.n
    outputs = []
    for _ in range(steps):
        td["agents", "action"] = torch.randint(0, n_actions, (env.num_envs, 2), generator=generator)
        step, td = env.step_and_maybe_reset(td)
        outputs.append(torch.cat([step["next", "agents", "observation"].flatten(1), step["next", "done"]], 1))
        outputs.append(step["next", "agents", "reward"].flatten(1))
    return outputs, td


@pytest.mark.parametrize(
    "build",
    [
        lambda seed: CookingEnv(num_envs=16, max_steps=6, seed=seed),
        lambda seed: MatrixGameEnv(k=3, horizon=2, num_envs=16, seed=seed),
    ],
)
def test_snapshot_restore_continues_identically(build):
    env = build(3)
    _, td = _random_rollout(env, env.reset(), 9, seed=0)
    saved, saved_td = env.snapshot(), td.clone()
    expected, _ = _random_rollout(env, td, 14, seed=1)
    other = build(99)  # a different seed: the generator state must come from the snapshot
    other.reset()
    other.restore(saved)
    actual, _ = _random_rollout(other, saved_td, 14, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(expected, actual, strict=True))


def test_same_seed_same_rollout_and_set_seed_replays():
    def rollout(env):
        return _random_rollout(env, env.reset(), 12, seed=5)[0]

    a, b = (
        rollout(CookingEnv(num_envs=32, max_steps=5, seed=7)),
        rollout(CookingEnv(num_envs=32, max_steps=5, seed=7)),
    )
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    c = rollout(CookingEnv(num_envs=32, max_steps=5, seed=8))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))
    env = CookingEnv(num_envs=32, max_steps=5, seed=0)
    rollout(env)
    env.set_seed(7)
    assert all(torch.equal(x, y) for x, y in zip(a, rollout(env), strict=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", list(NATIVE_ENVS))
def test_cuda_steps_like_the_cpu(name):
    kwargs = {"random_start": False} if name == "cooking" else {}  # the rules, not the devices' RNGs
    env_cpu, env_gpu = (
        NATIVE_ENVS[name](num_envs=64, max_steps=8, device=d, **kwargs) for d in ("cpu", "cuda")
    )
    td_cpu, td_gpu = env_cpu.reset(), env_gpu.reset()
    generator = torch.Generator().manual_seed(0)
    n_actions = env_cpu.full_action_spec["agents", "action"].space.n
    for _ in range(40):
        actions = torch.randint(0, n_actions, (64, 2), generator=generator)
        td_cpu["agents", "action"], td_gpu["agents", "action"] = actions, actions.cuda()
        step_cpu, td_cpu = env_cpu.step_and_maybe_reset(td_cpu)
        step_gpu, td_gpu = env_gpu.step_and_maybe_reset(td_gpu)
        assert step_gpu.device.type == "cuda"
        assert (step_gpu["next"].cpu() == step_cpu["next"]).all()
    env_gpu.restore(env_gpu.snapshot())


# --------------------------------------------------------------------------------------------------------
# Factory and platform
# --------------------------------------------------------------------------------------------------------


def test_factory_builds_native_envs_and_names_bad_input():
    cfg = load_config(["env=native/cooking", "env.num_envs=4", "env.recipes=[4]"]).env
    env = make_env(cfg, "cpu", seed=0)
    info = describe_env(env, cfg.name, cfg.max_steps)
    assert (info.n_agents, info.groups[0].discrete, info.groups[0].action_dim, info.groups[0].obs_dim) == (
        2,
        True,
        6,
        40,
    )
    assert env.paying_recipes.tolist() == [False] * 4 + [True, False]
    cfg.name = "native/cookin"
    with pytest.raises(ConfigError, match="native/cooking.*native/matrix_game"):
        make_env(cfg, "cpu", seed=0)
    bad = load_config(["env=native/matrix_game", "env.convention=[1]"]).env
    with pytest.raises(ConfigError, match=r"env\.convention\b.*env\.conventions.*horizon"):
        make_env(bad, "cpu", seed=0)


@pytest.mark.parametrize("name", ["native/matrix_game", "native/cooking"])
def test_training_runs_through_the_platform(tmp_path, name):
    cfg = load_config(
        [
            "experiment=smoke",
            f"experiment.runs_dir={tmp_path}",
            "experiment.progress=false",
            "experiment.total_frames=600",
            f"env={name}",
            "env.num_envs=6",
            "env.max_steps=25",
        ]
    )
    rows = read_metrics(train(cfg))
    assert rows[-1]["frames"] == 600 and "eval/return_mean" in rows[-1]
