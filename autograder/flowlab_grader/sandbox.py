"""Run one submission's notebook in a sandbox, from the host (phase 1 of grading).

Three levels; ``probe_isolation`` checks that the first one works here before a batch starts:

    bwrap        bubblewrap builds the job a file system from an allowlist (``flowlab_grader.allowlist``:
                 the Python installation, the student bundle read-only at /tmp/bundle, its working
                 copy at /tmp/submission, a private /tmp, /dev, /proc; nothing else of the host) in
                 new PID, network (loopback only), IPC and UTS namespaces. As root, every job runs
                 as a user of its own (one uid per submission); without root, as the caller, in an
                 unprivileged user namespace.
    user         where bwrap cannot make namespaces but the grader is root (a Gradescope container;
                 ``flowlab grade --allow-unisolated`` as root): no filesystem or network isolation,
                 but every job runs as an unprivileged user of its own, so it reads only what every
                 user may read (keep the references root's alone: ``flowlab_grader.gradescope``
                 does) and cannot touch the grader or another job; ``user_problem`` checks first
                 that such a user can start the Python (not one under root's 0700 home)
    unisolated   only with ``allow_unisolated``, where neither of the others can be had: the
                 notebook runs as the grader's user and sees the host's whole file system and
                 network; the limits still hold.

Every level starts the job through the launcher ``flowlab_grader.jail``, which sets the resource
limits (data segment, processes, file size, CPU time, open files, no core dumps) and becomes the
job's user before the notebook's Python starts; the environment is built from scratch (a HOME in
the working copy, ``PYTHONNOUSERSITE=1``), and the host kills the whole job at the notebook's
time limit (plus a grace period for kernel start).

Memory is limited with ``RLIMIT_DATA`` (what a process has allocated and written to), not
``RLIMIT_AS``: CUDA reserves far more address space than it uses at start-up, so an address-space
limit would keep every notebook off the GPU.

The GPU (``flowlab grade --device cuda``, a job's ``device``): the job gets the NVIDIA device nodes
and /sys (``allowlist``), ``FLOWLAB_DEVICE=cuda`` (its hidden tests call each function on the GPU
too) and the host's ``LD_LIBRARY_PATH`` and ``CUDA_VISIBLE_DEVICES`` (where the driver's library
and the chosen GPU are named); ``device_problem`` checks once, before a batch, that CUDA starts in
a job under its limits. On the CPU a job sees no GPU (``CUDA_VISIBLE_DEVICES`` empty).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from flowlab.runtime import environment
from flowlab_grader import allowlist, jail
from flowlab_grader.allowlist import BOX_IN_SANDBOX, BUNDLE_IN_SANDBOX

LEVELS = ("bwrap", "user", "unisolated")
GRACE_SECONDS = 60.0
OWN_USER_LEVELS = ("bwrap", "user")     # as root, each job becomes a user of its own
JAIL_SOURCE = Path(jail.__file__).read_text()   # the launcher, passed to python -c (read once)
INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap)"
USERNS_HINT = ("unprivileged user namespaces look disabled: enable them (Debian: sysctl "
               "kernel.unprivileged_userns_clone=1; Ubuntu 23.10+: sysctl kernel.apparmor_restrict_unprivileged_userns=0; "
               "everywhere: user.max_user_namespaces > 0), or grade as root")
CONTAINER_HINT = ("in a container, namespaces need e.g. docker run --cap-add SYS_ADMIN "
                  "--security-opt seccomp=unconfined --security-opt apparmor=unconfined; or grade on the host")


class SandboxUnavailable(RuntimeError):
    """No filesystem isolation works here and the caller did not allow grading without it."""


@dataclass(frozen=True)
class Limits:
    """Per-job limits. Times in seconds, sizes in bytes (``memory``: each process's data segment)."""
    cell_timeout: float = 60.0
    notebook_timeout: float = 300.0
    call_timeout: float = environment.DEFAULT_CALL_TIMEOUT
    memory: int = 6 * 2**30
    processes: int = 256
    file_size: int = 256 * 2**20
    open_files: int = 1024

    def rlimits(self, own_user: bool = True) -> dict[str, int]:
        """The launcher's ``setrlimit`` calls. ``RLIMIT_NPROC`` counts every process of the user, so
        it is set only when the job has a user of its own (else it would limit the grader too)."""
        cpu = int(2 * self.notebook_timeout + GRACE_SECONDS)
        limits = {"RLIMIT_DATA": self.memory, "RLIMIT_NPROC": self.processes, "RLIMIT_FSIZE": self.file_size,
                  "RLIMIT_CPU": cpu, "RLIMIT_NOFILE": self.open_files, "RLIMIT_CORE": 0}
        if not own_user:
            del limits["RLIMIT_NPROC"]
        return limits


@dataclass(frozen=True)
class Isolation:
    """What held: ``level`` (one of ``LEVELS``) and, when not ``bwrap``, why not."""
    level: str
    reason: str = ""

    def report(self, limits: Limits, device: str = "cpu") -> dict:
        """What the notebooks could and could not reach, for ``grading.json`` and the terminal."""
        isolated = self.level == "bwrap"
        root = self.level in OWN_USER_LEVELS and os.geteuid() == 0
        shown = allowlist.visible(Path("<working copy>"), Path("<student bundle>"), gpu=device != "cpu") \
            if isolated else ["the whole host"]
        return {
            "level": self.level,
            "filesystem": "allowlist (bubblewrap): nothing else of the host" if isolated else
                          "none: a notebook reads whatever its user can read on this machine"
                          + (" (a user of its own: what every user may read)" if root else ""),
            "visible": shown,
            "user": f"one per submission (uids from {uid_for(0)})" if root else f"the grader's (uid {os.getuid()})",
            "network": "off (own network namespace, loopback only)" if isolated else "on (the host's)",
            "processes": ("own PID namespace; " if isolated else "")
                         + (f"RLIMIT_NPROC {limits.processes}" if root else "RLIMIT_NPROC not set (shared user)"),
            "memory": f"RLIMIT_DATA {limits.memory / 2**30:g} GiB per process (not RLIMIT_AS: CUDA can start)",
            "why": self.reason,
        }


@dataclass
class Job:
    """One sandboxed run: the working copy ``box`` (owned by ``uid`` when root), the read-only
    ``bundle``, and the ``device`` its hidden tests also run on (``"cpu"``: the CPU alone)."""
    box: Path
    bundle: Path
    uid: int
    device: str = "cpu"


@dataclass
class Outcome:
    returncode: int | None
    timed_out: bool
    seconds: float


# What CUDA needs from the host's environment to find its driver and the GPU it is given.
CUDA_VARIABLES = ("LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES")


def device_environment(device: str) -> dict[str, str]:
    """The variables a job gets for ``device``: on the GPU, ``FLOWLAB_DEVICE`` and the host's
    ``CUDA_VARIABLES`` that are set; on the CPU, no visible GPU."""
    if device == "cpu":
        return {"CUDA_VISIBLE_DEVICES": ""}
    inherited = {name: os.environ[name] for name in CUDA_VARIABLES if name in os.environ}
    return {**inherited, environment.DEVICE: device}


def sandbox_environment(box: str, bundle: str, limits: Limits, device: str = "cpu") -> dict[str, str]:
    """The sandbox's whole environment (nothing is inherited from the host but what ``device``
    needs: ``device_environment``)."""
    home = f"{box}/home"
    return {**device_environment(device),
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


def _own_user(job: Job, level: str) -> int | None:
    """The uid the job runs as when it has one of its own (root, in bubblewrap); else None."""
    return job.uid if os.geteuid() == 0 and level in OWN_USER_LEVELS else None


def command(job: Job, level: str, argv_tail: list[str], limits: Limits) -> tuple[list[str], dict[str, str]]:
    """The command line that runs ``python <argv_tail>`` for ``job`` at ``level``, and the
    environment to start it with: bwrap with the allowlist, then the launcher, then the notebook's
    Python; or, unisolated, the launcher alone."""
    isolated = level == "bwrap"
    as_root = os.geteuid() == 0
    own_user = _own_user(job, level)
    box, bundle = (BOX_IN_SANDBOX, BUNDLE_IN_SANDBOX) if isolated else (str(job.box), str(job.bundle))
    notebook_environment = sandbox_environment(box, bundle, limits, job.device)
    spec = {"limits": limits.rlimits(own_user is not None), "uid": own_user, "cwd": box,
            "argv": [sys.executable, *argv_tail]}
    launcher = [sys.executable, "-I", "-S", "-c", JAIL_SOURCE, json.dumps(spec)]
    if not isolated:
        return launcher, notebook_environment
    etc = job.box.parent / "etc"
    allowlist.write_etc(etc, job.uid if as_root else os.getuid(), job.uid if as_root else os.getgid())
    program = shutil.which("bwrap") or "bwrap"
    prefix = allowlist.bwrap_argv(program, job.box, job.bundle, etc, notebook_environment, as_root,
                                  gpu=job.device != "cpu")
    return [*prefix, "--", *launcher], {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def run(job: Job, level: str, argv_tail: list[str], limits: Limits, log: Path, timeout: float,
        started: Callable[[subprocess.Popen], None] | None = None) -> Outcome:
    """Run ``python <argv_tail>`` in the sandbox for at most ``timeout`` seconds; then kill it all.
    ``started(process)``: called once the process runs (a batch that stops kills its group)."""
    argv, host_environment = command(job, level, argv_tail, limits)
    start = time.monotonic()
    returncode, timed_out = run_detached(argv, log, timeout, host_environment,
                                         uid=_own_user(job, level),
                                         started=started)
    return Outcome(returncode, timed_out, time.monotonic() - start)


def run_detached(argv: list[str], log: Path, timeout: float, env: dict[str, str], cwd: Path | None = None,
                 uid: int | None = None, started: Callable[[subprocess.Popen], None] | None = None) -> tuple[int, bool]:
    """Run ``argv`` in a process group of its own, without standard input, its output in ``log``;
    wait for it alone (not for pipes that a leftover grandchild could hold open) at most ``timeout``
    seconds, then kill the group (and every process of ``uid``). Returns ``(returncode, timed out)``."""
    with open(log, "wb") as output:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            if started is not None:
                started(process)
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


def probe_isolation(work: Path, limits: Limits, allow_unisolated: bool = False) -> Isolation:
    """``bwrap`` when a sandboxed Python starts here (torch and nbclient import, as the right user);
    else, if allowed, ``user`` where the grader is root and a user of its own can run the Python
    (a notebook then cannot touch the grader, the results or another job), else ``unisolated``;
    else ``SandboxUnavailable`` saying what to install or enable."""
    problem = bwrap_problem(work, limits)
    if problem is None:
        return Isolation("bwrap")
    if allow_unisolated:
        fallback = user_problem(work, limits)
        return Isolation("user" if fallback is None else "unisolated",
                         problem if fallback is None else f"{problem}; and no user of its own: {fallback}")
    raise SandboxUnavailable(f"no filesystem isolation: {problem}. Without it a notebook can read every file "
                             "the grader can (another copy of the course and its references included), so grading "
                             "stops here; pass --allow-unisolated to grade anyway.")


def _probe(work: Path, name: str, level: str, limits: Limits, code: str, uid: int, device: str = "cpu") -> tuple[bool, str]:
    """Run ``python -c code`` as a job of its own (``work/probe-name``, user ``uid``) at ``level``;
    returns ``(exited 0, its output)``."""
    folder = work / f"probe-{name}"
    box, bundle = folder / "box", folder / "bundle"
    for path in (box / "home", box / "tmp", bundle):
        path.mkdir(parents=True, exist_ok=True)
    job = Job(box, bundle, uid=uid, device=device)
    prepare_box_permissions(job)
    outcome = run(job, level, ["-c", code], limits, folder / "log.txt", timeout=180)
    return outcome.returncode == 0, (folder / "log.txt").read_text(errors="replace")


def _tail(text: str, characters: int) -> str:
    """The end of a probe's output, on one line."""
    return " ".join(text.split())[-characters:]


# What a probe job prints: where its Python lives and who it runs as.
WHO_PROBE = "import sys, os, torch, nbclient; print(os.path.realpath(sys.base_prefix)); print(os.getuid())"


def _ran_as(text: str, user: int) -> bool:
    """The probe ran this Python (the sandbox lent the right one) as ``user``."""
    return text.split()[-2:] == [os.path.realpath(sys.base_prefix), str(user)]


def bwrap_problem(work: Path, limits: Limits) -> str | None:
    """Why bwrap cannot sandbox a Python job here, or ``None`` when it can."""
    if shutil.which("bwrap") is None:
        return f"bubblewrap (bwrap) is not installed: {INSTALL_HINT}"
    user = probe_uid() if os.geteuid() == 0 else os.getuid()
    ran, text = _probe(work, "bwrap", "bwrap", limits, WHO_PROBE, probe_uid())
    if ran and _ran_as(text, user):
        return None
    hint = CONTAINER_HINT if os.geteuid() == 0 else USERNS_HINT
    return f"bwrap could not start a sandboxed Python ({_tail(text, 300)}); {hint}"


def user_problem(work: Path, limits: Limits) -> str | None:
    """Why a job cannot run at the ``user`` level here (as an unprivileged user of its own), or
    ``None`` when it can: it needs root, and a Python that every user may run and import from."""
    if os.geteuid() != 0:
        return "the user level needs the grader to run as root (to give each job a user of its own)"
    ran, text = _probe(work, "user", "user", limits, WHO_PROBE, probe_uid() - 2)
    if ran and text.split()[-1:] == [str(probe_uid() - 2)]:
        return None
    return (f"an unprivileged user could not start {sys.executable} ({_tail(text, 300)}); the Python "
            f"and its packages must lie where every user may read (not under a 0700 folder such as /root)")


def device_problem(work: Path, level: str, limits: Limits, device: str) -> str | None:
    """Why a job at ``level`` cannot compute on ``device`` under ``limits`` here, or ``None``
    when it can (a sandboxed Python moves a tensor there and back)."""
    probe = (f"import torch; print(torch.ones(2, device={device!r}).add_(1).sum().item()); "
             f"print(torch.cuda.get_device_name(0) if {device!r} == 'cuda' else '')")
    ran, text = _probe(work, device, level, limits, probe, probe_uid() - 1, device)
    if ran and "4.0" in text.split("\n"):
        return None
    return (f"a sandboxed Python could not compute on {device} ({_tail(text, 400)}); "
            f"if the data limit stops it, raise --memory-gib (now {limits.memory / 2**30:g} GiB)")


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
