"""Grade a batch of submissions end to end: real nbgrader notebooks, real kernels, the real sandbox.

One batch (module fixture, about two minutes on 2 busy cores) holds, for every assignment, the
solution, the unchanged release and each plausible wrong submission declared in its cases file
(``Mutation``); a zip with every solution; and, on the first assignment, a garbage file and hostile
notebooks: a cheater that tries to read the references (this checkout's, and those of a decoy
copy of the course planted outside it, found by searching the whole file system), another
student's work and the instructor's library, to write outside its working copy and to reach the
network; a hog that loops,
allocates, forks, writes a huge file and exits; a kernel killer; a function that never returns; a
cell that ignores interrupts. Then three of them are graded again, to compare.
"""
import csv
import html
import json
import os
import secrets
import shutil
import socket
import tempfile
import threading
import zipfile
from pathlib import Path

import nbformat
import pytest

from flowlab_grader.cases import load_cases
from flowlab_grader.course import assignments, repository_dir
from flowlab_grader.grade import PreparedAssignment, grade
from flowlab_grader.sandbox import Limits, probe_isolation
from grading_hostile import READABLE, plant_decoy, remove_decoy

pytestmark = pytest.mark.slow
ASSIGNMENTS = assignments()
ASSIGNMENT = ASSIGNMENTS[0]
LIMITS = Limits(cell_timeout=8, notebook_timeout=45, call_timeout=2, processes=64)


def solutions(assignment) -> dict[str, str]:
    """The source notebook's solution cells, markers removed: ``{grade_id: code}``; not the written
    answers (solution cells that are also grade cells: graded by people, they stay unanswered)."""
    return {cell.metadata["nbgrader"]["grade_id"]: "\n".join(line for line in cell.source.splitlines() if "### " not in line)
            for cell in nbformat.read(assignment.source_notebook, as_version=4).cells
            if cell.metadata.get("nbgrader", {}).get("solution") and not cell.metadata["nbgrader"].get("grade")}


def notebook(assignment, fill: dict[str, str] | None = None, after: dict[str, str] | None = None) -> bytes:
    """The student notebook with solution cells replaced (``fill``) and cells added after others (``after``)."""
    student = nbformat.read(assignment.student_notebook, as_version=4)
    cells = []
    for cell in student.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in (fill or {}):
            cell.source = fill[grade_id]
        cells.append(cell)
        if grade_id in (after or {}):
            cells.append(nbformat.v4.new_code_cell(after[grade_id]))
    student.cells = cells
    return nbformat.writes(student).encode()


def mutated(assignment, mutation) -> bytes:
    fill = solutions(assignment)
    fill[mutation.cell] = fill[mutation.cell].replace(mutation.old, mutation.new)
    return notebook(assignment, fill)


def after_docstring(code: str, statement: str) -> str:
    """``code`` (one function definition) with ``statement`` inserted as the body's first line."""
    lines = code.splitlines()
    end = next(i for i, line in enumerate(lines) if i > 0 and line.strip().endswith('"""'))
    lines.insert(end + 1, "    " + statement.replace("\n", "\n    "))
    return "\n".join(lines)


def points(assignment) -> dict[str, float]:
    """``{grade cell: points}`` in notebook order."""
    return PreparedAssignment.load(assignment).points


def setup_cell(assignment) -> str:
    """The grade_id of the locked setup cell (the first code cell)."""
    cells = nbformat.read(assignment.source_notebook, as_version=4).cells
    return next(cell for cell in cells if cell.cell_type == "code").metadata["nbgrader"]["grade_id"]


class Listener:
    """A TCP server on the host's loopback; remembers whether anyone connected."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.5)
        self.port, self.connected, self.stop = self.server.getsockname()[1], False, False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stop:
            try:
                connection, _ = self.server.accept()
                self.connected = True
                connection.close()
            except OSError:
                pass

    def close(self):
        self.stop = True
        self.thread.join()
        self.server.close()


def outside(submissions, results, token) -> list:
    """Places a notebook must not be able to write to."""
    return [submissions / "solution" / ASSIGNMENT.name / "pwned.txt", results / "pwned.txt",
            ASSIGNMENT.references_file.parent / "pwned.txt", repository_dir() / "pwned.txt",
            *(f"{folder}/pwned-{token}" for folder in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock"))]


def hostile_cell(submissions, results, port, token) -> str:
    targets = outside(submissions, results, token)
    return f'''
import glob, socket{READABLE}
def found_a_course():
    """Any .npz (by name or zip content), .git, autograder/ or notebook outside what the sandbox
    lends (the Python installation, the bundle's public data, this notebook's own inputs)."""
    import os, sys
    lent = {{"/proc", "/sys", "/dev", "/usr", "/tmp/bundle", "/tmp/submission",
             os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}}
    if glob.glob("/*/*/autograder/references/*.npz") + glob.glob("/*/*/*/autograder/references/*.npz"):
        return True
    for folder, folders, files in os.walk("/"):
        folders[:] = [name for name in folders if os.path.join(folder, name) not in lent]
        if {{".git", "autograder", "submitted"}} & set(folders):
            return True
        for name in files:
            if name.endswith((".npz", ".ipynb")):
                return True
            try:
                with open(os.path.join(folder, name), "rb") as handle:
                    if handle.read(4) == b"PK\\x03\\x04":
                        return True
            except OSError:
                pass
    return False
STOLE_REFERENCES = (readable({str(ASSIGNMENT.references_file)!r}) or readable({str(ASSIGNMENT.cases_file)!r})
                    or found_a_course())
STOLE_LIBRARY = readable({str(repository_dir() / "flowlab" / "paths.py")!r})
STOLE_WORK = readable({str(submissions / "solution" / ASSIGNMENT.name / ASSIGNMENT.notebook_name)!r}) or any(
    readable(path) for path in glob.glob("/tmp/flowlab-grade-*/jobs/*/box/*.ipynb"))
for target in {list(map(str, targets))!r}:
    try:
        with open(target, "w") as handle:
            handle.write("pwned")
    except OSError:
        pass
try:
    with socket.create_connection(("127.0.0.1", {port}), timeout=3) as connection:
        connection.sendall(b"leak")
except OSError:
    pass
'''


HOG = """
while True:            # interrupted at the cell time limit
    pass
"""
HOG_MORE = """
import os, sys, time
try:
    block = bytearray(64 * 2**30)          # over the address-space limit: MemoryError
except MemoryError:
    pass
for _ in range(200):                       # a bounded fork bomb: stopped by the process limit
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(3)
        os._exit(0)
try:
    with open("big.bin", "wb") as handle:  # over the file-size limit: an OSError, not a crash
        handle.write(b"0" * (300 * 2**20))
except OSError:
    pass
sys.exit(3)
"""
SLEEPER = """
import signal, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
time.sleep(10_000)
"""


def hostile(submissions, results, port, token, isolated) -> dict[str, bytes]:
    """The hostile students, all on the first assignment, all with the right solutions. The cheater
    only where the sandbox is complete: elsewhere its writes would land in this checkout."""
    right = solutions(ASSIGNMENT)
    cells = list(right)
    first_hidden = next(cell for cell in points(ASSIGNMENT))
    guarded = {cell: after_docstring(code, "if not (STOLE_REFERENCES or STOLE_LIBRARY or STOLE_WORK):\n"
                                           "    raise RuntimeError('nothing stolen')") for cell, code in right.items()}
    slow = dict(right, **{cells[-1]: after_docstring(right[cells[-1]], "while True:\n    pass")})
    students = {
        "gina": b"this is not a notebook",
        "ken": notebook(ASSIGNMENT, right, after={first_hidden: "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"}),
        "hog": notebook(ASSIGNMENT, right, after={setup_cell(ASSIGNMENT): HOG, cells[0]: HOG_MORE}),
        "mallory": notebook(ASSIGNMENT, guarded,
                            after={setup_cell(ASSIGNMENT): hostile_cell(submissions, results, port, token)}),
        "slowpoke": notebook(ASSIGNMENT, slow),
        "sleeper": notebook(ASSIGNMENT, right, after={setup_cell(ASSIGNMENT): SLEEPER}),
    }
    if not isolated:
        del students["mallory"]
    return students


LMS_STUDENTS = {"doejane_101": "solution", "Jane-Roe_102": f"mutant-{ASSIGNMENT.number:02d}-"
                f"{load_cases(ASSIGNMENT).mutations[0].name}", "loose": "solution"}


def write_lms_layouts(submissions: Path, entries: dict[tuple[str, str], bytes]) -> None:
    """The first assignment as a Canvas download (the release, then the solution uploaded again:
    ``-1``), a Moodle folder (the first mutant) and a notebook in a student folder without the
    assignment's folder (the solution): ``LMS_STUDENTS`` says whose grade each must get."""
    name = ASSIGNMENT.name
    (submissions / f"doejane_101_5001_{name}.ipynb").write_bytes(entries[("release", name)])
    (submissions / f"doejane_LATE_101_5001_{name}-1.ipynb").write_bytes(entries[("solution", name)])
    moodle = submissions / "Jane Roe_102_assignsubmission_file_"
    moodle.mkdir()
    (moodle / f"{name}.ipynb").write_bytes(entries[(LMS_STUDENTS["Jane-Roe_102"], name)])
    (submissions / "loose").mkdir()
    (submissions / "loose" / f"{name}.ipynb").write_bytes(entries[("solution", name)])


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("grading")
    submissions, results, again = root / "submitted", root / "results", root / "again"
    listener, token = Listener(), secrets.token_hex(6)
    probe = root / "probe"
    probe.mkdir(mode=0o711)
    isolation = probe_isolation(probe, LIMITS, allow_unisolated=shutil.which("bwrap") is None)
    decoys = [Path(tempfile.mkdtemp(prefix="flowlab-decoy-", dir=place)) for place in
              (repository_dir().parent, Path("/var/tmp"), Path("/srv")) if place.is_dir() and os.access(place, os.W_OK)]
    for folder in decoys:
        plant_decoy(folder, token)
    entries: dict[tuple[str, str], bytes] = {}
    for assignment in ASSIGNMENTS:
        entries[("solution", assignment.name)] = notebook(assignment, solutions(assignment))
        entries[("release", assignment.name)] = notebook(assignment)
        for mutation in load_cases(assignment).mutations:
            entries[(f"mutant-{assignment.number:02d}-{mutation.name}", assignment.name)] = mutated(assignment, mutation)
    for student, data in hostile(submissions, results, listener.port, token, isolation.level == "bwrap").items():
        entries[(student, ASSIGNMENT.name)] = data
    for (student, name), data in entries.items():
        (submissions / student / name).mkdir(parents=True)
        (submissions / student / name / f"{name}.ipynb").write_bytes(data)
    with zipfile.ZipFile(submissions / "frank.zip", "w") as archive:
        for assignment in ASSIGNMENTS:
            archive.writestr(f"frank/{assignment.name}/{assignment.notebook_name}", entries[("solution", assignment.name)])
    write_lms_layouts(submissions, entries)
    try:
        first = grade(submissions, results, jobs=2, limits=LIMITS, isolation=isolation)
    finally:
        listener.close()
        for folder in decoys:
            remove_decoy(folder)
    subset = root / "subset"
    for student in ("solution", f"mutant-{ASSIGNMENT.number:02d}-{load_cases(ASSIGNMENT).mutations[0].name}", "gina"):
        shutil.copytree(submissions / student, subset / student)
    second = grade(subset, again, jobs=2, limits=LIMITS, isolation=isolation)
    print("seconds per submission:", {f"{r.student}/{r.assignment}": round(r.seconds, 1) for r in first})
    return {"results": results, "again": again, "entries": entries, "listener": listener, "token": token,
            "level": isolation.level, "submissions": submissions, "first": {(r.student, r.assignment): r for r in first}}


def rows(path):
    with open(path / "grades.csv") as handle:
        return {(row["student"], row["assignment"]): row for row in csv.DictReader(handle)}


def feedback(batch, student, assignment):
    return (batch["results"] / "feedback" / student / assignment.name / f"{assignment.name}.html").read_text()


def test_every_submission_gets_a_row(batch):
    expected = set(batch["entries"]) | {("frank", a.name) for a in ASSIGNMENTS}
    expected |= {(student, ASSIGNMENT.name) for student in LMS_STUDENTS}
    assert set(rows(batch["results"])) == expected


def test_canvas_moodle_and_a_folder_without_the_assignment_folder_are_graded(batch):
    table = rows(batch["results"])
    for student, same_as in LMS_STUDENTS.items():
        row, twin = table[(student, ASSIGNMENT.name)], table[(same_as, ASSIGNMENT.name)]
        assert (row["score"], row["status"], row["reason"]) == (twin["score"], twin["status"], twin["reason"]), student


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=[a.name for a in ASSIGNMENTS])
def test_the_solution_scores_full_marks_in_grading_time_from_a_folder_and_a_zip(batch, assignment):
    total = f"{sum(points(assignment).values()):g}"
    for student in ("solution", "frank"):
        row = rows(batch["results"])[(student, assignment.name)]
        assert (row["score"], row["auto_max"], row["status"]) == (total, total, "graded"), row
        assert row["manual_status"] == ("pending" if PreparedAssignment.load(assignment).manual else "none"), row
    assert batch["first"][("solution", assignment.name)].seconds < 60, "grading mode must take under a minute"


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=[a.name for a in ASSIGNMENTS])
def test_the_unchanged_release_scores_zero_and_finishes_fast(batch, assignment):
    release = batch["first"][("release", assignment.name)]
    assert (release.score, release.status) == (0, "graded") and release.seconds < 30


MUTANTS = [(a, m) for a in ASSIGNMENTS for m in load_cases(a).mutations]


@pytest.mark.parametrize("assignment, mutation", MUTANTS, ids=[f"{a.number:02d}-{m.name}" for a, m in MUTANTS])
def test_wrong_submissions_lose_points_with_feedback_naming_the_part(batch, assignment, mutation):
    student = f"mutant-{assignment.number:02d}-{mutation.name}"
    result = batch["first"][(student, assignment.name)]
    assert result.status == "graded" and 0 <= result.score < result.auto_max
    assert mutation.fails in result.reason
    page = feedback(batch, student, assignment)
    assert html.escape(mutation.hint) in page and "fail" in page


def test_feedback_shows_no_hidden_code_and_no_references(batch):
    for page in (batch["results"] / "feedback").rglob("*.html"):
        text = page.read_text()
        assert "hidden.run" not in text and "BEGIN HIDDEN" not in text and "|expected|value" not in text


def test_garbage_is_invalid_with_a_reason(batch):
    gina = batch["first"][("gina", ASSIGNMENT.name)]
    assert (gina.status, gina.score, gina.auto_max) == ("invalid", 0, sum(points(ASSIGNMENT).values()))
    assert "not a Jupyter notebook" in gina.reason


def test_a_killed_kernel_keeps_what_was_recorded_before(batch):
    ken = batch["first"][("ken", ASSIGNMENT.name)]
    first_cell_points = next(iter(points(ASSIGNMENT).values()))
    assert (ken.status, ken.score) == ("crashed", first_cell_points) and "kernel died" in ken.reason


def test_loops_memory_forks_big_files_and_exit_cost_nothing_but_time(batch):
    hog = batch["first"][("hog", ASSIGNMENT.name)]
    assert (hog.status, hog.score) == ("graded", hog.auto_max)


def test_a_function_that_never_returns_times_out_per_call(batch):
    slowpoke = batch["first"][("slowpoke", ASSIGNMENT.name)]
    last_cell_points = list(points(ASSIGNMENT).values())[-1]
    assert (slowpoke.status, slowpoke.score) == ("graded", slowpoke.auto_max - last_cell_points)
    assert "did not finish" in feedback(batch, "slowpoke", ASSIGNMENT)


def test_a_notebook_past_its_time_limit_is_stopped(batch):
    sleeper = batch["first"][("sleeper", ASSIGNMENT.name)]
    assert sleeper.status == "timeout" and sleeper.score == 0 and sleeper.seconds < LIMITS.notebook_timeout + 30


def test_the_cheater_reads_writes_and_connects_nothing(batch):
    if batch["level"] != "bwrap":
        pytest.skip("bubblewrap is not installed (apt-get install bubblewrap): nothing isolates the cheater")
    assert batch["first"][("mallory", ASSIGNMENT.name)].score == 0, \
        "a read of the references, the library or another student's work succeeded"
    assert "nothing stolen" in feedback(batch, "mallory", ASSIGNMENT), "the search ran to the end and found nothing"
    assert not batch["listener"].connected, "the notebook reached the network"
    written = outside(batch["submissions"], batch["results"], batch["token"])
    assert not [str(path) for path in written if os.path.exists(path)]


def test_grading_json_says_what_isolation_held(batch):
    report = json.loads((batch["results"] / "grading.json").read_text())["isolation"]
    print(json.dumps(report, indent=1))
    assert report["level"] == batch["level"] and report["memory"].startswith("RLIMIT_DATA")
    if batch["level"] == "bwrap":
        assert report["filesystem"].startswith("allowlist") and report["network"].startswith("off")


def test_hostile_notebooks_do_not_change_other_grades(batch):
    for assignment in ASSIGNMENTS:
        assert batch["first"][("solution", assignment.name)].score == sum(points(assignment).values())


def test_the_gradebook_has_the_scores(batch):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{batch['results'] / 'gradebook.db'}") as gradebook:
        for (student, name), result in batch["first"].items():
            if result.status != "invalid":
                assert gradebook.find_submission(name, student).score == pytest.approx(result.score)


def test_grading_again_gives_the_same_rows_and_feedback(batch):
    first, second = rows(batch["results"]), rows(batch["again"])
    assert {student for student, _ in second} == {"solution", f"mutant-{ASSIGNMENT.number:02d}-"
                                                  f"{load_cases(ASSIGNMENT).mutations[0].name}", "gina"}
    for key, row in second.items():
        assert row == first[key]
        student, name = key
        path = f"feedback/{student}/{name}/{name}.html"
        assert (batch["again"] / path).read_text() == (batch["results"] / path).read_text()
