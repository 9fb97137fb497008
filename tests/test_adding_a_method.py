"""Adding a method, as docs/adding-a-method.md says, with a toy k-means in a copy of the config:
the required steps are enough for the config, the suites, the runner, `bench check` and the
lints of claims and curves; claims, curves and golden numbers are optional. And every
registered method runs in the smoke suite (tests/test_pipeline.py trains and scores each of
its runs) and the quick suite."""
import json
import shutil
import sys

import pandas as pd
import pytest
import yaml

import datasets
import methods
from bench import cli, runner
from bench import config as cfg
from bench.golden import golden_path
from common.schema import ConfigError
from evaluation import claims
from evaluation.aggregate import collect
from evaluation.published import PUBLISHED_DIR
from test_claims import lint
from test_curves import assert_laptop_curves

TOY = '''"""A toy method: k-means in numpy, from k random rows."""
import numpy as np

from methods.base import Method, flat_features


class ToyKMeans(Method):
    name = "toy"
    tracks = ("clustering",)
    budget = "iterations"

    def fit(self, data, config, run):
        x = flat_features(data.fit)
        k = config["k"] or data.dataset.n_classes
        centres = x[run.rng().choice(len(x), k, replace=False)]
        for _ in range(config["iterations"]):
            nearest = ((x[:, None] - centres) ** 2).sum(-1).argmin(1)
            centres = np.stack([x[nearest == j].mean(0) if (nearest == j).any() else centres[j] for j in range(k)])
        score = flat_features(data.score)
        return {"assignments": ((score[:, None] - centres) ** 2).sum(-1).argmin(1).astype(np.int64)}
'''


def missing_runs() -> list[str]:
    """Every registered method runs in the smoke and quick suites; one that trains runs its
    `smoke` and `quick` variants there."""
    problems = []
    for suite in ("smoke", "quick"):
        ran = {(run.method, run.variant) for run in cfg.expand(suite)}
        for name in methods.METHODS:
            variants = {variant for method, variant in ran if method == name}
            budget = methods.get(name).budget
            if not variants:
                problems.append(f"{name} has no run in config/suites/{suite}.yaml")
            elif budget and suite not in variants:
                problems.append(f"{name} trains (its budget: {budget}) and config/suites/{suite}.yaml does not run "
                                f"its `{suite}` variant")
    return problems


def test_every_method_runs_in_the_smoke_and_quick_suites():
    assert not missing_runs()


def add_toy(root, monkeypatch, variants=("smoke", "quick")):
    """The required steps, in a copy of the config: the module, its registry line (and CPU_ONLY:
    no network), its block with `variants`, and a run group in the smoke and quick suites."""
    (root / "toy_kmeans.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, "toy_kmeans", raising=False)       # another test's copy
    monkeypatch.setitem(methods.METHODS, "toy", "toy_kmeans:ToyKMeans")
    monkeypatch.setattr(methods, "CPU_ONLY", methods.CPU_ONLY | {"toy"})
    shutil.copytree(cfg.CONFIG_DIR, root / "config")
    monkeypatch.setattr(cfg, "REPO", root)
    monkeypatch.setattr(cfg, "CONFIG_DIR", root / "config")

    def edit(name, change):
        path = root / "config" / name
        document = yaml.safe_load(path.read_text())
        change(document)
        path.write_text(yaml.safe_dump(document, sort_keys=False))

    settings = {"smoke": {"iterations": 2}, "quick": {}}
    block = {"defaults": {"k": None, "iterations": 20}, "variants": {name: settings[name] for name in variants}}
    edit("methods.yaml", lambda spec: spec["methods"].update(toy=block))
    edit("suites/smoke.yaml", lambda suite: suite["runs"].append(
        {"datasets": ["digits"], "seeds": 1, "methods": {"toy": ["smoke"]}}))
    edit("suites/quick.yaml", lambda suite: suite["runs"].append(
        {"datasets": ["digits"], "methods": {"toy": ["quick"]}}))


@pytest.fixture
def toy(tmp_path, monkeypatch):
    add_toy(tmp_path, monkeypatch)
    return tmp_path


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    datasets.get("digits").prepare(data_dir)
    return data_dir


def test_the_config_validates_and_the_suites_expand_its_runs(toy):
    assert cfg.method_config("toy", "smoke")["iterations"] == 2
    assert cfg.RunId("smoke", "digits", "toy", "smoke", 0) in cfg.expand("smoke")
    # the quick suite is what dvc.yaml lists: `python -m bench dvc` writes these runs into it
    assert sum(run.method == "toy" for run in cfg.expand("quick")) == cfg.load_suite("quick")["seeds"]
    assert not missing_runs()


def test_a_smoke_run_trains_and_scores_and_bench_check_names_it_not_checked(toy, digits, monkeypatch, capsys):
    config = cfg.load_config({"data_dir": str(digits), "results_dir": str(toy / "results"),
                              "reports_dir": str(toy / "reports"), "device": "cpu"})
    runs = [cfg.find_run("smoke", "digits", "toy", "smoke", 0)] + [
        cfg.find_run("smoke", "digits", "kmeans", "raw", seed) for seed in (0, 1)]
    for run in runs:
        runner.train(config, run)
        runner.evaluate(config, run)
    metrics = json.loads((runs[0].path(config["results_dir"]) / "metrics.json").read_text())["metrics"]
    assert metrics["acc_hungarian"]["value"] > 0.5 and metrics["acc_hungarian"]["spec"] == "acc[hungarian,split=all]"

    # the committed smoke golden numbers of the groups run here: k-means is checked, the toy is named
    golden = pd.read_csv(golden_path("smoke"))
    golden = golden[(golden["dataset"] == "digits") & (golden["method"] == "kmeans")]
    golden.to_csv(toy / "golden.csv", index=False)
    monkeypatch.setattr("bench.checks.golden_path", lambda suite: toy / "golden.csv")
    summary = toy / "results" / "smoke" / "summary.csv"
    collect(runs, config["results_dir"]).to_csv(summary, index=False)
    capsys.readouterr()
    status = cli.main(["check", "--suite", "smoke", "--results-dir", str(toy / "results"),
                       "--reports-dir", str(toy / "reports")])
    err = capsys.readouterr().err
    assert status == 0, err
    assert err.splitlines() == [
        "digits/toy/smoke: no golden numbers: not checked; make them with python -m bench golden --suite smoke"]
    verdicts = pd.read_csv(toy / "reports" / "smoke" / "verdicts.csv")
    assert set(verdicts["method"]) == {"kmeans"} and set(verdicts["verdict"]) == {"OK"}


def test_the_lints_of_claims_and_curves_accept_it_without_claims_curves_or_golden_numbers(toy):
    registered = claims.load(names=cfg.registered_names())
    lint(registered)
    assert_laptop_curves(registered)


def test_its_claims_need_no_laptop_comparison_nor_curve(toy):
    """Claims are optional; one made needs its paper's published file, and neither a laptop
    comparison nor a learning curve while the toy has no laptop golden numbers."""
    shutil.copytree(PUBLISHED_DIR, toy / "published")
    shutil.copytree(claims.CLAIMS_DIR, toy / "claims")
    (toy / "published" / "toy.yaml").write_text(yaml.safe_dump({
        "paper": {"title": "Toy", "authors": "T", "arxiv": "0000.00000", "version": "v1"},
        "entries": [], "not_transcribed": []}))
    claim = {"where": "abstract", "metric": "acc_hungarian"}
    (toy / "claims" / "toy.yaml").write_text(yaml.safe_dump({"paper": "toy", "claims": [
        {**claim, "id": "toy-beats-kmeans", "claim": "The toy beats k-means.",
         "compare": {"quick": {"dataset": "digits", "better": "toy/quick", "than": "kmeans/raw"}}},
        {**claim, "id": "toy-beats-kmeans-on-mnist", "claim": "The toy beats k-means on MNIST.",
         "compare": {"laptop": {"dataset": "mnist10k", "better": "toy/quick", "than": "kmeans/raw"}}}]}))
    registered = claims.load(toy / "claims", toy / "published", names=cfg.registered_names())
    assert {"toy-beats-kmeans", "toy-beats-kmeans-on-mnist"} <= {c.id for c in registered}
    lint(registered)
    assert_laptop_curves(registered)


def test_a_method_without_its_quick_variant_is_refused_by_name(tmp_path, monkeypatch):
    add_toy(tmp_path, monkeypatch, variants=("smoke",))
    with pytest.raises(ConfigError, match=r"unknown variant of toy 'quick'; valid: smoke"):
        cfg.expand("quick")
    quick = tmp_path / "config" / "suites" / "quick.yaml"
    suite = yaml.safe_load(quick.read_text())
    suite["runs"].pop()
    quick.write_text(yaml.safe_dump(suite))
    assert missing_runs() == ["toy has no run in config/suites/quick.yaml"]
