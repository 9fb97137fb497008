"""Metrics (with their specs), aggregation of runs, and (later) published numbers and verdicts."""
from evaluation.metrics import METRICS, Metric, MetricValue, evaluate

__all__ = ["METRICS", "Metric", "MetricValue", "evaluate"]
