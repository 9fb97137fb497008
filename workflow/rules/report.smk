rule report:
    """Leaderboards (Markdown, CSV) and the figure of a suite."""
    input:
        f"{RESULTS}/{{suite}}/summary.csv",
    output:
        f"{REPORTS}/{{suite}}/leaderboard.md",
        f"{REPORTS}/{{suite}}/leaderboard.csv",
        f"{REPORTS}/{{suite}}/figures/scores.png",
    shell:
        "{BENCH} report --suite {wildcards.suite:q} {DIRS}"
