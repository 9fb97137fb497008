"""The command line of the suite; the Snakemake rules call it, and so can you.

    python -m bench runs --suite quick                      list the runs of a suite
    python -m bench data list                               datasets, prepared or not
    python -m bench data prepare digits                     prepare one dataset
    python -m bench data verify [digits ...]                hash every prepared file; exit 1 if one differs
    python -m bench run --suite quick --dataset digits --method kmeans --variant pca50 --seed 0
    python -m bench evaluate --suite quick --dataset digits --method kmeans --variant pca50 --seed 0
    python -m bench aggregate --suite quick                 results/quick/summary.csv
    python -m bench report --suite quick                    reports/quick/leaderboard.{md,csv,tex,html} + figures
    python -m bench check --suite quick                     reports/quick/verdicts.csv; exit 1 on a regression
    python -m bench golden --suite quick                    golden numbers from runs under several CPU kernel paths
    python -m bench curves --suite laptop                   learning curves of the claims that do not hold there
    python -m bench dvc                                     regenerate dvc.yaml from the suite config

Every command takes --data-dir/--results-dir/--reports-dir/--device/--min-seeds to override
config/config.yaml. Configuration errors exit with status 2 and a one-line message.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import config as cfg


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import datasets
    try:
        config = cfg.load_config({"suite": getattr(args, "suite", None), "data_dir": args.data_dir,
                                  "results_dir": args.results_dir, "reports_dir": args.reports_dir,
                                  "device": args.device, "precision": args.precision, "min_seeds": args.min_seeds})
        return args.command(config, args) or 0
    except (cfg.ConfigError, KeyError, FileNotFoundError, datasets.SourceError, datasets.IntegrityError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {message}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir")
    common.add_argument("--results-dir")
    common.add_argument("--reports-dir")
    common.add_argument("--device")
    common.add_argument("--precision", help="suite, fp32, bf16 or auto: what the networks compute in "
                                            "(default: config/config.yaml's)")
    common.add_argument("--min-seeds", type=int, help="every group of the suite runs at least this many seeds")
    commands = parser.add_subparsers(required=True, metavar="command")

    def command(name, function, help, run=False, suite=False):
        sub = commands.add_parser(name, parents=[common], help=help)
        sub.set_defaults(command=function)
        if suite or run:
            sub.add_argument("--suite", required=run, help="default: the suite of config/config.yaml")
        if run:
            for option in ("dataset", "method", "variant"):
                sub.add_argument(f"--{option}", required=True)
            sub.add_argument("--seed", type=int, required=True, help="seed index within the suite (0, 1, ...)")
        return sub

    command("runs", list_runs, "list the runs of a suite", suite=True)
    sub = command("run", run, "train one run", run=True)
    sub.add_argument("--force", action="store_true", help="retrain even when a completed run with this config exists")
    sub.add_argument("--record-failure", action="store_true",
                     help="when training fails, record it in run.json and exit 0, so that the pipeline goes on "
                          "and the leaderboard shows the run as failed")
    command("evaluate", evaluate, "score one trained run", run=True)
    command("aggregate", aggregate, "collect a suite's metrics into summary.csv", suite=True)
    command("report", report, "render a suite's leaderboards and figures", suite=True)
    command("check", check, "compare results with the golden file and the published numbers", suite=True)
    command("golden", write_golden, "run the suite under every kernel path of its `golden` block and write its "
            "golden numbers (bench/golden.py)", suite=True).add_argument(
        "--cores", default="all", help="Snakemake's --cores for the golden runs (default: all)")
    sub = command("curves", draw_curves, "learning curves of a suite's claims that do not hold in its golden numbers "
                  "(bench/curves.py)", suite=True)
    sub.add_argument("--claim", nargs="+", metavar="ID", help="these claims instead")
    sub.add_argument("--factors", nargs="+", type=float, metavar="X",
                     help="multiples of the suite's training budget (default: 0.5 1 2 4)")
    command("dvc", write_dvc, "write dvc.yaml for a suite (default: config/config.yaml's)", suite=True).add_argument(
        "--output", default=str(cfg.REPO / "dvc.yaml"), help="default: dvc.yaml at the repository root")

    data = commands.add_parser("data", help="list, prepare or verify datasets").add_subparsers(
        required=True, metavar="action")
    sub = data.add_parser("list", parents=[common], help="every dataset, prepared or not")
    sub.set_defaults(command=list_data)
    sub = data.add_parser("prepare", parents=[common], help="download (if needed) and prepare datasets")
    sub.add_argument("names", nargs="+", metavar="NAME")
    sub.add_argument("--force", action="store_true", help="prepare again even if prepared")
    sub.set_defaults(command=prepare_data)
    sub = data.add_parser("verify", parents=[common], help="hash every file of prepared datasets against their manifests")
    sub.add_argument("names", nargs="*", metavar="NAME", help="default: every prepared dataset")
    sub.set_defaults(command=verify_data)
    return parser


def _run_id(config, args) -> cfg.RunId:
    return cfg.find_run(config["suite"], args.dataset, args.method, args.variant, args.seed, config["min_seeds"])


def list_runs(config, args):
    for run_id in cfg.expand(config["suite"], config["min_seeds"]):
        print(run_id.label())


def run(config, args):
    from bench.runner import RunFailed, train
    try:
        print(train(config, _run_id(config, args), force=args.force))
    except RunFailed as failure:
        if not args.record_failure:
            raise
        print(f"FAILED: {failure}", file=sys.stderr)


def evaluate(config, args):
    from bench.runner import evaluate
    print(evaluate(config, _run_id(config, args)))


def aggregate(config, args):
    from common.files import write_text
    from evaluation.aggregate import collect
    path = Path(config["results_dir"]) / config["suite"] / "summary.csv"
    table = collect(cfg.expand(config["suite"], config["min_seeds"]), config["results_dir"])
    write_text(path, table.to_csv(index=False, float_format="%.6g"))
    print(path)
    # The means over seeds, as DVC's metrics (`dvc metrics show`, `dvc metrics diff`).
    from bench.dvc import suite_metrics
    from common.files import write_json
    write_json(path.with_suffix(".json"), suite_metrics(table))
    print(path.with_suffix(".json"))


def report(config, args):
    from reports.leaderboard import render
    suite = config["suite"]
    run_dirs = {(run.dataset, run.method, run.variant, run.seed_index): run.path(config["results_dir"])
                for run in cfg.expand(suite, config["min_seeds"])}
    out_dir = Path(config["reports_dir"]) / suite
    from evaluation.claims import learning_checks
    spec = cfg.load_suite(suite)
    for path in render(_summary(config), out_dir, suite, spec["description"], run_dirs=run_dirs,
                       checks=learning_checks(suite, spec)):
        print(path)


def _summary(config):
    import pandas as pd
    path = Path(config["results_dir"]) / config["suite"] / "summary.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; run `python -m bench aggregate --suite {config['suite']}` first")
    return pd.read_csv(path)


def check(config, args):
    from bench.checks import run_checks
    from bench.golden import compare_machines
    suite = config["suite"]
    machines = compare_machines(suite, cfg.expand(suite, config["min_seeds"]), Path(config["results_dir"]))
    verdicts_csv, regressions, unchecked = run_checks(_summary(config), suite, Path(config["reports_dir"]), machines)
    print(verdicts_csv)
    for line in unchecked:
        print(line, file=sys.stderr)
    if regressions:
        print(f"golden runs vs these: {machines}", file=sys.stderr)
    for line in regressions:
        print(f"REGRESSION: {line}", file=sys.stderr)
    return 1 if regressions else 0


def write_golden(config, args):
    from bench.golden import make
    print(make(config, config["suite"], cores=args.cores))


def draw_curves(config, args):
    from bench.curves import FACTORS, draw
    if args.factors and min(args.factors) <= 0:
        raise cfg.ConfigError(f"--factors must be positive, got {args.factors}")
    for path in draw(config, config["suite"], args.claim, tuple(args.factors or FACTORS)):
        print(path)


def write_dvc(config, args):
    from bench.dvc import render
    from common.files import write_text
    write_text(args.output, render(config))
    print(args.output)


def list_data(config, args):
    import json

    import datasets
    print(f"{'dataset':<14} {'kind':<7} {'status':<13} {'on disk':>9}  {'splits':<30} digest")
    for name in datasets.DATASETS:
        directory = Path(config["data_dir"]) / name
        if (directory / "manifest.json").exists():
            manifest = json.loads((directory / "manifest.json").read_text())
            splits = ", ".join(f"{s} {n:,}" for s, n in manifest["splits"].items())
            mib = sum(p.stat().st_size for p in directory.iterdir()) / 2**20
            print(f"{name:<14} {manifest['kind']:<7} {'prepared':<13} {mib:>5.1f} MiB  {splits:<30} {manifest['digest'][:12]}")
        else:
            print(f"{name:<14} {datasets.get(name).kind:<7} {'not prepared':<13}")


def prepare_data(config, args):
    import datasets
    for name in args.names:
        dataset = datasets.get(name)    # unknown names fail here, before anything is written
        print(dataset.prepare(config["data_dir"], force=args.force))


def verify_data(config, args):
    """Per dataset, OK or every difference from its manifest; exit status 1 if any differs."""
    import datasets
    prepared = [name for name in datasets.DATASETS if (Path(config["data_dir"]) / name / "manifest.json").exists()]
    names = args.names or prepared
    damaged = 0
    for name in names:
        try:
            _, problems = datasets.get(name).differences(config["data_dir"], full=True)
        except datasets.DatasetNotPrepared:
            problems = None
        status = "NOT PREPARED" if problems is None else "DIFFERS" if problems else "OK"
        print(f"{name}: {status}" + "".join(f"\n  - {problem}" for problem in problems or ()))
        damaged += status != "OK"
    if not names:
        print(f"no prepared datasets in {config['data_dir']}")
    if damaged:
        print(f"{damaged} of {len(names)} dataset(s) not prepared or not as prepared; prepare them with "
              f"`python -m bench data prepare NAME --force`", file=sys.stderr)
    return 1 if damaged else 0
