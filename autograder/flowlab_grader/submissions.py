"""Find the submissions in a folder: nbgrader's layout, or one zip file per student.

    SUBMISSIONS/<student>/<assignment>/<assignment>.ipynb     (nbgrader's submitted/ folder)
    SUBMISSIONS/<student>/<assignment>.ipynb                  (no assignment folder: see below)
    SUBMISSIONS/<student>.zip   containing <assignment>/<assignment>.ipynb (at any depth)
    SUBMISSIONS/doejane_12345_678901_<file>.ipynb             (a Canvas bulk download)
    SUBMISSIONS/Jane Doe_12345_assignsubmission_file_/...     (a Moodle bulk download)

A student folder without the assignment's folder is graded from the notebooks directly in it:
with ``only`` (``--assignment``) the one named after it or the only one there, without it each
notebook named after a known assignment. Canvas and Moodle downloads (``flowlab_grader.lms``)
are read in their own layouts: the student's key joins the name and the system's number, a
file named after a known assignment is graded for it (any notebook, with ``only``), and of
files uploaded again under one name the newest counts.

A ``submitted/`` folder inside SUBMISSIONS is used when there is one (pass the course root).
Each (student, assignment) found becomes a ``Submission``; what cannot be graded (no notebook,
two candidates, an unknown assignment, a file too large, a symlink, a broken zip) still becomes
one, with ``problem`` saying why, so that every submission gets a row in ``grades.csv``. With
``only`` given, every student gets a row for that assignment (``missing`` if absent).
Symbolic links are never followed: a submission cannot point the grader at other files.

A notebook's saved outputs play no part in grading (the notebook is run again), so they are
dropped as it is read, as nbgrader clears them (``without_outputs``); the size limit is on what
is graded, the cells' source, so that no student loses marks for what their figures weigh.
"""
from __future__ import annotations

import json
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from flowlab_grader import lms

MAX_FILE_BYTES = 1024 * 2**20       # read at all (outputs included): a guard for memory, not a rule
MAX_SOURCE_BYTES = 8 * 2**20        # the cells' source, what is graded
STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+_-]{0,99}$")
IGNORED = (".ipynb_checkpoints", "__MACOSX")


@dataclass
class Submission:
    student: str
    assignment: str
    notebook: bytes | None = None
    problem: str = ""


def _is_plain(path: Path, kind: str) -> bool:
    """True for a real (not symlinked) directory (``kind="dir"``) or regular file (``"file"``)."""
    mode = path.lstat().st_mode
    return stat.S_ISDIR(mode) if kind == "dir" else stat.S_ISREG(mode)


def _pick(candidates: dict[str, int], assignment: str) -> tuple[str | None, str]:
    """The notebook to grade among ``{relative path: size}``: ``<assignment>.ipynb`` if present,
    else the only notebook; ``(None, problem)`` otherwise."""
    candidates = {path: size for path, size in candidates.items()
                  if not any(part in IGNORED or part.startswith(".") for part in PurePosixPath(path).parts)}
    preferred = [path for path in candidates if PurePosixPath(path).name == f"{assignment}.ipynb"]
    chosen = preferred if preferred else list(candidates)
    if not chosen:
        return None, "no notebook (.ipynb) submitted"
    if len(chosen) > 1:
        return None, f"several notebooks, none named {assignment}.ipynb: {', '.join(sorted(chosen))[:200]}"
    if candidates[chosen[0]] > MAX_FILE_BYTES:
        return None, f"the notebook file is larger than {MAX_FILE_BYTES // 2**20} MiB, even with its outputs"
    return chosen[0], ""


def _source_bytes(cell: dict) -> int:
    source = cell.get("source", "")
    return len(("".join(source) if isinstance(source, list) else str(source)).encode("utf-8", "replace"))


def without_outputs(data: bytes) -> tuple[bytes | None, str]:
    """``(notebook, problem)``: the notebook ``data`` with every code cell's outputs and execution
    count and every cell's attachments dropped (``data`` itself when there were none), or
    ``(None, why)`` when the cells' source is larger than ``MAX_SOURCE_BYTES``. What is not a
    notebook passes unchanged: reading it for grading says what is wrong with it."""
    try:
        notebook = json.loads(data)
    except (ValueError, RecursionError):
        notebook = None
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list) or not all(isinstance(cell, dict) for cell in cells):
        measured = len(data)          # no cells to tell source from outputs: the file is all source
    else:
        measured = sum(_source_bytes(cell) for cell in cells)
    if measured > MAX_SOURCE_BYTES:
        return None, (f"the notebook's cells hold more than {MAX_SOURCE_BYTES // 2**20} MiB of code and text "
                      f"(saved outputs do not count)")
    if not isinstance(cells, list):
        return data, ""
    stripped = False
    for cell in cells:
        if cell.get("cell_type") == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
            cell["outputs"], cell["execution_count"] = [], None
            stripped = True
        if cell.pop("attachments", None) is not None:
            stripped = True
    return (json.dumps(notebook, indent=1, ensure_ascii=False).encode() + b"\n" if stripped else data), ""


def _notebook(student: str, assignment: str, data: bytes | None, problem: str) -> Submission:
    """The submission of a chosen notebook's bytes (``data``), outputs dropped."""
    if data is not None:
        data, problem = without_outputs(data)
    return Submission(student, assignment, data, problem)


def _from_folder(student: str, folder: Path, assignment: str, only_top: bool = False) -> Submission:
    candidates = {}
    for path in sorted(folder.glob(f"{assignment}.ipynb") if only_top else folder.rglob("*.ipynb")):
        if not _is_plain(path, "file"):
            return Submission(student, assignment, problem=f"{path.name} is not a regular file (a link?)")
        candidates[path.relative_to(folder).as_posix()] = path.lstat().st_size
    chosen, problem = _pick(candidates, assignment)
    return _notebook(student, assignment, (folder / chosen).read_bytes() if chosen else None, problem)


def _from_zip(student: str, path: Path, known: list[str]) -> list[Submission]:
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist() if info.filename.endswith(".ipynb")}
            found = []
            for assignment in known:
                inside = {name: info.file_size for name, info in members.items()
                          if assignment in PurePosixPath(name).parts or PurePosixPath(name).stem == assignment}
                if not inside:
                    continue
                chosen, problem = _pick(inside, assignment)
                found.append(_notebook(student, assignment, archive.read(chosen) if chosen else None, problem))
            return found
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as error:
        return [Submission(student, known[0] if len(known) == 1 else "?", problem=f"unreadable zip file: {error}"[:200])]


def _loose(student: str, folder: Path, wanted: list[str], only: str | None) -> list[Submission]:
    """The notebooks directly in a student's folder (no assignment folder around them): with
    ``only``, graded as that assignment (``_pick``); without, each one named after an assignment."""
    loose = {path.name: path for path in sorted(folder.glob("*.ipynb")) if not path.name.startswith(".")}
    if only:
        if not loose:
            return []
        if any(not _is_plain(path, "file") for path in loose.values()):
            return [Submission(student, only, problem="a notebook in the folder is not a regular file (a link?)")]
        chosen, problem = _pick({name: path.lstat().st_size for name, path in loose.items()}, only)
        return [_notebook(student, only, loose[chosen].read_bytes() if chosen else None, problem)]
    return [_from_folder(student, folder, name.removesuffix(".ipynb"), only_top=True)
            for name in loose if name.removesuffix(".ipynb") in wanted]


def _uploaded(student: str, files: list[lms.Upload], known: list[str], only: str | None) -> list[Submission]:
    """One student's Canvas or Moodle uploads as submissions: a notebook named after a known
    assignment is for it; with ``only``, any other notebook is for ``only``."""
    by_assignment: dict[str, list[lms.Upload]] = {}
    for upload in files:
        if not upload.name.endswith(".ipynb"):
            continue
        named = PurePosixPath(upload.name).stem
        assignment = named if named in known else only if only else "?"
        if only and assignment != only:
            continue
        by_assignment.setdefault(assignment, []).append(upload)
    found = []
    for assignment, group in sorted(by_assignment.items()):
        if assignment == "?":
            names = ", ".join(sorted(upload.name for upload in group))[:200]
            found.append(Submission(student, "?", problem=f"no known assignment is named by {names}: "
                                                          "pass --assignment"))
            continue
        newest = lms.newest(group)
        chosen, problem = _pick({name: upload.path.lstat().st_size for name, upload in newest.items()}, assignment)
        if chosen and not _is_plain(newest[chosen].path, "file"):
            problem = f"{newest[chosen].path.name} is not a regular file (a link?)"
            chosen = None
        found.append(_notebook(student, assignment, newest[chosen].path.read_bytes() if chosen else None, problem))
    return found


def discover(folder: Path, assignments: list[str], only: str | None = None) -> list[Submission]:
    """Every submission under ``folder`` for the known ``assignments`` (see the module docstring)."""
    folder = Path(folder)
    if (folder / "submitted").is_dir():
        folder = folder / "submitted"
    if not folder.is_dir():
        raise FileNotFoundError(f"no submissions folder {folder}")
    wanted = [only] if only else assignments
    found: dict[tuple[str, str], Submission] = {}
    students = set()
    download = lms.read_download(folder)
    students |= download.students
    for student in sorted(download.students):
        files = [upload for upload in download.files if upload.student == student]
        for submission in _uploaded(student, files, assignments, only):
            found[(student, submission.assignment)] = submission
    for entry in sorted(folder.iterdir()):
        student = entry.stem if entry.suffix == ".zip" else entry.name
        if entry.name.startswith(".") or entry.name in download.entries or not STUDENT_ID.match(student):
            continue
        if entry.suffix == ".zip" and _is_plain(entry, "file"):
            students.add(student)
            for submission in _from_zip(student, entry, wanted):
                found[(submission.student, submission.assignment)] = submission
        elif _is_plain(entry, "dir"):
            students.add(student)
            for child in sorted(entry.iterdir()):
                if child.name in wanted and _is_plain(child, "dir"):
                    found[(student, child.name)] = _from_folder(student, child, child.name)
                elif child.name not in assignments and not child.name.startswith(".") and _is_plain(child, "dir") \
                        and only is None:
                    found[(student, child.name)] = Submission(student, child.name, problem="unknown assignment")
            if not (only and (student, only) in found):
                for submission in _loose(student, entry, wanted, only):
                    found.setdefault((student, submission.assignment), submission)
    if only:
        for student in students:
            found.setdefault((student, only), Submission(student, only, problem="missing: nothing submitted"))
    return [found[key] for key in sorted(found)]
