"""Networks and parameter-sharing schemes for multi-agent policies and critics."""

from marl.agents.sharing import ACTIVATIONS, HYPER_VARIANTS, SCHEMES, TeamMLP

__all__ = ["ACTIVATIONS", "HYPER_VARIANTS", "SCHEMES", "TeamMLP"]
