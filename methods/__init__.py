"""The method registry: every method the suite knows, by name.

Entries are "module:Class" strings so that validating a config imports no torch; `get(name)`
imports the one asked for. Hyperparameters live in config/methods.yaml, one block per method.
To add a method: one module here, one line below, one block there, its published numbers in
evaluation/published/."""
from __future__ import annotations

import importlib

from methods.base import TRACKS, Method, RunContext, RunData

METHODS = {
    "kmeans": "methods.baselines:KMeansBaseline",
    "gmm": "methods.baselines:GMMBaseline",
    "gmvae": "methods.gmvae:GMVAEMethod",
    "vdae": "methods.vdae:VDAEMethod",
    "vae": "methods.vae:VAEMethod",
    "nmm": "methods.nmm:NMMMethod",
    "beta_vae": "methods.beta_vae:BetaVAEMethod",
    "clusterddpm": "methods.clusterddpm:ClusterDDPMMethod",
    "encdiff": "methods.encdiff:EncDiffMethod",
}
# No network to train: these never ask a cluster for a GPU (workflow/rules/train.smk).
CPU_ONLY = {"kmeans", "gmm"}


def get(name: str) -> Method:
    if name not in METHODS:
        raise KeyError(f"unknown method '{name}'; valid: {', '.join(sorted(METHODS))}")
    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(module), cls)()


__all__ = ["CPU_ONLY", "METHODS", "TRACKS", "Method", "RunContext", "RunData", "get"]
