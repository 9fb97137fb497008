"""Leaderboards as Markdown and LaTeX (booktabs); the HTML page is reports/page.py.

Ours: mean ± std over seeds, with the number of seeds; the best of our means in each column
is bold where two or more ranked runs compete (RANKED_SEEDS or more seeds, not under-trained);
↑/↓ beside each metric says which way is better. A group marked under-trained carries the mark
wherever its numbers appear.
Published numbers of the same spec sit under ours, in italics, with their source; the
reproduction verdicts follow each table, and the specs are its footnotes."""
from __future__ import annotations

from evaluation.claims import LEVEL, RULE
from reports.tables import RANKED_SEEDS, UNDER_TRAINED, Cell, Claims, Row, Section, better, side_caveats

INTRO = ("Ours: mean ± standard deviation over seeds; ↑: higher is better, ↓: lower is better (distances "
         f"such as FID); **bold**: the best of our means in a column among the runs of {RANKED_SEEDS} or more seeds "
         f"not marked \"{UNDER_TRAINED}\", where two or more such runs compete (a column may have none). "
         "Published numbers (in italics) appear only in a column whose protocol (spec) they share. "
         "n/a: no value, for the reason given under the table.")


def number(cell: Cell | None) -> str:
    if cell is None:
        return ""
    if cell.mean is None or cell.mean != cell.mean:
        return "n/a"
    return f"{cell.mean:.3f}" + ("" if cell.std is None else f" ± {cell.std:.3f}")


def verdict_cells(v, under_trained: bool = False) -> list[str]:
    ours = "" if v.ours is None else f"{v.ours:.3f}" + ("" if v.ours_std is None else f" ± {v.ours_std:.3f}")
    reference = f"{v.reference:.4f}" + ("" if v.reference_std is None else f" ± {v.reference_std:.4f}")
    z = "" if v.standard_errors is None else f"{v.standard_errors:+.1f}"
    run = f"{v.method} / {v.variant}" + (f" ({UNDER_TRAINED})" if under_trained else "")
    return [run, v.metric, reference, ours, str(v.seeds), z, v.verdict, v.reason, v.source]


VERDICT_HEADER = ["run", "metric", "published", "ours", "seeds", "Δ / se", "verdict", "note", "source"]
CLAIM_HEADER = ["claim", "dataset", "metric", "better", "than", "difference", f"{LEVEL:.0%} interval", "verdict", "note"]
CLAIMS_INTRO = f"Each paper's claims (evaluation/claims/), judged on this suite's seeds: {RULE}"
LEARNING_INTRO = ("Does every method learn at this budget? The suite's own checks (its `learns` block), judged by "
                  f"the same rule; a run group whose check does not hold is marked \"{UNDER_TRAINED}\" in its "
                  "table, and its evidence is the learning curve of a larger budget (bench/curves.py).")


def variant_label(r: Row) -> str:
    return f"{r.variant} ({UNDER_TRAINED})" if r.caveat else r.variant


def claim_cells(v, marked: dict | None = None) -> list[str]:
    """One claim's row: the claim with its paper and where it says it, the two sides as mean ± std (n),
    a side marked under-trained (in `marked`, Claims.marked) saying so."""
    note = "; ".join(filter(None, [v.reason, v.claim.note]))
    better_caveat, than_caveat = side_caveats(v, marked or {})
    return [f"{v.claim.claim} ({v.claim.id}; {v.claim.source})", v.dataset, f"{v.claim.metric} {better(v.claim.metric)}",
            f"{v.better.label} {v.better.text()}" + (f" ({UNDER_TRAINED})" if better_caveat else ""),
            f"{v.than.label} {v.than.text()}" + (f" ({UNDER_TRAINED})" if than_caveat else ""),
            "" if v.difference is None else f"{v.difference:+.3f}", v.interval(), v.verdict, note]


def not_run_line(claims: Claims, suite: str) -> str:
    return f"Not run in the {suite} suite ({len(claims.not_run)}): {', '.join(claims.not_run)}."


# Markdown ----------------------------------------------------------------------------------

def not_transcribed_line(n) -> str:
    return f"{n.method}: {n.what} ({n.where}): not yet transcribed, {n.why}"


def markdown(sections: list[Section], suite: str, description: str = "", not_transcribed=(), failed=(),
             claims: Claims | None = None) -> str:
    lines = [f"# Leaderboard: {suite} suite", ""]
    if description:
        lines += [description.strip(), ""]
    if claims and (claims.verdicts or claims.not_run):
        lines += ["## Claims", "", CLAIMS_INTRO, ""]
        if claims.verdicts:
            lines += _md_table(CLAIM_HEADER, [claim_cells(v, claims.marked) for v in claims.verdicts]) + [""]
        lines += [not_run_line(claims, suite), ""] if claims.not_run else []
    if claims and claims.learning:
        lines += ["## Learning at this budget", "", LEARNING_INTRO, ""]
        lines += _md_table(CLAIM_HEADER, [claim_cells(v) for v in claims.learning]) + [""]
    lines += [INTRO, ""]
    for s in sections:
        lines += [f"## {s.dataset} — {s.track}", ""]
        lines += _md_table(["method", "variant", "seeds"] + [f"{m} {better(m)}" for m in s.metrics],
                           [[r.method, variant_label(r), r.seeds] + [_md_cell(r.cells.get(m)) for m in s.metrics]
                            for r in s.rows]
                           + [[f"*{r.method}*", f"*{r.variant}*", f"*published, {r.seeds}*"]
                              + [f"*{number(r.cells[m])}*" if m in r.cells else "" for m in s.metrics]
                              for r in s.published],
                           numeric_from=3)
        lines += [""] + [f"- `{m}`: `{s.specs[m]}`" + (f" (n/a: {s.unavailable[m]})" if m in s.unavailable else "")
                         for m in s.metrics]
        lines += list(dict.fromkeys(f"- *{r.method} / {r.variant}*: {r.source}" for r in s.published))
        lines += [f"- {r.method} / {r.variant}: {r.caveat}" for r in s.rows if r.caveat]
        if s.verdicts:
            lines += ["", "Reproduction:", ""] + _md_table(
                VERDICT_HEADER, [verdict_cells(v, s.under_trained(v.method, v.variant)) for v in s.verdicts])
        lines += [""]
    if failed:
        lines += ["## Failed runs", "", "These runs have no numbers; they are not averaged in above.", ""]
        lines += [f"- **failed**: {f}" for f in failed] + [""]
    if not_transcribed:
        lines += ["## Published results not yet transcribed", ""] + [f"- {not_transcribed_line(n)}" for n in not_transcribed]
    return "\n".join(lines).rstrip() + "\n"


def _md_cell(cell: Cell | None) -> str:
    text = number(cell)
    return f"**{text}**" if cell is not None and cell.best else text


def _md_table(header: list[str], rows: list[list[str]], numeric_from: int | None = None) -> list[str]:
    align = ["---:" if numeric_from is not None and i >= numeric_from else "---" for i in range(len(header))]
    return ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"] + ["| " + " | ".join(r) + " |" for r in rows]


# LaTeX -------------------------------------------------------------------------------------

TEX_ESCAPES = (("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("{", r"\{"), ("}", r"\}"),
               ("±", r"$\pm$"), ("Δ", r"$\Delta$"), ("—", "---"), ("↑", r"$\uparrow$"), ("↓", r"$\downarrow$"))


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
                " & ".join(["method", "variant", "seeds"] + [f"{_tex(m)} {_tex(better(m))}" for m in s.metrics])
                + r" \\", r"\midrule"]
        for r in s.rows:
            cells = [_tex(number(r.cells.get(m))) for m in s.metrics]
            cells = [rf"\textbf{{{c}}}" if r.cells.get(m) is not None and r.cells[m].best else c
                     for c, m in zip(cells, s.metrics)]
            out.append(" & ".join([_tex(r.method), _tex(r.variant) + (r"$^\dagger$" if r.caveat else ""), r.seeds]
                                  + cells) + r" \\")
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
        out += [rf"$^\dagger${_tex(r.method)} / {_tex(r.variant)}: {_tex(r.caveat)}\\" for r in s.rows if r.caveat]
        out += [r"\end{table}", ""]
    return "\n".join(out)
