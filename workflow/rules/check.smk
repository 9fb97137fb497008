rule check:
    """`snakemake check`: the suite's results against evaluation/golden/<suite>.csv and the
    published numbers; writes reports/<suite>/verdicts.csv and fails on a regression. It has
    no declared output so that it runs whenever asked and a failure keeps verdicts.csv."""
    input:
        f"{RESULTS}/{SUITE}/summary.csv",
    shell:
        "{BENCH} check --suite {SUITE:q} {DIRS}"
