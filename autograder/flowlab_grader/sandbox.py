"""Run one submission's notebook in a sandbox, from the host (phase 1 of grading).

Isolation, strongest first; ``probe_isolation`` picks the strongest that works on this machine:

    namespaces   root + ``unshare``: new mount, PID and network namespaces (no network at all: the
                 kernel talks over Unix sockets); the repository, the submissions, the results,
                 root's home and /tmp are covered by empty file systems, so the notebook sees only
                 its working copy (at /tmp/submission), the student release of flowlab and its
                 data (at /tmp/bundle, read-only) and the Python installation; it runs as a user
                 of its own (one uid per submission), so it cannot touch another job either.
    user         root without namespaces: the same own user; file permissions protect the rest
                 (``autograder/`` is 0700), the network stays reachable.
    limits       neither: resource limits, a fresh HOME and environment only.

Every level sets the resource limits (address space, processes, file size, CPU time, open files,
no core dumps), a fresh HOME, ``PYTHONNOUSERSITE=1`` and a minimal environment, and the host
kills the whole job at the notebook's time limit (plus a grace period for kernel start).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from flowlab.runtime import environment
from flowlab_grader.jail import PRIVATE_TMP

LEVELS = ("namespaces", "user", "limits")
BOX_IN_SANDBOX = "/tmp/submission"
BUNDLE_IN_SANDBOX = "/tmp/bundle"
UNSHARE = ["unshare", "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc"]
GRACE_SECONDS = 60.0


@dataclass(frozen=True)
class Limits:
    """Per-job limits. Times in seconds, sizes in bytes."""
    cell_timeout: float = 60.0
    notebook_timeout: float = 300.0
    call_timeout: float = environment.DEFAULT_CALL_TIMEOUT
    memory: int = 6 * 2**30
    processes: int = 256
    file_size: int = 256 * 2**20
    open_files: int = 1024

    def rlimits(self) -> dict[str, int]:
        cpu = int(2 * self.notebook_timeout + GRACE_SECONDS)
        return {"RLIMIT_AS": self.memory, "RLIMIT_NPROC": self.processes, "RLIMIT_FSIZE": self.file_size,
                "RLIMIT_CPU": cpu, "RLIMIT_NOFILE": self.open_files, "RLIMIT_CORE": 0}


@dataclass(frozen=True)
class Isolation:
    level: str
    reason: str = ""


@dataclass
class Job:
    """One sandboxed run: the working copy ``box`` (owned by ``uid``), the read-only ``bundle``."""
    box: Path
    bundle: Path
    uid: int
    hide: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    returncode: int | None
    timed_out: bool
    seconds: float


def _python_install() -> list[str]:
    """Folders the sandboxed Python needs: the virtual environment and the base installation."""
    return sorted({os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)})


def default_hide() -> list[str]:
    """What no sandbox should see: the repository (with ``.git``), the course and this grader, the
    instructor's library, root's home and the temporary folders (replaced by a private /tmp)."""
    from flowlab_grader.course import course_dir, library_dir, repository_dir

    paths = [repository_dir(), course_dir(), Path(__file__).resolve().parent, library_dir(), Path.home(),
             *map(Path, PRIVATE_TMP)]
    return sorted({os.path.realpath(path) for path in paths if path.exists()})


def sandbox_environment(box: str, bundle: str, limits: Limits) -> dict[str, str]:
    """The sandbox's whole environment (nothing is inherited from the host)."""
    home = f"{box}/home"
    return {
        "HOME": home, "USER": "student", "LANG": "C.UTF-8", "TMPDIR": f"{box}/tmp",
        "PATH": f"{os.path.dirname(sys.executable)}:/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": bundle, "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg", "MPLCONFIGDIR": f"{home}/.matplotlib", "XDG_CACHE_HOME": f"{home}/.cache",
        "IPYTHONDIR": f"{home}/.ipython", "JUPYTER_CONFIG_DIR": f"{home}/.jupyter",
        "JUPYTER_DATA_DIR": f"{home}/.local/share/jupyter", "JUPYTER_RUNTIME_DIR": f"{home}/.jupyter-runtime",
        "JUPYTER_PLATFORM_DIRS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        environment.GRADING: "1", "FLOWLAB_DATA": f"{bundle}/data",
        environment.INPUTS_DIR: f"{box}/inputs", environment.RECORD_DIR: f"{box}/records",
        environment.CALL_TIMEOUT: str(limits.call_timeout),
    }


def jail_spec(job: Job, level: str, argv_tail: list[str], limits: Limits) -> dict:
    """The spec that ``flowlab_grader.jail`` carries out for ``job`` at isolation ``level``."""
    inside = level == "namespaces"
    rlimits = limits.rlimits()
    if level == "limits":       # RLIMIT_NPROC counts every process of the user: without a user of
        del rlimits["RLIMIT_NPROC"]   # its own, it would limit the grader and the other jobs too
    box, bundle = (BOX_IN_SANDBOX, BUNDLE_IN_SANDBOX) if inside else (str(job.box), str(job.bundle))
    return {"mounts": inside, "hide": job.hide if inside else [], "keep": _python_install() if inside else [],
            "binds": [[str(job.box), box, False], [str(job.bundle), bundle, True]] if inside else [],
            "uid": job.uid if level in ("namespaces", "user") else None, "limits": rlimits,
            "cwd": box, "env": sandbox_environment(box, bundle, limits), "argv": [sys.executable, *argv_tail]}


def command(spec_path: Path, level: str) -> list[str]:
    jail = [sys.executable, "-m", "flowlab_grader.jail", str(spec_path)]
    return [*UNSHARE, *jail] if level == "namespaces" else jail


def run(job: Job, level: str, argv_tail: list[str], limits: Limits, log: Path, timeout: float) -> Outcome:
    """Run ``python <argv_tail>`` in the sandbox for at most ``timeout`` seconds; then kill it all."""
    spec_path = job.box.parent / "jail.json"
    spec_path.write_text(json.dumps(jail_spec(job, level, argv_tail, limits)))
    os.chmod(spec_path, 0o600)
    start = time.monotonic()
    returncode, timed_out = run_detached(command(spec_path, level), log, timeout, {"PATH": os.environ.get("PATH", "")},
                                         uid=job.uid if level != "limits" else None)
    return Outcome(returncode, timed_out, time.monotonic() - start)


def run_detached(argv: list[str], log: Path, timeout: float, env: dict[str, str], cwd: Path | None = None,
                 uid: int | None = None) -> tuple[int, bool]:
    """Run ``argv`` in a process group of its own, without standard input, its output in ``log``;
    wait for it alone (not for pipes that a leftover grandchild could hold open) at most ``timeout``
    seconds, then kill the group (and every process of ``uid``). Returns ``(returncode, timed out)``."""
    with open(log, "wb") as output:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            process.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _kill(process, uid)
    return process.returncode, timed_out


def _kill(process: subprocess.Popen, uid: int | None) -> None:
    """Kill the job: its process group, and every process of its own user (kernels start their own
    session, so the group alone misses them when there is no PID namespace to take them along)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()
    if uid is not None and os.geteuid() == 0:
        kill_user(uid)


def kill_user(uid: int) -> None:
    """SIGKILL every process of ``uid``: a forked child becomes ``uid`` and calls ``kill(-1)``
    (which spares the caller), so only that user's processes can be hit."""
    child = os.fork()
    if child == 0:
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            os.kill(-1, signal.SIGKILL)
        except BaseException:
            pass
        os._exit(0)
    os.waitpid(child, 0)


def probe_isolation(work: Path, limits: Limits) -> Isolation:
    """The strongest isolation level that runs the sandboxed Python correctly here."""
    if os.geteuid() != 0:
        return Isolation("limits", "not running as root: no separate user, no namespaces")
    expected = os.path.realpath(sys.base_prefix)
    probe = "import sys, os, torch, nbclient; print(os.path.realpath(sys.base_prefix)); print(os.getuid())"
    reasons = []
    for level in LEVELS[:-1]:
        if level == "namespaces" and shutil.which("unshare") is None:
            reasons.append("no unshare command")
            continue
        folder = work / f"probe-{level}"
        box, bundle = folder / "box", folder / "bundle"
        for path in (box / "home", box / "tmp", bundle):
            path.mkdir(parents=True, exist_ok=True)
        job = Job(box, bundle, uid=probe_uid(), hide=default_hide())
        prepare_box_permissions(job)
        outcome = run(job, level, ["-c", probe], limits, folder / "log.txt", timeout=120)
        lines = (folder / "log.txt").read_text(errors="replace").split()
        if outcome.returncode == 0 and lines[-2:] == [expected, str(job.uid)]:
            return Isolation(level, "; ".join(reasons))
        reasons.append(f"{level} failed: {' '.join(lines[-12:])[:300]}")
    return Isolation("limits", "; ".join(reasons))


def probe_uid() -> int:
    return uid_for(99_999)


def uid_for(index: int) -> int:
    """A user id for job ``index`` that no account and no concurrent grading run uses."""
    return 3_000_000 + (os.getpid() % 10_000) * 100_000 + index


def prepare_box_permissions(job: Job) -> None:
    """The box belongs to the job's user (0700); the folders above it can be passed, not listed."""
    if os.geteuid() != 0:
        return
    for path in [job.box, *job.box.rglob("*")]:
        os.chown(path, job.uid, job.uid, follow_symlinks=False)
    os.chmod(job.box, 0o700)
    os.chmod(job.box.parent, 0o711)
