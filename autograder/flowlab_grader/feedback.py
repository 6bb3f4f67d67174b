"""Per-student feedback as a small, self-contained HTML page.

It shows the score, how the run ended, and one row per hidden test: what it tests, pass or
fail, and the message. Written answers (manually graded answer cells) are listed with their
points as awaiting a person's grade: the score on the page is the automatic part. It never shows test code, inputs or expected values (the messages
are written not to contain them). Everything that comes from a submission (error messages
raised by the student's code, the student id) is escaped. Written to
``feedback/<student>/<assignment>/<assignment>.html``, nbgrader's feedback layout.
"""
from __future__ import annotations

from html import escape
from pathlib import Path

from flowlab_grader.scoring import CellScore

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; color: #222; }
table { border-collapse: collapse; width: 100%; margin-bottom: 1.5rem; }
td, th { border-bottom: 1px solid #ddd; padding: .35rem .5rem; text-align: left; vertical-align: top; }
.pass { color: #2a7d2a; font-weight: 600; } .fail { color: #b3261e; font-weight: 600; }
.pending { color: #8a5a00; font-weight: 600; }
.status { background: #f4f4f4; padding: .5rem .75rem; border-radius: 4px; }
"""


def _points(value: float) -> str:
    return f"{value:g}"


def _written_answers(manual: dict[str, float]) -> list[str]:
    """The section on the written answers: each one's points, awaiting a person's grade."""
    parts = [f"<h2>Written answers: {_points(sum(manual.values()))} points, awaiting a person's grade</h2>",
             "<p>Your written answers are graded by a person, not by the autograder; their points are "
             "added to the score above when they are graded.</p>",
             "<table><tr><th>answer</th><th>points</th><th>result</th></tr>"]
    parts += [f"<tr><td>{escape(cell)}</td><td>{_points(points)}</td><td class='pending'>awaiting a person's grade"
              f"</td></tr>" for cell, points in manual.items()]
    return parts + ["</table>"]


def render(student: str, assignment: str, status: str, reason: str, cells: list[CellScore],
           manual: dict[str, float] | None = None) -> str:
    """The feedback page (a complete HTML document); ``manual``: the written answers' points,
    ``{grade_id: points}``."""
    manual = manual or {}
    total = sum(cell.score for cell in cells)
    maximum = sum(cell.points for cell in cells)
    score = f"Score: {_points(total)} / {_points(maximum)}"
    if manual:
        score = f"Automatic score: {_points(total)} / {_points(maximum)} (written answers: " \
                f"{_points(sum(manual.values()))} more points, awaiting a person's grade)"
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(assignment)}: feedback</title>",
             f"<style>{STYLE}</style></head><body>",
             f"<h1>{escape(assignment)}</h1><p>Student: <b>{escape(student)}</b></p>",
             f"<p><b>{score}</b></p>",
             f"<p class='status'>Run: {escape(status)}" + (f": {escape(reason)}" if reason else "") + "</p>"]
    for cell in cells:
        parts.append(f"<h2>{escape(cell.cell)}: {_points(cell.score)} / {_points(cell.points)} points</h2>")
        parts.append("<table><tr><th>test</th><th>result</th><th>message</th></tr>")
        for case in cell.cases:
            verdict = "<span class='pass'>pass</span>" if case.passed else "<span class='fail'>fail</span>"
            parts.append(f"<tr><td>{escape(case.about)}</td><td>{verdict}</td><td>{escape(case.message)}</td></tr>")
        parts.append("</table>")
    if manual:
        parts += _written_answers(manual)
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write(folder: Path, student: str, assignment: str, status: str, reason: str, cells: list[CellScore],
          manual: dict[str, float] | None = None) -> Path:
    """Write ``folder/<student>/<assignment>/<assignment>.html``; returns its path."""
    path = Path(folder) / student / assignment / f"{assignment}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(student, assignment, status, reason, cells, manual))
    return path
