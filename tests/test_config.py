"""Configuration errors name the bad key or value and list the valid choices, before anything runs."""
import copy
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from bench import config as cfg


@pytest.fixture
def methods_spec():
    return cfg.load_methods()


def suite(**changes):
    base = {"description": "test", "seeds": 1, "runs": [{"datasets": ["digits"], "methods": {"kmeans": ["raw"]}}]}
    return {**base, **changes}


def test_every_committed_suite_is_valid():
    for name in cfg.suite_names():
        assert cfg.expand(name), name


def test_unknown_suite_lists_suites():
    with pytest.raises(cfg.ConfigError, match=r"unknown suite 'nope'; valid: fashion, laptop, paper, quick, smoke"):
        cfg.load_suite("nope")


def test_unknown_method_lists_methods(methods_spec):
    bad = suite(runs=[{"datasets": ["digits"], "methods": {"kmean": ["raw"]}}])
    with pytest.raises(cfg.ConfigError, match=r"unknown method 'kmean'; valid: .*gmm.*kmeans"):
        cfg.check_suite(bad, "test", methods_spec)


def test_unknown_variant_lists_variants(methods_spec):
    bad = suite(runs=[{"datasets": ["digits"], "methods": {"kmeans": ["pca"]}}])
    with pytest.raises(cfg.ConfigError, match=r"unknown variant of kmeans 'pca'; valid: paper, pca50, raw"):
        cfg.check_suite(bad, "test", methods_spec)


def test_unknown_dataset_lists_datasets(methods_spec):
    bad = suite(runs=[{"datasets": ["digit"], "methods": {"kmeans": ["raw"]}}])
    with pytest.raises(cfg.ConfigError, match=r"unknown dataset 'digit'; valid: .*blobs.*digits.*mnist"):
        cfg.check_suite(bad, "test", methods_spec)


def test_unknown_metric_lists_metrics(methods_spec):
    with pytest.raises(cfg.ConfigError, match=r"unknown metric 'accuracy'; valid: acc_aae, .*acc_hungarian"):
        cfg.check_suite(suite(metrics=["accuracy"]), "test", methods_spec)


def test_unknown_suite_key_lists_valid_keys(methods_spec):
    with pytest.raises(cfg.ConfigError, match=r"unknown key 'seed' in \(top level\); valid keys: description, seeds"):
        cfg.check_suite({**suite(), "seed": 3}, "test", methods_spec)


def test_unknown_key_in_a_run_group(methods_spec):
    bad = suite(runs=[{"datasets": ["digits"], "methods": {"kmeans": ["raw"]}, "seed": 2}])
    with pytest.raises(cfg.ConfigError, match=r"unknown key 'seed' in runs\.0; valid keys: seeds, datasets, methods"):
        cfg.check_suite(bad, "test", methods_spec)


def test_wrong_type_and_range_name_the_location(methods_spec):
    with pytest.raises(cfg.ConfigError, match=r"bad value at seeds: 0 is less than the minimum of 1"):
        cfg.check_suite(suite(seeds=0), "test", methods_spec)
    with pytest.raises(cfg.ConfigError, match=r"bad value at seeds: 'three' is not of type 'integer'"):
        cfg.check_suite(suite(seeds="three"), "test", methods_spec)


def test_shell_metacharacters_in_names_are_rejected(methods_spec):
    bad = suite(runs=[{"datasets": ["digits; rm -rf ~"], "methods": {"kmeans": ["raw"]}}])
    with pytest.raises(cfg.ConfigError, match=r"bad value at runs\.0\.datasets\.0: .* does not match"):
        cfg.check_suite(bad, "test", methods_spec)
    with pytest.raises(cfg.ConfigError, match=r"bad value at results_dir"):
        cfg.load_config({"results_dir": "out $(whoami)"})


def test_unknown_global_key_lists_valid_keys():
    with pytest.raises(cfg.ConfigError, match=r"unknown key 'sweet' in \(top level\); valid keys: suite, data_dir"):
        cfg.load_config({"sweet": "quick"})


def test_variant_key_must_exist_in_defaults(methods_spec):
    spec = copy.deepcopy(methods_spec)
    spec["methods"]["kmeans"]["variants"]["raw"] = {"n_inits": 3}
    with pytest.raises(cfg.ConfigError, match=r"kmeans\.variants\.raw: unknown key 'n_inits'; valid keys: .*n_init"):
        cfg.check_methods(spec)


def test_variant_value_must_have_the_default_type(methods_spec):
    spec = copy.deepcopy(methods_spec)
    spec["methods"]["kmeans"]["variants"]["raw"] = {"n_init": "ten"}
    with pytest.raises(cfg.ConfigError, match=r"kmeans\.variants\.raw\.n_init = 'ten' is a str, but the default 10 is a int"):
        cfg.check_methods(spec)


def test_method_config_merges_common_defaults_and_variant(methods_spec):
    merged = cfg.method_config("gmm", "pca50", methods_spec)
    assert merged["pca_components"] == 50 and merged["covariance_type"] == "full"
    assert merged["fit_split"] == methods_spec["common"]["fit_split"]
    assert merged["n_init"] == methods_spec["methods"]["gmm"]["defaults"]["n_init"]


def test_expansion_is_the_cross_product_without_duplicates(methods_spec):
    runs = cfg.expand("quick")
    quick = cfg.load_suite("quick")
    expected = sum(len(g["datasets"]) * sum(len(v) for v in g["methods"].values()) * g.get("seeds", quick["seeds"])
                   for g in quick["runs"])
    assert len(runs) == len(set(runs)) == expected


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    """A config dir of one's own, with the committed methods.yaml and schema."""
    (tmp_path / "config" / "suites").mkdir(parents=True)
    for name in ("methods.yaml", "schema.yaml"):
        shutil.copy(cfg.CONFIG_DIR / name, tmp_path / "config" / name)
    monkeypatch.setattr(cfg, "REPO", tmp_path)
    monkeypatch.setattr(cfg, "CONFIG_DIR", tmp_path / "config")
    return tmp_path / "config"


def test_an_edited_suite_or_methods_file_is_read_again(config_dir):
    path = config_dir / "suites" / "demo.yaml"
    path.write_text(yaml.safe_dump(suite(seeds=1)))
    assert cfg.load_suite("demo")["seeds"] == 1
    stamp = path.stat()
    path.write_text(yaml.safe_dump(suite(seeds=2)))
    # The same size and stamp, as on a filesystem of coarse timestamps or after `cp -p`.
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert cfg.load_suite("demo")["seeds"] == 2
    methods_file = config_dir / "methods.yaml"
    spec = yaml.safe_load(methods_file.read_text())
    del spec["methods"]["kmeans"]["variants"]["raw"]
    methods_file.write_text(yaml.safe_dump(spec))
    assert "raw" not in cfg.load_methods()["methods"]["kmeans"]["variants"]
    with pytest.raises(cfg.ConfigError, match=r"unknown variant of kmeans 'raw'"):
        cfg.load_suite("demo")                             # checked again against the new methods.yaml


def test_a_caller_editing_a_loaded_config_changes_no_later_load(config_dir):
    (config_dir / "suites" / "demo.yaml").write_text(yaml.safe_dump(suite()))
    cfg.load_suite("demo")["runs"][0]["methods"]["kmeans"].append("pca50")
    cfg.load_methods()["methods"].clear()
    assert cfg.load_suite("demo")["runs"][0]["methods"]["kmeans"] == ["raw"]
    assert "kmeans" in cfg.load_methods()["methods"]


def test_a_group_may_run_fewer_seeds(monkeypatch):
    suite = cfg.check_suite({"description": "x", "seeds": 3, "runs": [
        {"datasets": ["digits"], "methods": {"kmeans": ["raw"]}},
        {"datasets": ["digits"], "methods": {"gmm": ["raw"]}, "seeds": 1}]}, "two.yaml")
    monkeypatch.setattr(cfg, "load_suite", lambda name: suite)
    runs = cfg.expand("two")
    assert [(r.method, r.seed_index) for r in runs] == [("gmm", 0), ("kmeans", 0), ("kmeans", 1), ("kmeans", 2)]


def test_seed_is_stable_across_processes_and_distinct_across_runs():
    code = "from bench.config import derive_seed; print(derive_seed('digits', 'kmeans', 'raw', 2))"
    seeds = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=cfg.REPO, env={"PYTHONHASHSEED": str(h)}).stdout.strip() for h in (1, 2, 3)}
    assert seeds == {str(cfg.derive_seed("digits", "kmeans", "raw", 2))}
    identities = [(d, m, v, s) for d in ("digits", "blobs") for m in ("kmeans", "gmm")
                  for v in ("raw", "pca50") for s in range(5)]
    assert len({cfg.derive_seed(*i) for i in identities}) == len(identities)


def test_cli_reports_config_errors_in_one_line():
    result = subprocess.run([sys.executable, "-m", "bench", "run", "--suite", "smoke", "--dataset", "digits",
                             "--method", "kmeans", "--variant", "nope", "--seed", "0"],
                            capture_output=True, text=True, cwd=cfg.REPO)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: unknown variant of kmeans 'nope'; valid: paper, pca50, raw"


def test_metric_params_are_checked_against_each_protocol(methods_spec):
    cfg.check_suite(suite(metric_params={"dci": {"n_train": 500, "n_test": 200}}), "test", methods_spec)
    with pytest.raises(cfg.ConfigError, match=r"metric_params\.mig: mig has no parameter n_bins"):
        cfg.check_suite(suite(metric_params={"mig": {"n_bins": 10}}), "test", methods_spec)
    with pytest.raises(cfg.ConfigError, match=r"bad value at metric_params"):
        cfg.check_suite(suite(metric_params={"fid": {"n": 10}}), "test", methods_spec)
