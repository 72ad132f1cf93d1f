"""Native environments: two-seat coordination games written as pure batched torch (`env=native/<name>`).

Each is a TorchRL `EnvBase` (see `envs/native/base.py`) stepping all environments with tensor ops on CPU
or CUDA: `matrix_game` (K incompatible conventions, one-shot or repeated) and `cooking` (a multi-recipe
kitchen with a divider that forces hand-overs). Both label every episode with the behaviour it showed
(the convention / the recipe), for diversity and specialisation metrics over partner populations.
"""

from marl.envs.native.base import NativeEnv
from marl.envs.native.cooking import CookingEnv
from marl.envs.native.matrix_game import MatrixGameEnv

NATIVE_ENVS: dict[str, type[NativeEnv]] = {"matrix_game": MatrixGameEnv, "cooking": CookingEnv}

__all__ = ["NATIVE_ENVS", "CookingEnv", "MatrixGameEnv", "NativeEnv"]
