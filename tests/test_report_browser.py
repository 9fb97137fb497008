"""The smoke suite's HTML leaderboard opened in a real headless browser (Chromium, driven over
the DevTools protocol by tests/browser.py): it loads without a console error, every image it
references loads, and at a 1400 px viewport the page is no wider than the viewport (wide
tables scroll inside their own box). Skipped, with the reason, where Chromium cannot be had
(.ci/run installs Debian's `chromium` as root)."""
import pytest

from browser import chromium, open_page

pytestmark = pytest.mark.xdist_group("local-smoke-run")     # with tests/test_pipeline.py, which shares the run

VIEWPORT = 1400


@pytest.fixture(scope="module")
def smoke_page(local_smoke_run):
    if chromium() is None:
        pytest.skip("no chromium on PATH: install Debian's `chromium` (.ci/run does, as root)")
    pytest.importorskip("aiohttp", reason="aiohttp (a dependency of dvc) speaks the DevTools protocol")
    return open_page(local_smoke_run.path / "reports" / "smoke" / "leaderboard.html", width=VIEWPORT)


def test_page_loads_without_console_errors(smoke_page):
    assert smoke_page.errors == []


def test_every_image_loads(smoke_page):
    assert smoke_page.images, "the page shows no image at all"
    assert [image["alt"] for image in smoke_page.images if not image["loaded"]] == []


def test_page_is_no_wider_than_a_1400_px_viewport(smoke_page):
    assert smoke_page.viewport_width == VIEWPORT
    assert smoke_page.document_width <= VIEWPORT
