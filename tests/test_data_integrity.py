"""Prepared data and cached artefacts are checked before use: a flipped byte, a truncated or
missing file and a hand-edited manifest are refused with what differs and the fix, before the
run directory is touched; an intact load only stats its files; `data verify` hashes them all;
a run's outputs.npz and the cached first stage of EncDiff are checked against their records."""
import json
import os
import shutil

import numpy as np
import pytest

import common.files
import datasets
from bench import runner
from bench.cli import main
from bench.config import RunId
from common.files import IntegrityError, check_recorded, recorded_path, record_path

RUN = RunId("smoke", "blobs", "kmeans", "raw", 0)
FIX = "python -m bench data prepare blobs --force"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("pristine")
    datasets.get("blobs").prepare(data_dir)
    return data_dir


@pytest.fixture
def data_config(config, pristine, tmp_path):
    """A copy of the prepared blobs for each test to damage (copy2 keeps the stamps)."""
    shutil.copytree(pristine, tmp_path / "data", dirs_exist_ok=True)
    return {**config, "data_dir": str(tmp_path / "data")}


def blobs_dir(config):
    return os.path.join(config["data_dir"], "blobs")


def flip_a_byte(config):
    path = os.path.join(blobs_dir(config), "all.x.npy")
    with open(path, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 1]))
    return "all.x.npy"


def truncate(config):
    path = os.path.join(blobs_dir(config), "all.labels.npy")
    os.truncate(path, os.path.getsize(path) - 8)
    return "all.labels.npy"


def delete(config):
    os.remove(os.path.join(blobs_dir(config), "all.labels.npy"))
    return "all.labels.npy is missing"


def edit_the_manifest(config):
    """A hand edit that keeps the manifest consistent with itself and its layout: another
    digest for a file, and the dataset digest to match."""
    path = os.path.join(blobs_dir(config), "manifest.json")
    manifest = json.loads(open(path).read())
    manifest["files"]["all.x.npy"]["sha256"] = "0" * 64
    manifest["digest"] = common.files.sha256_json({k: v["sha256"] for k, v in manifest["files"].items()})
    open(path, "w").write(common.files.json_text(manifest))
    return "was edited after preparation"


def cut_the_manifest_short(config):
    path = os.path.join(blobs_dir(config), "manifest.json")
    os.truncate(path, os.path.getsize(path) // 2)
    return "manifest.json is not valid JSON"


@pytest.mark.parametrize("damage", [flip_a_byte, truncate, delete, edit_the_manifest, cut_the_manifest_short])
def test_damaged_data_stops_the_run_before_its_directory_is_touched(data_config, damage):
    recorded = json.loads(open(os.path.join(blobs_dir(data_config), "manifest.json")).read())["files"]
    what = damage(data_config)
    with pytest.raises(IntegrityError) as refused:
        runner.train(data_config, RUN, force=True)
    message = str(refused.value)
    assert what in message and FIX in message
    if damage in (flip_a_byte, truncate):       # both digests: the one found and the one recorded
        assert recorded[what]["sha256"] in message
        assert common.files.sha256_file(os.path.join(blobs_dir(data_config), what)) in message
    assert not RUN.path(data_config["results_dir"]).exists()


def test_the_cli_refuses_with_the_message_and_verify_lists_the_difference(data_config, capsys):
    args = ["--data-dir", data_config["data_dir"], "--results-dir", data_config["results_dir"]]
    assert main(["data", "verify", "blobs", *args]) == 0
    assert "blobs: OK" in capsys.readouterr().out
    truncate(data_config)
    assert main(["run", "--suite", "smoke", "--dataset", "blobs", "--method", "kmeans", "--variant", "raw",
                 "--seed", "0", "--record-failure", *args]) == 2
    assert "all.labels.npy" in capsys.readouterr().err
    assert main(["data", "verify", *args]) == 1            # every prepared dataset
    out = capsys.readouterr().out
    assert "blobs: DIFFERS" in out and "all.labels.npy" in out
    assert not RUN.path(data_config["results_dir"]).exists()


def test_an_intact_load_hashes_nothing_and_a_touched_file_is_hashed_once(data_config, monkeypatch):
    hashed = []
    real = common.files.sha256_file
    monkeypatch.setattr(common.files, "sha256_file", lambda path, *a: hashed.append(path) or real(path, *a))
    blobs = datasets.get("blobs")
    blobs.load(data_config["data_dir"])
    assert hashed == []
    os.utime(os.path.join(blobs_dir(data_config), "all.x.npy"))         # same bytes, a new stamp
    for _ in range(3):
        blobs.load(data_config["data_dir"])
    assert [os.path.basename(p) for p in hashed] == ["all.x.npy"]


def test_verify_hashes_in_full_what_the_stamp_check_cannot_see_and_lists_unknown_files(data_config):
    path = os.path.join(blobs_dir(data_config), "all.x.npy")
    stamp = os.stat(path)
    flip_a_byte(data_config)
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))          # the old stamp put back
    blobs = datasets.get("blobs")
    blobs.load(data_config["data_dir"])                                 # the cheap check trusts the stamp
    shutil.copy(path, os.path.join(blobs_dir(data_config), "extra.x.npy"))
    _, problems = blobs.differences(data_config["data_dir"], full=True)
    assert len(problems) == 2 and "all.x.npy has sha256" in problems[0]
    assert problems[1].endswith("extra.x.npy is not in the manifest")


def test_an_unsealed_manifest_is_refused_with_the_fix(data_config):
    path = os.path.join(blobs_dir(data_config), "manifest.json")
    manifest = json.loads(open(path).read())
    del manifest["seal"]
    open(path, "w").write(json.dumps(manifest))
    with pytest.raises(IntegrityError, match=r"no seal(.|\n)*--force"):
        datasets.get("blobs").load(data_config["data_dir"])


def test_evaluate_refuses_damaged_data_too(data_config):
    runner.train(data_config, RUN, force=True)
    flip_a_byte(data_config)
    with pytest.raises(IntegrityError, match="all.x.npy"):
        runner.evaluate(data_config, RUN)
    assert not (RUN.path(data_config["results_dir"]) / "metrics.json").exists()


def test_evaluate_refuses_outputs_changed_since_training(data_config):
    run_dir = runner.train(data_config, RUN, force=True)
    with open(run_dir / "outputs.npz", "r+b") as f:
        f.seek(40)
        f.write(b"\x00\x01")
    with pytest.raises(IntegrityError, match=r"outputs.npz has sha256(.|\n)*--seed 0 --force"):
        runner.evaluate(data_config, RUN)
    assert not (run_dir / "metrics.json").exists()


def test_a_recorded_file_is_checked_before_it_is_read(tmp_path):
    path = tmp_path / "stage" / "autoencoder.pt"
    path.parent.mkdir()
    with recorded_path(path) as tmp:
        tmp.write_bytes(bytes(range(100)))
    check_recorded(path, "delete it")
    record = json.loads(record_path(path).read_text())
    with open(path, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        f.write(b"\xff")
    with pytest.raises(IntegrityError, match=rf"{record['sha256']}(.|\n)*delete it"):
        check_recorded(path, "delete it")
    record_path(path).unlink()
    with pytest.raises(IntegrityError, match="no record of its sha256"):
        check_recorded(path, "delete it")


class TinyRGB(datasets.Dataset):
    name = "tiny_rgb"


def test_a_damaged_encdiff_first_stage_is_refused_before_it_is_loaded(tmp_path):
    from bench.config import method_config
    from methods.base import RunContext, RunData
    from methods.encdiff import first_stage
    images = np.random.default_rng(0).integers(0, 256, (64, 3, 16, 16), dtype=np.uint8)
    data = RunData(TinyRGB(), datasets.Split("all", images), datasets.Split("all", images))
    config = method_config("encdiff", "smoke")
    runs = [RunContext(tmp_path / "tiny_rgb" / "encdiff" / variant / "seed0", 0, "cpu") for variant in ("a", "b")]
    for run in runs:
        run.dir.mkdir(parents=True)
    first_stage(data, config, runs[0])
    [cache] = (tmp_path / "tiny_rgb" / "encdiff" / "first_stage").glob("vq-*/autoencoder.pt")
    with open(cache, "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    with pytest.raises(IntegrityError, match=rf"{cache}(.|\n)*delete {cache.parent}"):
        first_stage(data, config, runs[1])


def test_snakemake_prepares_a_damaged_dataset_again_and_then_has_nothing_to_do(tmp_path):
    from smoke_suite import snakemake
    target = "data/blobs/manifest.json"
    snakemake(tmp_path, "--cores", "1", target)
    truncate({"data_dir": str(tmp_path / "data")})
    done = snakemake(tmp_path, "--cores", "1", target)
    assert "rule mark_damaged" in done and "rule prepare" in done
    assert datasets.get("blobs").differences(tmp_path / "data", full=True)[1] == []
    assert "Nothing to be done" in snakemake(tmp_path, "-n", target)


def test_a_damaged_feature_classifier_cache_is_refused_before_it_is_loaded(tmp_path):
    from evaluation import generation
    images = np.random.default_rng(0).integers(0, 256, (32, 1, 8, 8), dtype=np.uint8)
    labels = np.arange(32) % 2
    cache = tmp_path / "feature_classifier.pt"
    generation.classifier(images, labels, cache, epochs=1)
    generation.classifier(images, labels, cache, epochs=1)              # intact: loaded
    os.truncate(cache, cache.stat().st_size - 1)
    with pytest.raises(IntegrityError, match=rf"{cache} has sha256(.|\n)*delete {cache}"):
        generation.classifier(images, labels, cache, epochs=1)
