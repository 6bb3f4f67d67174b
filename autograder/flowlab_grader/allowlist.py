"""What a grading sandbox sees of the host: an allowlist, mounted by bubblewrap (``bwrap``).

The sandbox starts from an empty root and gets only what is listed here::

    /usr, and /bin /sbin /lib* as on the host (links or read-only folders)   programs and libraries
    /etc/ld.so.cache, ld.so.conf, ld.so.conf.d (read-only)    the dynamic linker's search path
    /etc/passwd, group, hosts (generated: the student, localhost)   names for the ids and loopback
    the Python installation, read-only, at its own paths      sys.prefix and sys.base_prefix (real
                                                              paths) only: a virtual environment
                                                              inside a repository comes alone
    /tmp/bundle (read-only)                                   the student release of flowlab + data
    /tmp/submission (read-write)                              this job's working copy
    /tmp, /dev/shm (private, size-limited tmpfs)              scratch space that dies with the job
    /dev (bwrap's minimal set), /proc (its own PID namespace) and, when grading on the GPU
    (``flowlab grade --device cuda``), the NVIDIA device nodes and a read-only /sys (what CUDA
    reads at start-up); grading on the CPU, the notebook sees no GPU

Nothing else of the host exists inside: no home, /work, /srv, /opt, /mnt, /var, no other copy of
the course, no other job. Everything under /etc that is not listed (accounts, keys, configuration)
stays out; fonts come from /usr/share and matplotlib's own.
"""
from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass
from pathlib import Path

BOX_IN_SANDBOX = "/tmp/submission"
BUNDLE_IN_SANDBOX = "/tmp/bundle"
SYSTEM_FOLDERS = ("/usr",)
SYSTEM_TOP_LEVEL = ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
LINKER_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d")
GENERATED_ETC = ("passwd", "group", "hosts")
SCRATCH_BYTES = 512 * 2**20


@dataclass(frozen=True)
class Mount:
    """One allowlist entry: bwrap ``option`` with ``source`` (host path or link target) at ``target``."""
    option: str
    source: str
    target: str

    def argv(self) -> list[str]:
        return [self.option, self.source, self.target]

    def describe(self) -> str:
        mode = {"--ro-bind": "read-only", "--bind": "read-write", "--dev-bind": "device",
                "--symlink": "link"}[self.option]
        where = self.target if self.source == self.target else f"{self.source} at {self.target}"
        return f"{where} ({mode})"


def python_install() -> list[str]:
    """The folders the sandboxed Python needs (real paths of ``sys.prefix`` and ``sys.base_prefix``),
    leaving out those already under a system folder (a Debian Python lives in /usr)."""
    folders = sorted({os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)})
    return [folder for folder in folders if not any(_inside(folder, system) for system in SYSTEM_FOLDERS)]


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def gpu_devices() -> list[str]:
    """The host's NVIDIA device nodes (``/dev/nvidia0``, ``/dev/nvidiactl``, ``/dev/nvidia-uvm``, ...)."""
    return sorted(glob.glob("/dev/nvidia*"))


def system_mounts(gpu: bool = False) -> list[Mount]:
    """/usr read-only; /bin, /sbin, /lib* as links where the host has links (merged /usr), else
    read-only; the linker's cache and configuration; with ``gpu``, the NVIDIA devices and /sys."""
    mounts = [Mount("--ro-bind", folder, folder) for folder in SYSTEM_FOLDERS if os.path.isdir(folder)]
    for path in SYSTEM_TOP_LEVEL:
        if os.path.islink(path):
            mounts.append(Mount("--symlink", os.readlink(path), path))
        elif os.path.isdir(path):
            mounts.append(Mount("--ro-bind", path, path))
    mounts += [Mount("--ro-bind", path, path) for path in LINKER_FILES if os.path.exists(path)]
    devices = gpu_devices() if gpu else []
    if devices:             # CUDA opens these and reads the PCI topology under /sys
        mounts += [Mount("--dev-bind", device, device) for device in devices]
        mounts.append(Mount("--ro-bind", "/sys", "/sys"))
    return mounts


def job_mounts(box: Path, bundle: Path, etc: Path) -> list[Mount]:
    """The Python installation, the generated /etc files, the bundle and the working copy."""
    mounts = [Mount("--ro-bind", folder, folder) for folder in python_install()]
    mounts += [Mount("--ro-bind", str(etc / name), f"/etc/{name}") for name in GENERATED_ETC]
    return mounts + [Mount("--ro-bind", str(bundle), BUNDLE_IN_SANDBOX), Mount("--bind", str(box), BOX_IN_SANDBOX)]


def write_etc(etc: Path, uid: int, gid: int) -> None:
    """The three /etc files the sandbox gets instead of the host's: one account (the student, home
    in the working copy), its group, and localhost."""
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "passwd").write_text(f"student:x:{uid}:{gid}:student:{BOX_IN_SANDBOX}/home:/bin/sh\n")
    (etc / "group").write_text(f"student:x:{gid}:\n")
    (etc / "hosts").write_text("127.0.0.1 localhost\n::1 localhost\n")


def _parents(target: str) -> list[str]:
    parts = Path(target).parent.parts[1:]
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def bwrap_argv(program: str, box: Path, bundle: Path, etc: Path, environment: dict[str, str],
               as_root: bool, gpu: bool = False) -> list[str]:
    """The ``bwrap`` command line (up to the ``--`` before the command) for one job (``gpu``: with
    the NVIDIA devices).

    As root, bwrap makes every namespace but a user namespace (in one, the job's user would be
    root outside) and keeps ``CAP_SETUID``/``CAP_SETGID`` only, for the launcher
    (``flowlab_grader.jail``) to become the job's user for good. Without root it needs a user
    namespace (unprivileged, as the caller), and forbids nested ones."""
    if as_root:
        argv = [program, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                "--unshare-cgroup-try", "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        argv = [program, "--unshare-all", "--unshare-user", "--disable-userns", "--cap-drop", "ALL",
                "--uid", str(os.getuid()), "--gid", str(os.getgid())]
    argv += ["--die-with-parent", "--new-session", "--hostname", "flowlab", "--proc", "/proc", "--dev", "/dev"]
    for scratch in ("/tmp", "/dev/shm"):
        argv += ["--perms", "1777", "--size", str(SCRATCH_BYTES), "--tmpfs", scratch]
    mounts = system_mounts(gpu) + job_mounts(box, bundle, etc)
    made = set()
    for mount in mounts:    # bwrap would copy the host's modes (/root is 0700): make them passable
        for parent in _parents(mount.target):
            if parent not in made and parent not in ("/tmp", "/dev"):
                argv += ["--perms", "0755", "--dir", parent]
                made.add(parent)
        argv += mount.argv()
    argv += ["--chdir", "/", "--clearenv"]   # the launcher enters the working copy as the job's user
    for name, value in environment.items():
        argv += ["--setenv", name, value]
    return argv


def visible(box: Path, bundle: Path, gpu: bool = False) -> list[str]:
    """The allowlist in words, for ``grading.json``."""
    mounts = [mount for mount in system_mounts(gpu) + job_mounts(box, bundle, Path("/"))
              if not mount.target.startswith("/etc/") or mount.target in LINKER_FILES]
    return [mount.describe() for mount in mounts] + [
        f"/etc/{', '.join(GENERATED_ETC)} (generated: the student's account, localhost)",
        "/tmp and /dev/shm (private tmpfs)", "/dev (bwrap's minimal set)", "/proc (own PID namespace)"]
