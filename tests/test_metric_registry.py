"""Every track's metrics through the registry: what applies, specs, and unavailable values."""
from types import SimpleNamespace

import numpy as np
import pytest

import datasets
from datasets.factors import FactorSpace
from evaluation import Context, evaluate

SMALL = {"beta_vae": {"n_train": 300, "n_eval": 200}, "factor_vae": {"n_train": 300, "n_eval": 200, "n_var": 1000},
         "mig": {"n": 1000}, "dci": {"n_train": 500, "n_test": 300}, "sap": {"n_train": 500, "n_test": 300},
         "modularity": {"n": 1000}}


def test_disentanglement_metrics_of_the_factors_themselves_are_near_one():
    factors = np.stack(np.unravel_index(np.arange(3 * 4 * 5), (3, 4, 5)), axis=1)
    split = datasets.Split("all", x=np.zeros((len(factors), 1, 2, 2), np.uint8), factors=factors)
    dataset = SimpleNamespace(factor_space=lambda s: FactorSpace(s.factors, (3, 4, 5)))
    context = Context({"embedding": factors.astype(np.float32)}, split, dataset, params=SMALL)
    values = evaluate(context, tracks=["disentanglement"])
    assert set(values) == {"beta_vae", "factor_vae", "mig", "dci_disentanglement", "dci_completeness",
                           "dci_informativeness", "sap", "modularity"}
    for name in ("beta_vae", "factor_vae", "dci_disentanglement", "dci_completeness", "modularity"):
        assert values[name].value > 0.95, name
    assert values["mig"].value > 0.9
    assert values["dci_disentanglement"].spec.startswith("dci_disentanglement[n_train=500,n_test=300,sklearn=")
    assert values["mig"].spec.endswith(",split=all]")
    assert evaluate(context, tracks=["disentanglement"]) == values      # same numbers twice


def test_generation_metrics_on_digits(prepared_data):
    digits = datasets.get("digits")
    split = digits.load(prepared_data)
    few = np.asarray(split.x[:300])
    values = evaluate(Context({"samples": few}, split, digits, prepared_data), tracks=["generation"])
    assert values["fid"].value is None and "only 300 generated images" in values["fid"].unavailable
    assert values["fid"].spec == "fid[torch-fidelity=0.4.0,inception-v3-compat,n=300,ref=digits-all]"
    assert values["fd_classifier"].spec == "fd[digits-classifier,epochs=5,seed=0,n=300,ref=digits-all]"
    assert (prepared_data / "digits" / "feature_classifier.pt").exists()
    noise = np.random.default_rng(0).integers(0, 256, size=few.shape, dtype=np.uint8)
    noisy = evaluate(Context({"samples": noise}, split, digits, prepared_data), tracks=["generation"])
    assert noisy["fd_classifier"].value > 3 * values["fd_classifier"].value
    tiny = evaluate(Context({"samples": few[:10]}, split, digits, prepared_data), tracks=["generation"])
    assert "needs at least 256" in tiny["fd_classifier"].unavailable


def test_topology_metrics_on_a_circle():
    angles = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    circle = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    split = datasets.Split("all", x=circle)
    outputs = {"samples": circle[::-1].copy(), "embedding": circle, "decoded": 2 * circle}
    values = evaluate(Context(outputs, split), tracks=["topology"])
    assert values["gw"].value == pytest.approx(0, abs=1e-6) and values["gw"].spec == (
        "gw[max-normalised,square-loss,n=400,split=all]")
    assert values["bi_lipschitz_mean"].value == pytest.approx(2.0) and values["bi_lipschitz_std"].value < 1e-5


def test_tracks_and_missing_outputs():
    split = datasets.Split("all", x=np.zeros((5, 2), np.float32), labels=np.arange(5) % 2)
    values = evaluate(Context({"assignments": np.arange(5) % 2}, split), tracks=["clustering", "topology"])
    assert values["gw"].unavailable == "the method gives no 'samples' output"
    assert values["gw"].spec == "gw[max-normalised,square-loss,n=0,split=all]"
    assert "beta_vae" not in values and values["acc_hungarian"].value == 1.0
