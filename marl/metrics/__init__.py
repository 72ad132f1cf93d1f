"""Heterogeneity and information metrics computed with plain torch ops (CPU or CUDA)."""

from marl.metrics.information import bootstrap_ci, entropy_discrete, mutual_information_discrete
from marl.metrics.snd import categorical_distance, gaussian_w2, snd, snd_matrix

__all__ = [
    "bootstrap_ci",
    "categorical_distance",
    "entropy_discrete",
    "gaussian_w2",
    "mutual_information_discrete",
    "snd",
    "snd_matrix",
]
