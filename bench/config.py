"""Loading and validating configuration, and expanding a suite into runs.

Everything is checked before anything runs: the schema (unknown keys, wrong types, values
out of range), then names against the registries (methods, variants, datasets, metrics).
Every error names the bad key or value and lists the valid choices. Nothing here imports
torch: `snakemake -n` stays fast.
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path

import datasets
import evaluation
import methods
from common import schema
from common.schema import ConfigError, load_yaml

REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO / "config"


def validate(instance, definition: str, where: str) -> None:
    schema.validate(instance, CONFIG_DIR / "schema.yaml", definition, where)


# Snakemake asks for the suite once per train job (precision_setting), and parsing and validating
# it takes 0.2 s: each file is loaded once per process and content. The key is the files' bytes,
# not their stamps: a rewrite at the same size within one timestamp tick, or `cp -p`, keeps those.
_loaded: dict[tuple, dict] = {}


def _load_checked(load, *paths: Path) -> dict:
    """`load()`, once for each content of `paths` (the file it reads and those it is checked
    against); a deep copy each time, so that a caller who edits its dict edits no one else's."""
    try:
        key = tuple((str(path), path.read_bytes()) for path in paths)
    except FileNotFoundError:
        return load()                      # load_yaml's ConfigError names the missing file
    if key not in _loaded:
        _loaded[key] = load()
    return copy.deepcopy(_loaded[key])


def _unknown(kind: str, name: str, valid) -> ConfigError:
    return ConfigError(f"unknown {kind} '{name}'; valid: {', '.join(sorted(valid))}")


# Global config -----------------------------------------------------------------------------

def load_config(overrides: dict | None = None) -> dict:
    """config/config.yaml with `overrides` (e.g. snakemake --config) applied, validated."""
    config = load_yaml(CONFIG_DIR / "config.yaml")
    config.update({k: v for k, v in (overrides or {}).items() if v is not None})
    validate(config, "config", "config")
    if config["precision"] == "bf16" and config["device"] == "cpu":      # refused now, not in every job
        from methods.nets.precision import resolve
        resolve("bf16", "cpu")
    return config


def precision_setting(config: dict, suite: str) -> str:
    """The precision setting of a suite's runs: the config's, or with `precision: suite` the
    suite file's (fp32 where it names none)."""
    if config["precision"] != "suite":
        return config["precision"]
    return load_suite(suite).get("precision", "fp32")


# Methods and variants ----------------------------------------------------------------------

def load_methods() -> dict:
    path = CONFIG_DIR / "methods.yaml"
    return _load_checked(lambda: check_methods(load_yaml(path)), path)


def check_methods(spec: dict) -> dict:
    """Validate config/methods.yaml: the schema, registered names, and every variant."""
    validate(spec, "methods", "config/methods.yaml")
    for name, block in spec["methods"].items():
        if name not in methods.METHODS:
            raise ConfigError(f"config/methods.yaml: block for unregistered method '{name}'; "
                              f"registered: {', '.join(sorted(methods.METHODS))}")
        for variant in block["variants"]:
            method_config(name, variant, spec)
    return spec


def method_config(method: str, variant: str, spec: dict | None = None) -> dict:
    """The full config of one method variant: common, then defaults, then the variant."""
    spec = spec or load_methods()
    if method not in spec["methods"]:
        raise _unknown("method", method, spec["methods"])
    block = spec["methods"][method]
    if variant not in block["variants"]:
        raise _unknown(f"variant of {method}", variant, block["variants"])
    defaults = {**spec["common"], **block["defaults"]}
    overrides = block["variants"][variant]
    for key, value in overrides.items():
        if key not in defaults:
            raise ConfigError(f"config/methods.yaml: {method}.variants.{variant}: unknown key '{key}'; "
                              f"valid keys: {', '.join(defaults)}")
        if not _same_type(defaults[key], value):
            raise ConfigError(f"config/methods.yaml: {method}.variants.{variant}.{key} = {value!r} is a "
                              f"{type(value).__name__}, but the default {defaults[key]!r} is a "
                              f"{type(defaults[key]).__name__}")
    return copy.deepcopy({**defaults, **overrides})


def _same_type(default, value) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, (int, float)) and isinstance(value, (int, float)):
        return isinstance(default, float) or isinstance(value, int)
    return type(default) is type(value)


def config_hash(config: dict) -> str:
    from common.files import sha256_json
    return sha256_json(config)[:12]


# Suites ------------------------------------------------------------------------------------

@dataclass(frozen=True, order=True)
class RunId:
    suite: str
    dataset: str
    method: str
    variant: str
    seed_index: int

    @property
    def seed(self) -> int:
        return derive_seed(self.dataset, self.method, self.variant, self.seed_index)

    def path(self, results_dir: str | Path) -> Path:
        return Path(results_dir) / self.suite / self.dataset / self.method / self.variant / f"seed{self.seed_index}"

    def label(self) -> str:
        return f"{self.suite}/{self.dataset}/{self.method}/{self.variant}/seed{self.seed_index}"


def derive_seed(dataset: str, method: str, variant: str, seed_index: int) -> int:
    """A stable 31-bit seed from the run's identity (same on every machine and process)."""
    identity = f"{dataset}/{method}/{variant}/{seed_index}".encode()
    return int.from_bytes(hashlib.sha256(identity).digest()[:4], "big") & 0x7FFFFFFF


def suite_names() -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / "suites").glob("*.yaml"))


def registered_names():
    """Every name a claim may use (evaluation/claims.py's lint): methods and their variants,
    datasets, metrics, suites."""
    from evaluation.claims import Names
    variants = {name: set(block["variants"]) for name, block in load_methods()["methods"].items()}
    return Names(variants, set(datasets.DATASETS) | set(datasets.PAPER_DATASETS), set(evaluation.METRICS),
                 set(suite_names()))


def load_suite(name: str) -> dict:
    if name not in suite_names():
        raise _unknown("suite", name, suite_names())
    path = CONFIG_DIR / "suites" / f"{name}.yaml"
    # A suite is checked against methods.yaml too: an edit there checks it again.
    return _load_checked(lambda: check_suite(load_yaml(path), str(path.relative_to(REPO))),
                         path, CONFIG_DIR / "methods.yaml")


def check_dataset(name: str) -> None:
    known = set(datasets.DATASETS) | set(datasets.PAPER_DATASETS)
    if name not in known:
        raise _unknown("dataset", name, known)


def check_suite(suite: dict, where: str, methods_spec: dict | None = None) -> dict:
    """Validate a suite against the schema and every name in it against the registries."""
    validate(suite, "suite", where)
    spec = methods_spec or load_methods()
    for group in suite["runs"]:
        for dataset in group["datasets"]:
            check_dataset(dataset)
        for method, variants in group["methods"].items():
            for variant in variants:
                method_config(method, variant, spec)
    for metric in suite.get("metrics", []):
        if metric not in evaluation.METRICS:
            raise _unknown("metric", metric, evaluation.METRICS)
    _check_learns(suite, where)
    if suite.get("metric_params"):
        from evaluation import disentanglement
        for group, params in suite["metric_params"].items():
            try:
                disentanglement.spec(f"{group}_disentanglement" if group == "dci" else group, **params)
            except ValueError as error:
                raise ConfigError(f"{where}: metric_params.{group}: {error}") from None
    return suite


def _check_learns(suite: dict, where: str) -> None:
    """Each learning check names run groups of the suite and a registered metric (that its evidence
    is a committed file is tests/test_curves.py's lint: it is drawn after the suite is set up)."""
    groups = {(dataset, f"{method}/{variant}") for group in suite["runs"] for dataset in group["datasets"]
              for method, variants in group["methods"].items() for variant in variants}
    for i, check in enumerate(suite.get("learns", [])):
        at = f"{where}: learns.{i}"
        if check["metric"] not in evaluation.METRICS:
            raise ConfigError(f"{at}: " + str(_unknown("metric", check["metric"], evaluation.METRICS)))
        for run in [check["run"]] + ([check["above"]] if isinstance(check["above"], str) else []):
            if (check["dataset"], run) not in groups:
                raise ConfigError(f"{at}: {run} on {check['dataset']} is not a run group of the suite; "
                                  "add it to `runs` or name one that is")


def expand(suite_name: str, min_seeds: int = 0) -> list[RunId]:
    """Every run of a suite: dataset × method × variant × seed, in a stable order; with
    `min_seeds`, every group runs at least that many seeds (the golden runs: bench/golden.py)."""
    suite = load_suite(suite_name)
    runs = {RunId(suite_name, dataset, method, variant, seed)
            for group in suite["runs"]
            for dataset in group["datasets"]
            for method, variants in group["methods"].items()
            for variant in variants
            for seed in range(max(group.get("seeds", suite["seeds"]), min_seeds))}
    return sorted(runs)


def find_run(suite_name: str, dataset: str, method: str, variant: str, seed_index: int, min_seeds: int = 0) -> RunId:
    """The run with this identity, after checking each name on its own (for a precise error)."""
    method_config(method, variant)
    check_dataset(dataset)
    run = RunId(suite_name, dataset, method, variant, seed_index)
    if run not in expand(suite_name, min_seeds):
        raise ConfigError(f"{run.label()} is not a run of suite '{suite_name}'; "
                          f"see `python -m bench runs --suite {suite_name}`")
    return run
