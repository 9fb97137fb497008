DATASETS = sorted({run.dataset for run in RUNS})


rule report:
    """Leaderboards (Markdown, CSV, LaTeX, HTML), one figure per dataset and summary.json (what
    the pipeline prints at its end); also the items of `snakemake --report report.html`."""
    input:
        f"{RESULTS}/{{suite}}/summary.csv",
    output:
        report(f"{REPORTS}/{{suite}}/leaderboard.html", caption="../report/leaderboard.rst", category="Leaderboards"),
        report(f"{REPORTS}/{{suite}}/leaderboard.md", caption="../report/leaderboard.rst", category="Leaderboards"),
        report(f"{REPORTS}/{{suite}}/leaderboard.csv", caption="../report/leaderboard.rst", category="Leaderboards"),
        f"{REPORTS}/{{suite}}/leaderboard.tex",
        f"{REPORTS}/{{suite}}/summary.json",
        [report(f"{REPORTS}/{{suite}}/figures/{dataset}.png", caption="../report/figure.rst", category="Figures",
                subcategory=dataset) for dataset in DATASETS],
    shell:
        "{BENCH} report --suite {wildcards.suite:q} {DIRS}"
