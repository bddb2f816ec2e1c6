"""Evaluation harness: metrics, per-scenario reports and plots for fingerprinting methods."""
from __future__ import annotations

from .harness import evaluate, evaluate_owner
from .metrics import aruc, roc_auc, summary, tpr_at_fpr

__all__ = ["evaluate", "evaluate_owner", "aruc", "roc_auc", "summary", "tpr_at_fpr"]
