"""Every published-number file is linted: schema, registered metrics, specs, datasets."""
import pytest
import yaml

import datasets
from common.schema import ConfigError
from evaluation import published


def test_every_registry_file_is_valid():
    entries, missing = published.load(known_datasets=set(datasets.DATASETS) | set(datasets.PAPER_DATASETS))
    assert len(entries) >= 80
    files = {path.stem for path in published.PUBLISHED_DIR.glob("*.yaml")} - {"schema"}
    assert {e.paper for e in entries} | {m.paper for m in missing} == files   # every file read, numbers or not
    assert {m.method for m in missing} >= {"clusterddpm", "gmvae", "nmm", "vdae"}
    for e in entries:
        assert 0 <= e.value <= 1 and (e.std is None or e.std >= 0)
        assert published.spec_split(e.spec) == e.split


def cell(entries, paper, method, variant, dataset, metric):
    [entry] = [e for e in entries if (e.paper, e.method, e.variant, e.dataset, e.metric)
               == (paper, method, variant, dataset, metric)]
    return entry


def test_fashion_mnist_baselines_as_transcribed():
    """ASPC-DA's Table 6 with its std, its quoted rows of Table 3, and one GMM row for each covariance
    type (the paper leaves it unstated, and says so through `unconfirmed`)."""
    entries, _ = published.load()
    kmeans = cell(entries, "aspc_da", "kmeans", "paper", "fashion_mnist", "acc_hungarian")
    assert (kmeans.value, kmeans.std, kmeans.runs, kmeans.printed) == (0.474, 0.0, 5, "0.474 ± 0.000")
    assert kmeans.resolution == pytest.approx(0.001)          # the printed digits, for the verdict's rounding term
    assert kmeans.spec == "acc[hungarian,split=train+test]" and "restarts is unstated" in kmeans.unconfirmed
    for variant in ("paper-diag", "paper-full"):
        gmm = cell(entries, "aspc_da", "gmm", variant, "fashion_mnist", "nmi_arithmetic")
        assert (gmm.value, gmm.std) == (0.557, 0.010) and "covariance type is unstated" in gmm.unconfirmed
    assert cell(entries, "aspc_da", "gmm", "paper-diag", "mnist", "acc_hungarian").value == 0.433
    assert cell(entries, "aspc_da", "clustergan", "paper", "fashion_mnist", "acc_hungarian").quoted_from
    assert cell(entries, "dec_da", "vade", "paper", "fashion_mnist", "nmi_arithmetic").value == 0.630
    assert cell(entries, "idec", "kmeans", "paper-unit-length", "mnist", "acc_hungarian").value == 0.5324


def test_disentanglement_tables_as_transcribed():
    entries, _ = published.load()
    dyga = cell(entries, "dyga", "encdiff", "encdiff+sd+dyga", "mpi3d_toy", "dci_disentanglement")
    assert (dyga.value, dyga.std, dyga.printed) == (pytest.approx(0.627), pytest.approx(0.002), "0.627 ± 0.002")
    assert "dis-dis-rep@fa4e3f8409a1e540f85e7a02116edc728340467c" in dyga.source and "predates" in dyga.unconfirmed
    encdiff = cell(entries, "encdiff", "encdiff", "encdiff", "cars3d", "factor_vae")
    assert (encdiff.value, encdiff.std, encdiff.runs) == (pytest.approx(0.773), pytest.approx(0.060), 15)
    fdae = cell(entries, "fdae", "fdae", "paper", "shapes3d", "mig")
    assert (fdae.value, fdae.runs, fdae.spec) == (pytest.approx(0.473), 10, "mig[quantise=kmeans,k=20,split=all]")
    assert not [e for e in entries if e.method == "disdiff" and e.metric == "mig"]        # printed "–"


def test_fdae_cars3d_dci_is_fdaes_own_number_with_the_misprint_noted():
    entries, _ = published.load()
    quoted = cell(entries, "dyga", "fdae", "paper", "cars3d", "dci_disentanglement")
    own = cell(entries, "fdae", "fdae", "paper", "cars3d", "dci_disentanglement")
    assert (quoted.value, quoted.std) == (own.value, own.std) == (pytest.approx(0.418), pytest.approx(0.036))
    assert "0.232 ± 0.418" in quoted.note


def test_mpi3d_variant_is_uncertain_for_the_baseline_rows_only():
    entries, _ = published.load()
    for paper in ("dyga", "encdiff", "fdae"):
        baseline = cell(entries, paper, "beta_vae", "paper-tcvae", "mpi3d_toy", "factor_vae")
        assert "toy or real" in baseline.dataset_uncertain
        assert cell(entries, paper, "beta_vae", "paper-tcvae", "shapes3d", "factor_vae").dataset_uncertain is None
    for paper in ("dyga", "encdiff"):
        assert cell(entries, paper, "encdiff", "encdiff", "mpi3d_toy", "factor_vae").dataset_uncertain is None
    assert cell(entries, "dyga", "encdiff", "encdiff+sd+dyga", "mpi3d_toy", "factor_vae").dataset_uncertain is None


@pytest.mark.parametrize("theirs, ours, matches", [
    ("dci_disentanglement[n_train=10000,n_test=5000,sklearn=*,split=all]",
     "dci_disentanglement[n_train=10000,n_test=5000,sklearn=1.9.1,split=all]", True),
    ("dci_disentanglement[n_train=10000,n_test=5000,sklearn=*,split=all]",
     "dci_disentanglement[n_train=2000,n_test=1000,sklearn=1.9.1,split=all]", False),
    ("dci_disentanglement[n_train=10000,n_test=5000,sklearn=*,split=all]",
     "dci_disentanglement[n_train=10000,n_test=5000,sklearn=1.9.1,split=test]", False),
    ("mig[quantise=kmeans,k=20,split=all]", "mig[bins=20,n=10000,sklearn=1.9.1,split=all]", False),
    ("acc[hungarian,split=test]", "acc[hungarian,split=test]", True),
])
def test_a_published_spec_matches_ours_parameter_for_parameter(theirs, ours, matches):
    assert published.spec_matches(theirs, ours) is matches


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


def write_table(tmp_path, **changes):
    table = {"table": "Table 1", "split": "all", "scale": "fraction", "aggregate": "mean",
             "specs": {"factor_vae": "factor_vae[n=*,split=all]"},
             "columns": [["shapes3d", "factor_vae"], ["cars3d", "factor_vae"]],
             "rows": [{"method": "m", "variant": "v", "cells": ["0.9 ± 0.1", "–"]}]}
    table.update(changes)
    document = {"paper": {"title": "t", "authors": "a", "version": "unknown", "read_from": "owner/repo@abc, paper.pdf"},
                "entries": [], "tables": [table], "not_transcribed": []}
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump(document, allow_unicode=True))
    return tmp_path


def test_a_table_is_one_entry_per_printed_cell(tmp_path):
    [entry], _ = published.load(write_table(tmp_path), known_datasets={"shapes3d", "cars3d"})
    assert (entry.dataset, entry.value, entry.std, entry.printed) == ("shapes3d", 0.9, 0.1, "0.9 ± 0.1")
    assert entry.source == "owner/repo@abc, paper.pdf, Table 1"


@pytest.mark.parametrize("changes, message", [
    ({"rows": [{"method": "m", "variant": "v", "cells": ["0.9 +- 0.1", "–"]}]},
     r"rows\.0\.cells\.0: cell '0\.9 \+- 0\.1'"),
    ({"rows": [{"method": "m", "variant": "v", "cells": ["0.9"]}]}, r"rows\.0: 1 cells for 2 columns"),
    ({"specs": {"mig": "mig[split=all]"}}, r"no spec for the column metric\(s\) factor_vae"),
    ({"rows": [{"method": "m", "variant": "v", "cells": ["1.9", "–"]}]}, r"out of range for a fraction"),
])
def test_bad_tables_are_refused_with_their_location(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        published.load(write_table(tmp_path, **changes), known_datasets={"shapes3d", "cars3d"})


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
