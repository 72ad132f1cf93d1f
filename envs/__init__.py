"""Environments: the factory that turns an env config into a batched TorchRL env, and VMAS helpers."""

from marl.envs.factory import EnvInfo, GroupInfo, describe_env, make_env

__all__ = ["EnvInfo", "GroupInfo", "describe_env", "make_env"]
