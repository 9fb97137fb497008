rule evaluate:
    """Score one trained run (a failed one is recorded as failed): metric code can change and
    re-run without retraining."""
    input:
        f"{RUN_DIR}/run.json",
    output:
        f"{RUN_DIR}/metrics.json",
    threads: 1
    resources:
        gpu=gpus,           # FID/KID's Inception network runs on it
    shell:
        "OMP_NUM_THREADS={threads} {BENCH} evaluate --suite {wildcards.suite:q} --dataset {wildcards.dataset:q} --method {wildcards.method:q}"
        " --variant {wildcards.variant:q} --seed {wildcards.seed:q} {DIRS}"


rule aggregate:
    """One row per run and metric for the whole suite (summary.csv), and the means over seeds
    (summary.json: DVC's metrics file)."""
    input:
        lambda wildcards: [f"{run.path(RESULTS)}/metrics.json" for run in RUNS if run.suite == wildcards.suite],
    output:
        f"{RESULTS}/{{suite}}/summary.csv",
        f"{RESULTS}/{{suite}}/summary.json",
    shell:
        "{BENCH} aggregate --suite {wildcards.suite:q} {DIRS}"
