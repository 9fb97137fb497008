"""The leaderboard as one standalone HTML page (every image embedded), made to be read at
1280–1600 px without scrolling the page sideways. Its first screen says what the run found:

- the title and where the runs come from (commit, CPU, precision: their run.json records);
- a summary: the runs, the claims' and published numbers' verdicts counted, the groups marked
  under-trained, and per dataset and track the best of our ranked runs;
- the claims, a row each with its verdict and the two sides' means (the statistics one click
  away, in a closed <details>), then the suite's learning checks alike;

then the suite's description, the table of contents and per dataset: its figure, a table per
track (↑/↓ beside each metric, each value on one line, a wide table scrolling inside its own
box, the specs on hover and in a closed <details>), the reproduction verdicts, and what shows
whether each method learned: its training curves and every run's sample grid and traversals."""
from __future__ import annotations

import base64
import html
from itertools import groupby
from pathlib import Path

from evaluation import METRICS
from evaluation.claims import HOLDS, NOT_RUN
from reports.render import (CLAIM_HEADER, CLAIMS_INTRO, INTRO, LEARNING_INTRO, VERDICT_HEADER, claim_cells,
                            not_transcribed_line, number, verdict_cells)
from reports.summary import CLAIM_ORDER, PUBLISHED_ORDER, tally
from reports.tables import RANKED_SEEDS, UNDER_TRAINED, Claims, MethodRuns, Row, Section, better, side_caveats

e = html.escape
REPO = Path(__file__).resolve().parent.parent       # where a learning check's evidence lies

STYLE = """
:root { --line: #d8dee4; --muted: #57606a; }
* { box-sizing: border-box; }
body { font-family: system-ui, sans-serif; line-height: 1.45; color: #1f2328; margin: 0 auto;
       max-width: 1560px; padding: 0 24px 48px; }
h1 { margin: 0.4em 0 0; font-size: 1.6em; }
h2 { border-bottom: 1px solid var(--line); padding-bottom: 0.2em; margin-top: 2em; }
h2.top { margin: 0.5em 0 0.2em; font-size: 1.2em; }
a { color: #0969da; text-decoration: none; } a:hover { text-decoration: underline; }
.scroll { overflow-x: auto; max-width: 100%; margin: 0.6em 0; }
table { border-collapse: collapse; }
th, td { padding: 0.3em 0.75em; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: #f6f8fa; white-space: nowrap; }
th[title] { cursor: help; text-decoration: underline dotted; }
td { white-space: nowrap; } td.text { white-space: normal; min-width: 16em; max-width: 36em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.best { font-weight: 700; }
table.compact { width: 100%; font-size: 0.9em; line-height: 1.3; margin: 0.3em 0; }
table.compact th, table.compact td { padding: 0.15em 0.6em; }
table.compact td { width: 1%; } table.compact td.text { min-width: 0; max-width: none; width: auto; }
table.claims td[rowspan] { width: 46%; }
tr.published td { font-style: italic; color: var(--muted); }
.badge { display: inline-block; padding: 0.05em 0.5em; border-radius: 1em; font-size: 0.8em; font-weight: 600;
         font-style: normal; color: #fff; background: #6e7781; white-space: nowrap; }
.verdict-REPRODUCED, .verdict-HOLDS { background: #1a7f37; } .verdict-WITHIN-NOISE { background: #9a6700; }
.verdict-BELOW, .verdict-ABOVE, .verdict-REVERSED { background: #cf222e; } .badge.failed { background: #cf222e; }
ul.verdicts { list-style: none; padding: 0; margin: 0; } ul.verdicts li { white-space: nowrap; }
nav.toc { background: #f6f8fa; border: 1px solid var(--line); border-radius: 6px; padding: 0.4em 1.2em; }
nav.toc ol { margin: 0.3em 0; } .muted, .spec, .provenance { color: var(--muted); font-size: 0.9em; }
p.provenance, p.tally { margin: 0.2em 0; } p.not-run { font-size: 0.9em; }
details { margin: 0.4em 0 1em; } summary { cursor: pointer; color: var(--muted); }
figure { margin: 1em 0; } figcaption { color: var(--muted); font-size: 0.9em; }
figure img { max-width: 100%; height: auto; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; }
.gallery figure { margin: 0; } .gallery img { height: 240px; width: auto; image-rendering: pixelated; }
"""


def page(sections: list[Section], suite: str, description: str, figures: dict[str, Path], runs: list[MethodRuns],
         facts: dict, provenance: str, not_transcribed=(), failed=(), claims: Claims | None = None) -> str:
    """The whole page; `figures` maps each dataset to its figure; `facts`: what the run found, as
    summary.json keeps it (reports/summary.py); `provenance`: tables.provenance of its runs."""
    datasets = sorted(set(figures) | {s.dataset for s in sections})
    claims = claims or Claims([], [])
    shown = bool(claims.verdicts or claims.not_run or claims.learning)
    body = [f"<h1>Leaderboard: {e(suite)} suite</h1>", f'<p class="provenance">{e(provenance)}</p>',
            _summary(datasets, sections, failed, facts, claims), _claims(claims) if shown else "",
            f"<h2>The {e(suite)} suite</h2><p>{e(description.strip())}</p>" if description.strip() else "",
            _contents(datasets, sections, failed, not_transcribed, shown),
            f'<p class="muted">{e(INTRO).replace("**bold**", "<strong>bold</strong>")}</p>']
    for dataset in datasets:
        body.append(_dataset(dataset, [s for s in sections if s.dataset == dataset], figures.get(dataset),
                             [r for r in runs if r.dataset == dataset]))
    if failed:
        body.append('<h2 id="failed">Failed runs</h2><p>These runs have no numbers; they are not averaged in above.</p>'
                    "<ul>" + "".join(f'<li><span class="badge failed">failed</span> {e(f)}</li>' for f in failed)
                    + "</ul>")
    if not_transcribed:
        body.append('<h2 id="not-transcribed">Published results not yet transcribed</h2><ul>'
                    + "".join(f"<li>{e(not_transcribed_line(n))}</li>" for n in not_transcribed) + "</ul>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>Leaderboard: {e(suite)} suite</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(filter(None, body)) + "\n</body>\n</html>\n")


def _anchor(*parts: str) -> str:
    return "-".join(parts).replace(" ", "-").replace("/", "-")


def _contents(datasets: list[str], sections: list[Section], failed, not_transcribed, claims: bool) -> str:
    items = ['<li><a href="#summary">Summary</a></li>'] + (['<li><a href="#claims">Claims</a></li>'] if claims else [])
    for dataset in datasets:
        tracks = " · ".join(f'<a href="#{_anchor(dataset, s.track)}">{e(s.track)}</a>'
                            for s in sections if s.dataset == dataset)
        items.append(f'<li><a href="#{_anchor(dataset)}">{e(dataset)}</a>' + (f": {tracks}" if tracks else "")
                     + "</li>")
    if failed:
        items.append(f'<li><a href="#failed">Failed runs</a> ({len(failed)})</li>')
    if not_transcribed:
        items.append('<li><a href="#not-transcribed">Published results not yet transcribed</a></li>')
    return f'<nav class="toc"><strong>Contents</strong><ol>{"".join(items)}</ol></nav>'


def _under_trained(caveat: str = "") -> str:
    return f'<span class="badge" title="{e(caveat or UNDER_TRAINED)}">{e(UNDER_TRAINED)}</span>'


def _badge(verdict: str, text: str = "") -> str:
    return f'<span class="badge verdict-{e(verdict)}">{e(text or verdict)}</span>'


# The summary ---------------------------------------------------------------------------------

def _summary(datasets: list[str], sections: list[Section], failed, facts: dict, claims: Claims) -> str:
    return "\n".join(['<section id="summary"><h2 class="top">Summary</h2>', _tally(facts, claims),
                      _best_of_runs(datasets, sections, failed), "</section>"])


def _tally(facts: dict, claims: Claims) -> str:
    """One line: the runs, the claims' and published numbers' verdicts counted, the groups
    marked under-trained."""
    failed = len(facts["failed"])
    parts = [f"{facts['runs']} runs: {facts['runs'] - failed} completed"
             + (f', <a href="#failed"><span class="badge failed">{failed} failed</span></a>' if failed else "")]
    if facts["claims"]:
        parts.append(f'<a href="#claims">claims</a> ({len(facts["claims"])}): '
                     + _counted(facts["claims"], CLAIM_ORDER))
    parts.append(f'published numbers ({len(facts["published"])}): ' + _counted(facts["published"], PUBLISHED_ORDER)
                 if facts["published"] else "no published number in this suite's columns")
    if claims.marked:
        parts.append(_under_trained() + ": " + ", ".join(
            f'<span title="{e(caveat)}">{e(method)} / {e(variant)} on {e(dataset)}</span>'
            for (dataset, method, variant), caveat in sorted(claims.marked.items())))
    return f'<p class="tally">{" · ".join(parts)}</p>'


def _counted(verdicts: list[dict], order: tuple[str, ...]) -> str:
    return " ".join(_badge(v, f"{n} {v}") for v, n in tally([x["verdict"] for x in verdicts], order))


def _best_of_runs(datasets: list[str], sections: list[Section], failed) -> str:
    """Per dataset and track the best of our ranked runs; the published verdicts only where there are any."""
    published = any(s.verdicts for s in sections)
    rows = []
    for dataset in datasets:
        failures = sum(f.startswith(f"{dataset}/") for f in failed)
        name = (f'<a href="#{_anchor(dataset)}">{e(dataset)}</a>'
                + (f' <a href="#failed"><span class="badge failed">{failures} failed</span></a>' if failures else ""))
        dataset_sections = [s for s in sections if s.dataset == dataset]
        if not dataset_sections:
            rows.append(f'<tr><td>{name}</td><td></td><td class="text">no completed runs</td>'
                        + ("<td></td>" if published else "") + "</tr>")
        for i, s in enumerate(dataset_sections):           # the dataset's link and failures once
            rows.append(f'<tr><td>{e(dataset) if i else name}</td><td><a href="#{_anchor(dataset, s.track)}">'
                        f'{e(s.track)}</a></td><td class="text">{_leader(s)}</td>'
                        + (f"<td>{_verdict_badges(s)}</td>" if published else "") + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ["dataset", "track", f"best of our runs ({RANKED_SEEDS}+ seeds, not "
                                             "under-trained)"] + (["against the published number"] if published else []))
    return f'<table class="compact"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _leader(section: Section) -> str:
    """The best of our ranked runs on the section's first metric where two or more compete, and
    the unranked runs whose mean is better still (one seed, or under-trained)."""
    for metric in section.metrics:
        leaders = [r for r in section.rows if metric in r.cells and r.cells[metric].best]
        if leaders:
            best = leaders[0].cells[metric]
            lower = METRICS[metric].lower_is_better
            beyond = [r for r in section.rows if metric in r.cells
                      and (r.cells[metric].mean < best.mean if lower else r.cells[metric].mean > best.mean)]
            names = ", ".join(f"{r.method} / {r.variant}" for r in leaders)
            return (f'<strong>{e(names)}</strong> <span class="muted">{e(metric)} {better(metric)} '
                    f"{e(number(best))}</span>"
                    + "".join(f'; <span class="muted">not ranked: {_unranked(r, metric)}</span>' for r in beyond))
    if len(section.rows) == 1:
        return '<span class="muted">one run: nothing to rank</span>'
    return f'<span class="muted">no two ranked runs ({RANKED_SEEDS}+ seeds, not under-trained)</span>'


def _unranked(r: Row, metric: str) -> str:
    cell = r.cells[metric]
    why = _under_trained(r.caveat) if r.caveat else f"{cell.seeds} seed{'s' * (cell.seeds != 1)}"
    return f"{e(r.method)} / {e(r.variant)} {cell.mean:.3f} ({why})"


def _verdict_badges(section: Section) -> str:
    if not section.verdicts:
        return '<span class="muted">no published number</span>'
    items = []
    for v in section.verdicts:
        ours = "" if v.ours is None else f"ours {v.ours:.3f} vs "
        z = "" if v.standard_errors is None else f", {v.standard_errors:+.1f} se"
        mark = " " + _under_trained() if section.under_trained(v.method, v.variant) else ""
        items.append(f'<li title="{e(v.source)}">{_badge(v.verdict)} {e(v.method)} / {e(v.variant)}{mark}, '
                     f'{e(v.metric)}: <span class="muted">{e(ours)}published {v.reference:.3f}{e(z)} '
                     f"({e(_paper(v.source))})</span></li>")
    return f'<ul class="verdicts">{"".join(items)}</ul>'


def _paper(source: str) -> str:
    """A published number's source up to its first comma: "ASPC-DA", "arXiv 1611.02648v1"."""
    return source.split(",", 1)[0]


# The claims ----------------------------------------------------------------------------------

CLAIM_TEXT_COLUMNS = {CLAIM_HEADER.index("claim"), CLAIM_HEADER.index("note")}      # these may wrap


def _claims(claims: Claims) -> str:
    """The claims' section (the compact list, the NOT-RUN line, the statistics closed), then the
    learning checks' alike, with their evidence."""
    marked = claims.marked
    not_run = (f'<p class="tally not-run">{_badge(NOT_RUN)} {len(claims.not_run)} with no comparison in this suite, '
               "or a side not run: " + ", ".join(f'<span data-claim="{e(c)}">{e(c)}</span>' for c in claims.not_run)
               + "</p>" if claims.not_run else "")
    out = ['<section id="claims"><h2 class="top">Claims</h2>']
    if claims.verdicts:
        out += [_claim_list(claims.verdicts, marked), not_run, _statistics(claims.verdicts, CLAIMS_INTRO, marked)]
    else:
        out.append(not_run)
    out.append("</section>")
    if claims.learning:
        out += ['<section id="learning"><h3>Learning at this budget</h3>', _claim_list(claims.learning, marked),
                _statistics(claims.learning, LEARNING_INTRO, marked)]
        evidence = dict.fromkeys(v.claim.evidence for v in claims.learning if v.verdict != HOLDS)
        out += [_figure(REPO / path, f"{path}: the comparison at larger budgets (laptop suite, one seed)")
                for path in evidence if (REPO / path).is_file()] + ["</section>"]
    return "\n".join(out)


def _claim_list(verdicts, marked: dict) -> str:
    """A row per claim and dataset: the claim (once for all its datasets), its verdict and the
    two sides' means."""
    rows = []
    for _, same in groupby(verdicts, key=lambda v: v.claim.id):
        same = list(same)
        for i, v in enumerate(same):
            claim = "" if i else (f'<td class="text" rowspan="{len(same)}" title="{e(v.claim.id)}; '
                                  f'{e(v.claim.source)}">{e(v.claim.claim)} <span class="muted">{e(v.claim.metric)} '
                                  f"{better(v.claim.metric)}</span></td>")
            sides = "".join(f'<td class="text">{e(g.label)} {"n/a" if g.mean is None else f"{g.mean:.3f}"}'
                            + (" " + _under_trained(caveat) if caveat else "") + "</td>"
                            for g, caveat in zip((v.better, v.than), side_caveats(v, marked)))
            rows.append(f'<tr>{claim}<td>{e(v.dataset)}</td><td data-claim="{e(v.claim.id)}" '
                        f'data-dataset="{e(v.dataset)}">{_badge(v.verdict)}</td>{sides}</tr>')
    head = "".join(f"<th>{h}</th>" for h in ("claim", "dataset", "verdict", "claimed better: mean", "than: mean"))
    return f'<table class="compact claims"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _statistics(verdicts, intro: str, marked: dict) -> str:
    """The full table (differences, intervals, seeds, notes, sources) in a closed <details>."""
    head = "".join(f"<th>{e(h)}</th>" for h in CLAIM_HEADER)
    verdict = CLAIM_HEADER.index("verdict")
    body = "".join("<tr>" + "".join(_verdict_cell(i, c, verdict, CLAIM_TEXT_COLUMNS)
                                    for i, c in enumerate(claim_cells(v, marked))) + "</tr>" for v in verdicts)
    return (f"<details><summary>Statistics: each side's mean ± sd (seeds), the difference and its "
            f"interval, notes, sources; the rule</summary><p class=\"muted\">{e(intro)}</p>"
            f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div></details>')


# A dataset -----------------------------------------------------------------------------------

def _dataset(dataset: str, sections: list[Section], figure: Path | None, runs: list[MethodRuns]) -> str:
    out = [f'<section id="{_anchor(dataset)}"><h2>{e(dataset)}</h2>']
    if figure is not None:
        out.append(_figure(figure, f"{dataset}: every metric, mean ± sd over seeds; ◆ published numbers of the same "
                                   "method and spec, dashed lines quoted baselines"))
    out += [_track(s) for s in sections]
    if runs:
        out.append(f'<h3 id="{_anchor(dataset, "runs")}">Did each method learn? Training curves, samples, '
                   "traversals</h3>")
        out += [_method_runs(r) for r in runs]
    return "\n".join(out) + "</section>"


def _track(s: Section) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("method", "variant", "seeds")) + "".join(
        f'<th title="{e(s.specs[m])}">{e(m)} {better(m)}</th>' for m in s.metrics)
    rows = [_row(r, s.metrics) for r in s.rows] + [_row(r, s.metrics, published=True) for r in s.published]
    notes = [f"<li><code>{e(m)}</code>: <code>{e(s.specs[m])}</code>"
             + (f" (n/a: {e(s.unavailable[m])})" if m in s.unavailable else "") + "</li>" for m in s.metrics]
    notes += list(dict.fromkeys(f"<li><em>{e(r.method)} / {e(r.variant)}</em>: {e(r.source)}</li>"
                                for r in s.published))
    marked = "".join(f'<p class="muted">{_under_trained(r.caveat)} {e(r.method)} / {e(r.variant)}: {e(r.caveat)}</p>'
                     for r in s.rows if r.caveat)
    out = [f'<h3 id="{_anchor(s.dataset, s.track)}">{e(s.dataset)} — {e(s.track)}</h3>',
           f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>',
           marked, f'<details><summary>Protocols (specs) and sources</summary><ul class="spec">{"".join(notes)}</ul></details>']
    if s.verdicts:
        head = "".join(f"<th>{e(h)}</th>" for h in VERDICT_HEADER)
        body = "".join("<tr>" + "".join(_verdict_cell(i, c) for i, c in
                                        enumerate(verdict_cells(v, s.under_trained(v.method, v.variant)))) + "</tr>"
                       for v in s.verdicts)
        out.append(f'<div class="scroll"><table><caption class="muted">Reproduction</caption><thead><tr>{head}</tr>'
                   f"</thead><tbody>{body}</tbody></table></div>")
    return "\n".join(out)


def _row(r: Row, metrics: list[str], published: bool = False) -> str:
    cells = []
    for m in metrics:
        cell = r.cells.get(m)
        cells.append(f'<td class="num{" best" if cell is not None and cell.best else ""}">{e(number(cell))}</td>')
    if published:
        return (f'<tr class="published"><td title="{e(r.source)}">{e(r.method)}</td><td>{e(r.variant)}</td>'
                f"<td>published, {e(r.seeds)}</td>{''.join(cells)}</tr>")
    variant = e(r.variant) + (" " + _under_trained(r.caveat) if r.caveat else "")
    return f"<tr><td>{e(r.method)}</td><td>{variant}</td><td>{e(r.seeds)}</td>{''.join(cells)}</tr>"


VERDICT_COLUMN = VERDICT_HEADER.index("verdict")
TEXT_COLUMNS = {VERDICT_HEADER.index("note"), VERDICT_HEADER.index("source")}      # these may wrap


def _verdict_cell(column: int, text: str, verdict_column: int = VERDICT_COLUMN, text_columns=TEXT_COLUMNS) -> str:
    if column == verdict_column:
        return f'<td><span class="badge verdict-{e(text)}">{e(text)}</span></td>'
    return f'<td class="text">{e(text)}</td>' if column in text_columns else f"<td>{e(text)}</td>"


def _method_runs(runs: MethodRuns) -> str:
    out = [f"<h4>{e(runs.method)}</h4>"]
    if runs.curves is not None:
        out.append(_figure(runs.curves, f"{runs.dataset} / {runs.method}: train_log.csv of every run against the "
                                        "epoch (stages one after another), seeds overlaid (line style); a column "
                                        "that never changes is not drawn"))
    if runs.images:
        out.append('<div class="gallery">' + "".join(_figure(path, caption) for caption, path in runs.images)
                   + "</div>")
    return "\n".join(out)


def _figure(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure><img alt="{e(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{e(caption)}</figcaption></figure>")
