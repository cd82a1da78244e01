"""Analysis of non-contrastive SSL (bridging paper): feature decorrelation of runs, linear-predictor
diagnostics, a simulation of Theorem 3.1, and their plots. (The Table 3 ablation trains models:
:mod:`simxir.experiments.ablation`.)"""

from simxir.analysis.predictor import (
    asymmetry,
    dist_to_scaled_identity,
    eigenvalues,
    load_predictor_history,
    offdiag_energy,
    predictor_diagnostics,
)
from simxir.decorrelation import correlation_matrix, decorrelation

__all__ = [
    "asymmetry",
    "correlation_matrix",
    "decorrelation",
    "dist_to_scaled_identity",
    "eigenvalues",
    "load_predictor_history",
    "offdiag_energy",
    "predictor_diagnostics",
]
