"""README.md's methods table is the registry's, and no link in README.md or docs/ is broken.

The table (`| method | module | tracks | variants |`) has one row per method of
`methods.METHODS`. Its method cell is the name in backticks; its module cell the file of the
registry's class; its tracks cell the class's `tracks`, comma-separated; its variants cell
every variant of the method's block in config/methods.yaml, each written out in backticks
(text outside backticks is a note). A brace expansion (`quick{,+sd}`) is not a variant name,
so it is refused.

A relative link in README.md or a page under docs/ must point to a file of the repository,
and a `#fragment` to a heading of that file. Every docs page is linked from README.md and from
docs/index.md. Tracks are read from the modules' source, so this test imports no torch."""
import ast
import re
import sys
from pathlib import Path

import yaml

from methods import METHODS

REPO = Path(__file__).resolve().parents[1]
HEADER = ["method", "module", "tracks", "variants"]
TICKED = re.compile(r"`([^`]*)`")
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^()\s<>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.M)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def methods_table(text: str) -> list[list[str]]:
    """The rows of the README's methods table, each as its four cells."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("|") and cells(line) == HEADER]
    assert len(starts) == 1, f"README.md needs exactly one table headed | {' | '.join(HEADER)} |"
    rows = []
    for line in lines[starts[0] + 2:]:
        if not line.startswith("|"):
            break
        rows.append(cells(line))
    return rows


def registry_tracks(name: str) -> tuple[str, set[str]]:
    """The file of a registered method's class and its `tracks`, read from the source."""
    module, cls = METHODS[name].split(":")
    path = module.replace(".", "/") + ".py"
    tree = ast.parse((REPO / path).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for statement in node.body:
                targets = (statement.targets if isinstance(statement, ast.Assign)
                           else [statement.target] if isinstance(statement, ast.AnnAssign) else [])
                if any(isinstance(t, ast.Name) and t.id == "tracks" for t in targets):
                    return path, set(ast.literal_eval(statement.value))
    raise AssertionError(f"{path}: class {cls} sets no `tracks`")


def config_variants() -> dict[str, list[str]]:
    blocks = yaml.safe_load((REPO / "config" / "methods.yaml").read_text())["methods"]
    return {name: list(block.get("variants") or {}) for name, block in blocks.items()}


def table_problems(text: str, variants: dict[str, list[str]]) -> list[str]:
    """What the methods table in `text` gets wrong against the registry and `variants`."""
    problems, seen = [], []
    for row in methods_table(text):
        if len(row) != len(HEADER):
            problems.append(f"row {' | '.join(row)}: {len(row)} cells, not {len(HEADER)}")
            continue
        method_cell, module, tracks, variant_cell = row
        names = TICKED.findall(method_cell)
        if len(names) != 1 or TICKED.sub("", method_cell).strip():
            problems.append(f"method cell '{method_cell}': one method name in backticks, nothing else")
            continue
        name = names[0]
        seen.append(name)
        if name not in METHODS:
            problems.append(f"{name}: not in methods.METHODS")
            continue
        path, registered_tracks = registry_tracks(name)
        if module.strip("`") != path:
            problems.append(f"{name}: module '{module}', the registry's is {path}")
        listed_tracks = {t.strip() for t in tracks.split(",") if t.strip()}
        if listed_tracks != registered_tracks:
            problems.append(f"{name}: tracks {sorted(listed_tracks)}, the class's are {sorted(registered_tracks)}")
        if re.search(r"[{}*]", "".join(TICKED.findall(variant_cell))) or "{" in variant_cell:
            problems.append(f"{name}: variants must be written out, one name in backticks each "
                            f"(no brace expansion or wildcard): '{variant_cell}'")
        listed = TICKED.findall(variant_cell)
        doubled = sorted({v for v in listed if listed.count(v) > 1})
        if doubled:
            problems.append(f"{name}: variants listed twice: {', '.join(doubled)}")
        wanted = variants.get(name, [])
        missing = [v for v in wanted if v not in listed]
        unknown = [v for v in listed if v not in wanted]
        if missing:
            problems.append(f"{name}: variants in config/methods.yaml missing from the table: {', '.join(missing)}")
        if unknown:
            problems.append(f"{name}: variants in the table not in config/methods.yaml: {', '.join(unknown)}")
    doubled = sorted({m for m in seen if seen.count(m) > 1})
    if doubled:
        problems.append(f"methods with more than one row: {', '.join(doubled)}")
    absent = [m for m in METHODS if m not in seen]
    if absent:
        problems.append(f"methods of methods.METHODS without a row: {', '.join(absent)}")
    return problems


def readme() -> str:
    return (REPO / "README.md").read_text()


def test_the_methods_table_lists_every_registered_method_and_every_variant():
    problems = table_problems(readme(), config_variants())
    assert not problems, "README.md's methods table:\n" + "\n".join(problems)


def test_the_table_check_catches_a_planted_omission():
    text, variants = readme(), config_variants()
    row = next(line for line in text.splitlines() if line.startswith("| `encdiff` |"))
    dropped = text.replace(row, row.replace("`quick-untrained`", "", 1))
    assert dropped != text
    assert any("missing from the table: quick-untrained" in p for p in table_problems(dropped, variants))
    braced = text.replace(row, row.replace("`quick+sd`", "`quick{,+sd}`", 1))
    assert braced != text
    assert any("brace expansion" in p for p in table_problems(braced, variants))
    no_kmeans = "\n".join(line for line in text.splitlines() if not line.startswith("| `kmeans` |"))
    assert any("without a row: kmeans" in p for p in table_problems(no_kmeans, variants))


def markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def unfenced(text: str) -> str:
    """`text` without its fenced code blocks."""
    return re.sub(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", "", text, flags=re.M | re.S)


def prose(text: str) -> str:
    """`text` without code, fenced or inline, where brackets are not links."""
    return re.sub(r"`[^`\n]*`", "", unfenced(text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    heading = re.sub(r"`([^`]*)`", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found, counts = set(), {}
    for line in unfenced(path.read_text()).splitlines():
        match = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            found.add(base if base not in counts else f"{base}-{counts[base]}")
            counts[base] = counts.get(base, 0) + 1
    return found


def links(path: Path) -> list[str]:
    text = prose(path.read_text())
    return LINK.findall(text) + REFERENCE.findall(text)


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in links(path):
        if SCHEME.match(target):
            continue
        file, _, fragment = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        where = f"{path.relative_to(REPO)}: ({target})"
        if not resolved.exists() or not resolved.is_relative_to(REPO):
            broken.append(f"{where}: no such file")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            broken.append(f"{where}: no heading #{fragment} in {resolved.relative_to(REPO)}")
    return broken


def test_every_relative_link_points_to_an_existing_file():
    files = markdown_files()
    assert sum(len(links(path)) for path in files) > 10, "no links found: the pattern is broken"
    broken = [problem for path in files for problem in broken_links(path)]
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_docs_page_is_linked_from_the_readme_and_the_index():
    pages = {p.resolve() for p in (REPO / "docs").rglob("*.md")}
    for source in (REPO / "README.md", REPO / "docs" / "index.md"):
        linked = {(source.parent / t.partition("#")[0]).resolve() for t in links(source)
                  if not SCHEME.match(t) and t.partition("#")[0]}
        unlinked = sorted(str(p.relative_to(REPO)) for p in pages - linked - {source.resolve()})
        assert not unlinked, f"{source.relative_to(REPO)} does not link: {', '.join(unlinked)}"


def test_the_link_check_catches_a_broken_link_and_a_missing_heading(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    (tmp_path / "pages").mkdir()           # not docs/: tests/test_docs.py would look for these pages
    (tmp_path / "pages" / "a.md").write_text("# A page\n\n## Its `second` part\n")
    page = tmp_path / "README.md"
    page.write_text("[ok](pages/a.md) [ok](pages/a.md#its-second-part) [web](https://example.org/x.md)\n"
                    "```\n[in code](pages/none.md)\n```\n"
                    "[gone](pages/none.md) [no heading](pages/a.md#nowhere)\n")
    assert broken_links(page) == ["README.md: (pages/none.md): no such file",
                                  "README.md: (pages/a.md#nowhere): no heading #nowhere in pages/a.md"]
