from methods import CPU_ONLY


def gpus(wildcards):
    """One GPU for a network of the paper suite (the SLURM profile asks for it with --gpus=1;
    locally, `--resources gpu=1` runs one such job at a time). The methods without a network
    (methods.CPU_ONLY) and the offline suites are CPU jobs."""
    return int(wildcards.suite == "paper" and wildcards.method not in CPU_ONLY)


rule train:
    """Train one run. Its output is run.json, the run's record: a run whose training fails
    (diverges, crashes in the method) is recorded as failed and the pipeline goes on, so the
    leaderboard shows it as failed. A killed job leaves its checkpoint for the next attempt."""
    input:
        f"{DATA}/{{dataset}}/manifest.json",
    output:
        f"{RUN_DIR}/run.json",
    log:
        f"{RUN_DIR}/train.log",
    params:
        config_hash=method_config_hash,
        precision=lambda wildcards: bench_config.precision_setting(CONFIG, wildcards.suite),   # a change retrains
    threads: 1
    resources:
        gpu=gpus,
    shell:
        "OMP_NUM_THREADS={threads} {BENCH} run --suite {wildcards.suite:q} --dataset {wildcards.dataset:q} --method {wildcards.method:q}"
        " --variant {wildcards.variant:q} --seed {wildcards.seed:q} --force --record-failure {DIRS} 2> {log:q}"
