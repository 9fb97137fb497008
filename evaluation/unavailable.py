"""The one error a metric raises to say it cannot be computed for a run (its own module, so
that the metric implementations and the registry in evaluation/metrics.py import it, not
each other)."""


class MetricUnavailable(RuntimeError):
    """The metric cannot be computed for this run; str(error) is the reason recorded."""
