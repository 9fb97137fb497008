"""Leaderboards as Markdown, LaTeX (booktabs) and a standalone HTML page.

Ours: mean ± std over seeds, with the number of seeds; the best of our means in each column
is bold. Published numbers of the same spec sit under ours, in italics, with their source;
the reproduction verdicts follow each table, and the specs are its footnotes."""
from __future__ import annotations

import base64
import html
from pathlib import Path

from reports.tables import Cell, Row, Section

INTRO = ("Ours: mean ± standard deviation over seeds; **bold**: the best of our means in each column "
         "(the lowest for distances such as FID). "
         "Published numbers (in italics) appear only in a column whose protocol (spec) they share. "
         "n/a: no value, for the reason given under the table.")


def number(cell: Cell | None) -> str:
    if cell is None:
        return ""
    if cell.mean is None or cell.mean != cell.mean:
        return "n/a"
    return f"{cell.mean:.3f}" + ("" if cell.std is None else f" ± {cell.std:.3f}")


def _verdict_cells(v) -> list[str]:
    ours = "" if v.ours is None else f"{v.ours:.3f}" + ("" if v.ours_std is None else f" ± {v.ours_std:.3f}")
    reference = f"{v.reference:.4f}" + ("" if v.reference_std is None else f" ± {v.reference_std:.4f}")
    z = "" if v.standard_errors is None else f"{v.standard_errors:+.1f}"
    return [f"{v.method} / {v.variant}", v.metric, reference, ours, str(v.seeds), z, v.verdict, v.reason, v.source]


VERDICT_HEADER = ["run", "metric", "published", "ours", "seeds", "Δ / se", "verdict", "note", "source"]


# Markdown ----------------------------------------------------------------------------------

def _not_transcribed(n) -> str:
    return f"{n.method}: {n.what} ({n.where}): not yet transcribed, {n.why}"


def markdown(sections: list[Section], suite: str, description: str = "", not_transcribed=(), failed=()) -> str:
    lines = [f"# Leaderboard: {suite} suite", ""]
    if description:
        lines += [description.strip(), ""]
    lines += [INTRO, ""]
    for s in sections:
        lines += [f"## {s.dataset} — {s.track}", ""]
        lines += _md_table(["method", "variant", "seeds"] + s.metrics,
                           [[r.method, r.variant, r.seeds] + [_md_cell(r.cells.get(m)) for m in s.metrics] for r in s.rows]
                           + [[f"*{r.method}*", f"*{r.variant}*", f"*published, {r.seeds}*"]
                              + [f"*{number(r.cells[m])}*" if m in r.cells else "" for m in s.metrics]
                              for r in s.published],
                           numeric_from=3)
        lines += [""] + [f"- `{m}`: `{s.specs[m]}`" + (f" (n/a: {s.unavailable[m]})" if m in s.unavailable else "")
                         for m in s.metrics]
        lines += list(dict.fromkeys(f"- *{r.method} / {r.variant}*: {r.source}" for r in s.published))
        if s.verdicts:
            lines += ["", "Reproduction:", ""] + _md_table(VERDICT_HEADER, [_verdict_cells(v) for v in s.verdicts])
        lines += [""]
    if failed:
        lines += ["## Failed runs", "", "These runs have no numbers; they are not averaged in above.", ""]
        lines += [f"- **failed**: {f}" for f in failed] + [""]
    if not_transcribed:
        lines += ["## Published results not yet transcribed", ""] + [f"- {_not_transcribed(n)}" for n in not_transcribed]
    return "\n".join(lines).rstrip() + "\n"


def _md_cell(cell: Cell | None) -> str:
    text = number(cell)
    return f"**{text}**" if cell is not None and cell.best else text


def _md_table(header: list[str], rows: list[list[str]], numeric_from: int | None = None) -> list[str]:
    align = ["---:" if numeric_from is not None and i >= numeric_from else "---" for i in range(len(header))]
    return ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"] + ["| " + " | ".join(r) + " |" for r in rows]


# LaTeX -------------------------------------------------------------------------------------

TEX_ESCAPES = (("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("{", r"\{"), ("}", r"\}"),
               ("±", r"$\pm$"), ("Δ", r"$\Delta$"), ("—", "---"))


def _tex(text: str) -> str:
    text = text.replace("\\", "\0")           # backslashes last: the escapes add their own
    for char, escaped in TEX_ESCAPES:
        text = text.replace(char, escaped)
    return text.replace("\0", r"\textbackslash{}")


def latex(sections: list[Section], suite: str, failed=()) -> str:
    """One booktabs table per section, its specs (and reasons for n/a) as footnotes."""
    out = [f"% Leaderboard of the {suite} suite; needs \\usepackage{{booktabs}}.", ""]
    out += [f"% FAILED (no numbers): {line}" for line in failed] + ([""] if failed else [])
    for s in sections:
        columns = "ll" + "r" * (len(s.metrics) + 1)
        out += [r"\begin{table}[t]", r"\centering", r"\small",
                rf"\caption{{{_tex(s.dataset)} --- {_tex(s.track)} ({_tex(suite)} suite)}}",
                rf"\begin{{tabular}}{{{columns}}}", r"\toprule",
                " & ".join(["method", "variant", "seeds"] + [_tex(m) for m in s.metrics]) + r" \\", r"\midrule"]
        for r in s.rows:
            cells = [_tex(number(r.cells.get(m))) for m in s.metrics]
            cells = [rf"\textbf{{{c}}}" if r.cells.get(m) is not None and r.cells[m].best else c
                     for c, m in zip(cells, s.metrics)]
            out.append(" & ".join([_tex(r.method), _tex(r.variant), r.seeds] + cells) + r" \\")
        if s.published:
            out.append(r"\midrule")
            for r in s.published:
                cells = [rf"\emph{{{_tex(number(r.cells[m]))}}}" if m in r.cells else "" for m in s.metrics]
                out.append(" & ".join([rf"\emph{{{_tex(r.method)}}}", rf"\emph{{{_tex(r.variant)}}}",
                                       _tex(f"published, {r.seeds}")] + cells) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", "", r"\vspace{2pt}\footnotesize"]
        out += [rf"\texttt{{{_tex(m)}}}: \texttt{{{_tex(s.specs[m])}}}"
                + (f" (n/a: {_tex(s.unavailable[m])})" if m in s.unavailable else "") + r"\\" for m in s.metrics]
        out += list(dict.fromkeys(rf"\emph{{{_tex(r.method)} / {_tex(r.variant)}}}: {_tex(r.source)}\\"
                                  for r in s.published))
        out += [r"\end{table}", ""]
    return "\n".join(out)


# HTML --------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #ddd; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.published td { font-style: italic; color: #555; }
.verdict-REPRODUCED { color: #1a7f37; } .verdict-WITHIN-NOISE { color: #7d6608; }
.verdict-BELOW, .verdict-ABOVE { color: #b42318; } .verdict-NOT-COMPARABLE { color: #666; }
.spec { font-size: 0.85em; color: #555; } img { max-width: 100%; }
"""


def page(sections: list[Section], suite: str, description: str, figures: dict[str, Path], not_transcribed=(),
         failed=()) -> str:
    """A standalone page: the tables, then every figure (caption → PNG) embedded as data."""
    e = html.escape
    body = [f"<h1>Leaderboard: {e(suite)} suite</h1>", f"<p>{e(description.strip())}</p>",
            f"<p>{e(INTRO).replace('**bold**', '<strong>bold</strong>')}</p>"]
    for s in sections:
        body.append(f"<h2>{e(s.dataset)} — {e(s.track)}</h2>")
        head = "".join(f"<th>{e(h)}</th>" for h in ["method", "variant", "seeds"] + s.metrics)
        rows = []
        for r in s.rows:
            cells = "".join(f'<td class="num">{"<strong>" + e(number(r.cells.get(m))) + "</strong>" if r.cells.get(m) and r.cells[m].best else e(number(r.cells.get(m)))}</td>'
                            for m in s.metrics)
            rows.append(f"<tr><td>{e(r.method)}</td><td>{e(r.variant)}</td><td>{e(r.seeds)}</td>{cells}</tr>")
        for r in s.published:
            cells = "".join(f'<td class="num">{e(number(r.cells.get(m)))}</td>' for m in s.metrics)
            rows.append(f'<tr class="published"><td title="{e(r.source)}">{e(r.method)}</td><td>{e(r.variant)}</td>'
                        f"<td>published, {e(r.seeds)}</td>{cells}</tr>")
        body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
        notes = [f"<code>{e(m)}</code>: <code>{e(s.specs[m])}</code>"
                 + (f" (n/a: {e(s.unavailable[m])})" if m in s.unavailable else "") for m in s.metrics]
        notes += list(dict.fromkeys(f"<em>{e(r.method)} / {e(r.variant)}</em>: {e(r.source)}" for r in s.published))
        body.append('<p class="spec">' + "<br>".join(notes) + "</p>")
        if s.verdicts:
            head = "".join(f"<th>{e(h)}</th>" for h in VERDICT_HEADER)
            rows = "".join("<tr>" + "".join(f'<td class="verdict-{e(c)}">{e(c)}</td>' if i == 6 else f"<td>{e(c)}</td>"
                                            for i, c in enumerate(_verdict_cells(v))) + "</tr>" for v in s.verdicts)
            body.append(f"<h3>Reproduction</h3><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    if failed:
        body.append("<h2>Failed runs</h2><p>These runs have no numbers; they are not averaged in above.</p><ul>"
                    + "".join(f"<li><strong>failed</strong>: {e(f)}</li>" for f in failed) + "</ul>")
    if not_transcribed:
        body.append("<h2>Published results not yet transcribed</h2><ul>"
                    + "".join(f"<li>{e(_not_transcribed(n))}</li>" for n in not_transcribed) + "</ul>")
    for caption, figure in figures.items():
        data = base64.b64encode(figure.read_bytes()).decode()
        body.append(f'<figure><img alt="{e(caption)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{e(caption)}</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>Leaderboard: {e(suite)} suite</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
