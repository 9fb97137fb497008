rule prepare:
    """Download (paper datasets), verify and prepare one dataset into arrays + manifest."""
    output:
        f"{DATA}/{{dataset}}/manifest.json",
    log:
        f"{DATA}/logs/prepare-{{dataset}}.log",
    shell:
        "{BENCH} data prepare {wildcards.dataset:q} {DIRS} 2> {log:q}"
