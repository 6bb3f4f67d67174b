"""The notebook that grading runs: the student's, with the instructor's cells restored by nbgrader.

nbgrader marks cells in the source notebook: solution cells (the student's code), grade cells
(tests, with points; their hidden part is cut from the student version) and locked cells
(instructions, setup, public tests). ``nbgrader generate_assignment`` records every one of them
(source, checksum, points) in a gradebook; a submission may have edited, deleted, duplicated or
relabelled any of them. ``notebook_to_grade`` puts them right with nbgrader's own sanitising steps,
fed by that gradebook (``release.build_gradebook``), as ``nbgrader autograde`` does:

1. ``trust_only_ids``: each submitted cell becomes a plain cell (type, text, metadata; no
   outputs); the nbgrader metadata of a cell whose ``grade_id`` the gradebook knows is rewritten
   from the gradebook (so a test cell relabelled "solution" is a test cell again), and removed
   from any other cell (the student's own cells);
2. nbgrader's ``DeduplicateIds`` (a copied instructor cell counts once: the last copy),
   ``OverwriteKernelspec`` and ``OverwriteCells``: every locked or grade cell gets the source's
   text back (hidden tests restored); solution cells and the student's cells stay as submitted;
3. ``RestoreMissingCells`` is ``OverwriteCells`` with ``add_missing_cells``, and a deleted locked
   cell comes back after the nearest source cell still present before it. nbgrader 0.9 puts a
   deleted grade cell after the preceding *grade or solution* cell and fails (``KeyError``) when
   the preceding source cell is a locked one, which in this course it always is (the public tests
   sit between a solution and its hidden tests); that one placement rule is all it overrides.
   A deleted manually graded answer cell (``answers``) comes back editable, as generate_assignment
   released it (``YOUR ANSWER HERE``: the gradebook keeps the released text of solution cells).

A manually graded answer cell is a grade cell that is also a solution cell and is not locked, so
``OverwriteCells`` keeps the student's text in it (and puts back its cell type and points); the
locked question above it is restored like any locked cell.

Outputs are dropped and cell ids renumbered (submitted ids may be missing or duplicated).
"""
from __future__ import annotations

import threading

import nbformat
from nbformat import NotebookNode
from nbgrader.api import Gradebook
from nbgrader.preprocessors import DeduplicateIds, OverwriteCells, OverwriteKernelspec

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
_GRADEBOOK_LOCK = threading.Lock()      # nbgrader's Gradebook is one SQLite session; grading runs threads


def _nbgrader(cell) -> dict:
    meta = cell.get("metadata")
    meta = meta.get("nbgrader") if isinstance(meta, dict) else None
    return meta if isinstance(meta, dict) else {}


def grade_id(cell: NotebookNode) -> str | None:
    value = _nbgrader(cell).get("grade_id")
    return value if isinstance(value, str) else None


def _plain(cell) -> NotebookNode:
    """A fresh cell with only the submitted type, text and metadata (an object), no outputs."""
    plain = {"cell_type": cell["cell_type"], "source": cell.get("source", ""),
             "metadata": dict(cell["metadata"]) if isinstance(cell.get("metadata"), dict) else {}}
    if plain["cell_type"] == "code":
        plain.update(outputs=[], execution_count=None)
    return nbformat.from_dict(plain)


def source_metadata(gradebook: Gradebook, notebook: str, assignment: str) -> dict[str, dict]:
    """The nbgrader metadata of every instructor cell, by ``grade_id``, as the gradebook records it."""
    entry = gradebook.find_notebook(notebook, assignment)
    points = {cell.name: float(cell.max_score) for cell in entry.grade_cells}
    solutions = {cell.name for cell in entry.solution_cells}
    found = {}
    for cell in entry.source_cells:
        meta = {"grade_id": cell.name, "locked": bool(cell.locked), "grade": cell.name in points,
                "solution": cell.name in solutions, "schema_version": 3}
        if cell.name in points:
            meta["points"] = points[cell.name]
        found[cell.name] = meta
    return found


def trust_only_ids(submission: NotebookNode, known: dict[str, dict]) -> NotebookNode:
    """Step 1 of the module docstring: plain cells whose nbgrader metadata comes from ``known``."""
    cells = []
    for cell in submission.cells:
        if cell.get("cell_type") not in ("code", "markdown", "raw"):
            continue
        cell = _plain(cell)
        identifier = grade_id(cell)
        cell.metadata.pop("nbgrader", None)
        if identifier in known:
            cell.metadata["nbgrader"] = dict(known[identifier])
        cells.append(cell)
    return nbformat.from_dict({"nbformat": 4, "nbformat_minor": 5, "cells": cells,
                               "metadata": {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}})


class RestoreMissingCells(OverwriteCells):
    """nbgrader's ``OverwriteCells`` with ``add_missing_cells``; a deleted locked or grade cell goes
    after the nearest source cell still present before it (see the module docstring, step 3)."""

    def add_missing_grade_cells(self, nb, resources):
        source = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        points = {cell.name: cell.max_score for cell in source.grade_cells}
        answers = {cell.name for cell in source.solution_cells} & set(points)     # manually graded answers
        order = [cell.name for cell in source.source_cells]
        for position, cell in enumerate(source.source_cells):
            present = [grade_id(submitted) for submitted in nb.cells]
            if cell.name in present or not (cell.locked or cell.name in points):
                continue
            before = next((name for name in reversed(order[:position]) if name in present), None)
            index = present.index(before) + 1 if before is not None else 0
            restored = self.missing_cell_transform(cell, points.get(cell.name, 0.0), is_solution=cell.name in answers)
            if cell.name not in points:       # a locked cell, which nbgrader's transform makes a grade cell
                restored["metadata"]["nbgrader"]["grade"] = False
                del restored["metadata"]["nbgrader"]["points"]
            nb.cells.insert(index, nbformat.from_dict(restored))
        return nb, resources


def _drop_empty_metadata(notebook: NotebookNode) -> None:
    """``DeduplicateIds`` empties the nbgrader metadata of a copy; nbgrader's later steps expect a
    cell to have either none or a ``grade_id``."""
    for cell in notebook.cells:
        if "nbgrader" in cell.metadata and not cell.metadata.nbgrader:
            del cell.metadata["nbgrader"]


def notebook_to_grade(submission: NotebookNode, gradebook_url: str, assignment: str, notebook: str) -> NotebookNode:
    """The notebook to run for ``submission`` of ``assignment`` (see the module docstring)."""
    resources = {"nbgrader": {"notebook": notebook, "assignment": assignment, "db_url": gradebook_url}}
    with _GRADEBOOK_LOCK:
        with Gradebook(gradebook_url) as gradebook:
            known = source_metadata(gradebook, notebook, assignment)
        graded = trust_only_ids(submission, known)
        graded, _ = DeduplicateIds().preprocess(graded, resources)
        _drop_empty_metadata(graded)
        graded, _ = OverwriteKernelspec().preprocess(graded, resources)
        graded, _ = RestoreMissingCells(add_missing_cells=True).preprocess(graded, resources)
    for index, cell in enumerate(graded.cells):
        cell["id"] = f"cell-{index}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return graded


def read_submission(data: bytes) -> NotebookNode:
    """A submitted notebook from its bytes; ``ValueError`` with a short reason if it is not one."""
    try:
        notebook = nbformat.reads(data.decode("utf-8"), as_version=4)
    except UnicodeDecodeError as error:
        raise ValueError("the file is not UTF-8 text") from error
    except Exception as error:            # nbformat raises several kinds for garbage
        raise ValueError(f"not a Jupyter notebook ({type(error).__name__}: {str(error)[:120]})") from error
    if not isinstance(notebook.get("cells"), list):
        raise ValueError("not a Jupyter notebook (no list of cells)")
    for cell in notebook.cells:
        if not isinstance(cell, dict) or not isinstance(cell.get("source", ""), str):
            raise ValueError("not a Jupyter notebook (a cell without text source)")
    return notebook
