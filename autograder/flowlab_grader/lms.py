"""Bulk downloads of learning-management systems: who uploaded which file, and which is newest.

Canvas ("Download Submissions" of one assignment) writes one flat folder::

    doejane_12345_678901_01_flow_matching.ipynb          <login>_<user id>_<submission id>_<file name>
    doejane_LATE_12345_678901_01_flow_matching-1.ipynb   after the due date ("LATE"); "-1", "-2": the
                                                         student uploaded a file of that name again

Moodle ("Download all submissions", in folders) writes one folder per student and submission
plugin, or the same names flat when "in folders" is off::

    Jane Doe_12345_assignsubmission_file_/01_flow_matching.ipynb
    Jane Doe_12345_assignsubmission_file_01_flow_matching.ipynb
    Jane Doe_12345_assignsubmission_onlinetext_/onlinetext.html       (no notebook: ignored)

Each file becomes an ``Upload``: the student's key in ``grades.csv`` (``doejane_12345``,
``Jane-Doe_12345``: letters outside ASCII transliterated, other characters ``-``), the file's
name as the student gave it, the resubmission suffix removed (``-1`` from Canvas, `` (1)`` from
Moodle's file picker), and its rank: ``(submission id, resubmission number)``, the greatest
being the newest. ``flowlab_grader.submissions`` chooses and reads the notebooks; this module
only reads names. Symbolic links are never followed.
"""
from __future__ import annotations

import re
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path

CANVAS_FILE = re.compile(r"^(?P<login>[^_]+)(?:_(?:LATE|late))?_(?P<user>\d+)_(?P<submission>\d+)_(?P<name>.+)$")
MOODLE_ENTRY = re.compile(r"^(?P<person>.+?)_(?P<participant>\d+)_assignsubmission_(?P<plugin>[a-z]+)_(?P<name>.*)$")
RESUBMITTED = re.compile(r"^(?P<stem>.+?)(?:-(?P<dash>\d+)| \((?P<paren>\d+)\))(?P<suffix>\.[^./]+)$")
MAX_KEY_CHARACTERS = 100


@dataclass(frozen=True)
class Upload:
    """One uploaded file: ``student`` (key), ``path`` on disk, ``name`` as uploaded (resubmission
    suffix removed; a path relative to the student's folder for Moodle folders), ``rank``."""
    student: str
    path: Path
    name: str
    rank: tuple[int, int]


def student_key(person: str, number: str) -> str:
    """``("Jane Doe", "12345") -> "Jane-Doe_12345"``: a name that is a safe folder name and unique
    through the system's own number; accents are transliterated (``José -> Jose``)."""
    ascii_name = unicodedata.normalize("NFKD", person).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9.@+-]+", "-", ascii_name).strip("-.") or "student"
    return f"{slug[:MAX_KEY_CHARACTERS - len(number) - 1]}_{number}"


def resubmission(name: str) -> tuple[str, int]:
    """``"01_a-2.ipynb" -> ("01_a.ipynb", 2)``, ``"01_a (1).ipynb" -> ("01_a.ipynb", 1)``,
    ``"01_a.ipynb" -> ("01_a.ipynb", 0)``: the name first uploaded and which upload this is."""
    match = RESUBMITTED.match(name)
    if not match:
        return name, 0
    return match["stem"] + match["suffix"], int(match["dash"] or match["paren"])


def canvas_upload(path: Path) -> Upload | None:
    """The upload of a Canvas-named file, or ``None`` for any other name."""
    match = CANVAS_FILE.match(path.name)
    if not match:
        return None
    name, again = resubmission(match["name"])
    return Upload(student_key(match["login"], match["user"]), path, name, (int(match["submission"]), again))


def moodle_uploads(entry: Path) -> list[Upload] | None:
    """The uploads of a Moodle-named folder (every file inside, at any depth) or flat file;
    ``None`` for any other name."""
    match = MOODLE_ENTRY.match(entry.name)
    if not match:
        return None
    student = student_key(match["person"], match["participant"])
    if _is_plain(entry, "file") and match["name"]:
        name, again = resubmission(match["name"])
        return [Upload(student, entry, name, (0, again))]
    if not _is_plain(entry, "dir") or match["name"]:
        return None
    found = []
    for path in sorted(entry.rglob("*")):
        if not path.is_dir() or path.is_symlink():
            relative = path.relative_to(entry)
            name, again = resubmission(relative.name)
            found.append(Upload(student, path, (relative.parent / name).as_posix(), (0, again)))
    return found


def _is_plain(path: Path, kind: str) -> bool:
    mode = path.lstat().st_mode
    return stat.S_ISDIR(mode) if kind == "dir" else stat.S_ISREG(mode)


@dataclass
class Download:
    """What a bulk download holds: its ``files``, every ``student`` seen (one whose Moodle
    folder holds no file still gets a row), and the names of the ``entries`` they came from
    (the other layouts leave those alone)."""
    files: list[Upload]
    students: set[str]
    entries: set[str]


def read_download(folder: Path) -> Download:
    """Every Canvas or Moodle upload directly in ``folder``."""
    download = Download([], set(), set())
    for entry in sorted(Path(folder).iterdir()):
        if entry.name.startswith("."):
            continue
        moodle = moodle_uploads(entry)
        canvas = canvas_upload(entry) if moodle is None and entry.suffix and not _is_plain(entry, "dir") else None
        if moodle is None and canvas is None:
            continue
        files = moodle if moodle is not None else [canvas]
        download.files += files
        download.entries.add(entry.name)
        download.students.add(canvas.student if canvas else student_key(*MOODLE_ENTRY.match(entry.name).group(
            "person", "participant")))
    return download


def newest(files: list[Upload]) -> dict[str, Upload]:
    """``{name: upload}``: of the uploads that share a name, the newest (greatest rank)."""
    chosen: dict[str, Upload] = {}
    for upload in files:
        if upload.name not in chosen or upload.rank > chosen[upload.name].rank:
            chosen[upload.name] = upload
    return chosen
