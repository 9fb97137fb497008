"""Every published-number file is linted: schema, registered metrics, specs, datasets."""
import pytest
import yaml

import datasets
from common.schema import ConfigError
from evaluation import published


def test_every_registry_file_is_valid():
    entries, missing = published.load(known_datasets=set(datasets.DATASETS) | set(datasets.PAPER_DATASETS))
    assert {e.paper for e in entries} == {"gmvae", "nmm"}
    assert {m.method for m in missing} >= {"clusterddpm", "encdiff", "vdae"}
    for e in entries:
        assert 0 <= e.value <= 1 and (e.std is None or e.std >= 0)
        assert published.spec_split(e.spec) == e.split


def test_gmvae_table_one_as_transcribed():
    entries, _ = published.load()
    rows = {(e.variant, e.aggregate): (e.value, e.std) for e in entries if e.method == "gmvae"}
    assert rows[("paper-v1-k16-m10", "best-run")] == (pytest.approx(0.9750), None)
    assert rows[("paper-v1-k10-m1", "mean")] == (pytest.approx(0.7447), pytest.approx(0.1020))


def write(tmp_path, **changes):
    base = {"paper": {"title": "t", "authors": "a", "arxiv": "1234.56789", "version": "v1"},
            "entries": [{"method": "m", "variant": "v", "dataset": "mnist", "split": "test", "metric": "acc_aae",
                         "spec": "acc[aae-most-confident,split=test]", "value": 80.0, "scale": "percent",
                         "aggregate": "mean", "table": "Table 1"}],
            "not_transcribed": []}
    base["entries"][0].update(changes)
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump(base))
    return tmp_path


@pytest.mark.parametrize("changes, message", [
    ({"metric": "accuracy"}, r"unknown metric 'accuracy'"),
    ({"spec": "nmi[average=arithmetic,split=test]"}, r"must read acc\[protocol"),
    ({"split": "train"}, r"does not state split=train"),
    ({"value": 180.0}, r"out of range for a percent"),
    ({"table": None}, r"bad value at entries\.0\.table"),
    ({"dataset": "mnsit"}, r"unknown dataset 'mnsit'"),
    ({"seeds": 3}, r"unknown key 'seeds'"),
])
def test_bad_entries_are_refused_with_their_location(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        published.load(write(tmp_path, **changes), known_datasets={"mnist"})
