"""The sandbox without a kernel: what a sandboxed process can see, write, reach and use (seconds)."""
import json
import os
import resource
import socket
import sys

import pytest

from flowlab_grader import sandbox
from flowlab_grader.course import course_dir, repository_dir

PROBE = """
import json, os, resource, socket, sys
report = {"uid": os.getuid(), "cwd": os.getcwd(), "home": os.environ["HOME"],
          "nouser": os.environ.get("PYTHONNOUSERSITE"), "inherited": "SECRET_TOKEN" in os.environ,
          "repository": sorted(os.listdir(sys.argv[1])) if os.path.isdir(sys.argv[1]) else None,
          "sees_course": os.path.exists(sys.argv[2]),
          "sees_bundle": os.path.exists(os.environ["PYTHONPATH"] + "/flowlab/__init__.py"),
          "tmp": sorted(os.listdir("/tmp")),
          "limits": {name: resource.getrlimit(getattr(resource, name))[0] for name in ("RLIMIT_AS", "RLIMIT_NPROC", "RLIMIT_FSIZE")}}
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[3])), timeout=2).close()
    report["network"] = True
except OSError:
    report["network"] = False
with open("written.txt", "w") as handle:
    handle.write("mine")
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sandbox")
    os.chmod(folder, 0o711)
    return folder


@pytest.fixture(scope="module")
def level(work):
    return sandbox.probe_isolation(work, sandbox.Limits()).level


def run_probe(work, level, name="job"):
    box, bundle = work / name / "box", work / name / "bundle"
    for path in (box / "home", box / "tmp", bundle / "flowlab"):
        path.mkdir(parents=True)
    (bundle / "flowlab" / "__init__.py").write_text("")
    job = sandbox.Job(box, bundle, sandbox.uid_for(hash(name) % 1000), sandbox.default_hide())
    sandbox.prepare_box_permissions(job)
    server = socket.create_server(("127.0.0.1", 0))
    limits = sandbox.Limits(memory=3 * 2**30, processes=50, file_size=2**20)
    os.environ["SECRET_TOKEN"] = "x"
    try:
        outcome = sandbox.run(job, level, ["-c", PROBE, str(repository_dir()), str(course_dir()),
                                           str(server.getsockname()[1])], limits, work / name / "log.txt", timeout=60)
    finally:
        del os.environ["SECRET_TOKEN"]
        server.close()
    log = (work / name / "log.txt").read_text()
    assert outcome.returncode == 0, log
    return json.loads(log.strip().splitlines()[-1]), box


def test_the_strongest_level_is_found(level):
    if os.geteuid() != 0:
        assert level == "limits"
    elif sys.platform.startswith("linux"):
        assert level in ("namespaces", "user")


def test_a_sandboxed_process_sees_only_its_copy_and_the_bundle(work, level):
    if level == "limits":
        pytest.skip("needs root")
    report, box = run_probe(work, level)
    assert report["limits"] == {"RLIMIT_AS": 3 * 2**30, "RLIMIT_NPROC": 50, "RLIMIT_FSIZE": 2**20}
    assert report["uid"] != 0 and report["uid"] != os.getuid()
    if level == "namespaces":
        # A checkout under /tmp (a CI clone) keeps its top folder there: the Python environment in it
        # is bound back, and the next assertion checks that nothing else of the repository shows.
        repository = os.path.realpath(repository_dir())
        on_tmp = [os.path.relpath(repository, "/tmp").split(os.sep)[0]] if repository.startswith("/tmp/") else []
        assert report["cwd"] == sandbox.BOX_IN_SANDBOX and report["tmp"] == sorted(["bundle", "submission", *on_tmp])
        venv = os.path.relpath(sys.prefix, repository_dir())
        assert report["repository"] in (None, [], [venv.split(os.sep)[0]]), "only the Python environment stays"
        assert not report["sees_course"]
        assert not report["network"]


def test_the_limits_level_limits_and_cleans_the_environment(work):
    report, box = run_probe(work, "limits", "plain")
    assert report["limits"]["RLIMIT_AS"] == 3 * 2**30 and report["limits"]["RLIMIT_FSIZE"] == 2**20
    assert report["nouser"] == "1" and not report["inherited"] and report["home"] == str(box / "home")
    assert report["sees_bundle"] and (box / "written.txt").read_text() == "mine"


def test_jobs_cannot_read_each_other(work, level):
    if level == "limits":
        pytest.skip("needs root")
    _, box = run_probe(work, level, "first")
    assert (box.stat().st_mode & 0o777) == 0o700 and box.stat().st_uid != 0
    assert box.stat().st_uid != sandbox.uid_for(hash("second") % 1000)


def test_limits_cover_address_space_processes_and_file_size():
    limits = sandbox.Limits(memory=2**30, processes=10, file_size=2**20).rlimits()
    assert {name for name in limits} >= {"RLIMIT_AS", "RLIMIT_NPROC", "RLIMIT_FSIZE", "RLIMIT_CPU", "RLIMIT_CORE"}
    assert all(hasattr(resource, name) for name in limits)
