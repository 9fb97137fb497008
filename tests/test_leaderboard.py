"""Rendering on committed small run outputs: the tables must match committed expectations byte
for byte, the HTML page must be a valid standalone document with every row, and the figures
must be readable (wrapping small multiples, training curves of the runs). How the page looks
in a real browser: tests/test_report_browser.py.

After an intended change of the rendering, regenerate the expectations with
    python tests/test_leaderboard.py
and review the diff."""
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

HERE = Path(__file__).resolve().parent / "data" / "leaderboard"
sys.path.insert(0, str(HERE.parent.parent.parent))

from evaluation import published  # noqa: E402
from reports.figures import COLUMNS, PANEL_PX, curve_columns, dataset_figure, run_colours  # noqa: E402
from reports.leaderboard import render  # noqa: E402
from reports.tables import sections  # noqa: E402

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


def demo_runs(root: Path) -> dict:
    """Run directories of the demo's gmvae: two seeds' train_log.csv (staged, with a health
    signal, empty cells and a boolean), and one sample grid."""
    from evaluation.generation import sample_grid
    run_dirs = {}
    for seed in (0, 1):
        run_dir = root / f"seed{seed}"
        run_dir.mkdir(parents=True)
        (run_dir / "train_log.csv").write_text(DEMO_LOG)
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
    page = (outputs / "leaderboard.html").read_text()
    top = page[page.index('id="claims"'):page.index('id="summary"')]
    assert '<span class="badge verdict-HOLDS">HOLDS</span>' in top and "verdict-UNDECIDED" in top
    assert "(demo-gmvae-beats-kmeans; arXiv 0000.00000v1, Table 1)" in top and "demo-elsewhere" in top


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
    log = pd.DataFrame({"seconds": [1.0], "epoch": [1], "recon": [2.0], "loss": [3.0], "largest_cluster": [0.2],
                        "converged": [True], "stage": ["em"], "unused": [None]})
    assert curve_columns([log]) == ["loss", "largest_cluster", "recon"]


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
