"""Rendering on committed small run outputs: the tables must match committed expectations byte
for byte, and the HTML page must be a valid standalone document with every row.

After an intended change of the rendering, regenerate the expectations with
    python tests/test_leaderboard.py
and review the diff."""
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

HERE = Path(__file__).resolve().parent / "data" / "leaderboard"
sys.path.insert(0, str(HERE.parent.parent.parent))

from reports.leaderboard import render  # noqa: E402


def rendered(out_dir: Path) -> list[Path]:
    return render(pd.read_csv(HERE / "summary.csv"), out_dir, "demo", "Committed demo runs.", HERE / "published")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    out = tmp_path_factory.mktemp("leaderboard")
    rendered(out)
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


if __name__ == "__main__":
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        for path in rendered(Path(tmp)):
            if path.suffix in {".md", ".tex", ".csv"}:
                (HERE / f"expected{path.suffix}").write_text(path.read_text())
                print(HERE / f"expected{path.suffix}")
