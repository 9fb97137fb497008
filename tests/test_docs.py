"""The repository stands alone: no file of the project cites the developers' folder outside it
(`shared/...`) or its design document (`DESIGN.md`), and every `docs/<path>.md` a file cites
exists in docs/.

The files are those git lists as the project's: tracked, plus untracked ones that .gitignore
does not exclude (so a new page or module is checked before it is committed). Binary files
are skipped; this file is left out, since it has to name what it looks for."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve().relative_to(REPO).as_posix()
FORBIDDEN = ("shared/", "DESIGN.md")
DOC_REFERENCE = re.compile(r"(?<![\w./-])docs/[\w./-]+?\.md(?![\w-])")


def project_files() -> list[str]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the project's files cannot be listed")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout
    return sorted({p for p in listed.decode().split("\0") if p and p != THIS and (REPO / p).is_file()})


def texts():
    for path in project_files():
        data = (REPO / path).read_bytes()
        if b"\0" in data:
            continue
        yield path, data.decode("utf-8", errors="replace")


def test_no_file_cites_the_folder_outside_the_repository():
    offenders = [f"{path}:{number}: {line.strip()}"
                 for path, text in texts()
                 for number, line in enumerate(text.splitlines(), 1)
                 if any(word in line for word in FORBIDDEN)]
    assert not offenders, "cite a page under docs/ instead:\n" + "\n".join(offenders)


def test_every_cited_docs_page_exists():
    cited = {(path, reference) for path, text in texts() for reference in DOC_REFERENCE.findall(text)}
    assert cited, "no file cites a docs/ page: the pattern or the listing is broken"
    missing = sorted(f"{path}: {reference}" for path, reference in cited if not (REPO / reference).is_file())
    assert not missing, "cited but not in docs/:\n" + "\n".join(missing)


def test_the_pattern_finds_references_and_ignores_other_paths():
    text = "see docs/methods/gmvae.md, (docs/metrics.md) and https://x.org/docs/a.md or mydocs/b.md"
    assert DOC_REFERENCE.findall(text) == ["docs/methods/gmvae.md", "docs/metrics.md"]
