"""Analysis of non-contrastive SSL (bridging paper): feature decorrelation, linear-predictor
diagnostics, a simulation of Theorem 3.1, plots, and the Table 3 ablation runner."""

from simxir.analysis.decorrelation import correlation_matrix, decorrelation

__all__ = ["correlation_matrix", "decorrelation"]
