"""Evaluation of frozen encoders: feature extraction, kNN (cos/euc, majority and weighted votes),
linear probe, and the paper-style result tables."""

from simxir.eval.evaluate import evaluate_encoder, evaluate_features
from simxir.eval.features import extract_features
from simxir.eval.knn import (
    DEFAULT_KS,
    METRICS,
    knn_classify,
    knn_predict,
    majority_vote,
    weighted_vote,
)
from simxir.eval.linear import LinearProbeConfig, linear_probe
from simxir.eval.report import (
    format_comparison,
    format_comparison_markdown,
    format_knn_table,
    format_tables,
    format_tables_markdown,
)

__all__ = [
    "DEFAULT_KS",
    "METRICS",
    "LinearProbeConfig",
    "evaluate_encoder",
    "evaluate_features",
    "extract_features",
    "format_comparison",
    "format_comparison_markdown",
    "format_knn_table",
    "format_tables",
    "format_tables_markdown",
    "knn_classify",
    "knn_predict",
    "linear_probe",
    "majority_vote",
    "weighted_vote",
]
