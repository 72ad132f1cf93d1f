"""Heterogeneity and information metrics computed with plain torch ops (CPU or CUDA). See docs/metrics.md."""

from marl.metrics.critics import CriticConfig, critic_estimates
from marl.metrics.estimate import (
    classifier_interval,
    critic_interval,
    gaussian_interval,
    ksg_interval,
    mutual_information_interval,
)
from marl.metrics.extrapolation import MIInterval, extrapolate, subsample_interval
from marl.metrics.gaussian import gaussian_mutual_information
from marl.metrics.information import (
    DiscreteInformation,
    bootstrap_ci,
    discrete_information,
    entropy_discrete,
    entropy_grassberger,
    half_sample_interval,
    mutual_information_discrete,
    mutual_information_grassberger,
)
from marl.metrics.knn import (
    count_within,
    ksg_estimates,
    ksg_local_terms,
    ksg_mutual_information,
    ksg_mutual_information_ci,
    kth_neighbor_distance,
)
from marl.metrics.snd import categorical_distance, gaussian_w2, snd, snd_matrix
from marl.metrics.specialisation import SpecialisationReport, role_entropies, specialisation_report
from marl.metrics.team import categorical_identity_information, cell_labels, gaussian_identity_information
from marl.metrics.transforms import apply_transform, copula_normal, standardize
from marl.metrics.variational import ClassifierMIResult, classifier_mi_lower_bound

__all__ = [
    "ClassifierMIResult",
    "CriticConfig",
    "DiscreteInformation",
    "MIInterval",
    "SpecialisationReport",
    "apply_transform",
    "bootstrap_ci",
    "categorical_distance",
    "categorical_identity_information",
    "cell_labels",
    "classifier_interval",
    "classifier_mi_lower_bound",
    "copula_normal",
    "count_within",
    "critic_estimates",
    "critic_interval",
    "discrete_information",
    "entropy_discrete",
    "entropy_grassberger",
    "extrapolate",
    "gaussian_identity_information",
    "gaussian_interval",
    "gaussian_mutual_information",
    "gaussian_w2",
    "half_sample_interval",
    "ksg_estimates",
    "ksg_interval",
    "ksg_local_terms",
    "ksg_mutual_information",
    "ksg_mutual_information_ci",
    "kth_neighbor_distance",
    "mutual_information_discrete",
    "mutual_information_grassberger",
    "mutual_information_interval",
    "role_entropies",
    "snd",
    "snd_matrix",
    "specialisation_report",
    "standardize",
    "subsample_interval",
]
