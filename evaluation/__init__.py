"""Metrics (with their specs), aggregation of runs, published numbers and verdicts."""
from evaluation.metrics import METRICS, Context, Metric, MetricUnavailable, MetricValue, evaluate

__all__ = ["METRICS", "Context", "Metric", "MetricUnavailable", "MetricValue", "evaluate"]
