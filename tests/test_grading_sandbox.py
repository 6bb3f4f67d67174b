"""The sandbox without a kernel (real bubblewrap, no mocks): what a sandboxed process can see,
write, reach and use. A hostile script searches the whole file system for a decoy copy of the
course planted outside the checkout, and finds nothing."""
import json
import os
import resource
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from flowlab_grader import allowlist, sandbox
from flowlab_grader.course import repository_dir
import user_level_python
from grading_hostile import SEARCH, plant_decoy, remove_decoy

# What a job sees: argv[1] is a port to try on loopback, argv[2:] paths to write, then read.
# (At the user level the job's uid has no /etc/passwd entry: no account.)
PROBE = """
import json, os, pwd, resource, socket, sys
try:
    account = pwd.getpwuid(os.getuid()).pw_name
except KeyError:
    account = None
report = {"uid": os.getuid(), "account": account, "cwd": os.getcwd(), "home": os.environ["HOME"], "root": sorted(os.listdir("/")),
          "nouser": os.environ.get("PYTHONNOUSERSITE"), "inherited": "SECRET_TOKEN" in os.environ,
          "sees_bundle": os.path.exists(os.environ["PYTHONPATH"] + "/flowlab/__init__.py"),
          "limits": {name: resource.getrlimit(getattr(resource, name))[0]
                     for name in ("RLIMIT_AS", "RLIMIT_DATA", "RLIMIT_NPROC", "RLIMIT_FSIZE")}}
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).close()
    report["network"] = True
except OSError:
    report["network"] = False
report["wrote"], report["read"] = [], {}
for target in ["written.txt", *sys.argv[2:]]:
    try:
        with open(target, "a") as handle:
            handle.write("mine")
        report["wrote"].append(target)
    except OSError:
        pass
for target in sys.argv[2:]:
    try:
        report["read"][target] = open(target).read()
    except OSError:
        pass
print(json.dumps(report))
"""
LIMITS = sandbox.Limits(memory=3 * 2**30, processes=50, file_size=2**20)
SYSTEM = {"bin", "sbin", "lib", "lib64", "lib32", "libx32", "usr", "etc", "dev", "proc", "tmp", "sys"}


@pytest.fixture(scope="module")
def work():
    """Like ``flowlab grade``'s work folder: passable (0711) from / down, so that an unisolated job,
    which runs as its own user, can enter its working copy (pytest's own folder is 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="flowlab-sandbox-test-"))
    os.chmod(folder, 0o711)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def isolation(work):
    """The probe imports torch and nbclient in the sandbox as the job's user: bwrap must pass it."""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (apt-get install bubblewrap): nothing to isolate with")
    return sandbox.probe_isolation(work, sandbox.Limits())


@pytest.fixture(scope="module")
def token():
    return secrets.token_hex(8)


@pytest.fixture(scope="module")
def decoys(token, tmp_path_factory):
    """Copies of the course outside the checkout: next to it, in /var/tmp, /srv and the host's /tmp."""
    places = [repository_dir().parent, Path("/var/tmp"), Path("/srv"), tmp_path_factory.getbasetemp()]
    roots = [Path(tempfile.mkdtemp(prefix="flowlab-decoy-", dir=place)) for place in places
             if place.is_dir() and os.access(place, os.W_OK)]
    tops = [plant_decoy(root, token) for root in roots]
    yield tops
    for root in roots:
        remove_decoy(root)


def job(work, name, uid_index):
    box, bundle = work / name / "box", work / name / "bundle"
    for path in (box / "home", box / "tmp", bundle / "flowlab"):
        path.mkdir(parents=True)
    (bundle / "flowlab" / "__init__.py").write_text("")
    run = sandbox.Job(box, bundle, sandbox.uid_for(uid_index))
    sandbox.prepare_box_permissions(run)
    return run


def run_script(work, level, name, script, args, uid_index=1, timeout=60):
    run = job(work, name, uid_index)
    outcome = sandbox.run(run, level, ["-c", script, *args], LIMITS, work / name / "log.txt", timeout=timeout)
    log = (work / name / "log.txt").read_text()
    assert outcome.returncode == 0, log
    return json.loads(log.strip().splitlines()[-1]), run


def test_bwrap_isolates_here_and_grading_json_says_how(isolation):
    report = isolation.report(LIMITS)
    assert isolation.level == "bwrap" and report["filesystem"].startswith("allowlist")
    assert report["network"].startswith("off") and report["memory"].startswith("RLIMIT_DATA 3 GiB")
    shown = " ".join(report["visible"])
    assert os.path.realpath(sys.prefix) in shown and f"{repository_dir()} " not in shown


def test_a_whole_filesystem_search_finds_no_copy_of_the_course(work, isolation, decoys, token):
    """Decoy references, cases, .git and submissions outside the checkout, another job's working
    copy next to this one: none is found. The search does find what the sandbox may see (a
    token-named .npz planted in the bundle), so it is able to find the decoys."""
    other = job(work, "other", 2)
    (other.box / f"alice-{token}.ipynb").write_text(token)
    sandbox.prepare_box_permissions(other)
    bundle = work / "search" / "bundle" / "data"
    bundle.mkdir(parents=True)
    shutil.copy(decoys[0] / "autograder" / "references" / "01_flow_matching.npz", bundle / f"public-{token}.npz")
    report, _ = run_script(work, isolation.level, "search", SEARCH, [token], timeout=600)
    print({key: value if isinstance(value, int) else len(value) for key, value in report.items()})
    assert report["token"] == [f"/tmp/bundle/data/public-{token}.npz"]
    assert [path for path, _ in report["npz"] if any(token in member for member in _)] == report["token"]
    assert report["git"] == [] and report["autograder"] == [] and report["cases"] == []
    python = tuple(folder + "/" for folder in allowlist.python_install())
    assert [path for path in report["notebooks"] if not path.startswith(python)] == []   # nbgrader's test data
    assert report["files"] > 10_000


def test_python_works_inside_and_nothing_else_of_the_host_is_reachable(work, isolation, token):
    server = socket.create_server(("127.0.0.1", 0))
    outside = [f"/tmp/pwned-{token}", f"/var/tmp/pwned-{token}", f"/dev/shm/pwned-{token}",
               f"/tmp/bundle/pwned-{token}", f"{repository_dir()}/pwned-{token}", f"/pwned-{token}"]
    os.environ["SECRET_TOKEN"] = "x"
    try:
        report, run = run_script(work, isolation.level, "probe", PROBE, [str(server.getsockname()[1]), *outside])
    finally:
        del os.environ["SECRET_TOKEN"]
        server.close()
    assert report["cwd"] == sandbox.BOX_IN_SANDBOX and report["home"] == f"{sandbox.BOX_IN_SANDBOX}/home"
    assert report["account"] == "student", "the generated /etc/passwd names the job's user"
    assert not report["network"] and not report["inherited"] and report["nouser"] == "1" and report["sees_bundle"]
    python = {Path(folder).parts[1] for folder in allowlist.python_install()}
    assert set(report["root"]) <= SYSTEM | python, "only the system, the Python installation and /tmp"
    assert report["limits"]["RLIMIT_DATA"] == 3 * 2**30 and report["limits"]["RLIMIT_FSIZE"] == 2**20
    assert report["limits"]["RLIMIT_AS"] == resource.RLIM_INFINITY, "an address-space limit stops CUDA"
    if os.geteuid() == 0:
        assert report["uid"] not in (0, os.getuid()) and report["limits"]["RLIMIT_NPROC"] == 50
    assert (run.box / "written.txt").read_text() == "mine"
    reached = [path for path in outside if os.path.exists(path)]
    for path in reached:
        os.remove(path)
    assert not reached, "a write outside the working copy reached the host"


UNPRIVILEGED = """
import json, os, sys
from pathlib import Path
from flowlab_grader import sandbox
work = Path(sys.argv[1])
job = sandbox.Job(work / "box", work / "bundle", 0)
for path in (job.box / "home", job.bundle):
    path.mkdir(parents=True)
code = "import json, os; print(json.dumps([os.getuid(), os.getcwd(), sorted(os.listdir('/'))]))"
outcome = sandbox.run(job, "bwrap", ["-c", code], sandbox.Limits(), work / "log.txt", 60)
print((work / "log.txt").read_text().strip().splitlines()[-1])
"""


def test_without_root_the_caller_gets_the_same_allowlist(work, isolation):
    """A TA without root: the grader runs as nobody, with the system's Python (root's pyenv is
    out of its reach), and bwrap isolates it in an unprivileged user namespace."""
    if os.geteuid() != 0 or not os.path.exists("/usr/bin/python3"):
        pytest.skip("needs root (to become nobody) and a system Python at /usr/bin/python3")
    folder = work / "unprivileged"
    folder.mkdir()
    os.chown(folder, 65534, 65534)
    path = f"{repository_dir() / 'autograder'}:{repository_dir()}"
    environment = {"PATH": os.environ["PATH"], "PYTHONPATH": path, "HOME": str(folder)}
    done = subprocess.run(["/usr/bin/python3", "-c", UNPRIVILEGED, str(folder)], user=65534, group=65534,
                          extra_groups=[], env=environment, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    uid, cwd, root = json.loads(done.stdout.strip().splitlines()[-1])
    assert (uid, cwd) == (65534, sandbox.BOX_IN_SANDBOX)
    assert set(root) <= SYSTEM, "only the system (the system Python lives in /usr) and /tmp"


def test_jobs_cannot_read_each_other(work, isolation):
    if os.geteuid() != 0:
        pytest.skip("without root every job runs as the caller; only the allowlist keeps them apart")
    first, second = job(work, "first", 3), job(work, "second", 4)
    assert (first.box.stat().st_mode & 0o777) == 0o700 and first.box.stat().st_uid == first.uid
    assert first.uid != second.uid and second.box.stat().st_uid == second.uid


def test_without_bwrap_grading_refuses_unless_allowed(work, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))            # a machine where bwrap is not installed
    with pytest.raises(sandbox.SandboxUnavailable, match="apt-get install bubblewrap.*--allow-unisolated"):
        sandbox.probe_isolation(work, LIMITS)
    allowed = sandbox.probe_isolation(work, LIMITS, allow_unisolated=True)
    assert allowed.level == ("user" if sandbox.user_problem(work, LIMITS) is None else "unisolated")
    assert "not installed" in allowed.reason
    report = allowed.report(LIMITS)
    assert report["filesystem"].startswith("none") and report["network"].startswith("on")


def test_allowed_without_bwrap_a_root_grader_gives_each_job_a_user_of_its_own(work, monkeypatch, tmp_path,
                                                                                every_user_python):
    """``--allow-unisolated`` as root, where a user of its own can start the Python (as
    ``/usr/bin/python3``): the ``user`` level, not the grader's own user; the job cannot read a
    file of root's nor write into another job's working copy."""
    if os.geteuid() != 0 or every_user_python is None:
        pytest.skip("needs root and a Python every user may run (tests/user_level_python.py)")
    monkeypatch.setenv("PATH", str(tmp_path))            # a machine where bwrap is not installed
    monkeypatch.setattr(sys, "executable", every_user_python)
    allowed = sandbox.probe_isolation(work, LIMITS, allow_unisolated=True)
    assert allowed.level == "user" and "not installed" in allowed.reason
    secret = tmp_path / "secret.txt"
    secret.write_text("root's")
    os.chmod(secret, 0o600)
    other = job(work, "user-other", 7)
    os.environ["SECRET_TOKEN"] = "x"
    try:
        report, run = run_script(work, "user", "user-level", PROBE, ["1", str(other.box / "x.txt"), str(secret)],
                                 uid_index=6)
    finally:
        del os.environ["SECRET_TOKEN"]
    assert report["uid"] == run.uid != 0 and report["wrote"] == ["written.txt"] and report["read"] == {}
    assert report["sees_bundle"] and not report["inherited"]


def test_a_python_no_unprivileged_user_can_run_rules_out_the_user_level(work, monkeypatch, tmp_path):
    """Grading every student at 0 ("your kernel died") because the Python sits under root's 0700
    home would blame the students: the probe says what to fix instead."""
    if os.geteuid() != 0:
        pytest.skip("the user level is root's")
    python = user_level_python.root_only(tmp_path / "root-only")
    monkeypatch.setattr(sys, "executable", str(python))
    problem = sandbox.user_problem(work, LIMITS)
    assert problem is not None and f"an unprivileged user could not start {python}" in problem
    assert "not under a 0700 folder such as /root" in problem


def test_flowlab_grade_without_bwrap_stops_before_grading(monkeypatch, tmp_path, capsys):
    from flowlab.cli import main

    monkeypatch.setenv("PATH", str(tmp_path))
    (tmp_path / "submitted").mkdir()
    assert main(["grade", str(tmp_path / "submitted"), "--out", str(tmp_path / "results")]) == 2
    error = capsys.readouterr().err
    assert "no filesystem isolation" in error and "--allow-unisolated" in error
    assert not (tmp_path / "results" / "grades.csv").exists()


def test_unisolated_still_limits_and_cleans_the_environment(work):
    os.environ["SECRET_TOKEN"] = "x"
    try:
        report, run = run_script(work, "unisolated", "plain", PROBE, ["1"], uid_index=5)
    finally:
        del os.environ["SECRET_TOKEN"]
    assert report["limits"]["RLIMIT_DATA"] == 3 * 2**30 and report["limits"]["RLIMIT_FSIZE"] == 2**20
    assert report["nouser"] == "1" and not report["inherited"] and report["home"] == str(run.box / "home")
    assert report["sees_bundle"] and (run.box / "written.txt").read_text() == "mine"


@pytest.mark.parametrize("own_user", [True, False])
def test_limits_cover_data_processes_and_file_size(own_user):
    limits = sandbox.Limits(memory=2**30, processes=10, file_size=2**20).rlimits(own_user)
    assert limits["RLIMIT_DATA"] == 2**30 and "RLIMIT_AS" not in limits
    assert ("RLIMIT_NPROC" in limits) == own_user, "RLIMIT_NPROC would count the grader's own processes"
    assert {"RLIMIT_FSIZE", "RLIMIT_CPU", "RLIMIT_CORE"} <= set(limits)
    assert all(hasattr(resource, name) for name in limits)
