"""Heterogeneity and information metrics computed with plain torch ops (CPU or CUDA). See docs/metrics.md."""

from marl.metrics.information import bootstrap_ci, entropy_discrete, mutual_information_discrete
from marl.metrics.knn import (
    count_within,
    ksg_local_terms,
    ksg_mutual_information,
    ksg_mutual_information_ci,
    kth_neighbor_distance,
)
from marl.metrics.snd import categorical_distance, gaussian_w2, snd, snd_matrix
from marl.metrics.specialisation import SpecialisationReport, role_entropies, specialisation_report
from marl.metrics.team import categorical_identity_information, cell_labels, gaussian_identity_information

__all__ = [
    "ClassifierMIResult",
    "SpecialisationReport",
    "classifier_mi_lower_bound",
    "count_within",
    "ksg_local_terms",
    "ksg_mutual_information",
    "ksg_mutual_information_ci",
    "kth_neighbor_distance",
    "bootstrap_ci",
    "categorical_distance",
    "categorical_identity_information",
    "cell_labels",
    "entropy_discrete",
    "gaussian_identity_information",
    "gaussian_w2",
    "mutual_information_discrete",
    "role_entropies",
    "snd",
    "snd_matrix",
    "specialisation_report",
]
