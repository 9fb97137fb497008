"""Training and evaluating one run: the steps that the Snakemake rules call through the CLI.

    results/<suite>/<dataset>/<method>/<variant>/seed<k>/
        run.json       provenance and status (written at start, and again at the end or on failure)
        train_log.csv  what the method logged
        outputs.npz    the method's outputs about the score split (sha256 in run.json, checked before scoring)
        metrics.json   one value per metric, each with its spec
"""
from __future__ import annotations

import datetime
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

import datasets
import evaluation
import methods
from bench import provenance
from bench.config import RunId, config_hash, load_methods, load_suite, method_config, precision_setting
from common.files import IntegrityError, file_mismatch, file_record, save_npz, write_json


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class RunFailed(RuntimeError):
    """Training started and failed (diverged, crashed inside the method); run.json says why."""


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def train(config: dict, run: RunId, force: bool = False) -> Path:
    """Train one run and write its outputs; a completed run with the same config is kept."""
    method_cfg = method_config(run.method, run.variant, load_methods())
    dataset = datasets.get(run.dataset)
    # Checked against the files before the run directory is touched: a dataset that is not
    # prepared, or is no longer what its manifest says, stops the run here.
    manifest = dataset.manifest(config["data_dir"])
    fit_split, score_split = (dataset.split_name(method_cfg[k]) for k in ("fit_split", "score_split"))
    method = methods.get(run.method)
    run_dir = run.path(config["results_dir"])
    previous = read_json(run_dir / "run.json")
    # resolved before anything is written: bf16 where the device has none natively stops here
    context = run_context(config, run, run_dir, config_hash(method_cfg))
    precision = context.precision
    if (not force and previous and previous["status"] == "completed" and (run_dir / "outputs.npz").exists()
            and previous["config_hash"] == config_hash(method_cfg) and previous["data"]["digest"] == manifest["digest"]
            and previous.get("precision", "fp32") == precision):
        print(f"{run.label()}: already completed with this config; --force to retrain", file=sys.stderr)
        return run_dir

    run_dir.mkdir(parents=True, exist_ok=True)
    # A checkpoint is resumed unless it is that of a completed run (which is being retrained);
    # run.json may be gone (Snakemake removes the declared outputs of a killed job).
    resuming = (run_dir / "checkpoint.pt").exists() and not (previous and previous["status"] == "completed")
    stale = ["outputs.npz", "metrics.json"] + ([] if resuming else ["train_log.csv", "checkpoint.pt", "checkpoint.json"])
    for name in stale:
        (run_dir / name).unlink(missing_ok=True)
    record = {
        "suite": run.suite, "dataset": run.dataset, "method": run.method, "variant": run.variant,
        "seed_index": run.seed_index, "seed": run.seed, "tracks": list(method.tracks),
        "config": method_cfg, "config_hash": config_hash(method_cfg),
        "data": {"digest": manifest["digest"], "fit_split": fit_split, "score_split": score_split},
        "device_setting": config["device"], "precision_setting": context.precision_setting, "precision": precision,
        **provenance.origin(),
        "compute": provenance.compute(with_torch=run.method not in methods.CPU_ONLY),
        "command": sys.argv, "started": _now(), "status": "running", "resumed": resuming,
    }
    write_json(run_dir / "run.json", record)
    print(f"{run.label()}: training {run.method} ({run.variant}) on {run.dataset} [{fit_split}], seed {run.seed}",
          file=sys.stderr, flush=True)

    provenance.seed_everything(run.seed)
    fit = dataset.load(config["data_dir"], method_cfg["fit_split"])
    score = fit if score_split == fit_split else dataset.load(config["data_dir"], method_cfg["score_split"])
    start = time.monotonic()
    try:
        outputs = method.fit(methods.RunData(dataset, fit, score), method_cfg, context)
        check_outputs(outputs, len(score), run.method)
        save_npz(run_dir / "outputs.npz", outputs)
        record.update(status="completed", outputs=file_record(run_dir / "outputs.npz"))   # checked by evaluate
    except Exception as error:
        record.update(status="failed", error=f"{type(error).__name__}: {error}",
                      traceback=traceback.format_exc(limit=8))
        raise RunFailed(f"{run.label()} failed: {record['error']} (recorded in {run_dir / 'run.json'})") from error
    except BaseException:                   # interrupted (Ctrl-C, a signal): not a result of the method
        record.update(status="interrupted")
        raise
    finally:
        record.update(finished=_now(), wall_seconds=round(time.monotonic() - start, 3),
                      peak_memory_mib=provenance.peak_memory_mib(), device=context.resolved_device or "cpu",
                      notes=context.notes)
        write_json(run_dir / "run.json", record)
    return run_dir


def run_context(config: dict, run: RunId, run_dir: Path, checkpoint_hash: str) -> methods.RunContext:
    """What the method gets of its run, its precision resolved; its checkpoints carry
    `checkpoint_hash`, and the precision where it is not fp32: a checkpoint made under another
    config or in another precision is not resumed."""
    context = methods.RunContext(dir=run_dir, seed=run.seed, device_setting=config["device"],
                                 config_hash=checkpoint_hash, precision_setting=precision_setting(config, run.suite))
    if run.method in methods.CPU_ONLY:
        context.resolved_precision = "fp32"     # no network to compute in anything else
    if context.precision != "fp32":
        context.config_hash += f"-{context.precision}"
    return context


def scoring_context(config: dict, suite: dict, outputs: dict, split, dataset) -> evaluation.Context:
    """What the metrics read of a run's outputs on `split`, with the protocols of `suite` (its file)."""
    return evaluation.Context(outputs, split, dataset, Path(config["data_dir"]), n_jobs=config["metric_jobs"],
                              inception_weights=config["inception_weights"], params=suite.get("metric_params", {}))


def check_outputs(outputs: dict, n: int, method: str) -> None:
    """A method's outputs must describe every example of the score split, in its order."""
    for key in ("assignments", "assignments_at_mean", "assignments_after_pretraining", "probs", "log_probs", "log_probs_mixture_posterior", "embedding"):
        if key in outputs and len(outputs[key]) != n:
            raise ValueError(f"method '{method}' returned {len(outputs[key])} rows of '{key}' for {n} examples")
    for key in ("assignments", "assignments_at_mean", "assignments_after_pretraining"):
        if key in outputs and not np.issubdtype(outputs[key].dtype, np.integer):
            raise ValueError(f"method '{method}': {key} must be integers, got {outputs[key].dtype}")
    if "probs" in outputs and not np.allclose(outputs["probs"].sum(1), 1.0, atol=1e-3):
        raise ValueError(f"method '{method}': probs rows must sum to 1")
    if "traversals" in outputs and (outputs["traversals"].dtype != np.uint8 or outputs["traversals"].ndim != 5):
        raise ValueError(f"method '{method}': traversals must be uint8 units × steps × C × H × W")


def save_figures(outputs: dict, run_dir: Path) -> None:
    """The run's images for the report: samples.png (a row per cluster when the samples have
    clusters) and traversals.png (a row per latent unit, its values swept along the row)."""
    if "samples" not in outputs and "traversals" not in outputs:
        return                                  # and no torch to import (evaluation.generation)
    from evaluation.generation import sample_grid
    if "samples" in outputs and outputs["samples"].dtype == np.uint8:
        samples = outputs["samples"]
        if "sample_clusters" in outputs:
            order = np.argsort(outputs["sample_clusters"], kind="stable")
            sample_grid(samples[order], run_dir / "samples.png", nrow=int(np.bincount(outputs["sample_clusters"]).max()))
        else:
            sample_grid(samples[:64], run_dir / "samples.png")
    if "traversals" in outputs:
        units, steps = outputs["traversals"].shape[:2]
        sample_grid(outputs["traversals"].reshape(units * steps, *outputs["traversals"].shape[2:]),
                    run_dir / "traversals.png", nrow=steps)


def evaluate(config: dict, run: RunId) -> Path:
    """Score a trained run; writes metrics.json (re-runnable without retraining)."""
    run_dir = run.path(config["results_dir"])
    record = read_json(run_dir / "run.json")
    identity = {k: record[k] for k in ("suite", "dataset", "method", "variant", "seed_index", "seed", "config_hash")
                } if record else {}
    if record and record["status"] == "failed":     # a result too: the leaderboard shows it as failed
        write_json(run_dir / "metrics.json", {"run": identity, "status": "failed", "error": record["error"],
                                              "evaluated": _now(), "metrics": {}})
        return run_dir
    if not record or record["status"] != "completed":
        status = record["status"] if record else "not started"
        raise RuntimeError(f"{run.label()}: cannot evaluate a run whose status is '{status}'; "
                           f"train it first with `python -m bench run ...`")
    # Runs trained before outputs.npz was recorded have no record to check it against.
    problem = file_mismatch(run_dir / "outputs.npz", record["outputs"]) if "outputs" in record else None
    if problem:
        raise IntegrityError(f"{run.label()}: {problem}; train it again: `python -m bench run --suite {run.suite} "
                             f"--dataset {run.dataset} --method {run.method} --variant {run.variant} "
                             f"--seed {run.seed_index} --force`")
    with np.load(run_dir / "outputs.npz", allow_pickle=False) as archive:
        outputs = dict(archive)
    dataset = datasets.get(run.dataset)
    manifest = dataset.manifest(config["data_dir"])
    if manifest["digest"] != record["data"]["digest"]:
        raise RuntimeError(f"{run.label()}: dataset '{run.dataset}' changed since this run was trained "
                           f"(digest {manifest['digest'][:12]} vs {record['data']['digest'][:12]}); retrain it")
    split = dataset.load(config["data_dir"], record["config"]["score_split"])
    suite = load_suite(run.suite)
    values = evaluation.evaluate(scoring_context(config, suite, outputs, split, dataset), record["tracks"],
                                 suite.get("metrics"))
    save_figures(outputs, run_dir)
    result = {
        "run": identity, "status": record["status"], "git_commit": record["git"]["commit"], "data_digest": manifest["digest"],
        "evaluated": _now(), "metrics": {name: value.to_json() for name, value in values.items()},
    }
    write_json(run_dir / "metrics.json", result)
    return run_dir
