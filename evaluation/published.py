"""The registry of published numbers: evaluation/published/<paper>.yaml, one entry per number.

Values are stored as printed (percent or fraction) and loaded as fractions, so that they sit
on the same scale as ours. Only numbers read from the source are entered; what could not be
read is listed under `not_transcribed` and rendered as such, never as a number. A results
table may be entered in its own layout (`tables`: a row per method, a column per dataset and
metric, cells as printed); it is loaded as one entry per cell.

A published spec names the protocol parameter by parameter, as ours do; a parameter the
source leaves unstated is written `key=*` and matches any value of ours (`spec_matches`): the
verdict then says which parameters it took on trust."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from common.schema import ConfigError, load_yaml, validate
from evaluation.metrics import METRICS

PUBLISHED_DIR = Path(__file__).resolve().parent / "published"
SPEC = re.compile(r"^(?P<family>[a-z_]+)\[(?P<params>[^\]]*)\]$")
PRINTED = re.compile(r"^(?P<value>[0-9]+(?:\.[0-9]+)?)(?: ?± ?(?P<std>[0-9]+(?:\.[0-9]+)?))?$")
NOT_PRINTED = "–"          # a table cell where the source prints no number
UNSTATED = "*"             # a spec parameter the source does not state


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
    dataset_uncertain: str | None = None   # why the dataset variant is uncertain: never a verdict
    resolution: float | None = None        # a unit of the printed value's last digit, as a fraction (table cells)


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


def spec_matches(published: str, ours: str) -> bool:
    """The same protocol, parameter for parameter, in the same order; `key=*` in the published
    spec matches any value of that key in ours."""
    theirs, mine = SPEC.match(published), SPEC.match(ours)
    if not theirs or not mine:
        return published == ours
    theirs_params, my_params = theirs["params"].split(","), mine["params"].split(",")
    return (theirs["family"] == mine["family"] and len(theirs_params) == len(my_params)
            and all(p == q or (p.endswith(f"={UNSTATED}") and q.startswith(p[:-1]))
                    for p, q in zip(theirs_params, my_params)))


def unstated(spec: str) -> list[str]:
    """The parameters of a published spec that its source does not state."""
    match = SPEC.match(spec)
    return [p[:-2] for p in match["params"].split(",") if p.endswith(f"={UNSTATED}")] if match else []


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
        raws = [(raw, f"{where}: entries.{i}") for i, raw in enumerate(document["entries"])]
        for i, table in enumerate(document.get("tables", [])):
            raws += _table_entries(table, f"{where}: tables.{i}")
        entries += [_entry(path.stem, paper, raw, location, known_datasets) for raw, location in raws]
        missing += [NotTranscribed(path.stem, **raw) for raw in document["not_transcribed"]]
    keys = [(e.paper, e.method, e.variant, e.dataset, e.metric, e.aggregate) for e in entries]
    duplicates = {k for k in keys if keys.count(k) > 1}
    if duplicates:
        raise ConfigError(f"published registry: duplicate entries {sorted(duplicates)}")
    return entries, missing


def _table_entries(table: dict, where: str) -> list[tuple[dict, str]]:
    """One raw entry per printed cell of a table, with the table's settings and the row's."""
    unknown = sorted({metric for _, metric in table["columns"]} - set(table["specs"]))
    if unknown:
        raise ConfigError(f"{where}: no spec for the column metric(s) {', '.join(unknown)}: add them under specs")
    raws = []
    for i, row in enumerate(table["rows"]):
        if len(row["cells"]) != len(table["columns"]):
            raise ConfigError(f"{where}.rows.{i}: {len(row['cells'])} cells for {len(table['columns'])} columns")
        raws += _row_entries(table, row, f"{where}.rows.{i}")
    return raws


def _row_entries(table: dict, row: dict, where: str) -> list[tuple[dict, str]]:
    uncertain = table.get("dataset_uncertain", {}) | row.get("dataset_uncertain", {})
    common = dict(method=row["method"], variant=row["variant"], split=table["split"], scale=table["scale"],
                  aggregate=table["aggregate"], table=table["table"], runs=row.get("runs", table.get("runs")),
                  quoted_from=row.get("quoted_from"),
                  unconfirmed=_joined(table.get("unconfirmed"), row.get("unconfirmed")))
    raws = []
    for j, ((dataset, metric), cell) in enumerate(zip(table["columns"], row["cells"])):
        printed, cell_note = (cell["value"], cell["note"]) if isinstance(cell, dict) else (cell, None)
        if printed == NOT_PRINTED:
            continue
        raws.append((dict(common, dataset=dataset, metric=metric, spec=table["specs"][metric],
                          dataset_uncertain=uncertain.get(dataset), printed=printed,
                          note=_joined(table.get("note"), row.get("note"), cell_note),
                          **_parse_printed(printed, f"{where}.cells.{j}")), f"{where}.cells.{j}"))
    return raws


def _joined(*notes: str | None) -> str | None:
    return "; ".join(note for note in notes if note) or None


def _parse_printed(printed: str, where: str) -> dict:
    match = PRINTED.match(printed)
    if not match:
        raise ConfigError(f"{where}: cell '{printed}' must read 'value', 'value ± std' or '{NOT_PRINTED}'")
    return {"value": float(match["value"]), "std": None if match["std"] is None else float(match["std"])}


def _resolution(printed: str | None, scale: float) -> float | None:
    """One unit of the printed value's last digit ("0.474" -> 0.001), as a fraction."""
    match = PRINTED.match(printed or "")
    if not match:
        return None
    decimals = len(match["value"].partition(".")[2])
    return 10.0 ** -decimals / scale


def read_from(paper: dict) -> str:
    """Where a registry file's numbers were read: its `read_from`, else the arXiv id and version."""
    version = "" if paper["version"] == "unknown" else paper["version"]
    return paper.get("read_from") or f"arXiv {paper['arxiv']}{version}"


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
        paper=paper_id, source=f"{read_from(paper)}, {raw['table']}",
        method=raw["method"], variant=raw["variant"], dataset=raw["dataset"], split=raw["split"],
        metric=raw["metric"], spec=raw["spec"], value=raw["value"] / scale,
        std=None if raw.get("std") is None else raw["std"] / scale, runs=raw.get("runs"),
        aggregate=raw["aggregate"], printed=raw.get("printed") or f"{raw['value']:g}{spread}{unit}",
        quoted_from=raw.get("quoted_from"), unconfirmed=raw.get("unconfirmed"), note=raw.get("note"),
        dataset_uncertain=raw.get("dataset_uncertain"), resolution=_resolution(raw.get("printed"), scale))
