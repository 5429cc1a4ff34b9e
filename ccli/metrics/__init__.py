"""Clustering metrics: Hungarian ACC, NMI, ARI, weighted and pairwise P/R/F."""

from ccli.metrics.clustering import (
    Contingency,
    adjusted_rand_index,
    clustering_scores,
    contingency,
    encode_labels,
    hungarian_accuracy,
    normalized_mutual_information,
    pairwise_prf,
    weighted_prf,
)

__all__ = [
    "Contingency",
    "adjusted_rand_index",
    "clustering_scores",
    "contingency",
    "encode_labels",
    "hungarian_accuracy",
    "normalized_mutual_information",
    "pairwise_prf",
    "weighted_prf",
]
