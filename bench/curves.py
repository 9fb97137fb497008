"""Learning curves of the claims that do not hold: `python -m bench curves --suite laptop`.

A claim that does not HOLD at a suite's budget might at a larger one. For each such claim
(those whose verdict in the suite's golden numbers is not HOLDS, or those named with
--claim), every side that trains runs once, seed index 0, in the suite's precision, at
`--factors` times its variant's training images (default 0.5, 1, 2, 4). Each factor resumes
the checkpoint of the factor before and trains on (Method.with_budget): the methods resume
exactly, so each point is the run of that budget, and the whole curve costs one run at the
largest factor plus a read-out and scoring per point. A point is the claim's metric (and,
for a claim against another metric of the same runs, that one too) on the suite's protocol.
A side that does not train (k-means) is scored once; a stated value is a flat line.

    results/curves/<suite>/<dataset>/<method>/<variant>/     the run (checkpoint, train_log.csv) and points.csv
    evaluation/curves/<suite>/<claim>[-<dataset>].csv, .png  per comparison: its sides against training images,
                                        .json  and where they come from (configs, seeds, machine, commit)

The curves are committed, like the golden numbers: they are the evidence a suite's learning
checks cite (config/suites/*.yaml, `learns`). Points already in a run's points.csv are kept:
an interrupted curve goes on where it stopped.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

import datasets
import evaluation
import methods
from bench import provenance
from bench.config import (REPO, ConfigError, RunId, config_hash, load_methods, load_suite, method_config,
                          precision_setting)
from bench.runner import run_context, scoring_context
from bench.golden import golden_path
from common.files import write_json, write_text
from evaluation import claims

CURVES_DIR = REPO / "evaluation" / "curves"
FACTORS = (0.5, 1.0, 2.0, 4.0)
POINT_COLUMNS = ["factor", "training_images", "metric", "spec", "value", "unavailable", "seconds"]


def run_dir(config: dict, suite: str, dataset: str, method: str, variant: str) -> Path:
    return Path(config["results_dir"]) / "curves" / suite / dataset / method / variant


def side_points(config: dict, suite: str, dataset: str, method_name: str, variant: str, metrics: list[str],
                factors=FACTORS) -> pd.DataFrame:
    """The run of one side at each of `factors` (None: no training to scale), scored on `metrics`."""
    method = methods.get(method_name)
    base = method_config(method_name, variant, load_methods())
    data = datasets.get(dataset)
    data.manifest(config["data_dir"])            # not prepared, or changed: stops here, before any training
    fit = data.load(config["data_dir"], base["fit_split"])
    score = fit if base["score_split"] == base["fit_split"] else data.load(config["data_dir"], base["score_split"])
    directory = run_dir(config, suite, dataset, method_name, variant)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "points.csv"
    points = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=POINT_COLUMNS)
    run, suite_file = RunId(suite, dataset, method_name, variant, 0), load_suite(suite)
    for factor in sorted(factors) if method.budget else [None]:
        wanted = [m for m in metrics if not ((points["metric"] == m) & _at(points, factor)).any()]
        if not wanted:
            continue
        if factor is not None and (points["factor"] > factor).any():
            raise ConfigError(f"{directory} has trained past {factor} x its budget without scoring {', '.join(wanted)} "
                              "there; a checkpoint cannot go back: delete that directory to draw the curve anew")
        try:
            trained = base if factor is None else method.with_budget(base, factor)
        except ValueError as reason:
            print(f"curve {method_name}/{variant}: no point at {factor} x: {reason}", file=sys.stderr, flush=True)
            continue
        # one hash for the whole curve: each factor resumes the checkpoint the factor before left
        context = run_context(config, run, directory, f"curve-{config_hash(base)}")
        print(f"curve {suite}/{dataset}/{method_name}/{variant}: {factor or 'the'} x budget", file=sys.stderr, flush=True)
        provenance.seed_everything(run.seed)
        start = time.monotonic()
        outputs = method.fit(methods.RunData(data, fit, score), trained, context)
        values = evaluation.evaluate(scoring_context(config, suite_file, outputs, score, data), method.tracks, wanted)
        images = method.training_images(trained, len(fit)) if method.budget else 0
        rows = [{"factor": factor, "training_images": images, "metric": name, "spec": value.spec,
                 "value": value.value, "unavailable": value.unavailable, "seconds": round(time.monotonic() - start, 1)}
                for name, value in values.items()]
        points = pd.concat([points, pd.DataFrame(rows, columns=POINT_COLUMNS)], ignore_index=True)
        write_text(path, points.to_csv(index=False, float_format="%.6g"))
    return points


def _at(points: pd.DataFrame, factor: float | None) -> pd.Series:
    return points["factor"].isna() if factor is None else points["factor"] == factor


Side = tuple[str, str, str]             # dataset, method, variant


def sides_of(claim: claims.Claim, comparison: claims.Comparison) -> dict[Side, list[str]]:
    """The runs a comparison needs, each with the metrics to score it on."""
    own = [claim.metric] + ([comparison.than_metric] if comparison.than_metric else [])
    needed = {(comparison.dataset, *comparison.better): own}
    if comparison.than:
        needed.setdefault((comparison.dataset, *comparison.than), []).append(claim.metric)
    return needed


def comparison_curve(claim: claims.Claim, comparison: claims.Comparison, points: dict[Side, pd.DataFrame]) -> pd.DataFrame:
    """One row per side and point: side, factor, training_images, value (the claim's metric,
    or for the other side of a two-metric claim, that metric)."""
    label = "/".join(comparison.better)
    better = points[(comparison.dataset, *comparison.better)]
    table = [_side(better, claim.metric, label)]
    if comparison.than_metric:
        table.append(_side(better, comparison.than_metric, f"{label} {comparison.than_metric}"))
    elif comparison.than:
        table.append(_side(points[(comparison.dataset, *comparison.than)], claim.metric, "/".join(comparison.than)))
    else:
        table.append(pd.DataFrame([{"side": "the stated value", "factor": None, "training_images": 0,
                                    "value": comparison.than_value}]))
    return pd.concat(table, ignore_index=True)


def _side(points: pd.DataFrame, metric: str, label: str) -> pd.DataFrame:
    rows = points[points["metric"] == metric]
    return rows.assign(side=label)[["side", "factor", "training_images", "value"]].sort_values("training_images")


def golden_verdicts(suite: str, registered: list[claims.Claim]) -> list[tuple[claims.Claim, claims.Comparison, str]]:
    """Every comparison of `suite` with its verdict in the suite's golden numbers."""
    path = golden_path(suite)
    if not path.exists():
        raise ConfigError(f"{path} does not exist: make the suite's golden numbers first "
                          f"(`python -m bench golden --suite {suite}`)")
    lookup = claims.golden_lookup(pd.read_csv(path))
    return [(claim, comparison, claims.judge(claim, suite, comparison, lookup).verdict)
            for claim in registered for comparison in claim.compare.get(suite, ())]


def not_holding(suite: str, registered: list[claims.Claim]) -> list[tuple[claims.Claim, claims.Comparison, str]]:
    """The comparisons of `suite` whose verdict in its golden numbers is not HOLDS, with that verdict."""
    return [item for item in golden_verdicts(suite, registered) if item[2] != claims.HOLDS]


def chosen(suite: str, names: list[str] | None) -> list[tuple[claims.Claim, claims.Comparison, str]]:
    """The comparisons to draw, with their golden verdicts: those of the named claims, or every
    one that does not hold."""
    registered = claims.load()
    if not names:
        return not_holding(suite, registered)
    by_id = {claim.id: claim for claim in registered}
    unknown = [name for name in names if name not in by_id]
    if unknown:
        raise ConfigError(f"unknown claim(s) {', '.join(unknown)}; valid: {', '.join(sorted(by_id))}")
    missing = [name for name in names if suite not in by_id[name].compare]
    if missing:
        raise ConfigError(f"claim(s) {', '.join(missing)} have no comparison in the {suite} suite")
    judged = {(c.id, comparison.dataset): verdict for c, comparison, verdict in golden_verdicts(suite, registered)
              } if golden_path(suite).exists() else {}
    return [(by_id[name], comparison, judged.get((name, comparison.dataset), "no golden numbers"))
            for name in names for comparison in by_id[name].compare[suite]]


def curve_name(claim: claims.Claim, comparison: claims.Comparison, suite: str) -> str:
    several = len(claim.compare[suite]) > 1
    return f"{claim.id}-{comparison.dataset}" if several else claim.id


def draw(config: dict, suite: str, names: list[str] | None = None, factors=FACTORS,
         out_dir: Path | None = None) -> list[Path]:
    """Every chosen comparison's curve: its table and figure in `out_dir` (evaluation/curves/<suite>/)."""
    from reports.figures import learning_curve
    origin = provenance.origin()             # the checkout the runs come from, before this writes its curves
    todo = chosen(suite, names)
    needed: dict[Side, list[str]] = {}
    for claim, comparison, _ in todo:        # each run once, on every metric any of its comparisons needs
        for side, metrics in sides_of(claim, comparison).items():
            needed[side] = list(dict.fromkeys(needed.get(side, []) + metrics))
    for dataset, method, variant in needed:  # every name is known before any run starts
        datasets.get(dataset), methods.get(method)
    points = {side: side_points(config, suite, *side, metrics, factors) for side, metrics in needed.items()}
    out_dir = out_dir or CURVES_DIR / suite
    written = []
    for claim, comparison, verdict in todo:
        table = comparison_curve(claim, comparison, points)
        name = curve_name(claim, comparison, suite)
        write_text(out_dir / f"{name}.csv", table.to_csv(index=False, float_format="%.6g"))
        learning_curve(table, claim, comparison.dataset, suite, verdict, out_dir / f"{name}.png")
        write_json(out_dir / f"{name}.json", record(config, suite, claim, comparison, verdict, points, origin))
        print_table(name, table)
        written += [out_dir / f"{name}.csv", out_dir / f"{name}.png", out_dir / f"{name}.json"]
    return written


def record(config: dict, suite: str, claim: claims.Claim, comparison: claims.Comparison, verdict: str,
           points: dict[Side, pd.DataFrame], origin: dict) -> dict:
    """Where a curve comes from: the claim, each side's full config, seed and points (with the
    seconds each took to train on from the point before and be scored), and the checkout's
    state, packages and machine when the curve's runs started (`origin`)."""
    sides = {}
    for side, metrics in sides_of(claim, comparison).items():
        dataset, method, variant = side
        rows = points[side].astype(object)
        rows = rows.where(rows.notna(), None)          # JSON has no NaN
        sides[f"{method}/{variant}"] = {
            "dataset": dataset, "seed": RunId(suite, dataset, method, variant, 0).seed,
            "precision_setting": precision_setting(config, suite), "config": method_config(method, variant),
            "points": rows[rows["metric"].isin(metrics)].to_dict("records")}
    return {"suite": suite, "claim": claim.id, "source": claim.source, "metric": claim.metric,
            "golden_verdict": verdict, "sides": sides, **origin}


def print_table(name: str, table: pd.DataFrame) -> None:
    """The curve as text: a row per factor, a column per side."""
    wide = table.dropna(subset=["factor"]).pivot_table(index="factor", columns="side", values="value", aggfunc="first")
    flat = table[table["factor"].isna()].set_index("side")["value"]
    print(f"\n{name}")
    print(f"{'factor':>7} {'images':>9}  " + "  ".join(f"{side:>28}" for side in wide.columns.union(flat.index)))
    images = table.dropna(subset=["factor"]).groupby("factor")["training_images"].max()
    for factor, row in wide.iterrows():
        cells = [row.get(side) if side in row.index else flat.get(side) for side in wide.columns.union(flat.index)]
        print(f"{factor:>7g} {int(images.get(factor, 0)):>9,}  "
              + "  ".join(f"{'' if pd.isna(c) else f'{c:.3f}':>28}" for c in cells))
