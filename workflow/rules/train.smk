rule train:
    """Train one run. run.json is not declared as an output on purpose: a failed run keeps
    its run.json (status failed, with the error) instead of Snakemake deleting it."""
    input:
        f"{DATA}/{{dataset}}/manifest.json",
    output:
        f"{RUN_DIR}/outputs.npz",
    log:
        f"{RUN_DIR}/train.log",
    shell:
        "{BENCH} run --suite {wildcards.suite:q} --dataset {wildcards.dataset:q} --method {wildcards.method:q}"
        " --variant {wildcards.variant:q} --seed {wildcards.seed:q} --force {DIRS} 2> {log:q}"
