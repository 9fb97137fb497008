"""One run through the runner: provenance, determinism, failures and the metric registry."""
import json
import shutil

import numpy as np
import pytest

import datasets
import evaluation
from bench import runner
from bench.config import RunId


@pytest.fixture
def data_config(config, prepared_data):
    return {**config, "data_dir": str(prepared_data)}


def metrics_of(config, run):
    runner.train(config, run, force=True)
    runner.evaluate(config, run)
    return json.loads((run.path(config["results_dir"]) / "metrics.json").read_text())["metrics"]


def test_same_run_twice_gives_identical_metrics(data_config):
    run = RunId("smoke", "digits", "gmm", "pca50", 0)
    first = metrics_of(data_config, run)
    shutil.rmtree(data_config["results_dir"])
    assert metrics_of(data_config, run) == first
    assert first["acc_aae"]["value"] is not None


def test_different_seeds_give_different_restarts(data_config):
    logs = []
    for seed in (0, 1):
        run = RunId("smoke", "digits", "kmeans", "raw", seed)
        runner.train(data_config, run, force=True)
        logs.append((run.path(data_config["results_dir"]) / "train_log.csv").read_text())
    assert logs[0] != logs[1]


def test_run_json_records_provenance(data_config):
    run = RunId("smoke", "blobs", "kmeans", "raw", 1)
    record = json.loads((runner.train(data_config, run, force=True) / "run.json").read_text())
    assert record["status"] == "completed"
    assert record["seed"] == run.seed and record["config"]["n_init"] == 10
    manifest = datasets.get("blobs").manifest(data_config["data_dir"])
    assert record["data"]["digest"] == manifest["digest"]
    assert record["packages"]["scikit-learn"] and record["packages"]["torch"].startswith("2.13.0")
    assert set(record["git"]) == {"commit", "dirty"}
    assert record["wall_seconds"] > 0 and record["peak_memory_mib"] > 0 and record["device"] == "cpu"


def test_completed_run_is_kept_unless_forced(data_config, capsys):
    run = RunId("smoke", "blobs", "kmeans", "raw", 0)
    run_dir = runner.train(data_config, run, force=True)
    before = (run_dir / "outputs.npz").stat().st_mtime_ns
    runner.train(data_config, run)
    assert "already completed" in capsys.readouterr().err
    assert (run_dir / "outputs.npz").stat().st_mtime_ns == before


def test_unprepared_dataset_says_how_to_prepare(config):
    run = RunId("smoke", "digits", "kmeans", "raw", 0)
    with pytest.raises(datasets.DatasetNotPrepared, match=r"python -m bench data prepare digits"):
        runner.train(config, run)
    assert not run.path(config["results_dir"]).exists()


def test_failed_run_is_recorded_and_cannot_be_evaluated(data_config, monkeypatch):
    from methods.baselines import KMeansBaseline

    def explode(self, data, config, run):
        run.notes["stage"] = {"l1": 0.5}                   # what a method states about its run, kept on failure
        raise FloatingPointError("loss became nan at step 3")
    monkeypatch.setattr(KMeansBaseline, "fit", explode)
    run = RunId("smoke", "digits", "kmeans", "raw", 0)
    with pytest.raises(runner.RunFailed, match="smoke/digits/kmeans/raw/seed0 failed: FloatingPointError: loss "
                                               "became nan at step 3 \\(recorded in .*run.json\\)"):
        runner.train(data_config, run, force=True)
    run_dir = run.path(data_config["results_dir"])
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and record["error"] == "FloatingPointError: loss became nan at step 3"
    assert record["notes"] == {"stage": {"l1": 0.5}}
    assert not (run_dir / "outputs.npz").exists()
    runner.evaluate(data_config, run)
    result = json.loads((run_dir / "metrics.json").read_text())
    assert result["status"] == "failed" and result["metrics"] == {} and "nan at step 3" in result["error"]


def test_outputs_must_cover_the_score_split():
    with pytest.raises(ValueError, match="returned 3 rows of 'assignments' for 4 examples"):
        runner.check_outputs({"assignments": np.zeros(3, dtype=np.int64)}, 4, "m")
    with pytest.raises(ValueError, match="probs rows must sum to 1"):
        runner.check_outputs({"probs": np.full((4, 2), 0.1)}, 4, "m")


def test_registry_records_unavailable_metrics_and_skips_unlabelled_data():
    split = datasets.Split("test", x=np.zeros((4, 2), np.float32), labels=np.array([0, 0, 1, 1]))
    outputs = {"assignments": np.array([1, 1, 0, 0])}
    values = evaluation.evaluate(evaluation.Context(outputs, split), tracks=["clustering"])
    assert values["acc_hungarian"] == evaluation.MetricValue(1.0, "acc[hungarian,split=test]")
    assert values["acc_aae"] == evaluation.MetricValue(
        None, "acc[aae-most-confident,split=test]", "the method gives no cluster posteriors (needs soft assignments)")
    unlabelled = datasets.Split("all", x=np.zeros((4, 2), np.float32))
    assert evaluation.evaluate(evaluation.Context(outputs, unlabelled), tracks=["clustering"]) == {}


@pytest.mark.parametrize("method", ["kmeans", "gmm"])
def test_baselines_beat_the_trivial_clustering_on_digits(data_config, method):
    run = RunId("smoke", "digits", method, "raw" if method == "kmeans" else "pca50", 0)
    metrics = metrics_of(data_config, run)
    labels = datasets.get("digits").load(data_config["data_dir"]).labels
    one_cluster = np.bincount(labels).max() / len(labels)        # everything in one cluster
    assert metrics["acc_hungarian"]["value"] > one_cluster + 0.4
    assert metrics["nmi_arithmetic"]["value"] > 0.5


def test_checkpoint_round_trip_and_refusals(tmp_path, capsys):
    import torch

    from methods import RunContext
    run = RunContext(dir=tmp_path, seed=1, config_hash="aaa")
    assert run.load_checkpoint() is None
    state = {"step": 7, "weights": torch.arange(4.0), "rng": torch.get_rng_state()}
    run.save_checkpoint(state)
    loaded = run.load_checkpoint()
    assert loaded["step"] == 7 and torch.equal(loaded["weights"], state["weights"])
    assert "resuming from checkpoint" in capsys.readouterr().err

    assert RunContext(dir=tmp_path, seed=1, config_hash="bbb").load_checkpoint() is None
    assert "written under another config" in capsys.readouterr().err
    with open(tmp_path / "checkpoint.pt", "r+b") as f:
        f.seek(40)
        f.write(b"\x00\x01garbage")
    assert run.load_checkpoint() is None
    assert "sha256 does not match" in capsys.readouterr().err


def test_a_resumed_log_goes_on_from_the_checkpoint_and_a_fresh_start_starts_a_new_one(tmp_path):
    from methods import RunContext
    from method_runs import log_rows
    run = RunContext(dir=tmp_path, seed=1, config_hash="aaa")
    run.save_checkpoint({"epoch": 0})                       # before the first row
    for epoch in (1, 2):
        run.log(epoch=epoch, loss=1.0 / epoch)
    run.save_checkpoint({"epoch": 2})
    run.log(epoch=3, loss=0.3)                              # the work of epoch 3, then a kill
    assert RunContext(dir=tmp_path, seed=1, config_hash="aaa").load_checkpoint() == {"epoch": 2}
    assert [row["epoch"] for row in log_rows(tmp_path)] == ["1", "2"]

    run.log(epoch=3, loss=0.3)
    assert [row["epoch"] for row in log_rows(tmp_path)] == ["1", "2", "3"]
    assert RunContext(dir=tmp_path, seed=1, config_hash="bbb").load_checkpoint() is None    # another config
    assert not (tmp_path / "train_log.csv").exists()

    run.save_checkpoint({"epoch": 0})
    run.log(epoch=1, loss=1.0)
    run.load_checkpoint()
    assert not (tmp_path / "train_log.csv").exists()         # back to before the first row


def test_runner_keeps_a_checkpoint_only_for_an_unfinished_attempt(data_config):
    run = RunId("smoke", "blobs", "kmeans", "raw", 0)
    run_dir = runner.train(data_config, run, force=True)
    for status, kept in (("failed", True), ("interrupted", True), (None, True), ("completed", False)):
        (run_dir / "checkpoint.pt").write_bytes(b"state")
        record = json.loads((run_dir / "run.json").read_text())
        if status is None:                  # Snakemake removed the record of a killed job
            (run_dir / "run.json").unlink()
        else:
            (run_dir / "run.json").write_text(json.dumps({**record, "status": status}))
        runner.train(data_config, run, force=True)
        assert (run_dir / "checkpoint.pt").exists() == kept, status
        assert json.loads((run_dir / "run.json").read_text())["resumed"] == kept
        (run_dir / "checkpoint.pt").unlink(missing_ok=True)


def test_sample_grid_and_traversal_figures_are_saved_with_the_run(data_config, monkeypatch):
    from PIL import Image

    from methods.baselines import KMeansBaseline

    def fit_with_images(self, data, config, run):
        images = np.asarray(data.score.x[:24])
        return {"assignments": np.asarray(data.score.labels, dtype=np.int64), "samples": images,
                "sample_clusters": np.repeat(np.arange(3), 8), "traversals": images[:20].reshape(4, 5, 1, 28, 28)}
    monkeypatch.setattr(KMeansBaseline, "fit", fit_with_images)
    run = RunId("smoke", "digits", "kmeans", "raw", 0)
    runner.train(data_config, run, force=True)
    run_dir = runner.evaluate(data_config, run)
    samples, traversals = Image.open(run_dir / "samples.png"), Image.open(run_dir / "traversals.png")
    assert samples.size[0] > 2 * samples.size[1]            # 3 rows of 8
    assert traversals.size[0] > traversals.size[1]           # 4 rows of 5
    with pytest.raises(ValueError, match="traversals must be uint8"):
        runner.check_outputs({"traversals": np.zeros((2, 3, 28, 28), np.uint8)}, 0, "m")
