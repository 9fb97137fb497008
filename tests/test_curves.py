"""Learning curves (bench/curves.py) and the suites' learning checks (`learns`, the
leaderboard's "under-trained at this budget")."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

import datasets
import evaluation
import methods
from bench import curves
from bench.config import REPO, ConfigError, check_suite, load_suite, method_config, suite_names
from evaluation import claims
from reports.leaderboard import render
from reports.tables import UNDER_TRAINED

# Longer training resumes the shorter run exactly ------------------------------------------------


def test_a_curve_point_is_the_run_of_that_budget(config, workdir, prepared_data):
    """Each factor resumes the last one's checkpoint; its point equals a fresh run of that budget."""
    config["data_dir"] = str(prepared_data)
    datasets.get("circle").prepare(prepared_data)
    points = curves.side_points(config, "smoke", "circle", "vae", "smoke", ["gw"], (1.0, 2.0))
    assert list(points["factor"]) == [1.0, 2.0]
    assert list(points["training_images"]) == [2 * 2000, 4 * 2000]      # smoke: 2 epochs of the 2,000 points

    circle = datasets.get("circle")
    split, method = circle.load(prepared_data), methods.get("vae")
    seed = curves.RunId("smoke", "circle", "vae", "smoke", 0).seed
    (workdir / "fresh").mkdir()
    fresh = method.fit(methods.RunData(circle, split, split), method.with_budget(method_config("vae", "smoke"), 2.0),
                       methods.RunContext(workdir / "fresh", seed, "cpu"))
    value = evaluation.evaluate(evaluation.Context(fresh, split, circle, prepared_data), names=["gw"])["gw"].value
    assert points.loc[points["factor"] == 2.0, "value"].item() == pytest.approx(value, abs=0)
    assert points.loc[points["factor"] == 1.0, "value"].item() != value      # the budget made a difference


def test_dyga_extended_from_a_finished_run_refits_as_a_longer_run_would(tmp_path, prepared_data):
    """A DyGA run does not refit after its last epoch; training it on must make that refit first."""
    sprites = datasets.get("sprites")
    split = sprites.load(prepared_data)
    data = methods.RunData(sprites, split, split)
    method, config = methods.get("encdiff"), method_config("encdiff", "smoke")
    assert config["dyga"]
    for name in ("extended", "fresh"):
        (tmp_path / name).mkdir()
    extended = methods.RunContext(tmp_path / "extended", 7, "cpu")
    method.fit(data, {**config, "epochs": 2}, extended)
    longer = method.fit(data, config, extended)
    fresh = method.fit(data, config, methods.RunContext(tmp_path / "fresh", 7, "cpu"))
    np.testing.assert_array_equal(longer["embedding"], fresh["embedding"])
    np.testing.assert_array_equal(longer["samples"], fresh["samples"])


def test_clusterddpm_trains_longer_by_more_em_after_the_same_pretraining():
    method, config = methods.get("clusterddpm"), method_config("clusterddpm", "laptop")     # 8 + 6 epochs
    assert method.with_budget(config, 2.0)["em_epochs"] == 20
    assert method.with_budget(config, 4.0)["pretrain_epochs"] == 8
    assert method.training_images(method.with_budget(config, 4.0), 10_000) == 560_000
    with pytest.raises(ValueError, match="no EM epoch after 8 of pre-training"):
        method.with_budget(config, 0.5)


def test_a_checkpoint_past_a_missing_point_is_refused(config, prepared_data):
    config["data_dir"] = str(prepared_data)
    curves.side_points(config, "smoke", "blobs", "vae", "smoke", ["gw"], (2.0,))
    with pytest.raises(ConfigError, match="trained past 1.0 x its budget"):
        curves.side_points(config, "smoke", "blobs", "vae", "smoke", ["gw"], (1.0,))


def test_a_claims_curve_has_both_sides_a_figure_and_its_provenance(config, workdir, prepared_data, monkeypatch):
    import json
    config["data_dir"] = str(prepared_data)
    out_dir = workdir / "curves"        # as evaluation/curves/ is: tracked, so a file written there dirties the checkout
    monkeypatch.setattr(curves.provenance, "git_state",
                        lambda: {"commit": "abc", "dirty": out_dir.exists() and any(out_dir.iterdir())})
    written = curves.draw(config, "quick", ["nmm-beats-kmeans"], (0.04, 0.07), out_dir=out_dir)
    assert sorted(p.name for p in written) == ["nmm-beats-kmeans.csv", "nmm-beats-kmeans.json", "nmm-beats-kmeans.png"]
    table = pd.read_csv(workdir / "curves" / "nmm-beats-kmeans.csv")
    nmm, kmeans = table[table["side"] == "nmm/quick"], table[table["side"] == "kmeans/raw"]
    assert list(nmm["factor"]) == [0.04, 0.07] and nmm["training_images"].is_monotonic_increasing
    assert len(kmeans) == 1 and kmeans["factor"].isna().all()       # no training to scale: one flat line
    assert table["value"].between(0, 1).all()
    record = json.loads((workdir / "curves" / "nmm-beats-kmeans.json").read_text())
    golden = {c.id: v for c, _, v in curves.golden_verdicts("quick", claims.load())}
    assert record["golden_verdict"] == golden["nmm-beats-kmeans"]
    assert record["sides"]["nmm/quick"]["config"]["epochs"] == 30
    assert record["git"] == {"commit": "abc", "dirty": False}, "the checkout's state before the curve's own files"
    assert [p["factor"] for p in record["sides"]["nmm/quick"]["points"]] == [0.04, 0.07]


def test_the_cli_names_an_unknown_claim(config):
    from bench.cli import main
    assert main(["curves", "--suite", "laptop", "--claim", "no-such-claim"]) == 2


def assert_laptop_curves(registered):
    """The committed curves cover the laptop suite's golden verdicts that are not HOLDS, each
    from its own budget to four times it, on both sides. A comparison with a side that has no
    laptop golden numbers (NOT-RUN there: a new method's) has nothing to draw against yet."""
    for claim, comparison, verdict in curves.not_holding("laptop", registered):
        if verdict == claims.NOT_RUN:
            continue
        name = curves.curve_name(claim, comparison, "laptop")
        path = curves.CURVES_DIR / "laptop" / f"{name}.csv"
        assert path.is_file(), (f"{claim.id} is {verdict} in the laptop golden numbers and has no curve: "
                                f"python -m bench curves --suite laptop --claim {claim.id}")
        table = pd.read_csv(path)
        assert (curves.CURVES_DIR / "laptop" / f"{name}.png").is_file()
        trained = table.dropna(subset=["factor"])
        assert {1.0, 2.0, 4.0} <= set(trained["factor"]), f"{name}: the laptop budget up to 4x"
        assert table["side"].nunique() == 2 and table["value"].notna().all(), name


def test_the_laptop_curves_are_drawn_for_every_claim_that_does_not_hold_there():
    assert_laptop_curves(claims.load())


def test_a_claim_that_does_not_hold_in_the_laptop_golden_numbers_needs_its_curve(tmp_path):
    claim = {"id": "m10-again", "where": "Table 1", "claim": "M = 10 beats M = 1.", "metric": "acc_aae",
             "compare": {"laptop": {"dataset": "mnist10k", "better": "gmvae/laptop-m10", "than": "gmvae/laptop-m1"}}}
    (tmp_path / "gmvae.yaml").write_text(yaml.safe_dump({"paper": "gmvae", "claims": [claim]}))
    with pytest.raises(AssertionError, match="m10-again is UNDECIDED in the laptop golden numbers and has no curve"):
        assert_laptop_curves(claims.load(tmp_path))


# Learning checks --------------------------------------------------------------------------------

def test_every_learning_check_cites_a_committed_curve():
    for name in suite_names():
        for check in load_suite(name).get("learns", []):
            assert (REPO / check["evidence"]).is_file(), f"{name}: {check['evidence']}"


@pytest.mark.parametrize("change, message", [
    ({"run": "encdiff/no-such"}, "not a run group of the suite"),
    ({"above": "kmeans/raw"}, "not a run group of the suite"),
    ({"metric": "accuracy"}, "unknown metric 'accuracy'"),
])
def test_a_learning_check_names_groups_of_its_suite(change, message):
    suite = {"description": "d", "seeds": 2, "runs": [{"datasets": ["digits"], "methods": {"nmm": ["quick"]}}],
             "learns": [{"dataset": "digits", "run": "nmm/quick", "metric": "acc_hungarian", "above": 0.5,
                         "evidence": "README.md", **change}]}
    with pytest.raises(ConfigError, match=message):
        check_suite(suite, "test")


def summary(nmm_values):
    return pd.DataFrame([{"suite": "demo", "dataset": "digits", "method": "nmm", "variant": "quick", "seed": i,
                          "metric": "acc_hungarian", "spec": "acc[hungarian,split=all]", "value": v,
                          "unavailable": None, "status": "completed"} for i, v in enumerate(nmm_values)])


@pytest.mark.parametrize("values, marked", [((0.81, 0.84, 0.80), False), ((0.11, 0.12, 0.10), True),
                                             ((0.9,), True)])
def test_a_group_that_does_not_learn_is_marked_under_trained_with_its_evidence(tmp_path, values, marked):
    suite = {"description": "d", "seeds": 3, "runs": [{"datasets": ["digits"], "methods": {"nmm": ["quick"]}}],
             "learns": [{"dataset": "digits", "run": "nmm/quick", "metric": "acc_hungarian", "above": 0.5,
                         "evidence": "evaluation/curves/laptop/clusterddpm-beats-kmeans-acc.png"}]}
    checks = claims.learning_checks("demo", check_suite(suite, "test"))
    render(summary(values), tmp_path, "demo", checks=checks)
    markdown = (tmp_path / "leaderboard.md").read_text()
    assert "## Learning at this budget" in markdown
    assert (f"quick ({UNDER_TRAINED})" in markdown) == marked
    assert ("at larger budgets: evaluation/curves/laptop/clusterddpm-beats-kmeans-acc.png" in markdown) == marked
    assert (UNDER_TRAINED in (tmp_path / "leaderboard.tex").read_text()) == marked
    html = (tmp_path / "leaderboard.html").read_text()
    assert (f'<span class="badge" title="{UNDER_TRAINED}' in html) == marked
