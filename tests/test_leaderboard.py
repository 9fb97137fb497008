"""Rendering on committed small run outputs: the tables must match committed expectations byte
for byte, the HTML page must be a valid standalone document with every row, and the figures
must be readable (wrapping small multiples, training curves of the runs). How the page looks
in a real browser: tests/test_report_browser.py.

After an intended change of the rendering, regenerate the expectations with
    python tests/test_leaderboard.py
and review the diff."""
import json
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

HERE = Path(__file__).resolve().parent / "data" / "leaderboard"
sys.path.insert(0, str(HERE.parent.parent.parent))

from evaluation import published  # noqa: E402
from evaluation.claims import learning_checks  # noqa: E402
from reports.figures import (COLUMNS, PANEL_PX, curve_columns, dataset_figure, epochs, run_colours,  # noqa: E402
                             training_curves)
from reports.leaderboard import render  # noqa: E402
from reports.tables import UNDER_TRAINED, caveats, claim_verdicts, provenance, sections  # noqa: E402

PNG_SIZE = slice(16, 24)                          # width and height in a PNG's header


def rendered(out_dir: Path, run_dirs=None) -> list[Path]:
    return render(pd.read_csv(HERE / "summary.csv"), out_dir, "demo", "Committed demo runs.", HERE / "published",
                  run_dirs=run_dirs, claims_dir=HERE / "claims")


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[PNG_SIZE]
    return int.from_bytes(header[:4], "big"), int.from_bytes(header[4:], "big")


DEMO_LOG = """seconds,stage,epoch,loss,recon,largest_cluster,converged
1.5,pretrain,1,9.0,8.0,,True
2.5,pretrain,2,8.0,7.0,,True
3.5,em,1,7.5,6.5,0.2,False
4.5,em,2,7.0,6.0,0.3,True
"""


def record(commit: str, cpu: str, precision: str, dirty: bool = False) -> dict:
    """The fields of a run.json (bench/runner.py) that the provenance line reads."""
    return {"git": {"commit": commit, "dirty": dirty}, "machine": {"cpu_model": cpu}, "precision": precision}


def demo_runs(root: Path) -> dict:
    """Run directories of the demo's gmvae: two seeds' run.json (what the page's provenance line
    reads) and train_log.csv (staged, with a health signal, empty cells and a boolean), and one
    sample grid."""
    from evaluation.generation import sample_grid
    run_dirs = {}
    for seed in (0, 1):
        run_dir = root / f"seed{seed}"
        run_dir.mkdir(parents=True)
        (run_dir / "train_log.csv").write_text(DEMO_LOG)
        (run_dir / "run.json").write_text(json.dumps(record("41162ea850b5", "Demo CPU", "bf16")))
        run_dirs["mnist", "gmvae", "paper-v1-k10-m1", seed] = run_dir
    sample_grid(np.zeros((4, 1, 8, 8), dtype=np.uint8), root / "seed0" / "samples.png")
    return run_dirs


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    out = tmp_path_factory.mktemp("leaderboard")
    rendered(out, demo_runs(tmp_path_factory.mktemp("runs")))
    return out


@pytest.mark.parametrize("name", ["leaderboard.md", "leaderboard.tex", "leaderboard.csv"])
def test_tables_match_committed_expectations(outputs, name):
    assert (outputs / name).read_text() == (HERE / f"expected.{name.split('.')[1]}").read_text()


class Checker(HTMLParser):
    VOID = {"meta", "br", "img", "link"}

    def __init__(self):
        super().__init__()
        self.stack, self.rows, self.errors = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)
        if tag == "tr":
            self.rows.append("")

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unbalanced </{tag}>")

    def handle_data(self, data):
        if self.rows and "tr" in self.stack:
            self.rows[-1] += data + "|"


def test_html_page_is_standalone_valid_and_complete(outputs):
    text = (outputs / "leaderboard.html").read_text()
    assert text.startswith("<!DOCTYPE html>")
    checker = Checker()
    checker.feed(text)
    assert checker.errors == [] and checker.stack == []
    assert "http" not in text.replace("http-equiv", "")          # nothing fetched from elsewhere
    assert 'src="data:image/png;base64,' in text
    body_rows = [r for r in checker.rows if not r.startswith("method|") and not r.startswith("run|")]
    summary = pd.read_csv(HERE / "summary.csv")
    ran = summary[summary["status"] == "completed"].drop_duplicates(["method", "variant"])
    for run in ran.itertuples():
        assert any(r.startswith(f"{run.method}|{run.variant}|") for r in body_rows)
    assert sum("|published, " in r for r in body_rows) == 3
    assert any("NOT-COMPARABLE" in r for r in body_rows)


def test_claims_come_first_each_with_its_sides_and_verdict_the_not_run_in_one_line(outputs):
    markdown = (outputs / "leaderboard.md").read_text()
    claims = markdown[markdown.index("## Claims"):markdown.index("## mnist")]
    assert "| gmvae/paper-v1-k10-m1 0.743 ± 0.080 (3) | kmeans/pca50 0.550 ± 0.010 (3) | +0.193 |" in claims
    assert "| the stated value 0.500 | +0.300 | [+0.052, +0.548] | HOLDS |" in claims
    assert "Not run in the demo suite (2): demo-elsewhere, demo-gmm-beats-kmeans." in claims


def test_page_opens_with_title_provenance_summary_then_claims_their_statistics_one_click_away(outputs):
    page = (outputs / "leaderboard.html").read_text()
    order = ["<h1>", 'class="provenance"', 'id="summary"', 'id="claims"', "<h2>The demo suite</h2>", 'class="toc"']
    assert [page.index(mark) for mark in order] == sorted(page.index(mark) for mark in order)
    claims = page[page.index('id="claims"'):page.index("<h2>The demo suite</h2>")]
    listed, statistics = claims.split("<details>")
    # the compact list: each claim with its verdict and the two sides' means, the not run in one line
    assert "The GMVAE clusters better than k-means." in listed
    assert '<td class="text">gmvae/paper-v1-k10-m1 0.743</td>' in listed
    assert '<span class="badge verdict-HOLDS">HOLDS</span>' in listed and "verdict-UNDECIDED" in listed
    assert ">demo-elsewhere</span>, <span data-claim=\"demo-gmm-beats-kmeans\">" in listed
    assert "[+0.052, +0.548]" not in listed
    # the statistics: intervals, seeds, sources
    assert "[+0.052, +0.548]" in statistics and "0.743 ± 0.080 (3)" in statistics
    assert "(demo-gmvae-beats-kmeans; arXiv 0000.00000v1, Table 1)" in statistics


def test_best_is_marked_only_where_two_or_more_runs_compete():
    entries, _ = published.load(HERE / "published")
    [section] = sections(pd.read_csv(HERE / "summary.csv"), entries)
    best = {(row.method, metric) for row in section.rows for metric, cell in row.cells.items() if cell.best}
    # kmeans has no acc_aae (n/a): gmvae's is alone in its column, not "the best"
    assert best == {("gmvae", "acc_hungarian"), ("gmvae", "nmi_arithmetic")}


def test_html_page_has_a_summary_directions_specs_on_hover_and_the_runs(outputs):
    text = (outputs / "leaderboard.html").read_text()
    summary = text.split('id="summary"')[1].split("</table>")[0]
    assert "gmvae / paper-v1-k10-m1" in summary and "badge verdict-REPRODUCED" in summary
    assert '<span class="badge failed">1 failed</span>' in summary
    assert '<th title="acc[hungarian,split=test]">acc_hungarian ↑</th>' in text
    assert "<details><summary>Protocols (specs) and sources</summary>" in text
    assert 'class="scroll"><table>' in text                       # a wide table scrolls in its own box
    assert "mnist / gmvae: train_log.csv of every run" in text     # the training curves
    assert "paper-v1-k10-m1, seed 0: samples" in text               # the run's sample grid
    assert (outputs / "figures" / "training" / "mnist-gmvae.png").exists()


def test_dataset_figure_wraps_its_panels_each_wide_enough(tmp_path):
    metrics = ["acc_hungarian", "acc_aae", "nmi_arithmetic", "nmi_geometric", "ari", "acc_hungarian_at_mean",
               "nmi_arithmetic_at_mean"]
    summary = pd.DataFrame([{"suite": "demo", "dataset": "d", "method": method, "variant": "v", "seed": seed,
                             "metric": metric, "spec": f"{metric}[x]", "value": 0.1 * (i + seed),
                             "unavailable": None, "status": "completed"}
                            for i, method in enumerate(["a", "b", "c"]) for seed in (0, 1) for metric in metrics])
    colours = run_colours(summary["method"] + " / " + summary["variant"])
    dataset_figure(summary, "d", sections(summary, []), colours, tmp_path / "d.png")
    width, height = png_size(tmp_path / "d.png")
    assert PANEL_PX * COLUMNS <= width <= 1600                    # four panels a row, not seven in a strip
    assert height > width / 4                                      # a second row


def test_training_curves_draw_health_signals_first_and_skip_bookkeeping():
    log = pd.DataFrame({"seconds": [1.0, 2.0], "epoch": [1, 2], "recon": [2.0, 1.5], "loss": [3.0, 2.5],
                        "largest_cluster": [0.2, 0.3], "converged": [True, True], "stage": ["em", "em"],
                        "unused": [None, None]})
    assert curve_columns([log]) == ["loss", "largest_cluster", "recon"]


def test_training_curves_leave_out_a_column_that_never_changes():
    run = {"epoch": [1, 2, 3], "loss": [3.0, 2.0, 1.5], "lr": [0.001] * 3, "clusters_used": [10] * 3}
    other = {**run, "clusters_used": [10, 9, 9]}           # changes in one run: drawn
    assert curve_columns([pd.DataFrame(run)]) == ["loss"]
    assert curve_columns([pd.DataFrame(run), pd.DataFrame(other)]) == ["loss", "clusters_used"]


def test_training_curves_plot_a_column_that_holds_text_in_another_runs_log(tmp_path):
    """EncDiff's `components` is empty (read as numbers) without DyGA and a list of counts with it."""
    plain = pd.DataFrame({"epoch": [1, 2], "loss": [2.0, 1.0], "components": [float("nan")] * 2})
    dyga = pd.DataFrame({"epoch": [1, 2], "loss": [2.5, 1.5], "components": ["4;3", "3;3"]})
    assert curve_columns([plain, dyga]) == ["loss"]
    colours = run_colours(["encdiff / quick", "encdiff / quick+dyga"])
    assert training_curves({("quick", 0): plain, ("quick+dyga", 0): dyga}, "sprites", "encdiff", colours,
                           tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_training_curves_run_over_epochs_a_stage_that_counts_again_following_the_last():
    restarts = pd.DataFrame({"stage": ["spectralnet"] * 2 + ["vdae"] * 3, "epoch": [2, 4, 1, 2, 3]})
    continues = pd.DataFrame({"stage": ["pretrain", "em", "em"], "epoch": [1, 2, 3]})
    assert list(epochs(restarts)) == [2, 4, 5, 6, 7]                 # not the rows: a row every other epoch
    assert list(epochs(continues)) == [1, 2, 3]
    assert list(epochs(pd.DataFrame({"epoch": [5, 10]}))) == [5, 10]


def test_page_with_runs_draws_curves_against_epochs_and_says_so(outputs):
    text = (outputs / "leaderboard.html").read_text()
    assert "mnist / gmvae: train_log.csv of every run against the epoch" in text


# Provenance ----------------------------------------------------------------------------------

def test_provenance_names_the_commit_cpu_and_precision_most_runs_share_and_how_many_differ():
    records = ([record("41162ea850b5", "AMD EPYC", "bf16")] * 3 + [record("8c5f674e38e8", "AMD EPYC", "fp32")] * 2
               + [record("41162ea850b5", "Intel Xeon", "bf16", dirty=True)])
    assert provenance(records) == ("commit 41162ea (2 runs at 8c5f674, 1 run at 41162ea-dirty) · "
                                   "CPU AMD EPYC (1 run on Intel Xeon) · precision bf16 (2 runs in fp32)")
    assert provenance([record("41162ea850b5", "AMD EPYC", "fp32")] * 2, unrecorded=1) == (
        "commit 41162ea · CPU AMD EPYC · precision fp32 · 1 run without a run.json")
    assert provenance([{"git": {"commit": None}, "machine": {"cpu_model": None}}]) == (
        "commit unknown · CPU unknown · precision fp32")          # a record of before precision was kept: fp32


def test_page_says_under_its_title_where_its_runs_come_from(outputs):
    page = (outputs / "leaderboard.html").read_text()
    assert ('<h1>Leaderboard: demo suite</h1>\n'
            '<p class="provenance">commit 41162ea · CPU Demo CPU · precision bf16</p>') in page


# What is ranked, and the under-trained mark ----------------------------------------------------

RANKED_CLAIMS = """paper: paper
claims:
  - id: c-beats-a
    where: "Table 1"
    claim: "C clusters better than A."
    metric: acc_hungarian
    compare:
      demo: {dataset: digits, better: c/x, than: a/x}
"""


@pytest.fixture(scope="module")
def ranked(tmp_path_factory):
    """Four groups on one metric: a and b of three seeds, c of three seeds but under-trained
    (its learning check, above 0.95, does not hold), d of one seed: the best of d, c, b, a in
    that order, and only b ranked above a."""
    means = {"a": (0.50, 3), "b": (0.60, 3), "c": (0.90, 3), "d": (0.95, 1)}
    summary = pd.DataFrame([{"suite": "demo", "dataset": "digits", "method": method, "variant": "x", "seed": seed,
                             "metric": "acc_hungarian", "spec": "acc[hungarian,split=all]", "value": mean + 0.01 * seed,
                             "unavailable": None, "status": "completed"}
                            for method, (mean, seeds) in means.items() for seed in range(seeds)])
    root = tmp_path_factory.mktemp("ranked")
    (root / "claims").mkdir()
    (root / "claims" / "c.yaml").write_text(RANKED_CLAIMS)
    checks = learning_checks("demo", {"learns": [{"dataset": "digits", "run": "c/x", "metric": "acc_hungarian",
                                                  "above": 0.95, "evidence": "curve.png"}]})
    render(summary, root / "out", "demo", published_dir=HERE / "published", claims_dir=root / "claims", checks=checks)
    return summary, checks, root / "out"


def test_best_needs_two_seeds_and_no_under_trained_mark(ranked):
    summary, checks, out = ranked
    marked = caveats(claim_verdicts(summary, [], "demo", checks).learning)
    assert list(marked) == [("digits", "c", "x")]
    [section] = sections(summary, [], marked)
    assert {row.method for row in section.rows if row.cells["acc_hungarian"].best} == {"b"}
    [unmarked] = sections(summary[summary["method"].isin(["a", "c", "d"])], [], marked)
    assert not any(row.cells["acc_hungarian"].best for row in unmarked.rows)     # a alone is ranked: none bold
    assert "| b | x | 3 | **0.610 ± 0.010** |" in (out / "leaderboard.md").read_text()
    assert "runs of 2 or more seeds not marked" in (out / "leaderboard.html").read_text()     # the legend says so


def test_under_trained_mark_wherever_the_group_numbers_appear(ranked):
    _, _, out = ranked
    markdown = (out / "leaderboard.md").read_text()
    claims = markdown[markdown.index("## Claims"):markdown.index("## Learning")]
    assert f"| c/x 0.910 ± 0.010 (3) ({UNDER_TRAINED}) | a/x 0.510 ± 0.010 (3) |" in claims
    page = (out / "leaderboard.html").read_text()
    badge = f'<span class="badge" title="{UNDER_TRAINED}: acc_hungarian not shown above'
    listed = page[page.index('id="claims"'):page.index("<details>")]
    assert f"<td class=\"text\">c/x 0.910 {badge}" in listed and "<td class=\"text\">a/x 0.510</td>" in listed
    summary = page[page.index('id="summary"'):page.index('id="claims"')]
    assert "<strong>b / x</strong>" in summary                                  # the best of the ranked runs
    assert f"not ranked: c / x 0.910 ({badge}" in summary and "not ranked: d / x 0.950 (1 seed)" in summary
    assert f"{UNDER_TRAINED}</span>: <span title=\"{UNDER_TRAINED}: acc_hungarian" in summary     # and in its tally


def test_colours_are_one_per_run_label_whatever_the_order():
    labels = ["gmvae / quick", "kmeans / raw", "gmm / raw"]
    assert run_colours(labels) == run_colours(reversed(labels + labels))
    assert len(set(run_colours(labels).values())) == 3


if __name__ == "__main__":
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        for path in rendered(Path(tmp)):
            if path.suffix in {".md", ".tex", ".csv"}:
                (HERE / f"expected{path.suffix}").write_text(path.read_text())
                print(HERE / f"expected{path.suffix}")
