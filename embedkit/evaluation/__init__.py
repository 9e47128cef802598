"""Frozen-embedding evaluation: InfoAlign's property-prediction protocol, reimplemented.

Scaffold split 60/15/25, an MLP probe on frozen features (or a random forest), mean ROC-AUC
over tasks for classification and mean MAE for regression. A pretrained encoder has to beat
the same architecture with random weights and ECFP4 to claim anything, so the entry point
`evaluate_property` always takes several methods and several seeds.
"""

from __future__ import annotations

from embedkit.evaluation.datasets import BENCHMARKS, PropertyDataset, load_dataset
from embedkit.evaluation.fingerprints import ecfp4
from embedkit.evaluation.metrics import mean_mae, mean_roc_auc, score_predictions
from embedkit.evaluation.probe import ProbeConfig, fit_mlp_probe, fit_random_forest
from embedkit.evaluation.property import (
    Method,
    ecfp_methods,
    embedder_method,
    evaluate_property,
    random_init_method,
)
from embedkit.evaluation.splits import Split, murcko_scaffold, scaffold_split

__all__ = [
    "BENCHMARKS",
    "Method",
    "ProbeConfig",
    "PropertyDataset",
    "Split",
    "ecfp4",
    "ecfp_methods",
    "embedder_method",
    "evaluate_property",
    "fit_mlp_probe",
    "fit_random_forest",
    "load_dataset",
    "mean_mae",
    "mean_roc_auc",
    "murcko_scaffold",
    "random_init_method",
    "scaffold_split",
    "score_predictions",
]
