"""dvc.yaml is generated from the suite config: it must be current, DVC must accept it, its
stages must depend on the code they run (a run's method's, not the others'), and DVC must run
the smoke suite, push and pull its results, and see a hyperparameter change in its metrics."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.config import REPO, expand, load_config
from bench.dvc import render

pytestmark = pytest.mark.xdist_group("dvc-smoke-run")       # one worker reproduces the suite for the module

BIN = Path(sys.executable).parent        # python and dvc of this environment


def test_committed_dvc_yaml_is_generated_from_the_current_config():
    committed = (REPO / "dvc.yaml").read_text()
    assert committed == render(load_config()), "dvc.yaml is stale: run `python -m bench dvc`"


def test_dvc_lists_a_train_and_evaluate_stage_per_run():
    result = subprocess.run([str(BIN / "dvc"), "stage", "list", "--name-only"], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "DVC_NO_ANALYTICS": "1"}, check=True, timeout=120)
    stages = set(result.stdout.split())
    runs = expand(load_config()["suite"])
    for run in runs:
        key = f"{run.method}@{run.dataset}-{run.variant}-seed{run.seed_index}"
        assert {f"train-{key}", f"evaluate-{key}"} <= stages
    assert {f"prepare@{d}" for d in {r.dataset for r in runs}} | {"aggregate", "report"} <= stages


@pytest.fixture(scope="module")
def stage_deps() -> dict[str, list[str]]:
    """The committed dvc.yaml as DVC reads it: each stage's command and what it depends on."""
    import dvc.repo
    with dvc.repo.Repo(str(REPO)) as repo:
        return {stage.cmd: [dep.def_path for dep in stage.deps] for stage in repo.index.stages}


def deps_of(stage_deps: dict[str, list[str]], command: str, method: str) -> list[list[str]]:
    """The deps of every `bench <command>` stage of a method's runs."""
    found = [deps for cmd, deps in stage_deps.items() if f" -m bench {command} " in cmd and f" --method {method} " in cmd]
    assert found, f"the test reads {method}'s `bench {command}` stages: the suite of dvc.yaml must have {method} runs"
    return found


def covers(deps: list[str], path: str) -> bool:
    """Whether a change to `path` makes DVC run the stage again (a dep may be a directory)."""
    return any(Path(path).is_relative_to(dep) for dep in deps)


def test_a_train_stage_depends_on_its_methods_code_and_not_on_other_methods(stage_deps):
    for deps in deps_of(stage_deps, "run", "gmvae"):
        for path in ("methods/gmvae.py", "methods/base.py", "methods/nets/precision.py",     # base.py imports it
                     "bench/runner.py", "datasets/base.py", "common/files.py"):
            assert covers(deps, path), path
        # methods/__init__.py is the registry: a new method must not retrain the others
        for path in ("methods/nmm.py", "methods/nets/diffusion.py", "methods/__init__.py", "evaluation/metrics.py"):
            assert not covers(deps, path), path
    for deps in deps_of(stage_deps, "run", "clusterddpm"):
        assert covers(deps, "methods/nets/diffusion.py") and covers(deps, "methods/nets/context_unet.py")
        assert not covers(deps, "methods/nets/attention_unet.py") and not covers(deps, "methods/gmvae.py")
    for deps in deps_of(stage_deps, "run", "encdiff"):
        assert covers(deps, "methods/vae.py")        # imported by its VQ autoencoder, not by encdiff.py


def test_an_evaluate_stage_depends_on_the_metrics_code_and_not_on_methods_or_published_numbers(stage_deps):
    for deps in deps_of(stage_deps, "evaluate", "gmvae"):
        for path in ("evaluation/metrics.py", "evaluation/clustering.py", "evaluation/generation.py", "bench/runner.py"):
            assert covers(deps, path), path
        for path in ("methods/gmvae.py", "methods/base.py", "evaluation/published/gmvae.yaml", "evaluation/aggregate.py"):
            assert not covers(deps, path), path


# The smoke suite under DVC, in a git repository of its own ---------------------------------

class Repo:
    def __init__(self, path: Path):
        self.path = path
        self.env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
                    "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
                    "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid"}

    def __call__(self, *command: str) -> str:
        result = subprocess.run(command, cwd=self.path, env=self.env, capture_output=True, text=True, timeout=1200)
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{' '.join(command)}:\n{output[-4000:]}"
        return output

    def json(self, *command: str):
        return json.loads(self(*command, "--json"))

    def outs(self) -> list[Path]:
        """Every output recorded in dvc.lock."""
        lock = yaml.safe_load((self.path / "dvc.lock").read_text())
        return [self.path / out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])]

    def digests(self) -> dict[str, str]:
        files = [f for out in self.outs() for f in ([out] if out.is_file() else sorted(out.rglob("*")))]
        return {str(f.relative_to(self.path)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}


@pytest.fixture(scope="module")
def smoke_repo(tmp_path_factory) -> Repo:
    """A copy of this checkout (its tracked files, and new ones that git does not ignore) in a
    new git repository, with dvc.yaml for the smoke suite, reproduced and committed."""
    repo = Repo(tmp_path_factory.mktemp("dvc-smoke"))
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout
    for name in filter(None, listing.split("\0")):
        if (REPO / name).is_file():              # not a tracked file deleted in the working tree
            (repo.path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, repo.path / name)
    repo("git", "init", "-q")
    repo("python", "-m", "bench", "dvc", "--suite", "smoke")
    repo("git", "add", "-A")
    repo("git", "commit", "-qm", "the smoke suite")
    repo("dvc", "repro")
    repo("git", "add", "dvc.lock")
    repo("git", "commit", "-qm", "smoke results")
    return repo


def test_repro_runs_every_run_and_shows_its_metrics_and_plots(smoke_repo, tmp_path):
    runs = expand("smoke")
    for run in runs:
        assert json.loads((run.path(smoke_repo.path / "results") / "metrics.json").read_text())["status"] == "completed"
    assert "Data and pipelines are up to date" in smoke_repo("dvc", "status")

    shown = smoke_repo.json("dvc", "metrics", "show")
    means = shown[""]["data"]["results/smoke/summary.json"]["data"]      # "": the workspace
    assert {(r.dataset, r.method, r.variant) for r in runs} == {
        (dataset, method, variant) for dataset, by_method in means.items()
        for method, by_variant in by_method.items() for variant in by_variant}
    assert means == json.loads((smoke_repo.path / "results/smoke/summary.json").read_text())

    smoke_repo("dvc", "plots", "show", "-o", str(tmp_path))
    page = (tmp_path / "index.html").read_text()
    for dataset in {run.dataset for run in runs}:
        assert f"{dataset}.png" in page


def test_push_and_pull_restore_every_output(smoke_repo, tmp_path):
    smoke_repo("dvc", "remote", "add", "--local", "-d", "store", str(tmp_path / "remote"))
    smoke_repo("dvc", "push")
    before = smoke_repo.digests()
    assert any(name.endswith("outputs.npz") for name in before) and "results/smoke/summary.json" in before

    for out in smoke_repo.outs():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    shutil.rmtree(smoke_repo.path / ".dvc/cache")      # so that pull must fetch from the remote
    assert not any(out.exists() for out in smoke_repo.outs())
    smoke_repo("dvc", "pull")
    assert smoke_repo.digests() == before
    assert "Data and pipelines are up to date" in smoke_repo("dvc", "status")


def test_a_changed_hyperparameter_reruns_its_runs_and_shows_in_metrics_diff(smoke_repo):
    kmeans = {f"{r.dataset}-{r.variant}-seed{r.seed_index}" for r in expand("smoke") if r.method == "kmeans"}
    assert kmeans, "the test changes a k-means hyperparameter: k-means must be in the smoke suite"
    # One Lloyd step instead of convergence; an edit of that one line, as a person would make it.
    methods_yaml = smoke_repo.path / "config/methods.yaml"
    text = methods_yaml.read_text()
    start = text.index("max_iter:", text.index("\n  kmeans:\n"))
    edited = text[:start] + "max_iter: 1" + text[text.index("\n", start):]
    old, new = (yaml.safe_load(t)["methods"]["kmeans"]["defaults"]["max_iter"] for t in (text, edited))
    assert new == 1 != old
    methods_yaml.write_text(edited)

    assert smoke_repo.json("dvc", "params", "diff") == {
        "config/methods.yaml": {"methods.kmeans.defaults.max_iter": {"old": old, "new": 1, "diff": 1 - old}}}
    output = smoke_repo("dvc", "repro")
    rerun = {line.split("'")[1] for line in output.splitlines()
             if line.startswith(("Running stage 'train-", "Running stage 'evaluate-"))}
    assert rerun == {f"{step}-kmeans@{key}" for step in ("train", "evaluate") for key in kmeans}

    changed = smoke_repo.json("dvc", "metrics", "diff")["results/smoke/summary.json"]
    assert changed and all(".kmeans." in key for key in changed), changed
    assert any(entry["diff"] != 0 for entry in changed.values())
