"""The registry of published numbers: evaluation/published/<paper>.yaml, one entry per number.

Values are stored as printed (percent or fraction) and loaded as fractions, so that they sit
on the same scale as ours. Only numbers read from the source are entered; what could not be
read is listed under `not_transcribed` and rendered as such, never as a number."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from common.schema import ConfigError, load_yaml, validate
from evaluation.metrics import METRICS

PUBLISHED_DIR = Path(__file__).resolve().parent / "published"
SPEC = re.compile(r"^(?P<family>[a-z_]+)\[(?P<params>[^\]]*)\]$")


@dataclass(frozen=True)
class Published:
    paper: str            # the registry file's stem, e.g. "gmvae"
    source: str           # e.g. "arXiv 1611.02648v1, Table 1"
    method: str
    variant: str
    dataset: str
    split: str
    metric: str
    spec: str
    value: float          # as a fraction
    std: float | None     # as a fraction
    runs: int | None
    aggregate: str        # "best-run" or "mean"
    printed: str          # the number as printed, e.g. "74.47 ± 10.20 %"
    quoted_from: str | None = None
    unconfirmed: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class NotTranscribed:
    paper: str
    method: str
    what: str
    where: str
    why: str


def spec_split(spec: str) -> str | None:
    match = SPEC.match(spec)
    params = dict(p.split("=", 1) for p in match["params"].split(",") if "=" in p) if match else {}
    return params.get("split")


def load(directory: Path = PUBLISHED_DIR, known_datasets=None) -> tuple[list[Published], list[NotTranscribed]]:
    """Every entry of every registry file, linted: schema, metric names, specs, duplicates."""
    entries, missing = [], []
    for path in sorted(directory.glob("*.yaml")):
        if path.name == "schema.yaml":
            continue
        document = load_yaml(path)
        where = f"evaluation/published/{path.name}"
        validate(document, PUBLISHED_DIR / "schema.yaml", "paper", where)
        paper = document["paper"]
        for i, raw in enumerate(document["entries"]):
            entries.append(_entry(path.stem, paper, raw, f"{where}: entries.{i}", known_datasets))
        missing += [NotTranscribed(path.stem, **raw) for raw in document["not_transcribed"]]
    keys = [(e.paper, e.method, e.variant, e.dataset, e.metric, e.aggregate) for e in entries]
    duplicates = {k for k in keys if keys.count(k) > 1}
    if duplicates:
        raise ConfigError(f"published registry: duplicate entries {sorted(duplicates)}")
    return entries, missing


def _entry(paper_id: str, paper: dict, raw: dict, where: str, known_datasets) -> Published:
    if raw["metric"] not in METRICS:
        raise ConfigError(f"{where}: unknown metric '{raw['metric']}'; valid: {', '.join(METRICS)}")
    match = SPEC.match(raw["spec"])
    family = METRICS[raw["metric"]].family
    if not match or match["family"] != family:
        raise ConfigError(f"{where}: spec '{raw['spec']}' must read {family}[protocol,...,split=...]")
    if spec_split(raw["spec"]) != raw["split"]:
        raise ConfigError(f"{where}: spec '{raw['spec']}' does not state split={raw['split']}")
    if known_datasets is not None and raw["dataset"] not in known_datasets:
        raise ConfigError(f"{where}: unknown dataset '{raw['dataset']}'")
    scale = 100.0 if raw["scale"] == "percent" else 1.0
    if not 0 <= raw["value"] <= scale or (raw.get("std") or 0) < 0:
        raise ConfigError(f"{where}: value {raw['value']} (std {raw.get('std')}) is out of range for a {raw['scale']}")
    unit = " %" if scale == 100 else ""
    spread = f" ± {raw['std']:g}" if raw.get("std") is not None else ""
    return Published(
        paper=paper_id, source=f"arXiv {paper['arxiv']}{'' if paper['version'] == 'unknown' else paper['version']}, "
                               f"{raw['table']}",
        method=raw["method"], variant=raw["variant"], dataset=raw["dataset"], split=raw["split"],
        metric=raw["metric"], spec=raw["spec"], value=raw["value"] / scale,
        std=None if raw.get("std") is None else raw["std"] / scale, runs=raw.get("runs"),
        aggregate=raw["aggregate"], printed=f"{raw['value']:g}{spread}{unit}",
        quoted_from=raw.get("quoted_from"), unconfirmed=raw.get("unconfirmed"), note=raw.get("note"))
