"""The engine: CLI, config, training loop, collectors, PPO, checkpoints, logging."""

__version__ = "0.1.0"
