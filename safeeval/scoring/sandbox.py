"""The only place safeeval executes model-written code: one program per fresh, locked-down process tree.

How one run is isolated (Linux; stdlib only, no cgroups, no external tools):

* A launcher (the chosen Python, ``-I -B``, started in a new session with a scrubbed environment:
  PATH, LANG, LC_ALL, HOME=TMPDIR=the work dir; stdin is /dev/null) unshares new mount, PID, network,
  IPC and UTS namespaces. As root that needs nothing more; as another user it first creates a user
  namespace (unprivileged user namespaces must be enabled).
* Files: in the new mount namespace every mount is made read-only and nosuid (``mount_setattr``,
  recursive), then a size-limited tmpfs (noexec) is mounted on the run's fresh temporary directory,
  the only writable place. It vanishes with the namespace; the host directory is removed afterwards.
  Directories the sandbox user cannot traverse (``/root`` when Python lives in ``~/.pyenv``), and the
  invoking user's home when not root, are covered by an empty tmpfs with only the interpreter's own
  folders bound back in, so the program can import the standard library but not read the rest.
* Processes: the first child is PID 1 of the new PID namespace; the program runs in its child. When
  PID 1 exits or is killed, the kernel kills every process left in the namespace, however it forked
  or detached (setsid cannot escape a PID namespace). As root, PID 1 and the program run as a fresh
  unprivileged uid/gid (one per concurrent run, from a locked pool), so RLIMIT_NPROC bounds that run
  alone (root ignores RLIMIT_NPROC) and the program can signal nothing outside. Not root: all
  capabilities are dropped instead. Always: no_new_privs, parent-death signal SIGKILL.
* Limits on the program: RLIMIT_AS (memory_mb), RLIMIT_CPU (timeout, then SIGKILL a second later),
  RLIMIT_NPROC, RLIMIT_FSIZE (also caps its stdout/stderr, which go to files, not pipes), no core
  files, a bounded number of open files; and a wall-clock timeout enforced by the caller.
* Network: the new network namespace has only a loopback interface that is down, so every connect
  fails (ENETUNREACH), 127.0.0.1 included.
* Afterwards: SIGKILL to the run's whole process group (sent before the launcher is reaped, so the
  id cannot have been reused), and on any abnormal end a sweep that kills and waits out every
  process of the run's uid (root) or PID namespace (not root); a process that outlives it stops the run.

No protection is ever dropped quietly. If one cannot be given (no namespaces, no privileges, a container
that masks /proc, an interpreter missing), SafeevalError is raised with one sentence naming it and how to
get it: a program never runs with less isolation than promised, and is never scored as passed or failed
without having run. The one exception is the user's explicit opt-in (`allow`, from the scorer option
`sandbox_allow` or `--sandbox-allow`) for the two protections a container commonly lacks: the network
namespace ("network") and a /proc of its own ("proc"). What each run actually had is in Result.isolation.
"""

from __future__ import annotations

import fcntl
import grp
import json
import logging
import marshal
import math
import os
import pwd
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SafeevalError

log = logging.getLogger(__name__)

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
ALLOWABLE = ("network", "proc")  # the protections a user may explicitly accept running without
_AS_ROOT = "run safeeval as root, or as a user with unprivileged user namespaces enabled"
_IN_CONTAINER = "; a container must allow unshare and mount (e.g. Docker's default seccomp profile forbids them)"
# protection -> (what the sandbox promises, how to get it); a refusal names both in one sentence.
PROTECTIONS = {
    "user": (
        "an unprivileged user (a fresh uid as root, a capability-less user namespace otherwise)",
        _AS_ROOT + " (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0); as root in a "
        "user-namespaced container, map a uid range into it",
    ),
    "mount": ("its own mount namespace", _AS_ROOT + _IN_CONTAINER),
    "pid": ("its own PID namespace", _AS_ROOT + _IN_CONTAINER),
    "ipc": ("its own IPC namespace", _AS_ROOT + _IN_CONTAINER),
    "uts": ("its own UTS namespace", _AS_ROOT + _IN_CONTAINER),
    "network": (
        "a network namespace of its own (no network)",
        _AS_ROOT + ", with user.max_net_namespaces above 0" + _IN_CONTAINER + "; or accept model-written code "
        "with network access: --sandbox-allow network (scorer_options: {sandbox_allow: [network]})",
    ),
    "proc": (
        "a /proc of its own (the host's processes hidden)",
        "a container that masks parts of /proc lets only root mount a new one: run safeeval as root there, or "
        "accept the host's /proc, read-only: --sandbox-allow proc (scorer_options: {sandbox_allow: [proc]})",
    ),
    "filesystem": (
        "a read-only filesystem with one small tmpfs to write in",
        "it needs Linux 5.3+ and mount rights in its namespaces" + _IN_CONTAINER,
    ),
    "limits": ("its resource limits", "raise the hard limits (ulimit -H) of the shell that starts safeeval"),
    "tree-kill": ("a kill of the program's whole process tree", "it needs Linux 5.3+ with a readable /proc"),
    "setup": ("its set-up", "see the detail above"),
}
SETUP_TIMEOUT_S = 60.0  # the launcher's own start (imports, namespaces, mounts) before the program's clock starts
UID_POOL = 4096  # unprivileged uids reserved for concurrent runs (root mode)


@dataclass
class Result:
    status: str  # passed | failed | timeout | error
    returncode: int | None  # the program's exit code, or -signal; None when it was stopped at the timeout
    stdout: str = ""  # tails
    stderr: str = ""
    duration_s: float = 0.0  # from the program's start to its end
    uid: int | None = None  # the uid it ran as (root mode)
    notes: list[str] = field(default_factory=list)  # e.g. "without protection network (allowed): ..."
    isolation: dict = field(default_factory=dict)  # what the run actually had (see isolation())


# --- the launcher: runs as the chosen Python, before and around the program --------------------------

_LAUNCHER = r"""
import _signal as signal, ctypes, marshal, os, resource, sys  # _signal: signal imports enum
C = marshal.loads(bytes.fromhex(sys.argv[1]))  # marshal: json would import re and enum, ~6 ms per run
ST = C["status_fd"]
def say(line):
    os.write(ST, (line + "\n").encode())
P = "setup"  # the protection being set up: a failure names it, and the run is refused
def fail(what, err=None, prot=None):
    try:
        say("error\t%s\t%s" % (prot or P, what if err is None else "%s: %s" % (what, os.strerror(err))))
    finally:
        os._exit(125)
ALLOW = set(C["allow"])  # protections the user explicitly accepted running without
def lost(prot, err):
    say("lost\t%s\t%s" % (prot, os.strerror(err)))
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def b(s):
    return None if s is None else s.encode()
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 8, 32, 4096, 16384, 1 << 18
)
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
def mount(src, target, fstype, flags, data=None):
    if libc.mount(b(src), b(target), b(fstype), ctypes.c_ulong(flags), b(data)) != 0:
        fail("mount %s on %s" % (fstype or src or "(propagation)", target), ctypes.get_errno())
def syscall(nr, *args):
    rc = libc.syscall(ctypes.c_long(nr), *args)
    return rc, (ctypes.get_errno() if rc < 0 else 0)
class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]
def prctl(opt, arg):
    if libc.prctl(ctypes.c_int(opt), ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
        fail("prctl %d" % opt, ctypes.get_errno())
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
if os.getppid() != C["parent"]:
    os._exit(124)
NEWNS, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET = 0x20000, 0x4000000, 0x8000000, 0x10000000, 0x20000000, 0x40000000
mode, U, G = C["mode"], C["uid"], C["gid"]
flags = NEWNS | NEWPID | NEWIPC | NEWUTS | NEWNET | (NEWUSER if mode == "userns" else 0)
if libc.unshare(ctypes.c_int(flags)) != 0:
    err = ctypes.get_errno()
    if "network" in ALLOW and libc.unshare(ctypes.c_int(flags & ~NEWNET)) == 0:
        lost("network", err)
    else:  # name the namespace the kernel refuses (this process exits right after)
        if mode == "userns" and libc.unshare(ctypes.c_int(NEWUSER)) != 0:
            fail("a user namespace", ctypes.get_errno(), "user")
        for name, bit in (("mount", NEWNS), ("pid", NEWPID), ("ipc", NEWIPC), ("uts", NEWUTS), ("network", NEWNET)):
            if libc.unshare(ctypes.c_int(bit)) != 0:
                fail("a new %s namespace" % name, ctypes.get_errno(), name)
        fail("new namespaces", err)
if mode == "userns":
    P = "user"
    for name, text in (("setgroups", "deny"), ("uid_map", "%d %d 1" % (U, U)), ("gid_map", "%d %d 1" % (G, G))):
        try:
            with open("/proc/self/" + name, "w") as f:
                f.write(text)
        except OSError as e:
            fail("writing /proc/self/" + name, e.errno)
P = "filesystem"
mount(None, "/", None, MS_REC | MS_PRIVATE)
# Hide what the sandbox may not see (and could not traverse anyway), binding back what Python needs.
for hidden, binds in C["hide"]:
    trees = []
    for path in binds:
        # open_tree(OPEN_TREE_CLONE | O_CLOEXEC | AT_RECURSIVE)
        fd, err = syscall(428, ctypes.c_int(AT_FDCWD), b(path), ctypes.c_uint(1 | 0o2000000 | AT_RECURSIVE))
        if fd < 0:
            fail("open_tree " + path, err)
        trees.append((path, fd))
    mount("tmpfs", hidden, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=1024,mode=0755")
    for path, fd in trees:
        os.makedirs(path, exist_ok=True)
        rc, err = syscall(429, ctypes.c_int(fd), b"", ctypes.c_int(AT_FDCWD), b(path), ctypes.c_uint(4))  # move_mount
        if rc < 0:
            fail("move_mount " + path, err)
        os.close(fd)
# Everything read-only and nosuid.
attr = MountAttr(1 | 2, 0, 0, 0)
rc, err = syscall(
    442, ctypes.c_int(AT_FDCWD), b"/", ctypes.c_uint(AT_RECURSIVE), ctypes.byref(attr),
    ctypes.c_size_t(ctypes.sizeof(attr)),
)
if rc < 0:
    if err != 38:  # ENOSYS: a kernel before 5.12; remount mount by mount
        fail("mount_setattr read-only", err)
    with open("/proc/self/mountinfo") as f:
        infos = [line.split() for line in f]
    for info in infos:
        point = info[4].encode().decode("unicode_escape")
        keep = 0
        for opt, bit in (
            ("nodev", MS_NODEV), ("noexec", MS_NOEXEC), ("noatime", 1024), ("nodiratime", 2048), ("relatime", 1 << 21)
        ):
            if opt in info[5].split(","):
                keep |= bit
        if libc.mount(
            None, b(point), None, ctypes.c_ulong(MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | keep), None
        ) != 0:
            fail("read-only remount of " + point, ctypes.get_errno())
# The one writable place: a fresh tmpfs on the run's directory, holding the program.
wd = C["workdir"]
with open(os.path.join(wd, "program.py"), "rb") as f:
    src = f.read()
mount("tmpfs", wd, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
      "size=%dk,nr_inodes=%d,mode=0700,uid=%d,gid=%d" % (C["work_kb"], C["inodes"], U, G))
os.chdir(wd)
with open("program.py", "wb") as f:
    f.write(src)
os.chmod("program.py", 0o444)
P = "tree-kill"
# The host's /proc, held open: PID 1 shares this mount namespace and mounts its own /proc over it at any moment.
HOST_PROC = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
pid = os.fork()
if pid:
    try:
        say("pidns " + os.readlink("%d/ns/pid" % pid, dir_fd=HOST_PROC))
    except OSError as e:
        # ENOENT: PID 1 has already exited, and the kernel killed its namespace with it. Anything else: the
        # caller could not find the run's processes to kill, so refuse.
        if e.errno != 2:
            os.kill(pid, signal.SIGKILL)
            fail("reading the sandbox's PID namespace", e.errno)
    _, st = os.waitpid(pid, 0)
    if os.WIFSIGNALED(st):
        say("init-signal %d" % os.WTERMSIG(st))
    os._exit(0)
os.close(HOST_PROC)  # the program must not hold the host's /proc
# PID 1 of the new namespace: when it exits, the kernel kills whatever is left in it.
signal.signal(signal.SIGINT, signal.SIG_DFL)
if libc.mount(b"proc", b"/proc", b"proc", ctypes.c_ulong(MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY), None) != 0:
    err = ctypes.get_errno()
    if "proc" not in ALLOW:
        fail("mounting its own /proc", err, "proc")
    lost("proc", err)  # the host's /proc stays, read-only
if libc.sethostname(b"sandbox", ctypes.c_size_t(7)) != 0:
    fail("setting the hostname", ctypes.get_errno(), "uts")
P = "limits"
def limit(res, soft, hard=None):
    hard = soft if hard is None else hard
    cur = resource.getrlimit(res)[1]
    if cur != resource.RLIM_INFINITY:
        hard, soft = min(hard, cur), min(soft, cur)
    try:
        resource.setrlimit(res, (soft, hard))
    except (OSError, ValueError) as e:
        fail("setrlimit %d" % res, getattr(e, "errno", None) or 22)
limit(resource.RLIMIT_AS, C["memory"])
limit(resource.RLIMIT_CPU, C["cpu"], C["cpu"] + 1)
limit(resource.RLIMIT_NPROC, C["nproc"])
limit(resource.RLIMIT_FSIZE, C["fsize"])
limit(resource.RLIMIT_CORE, 0)
limit(resource.RLIMIT_NOFILE, C["nofile"])
limit(resource.RLIMIT_MEMLOCK, 0)
limit(resource.RLIMIT_MSGQUEUE, 0)
P = "user"
if mode == "root":
    os.setgroups([])
    os.setresgid(G, G, G)
    os.setresuid(U, U, U)
    if os.getresuid() != (U, U, U) or os.getresgid() != (G, G, G):
        fail("dropping to uid %d" % U)
else:
    class CapHeader(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
    class CapData(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]
    if libc.capset(ctypes.byref(CapHeader(0x20080522, 0)), ctypes.byref((CapData * 2)())) != 0:
        fail("dropping capabilities", ctypes.get_errno())
prctl(PR_SET_NO_NEW_PRIVS, 1)
P = "tree-kill"
prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # cleared by the uid change above; set again
child = os.fork()
if child:
    while True:
        try:
            pid, st = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        if pid == child:
            say(("exit %d" % os.WEXITSTATUS(st)) if os.WIFEXITED(st) else ("signal %d" % os.WTERMSIG(st)))
            os._exit(0)
# The program, as `python -I program.py` would run it.
signal.signal(signal.SIGINT, signal.default_int_handler)
say("ready")
os.close(ST)
del C, ST, libc, attr, ALLOW
sys.argv = ["program.py"]
exec(
    compile(src, "program.py", "exec"),
    {"__name__": "__main__", "__file__": "program.py", "__builtins__": __builtins__},
)
"""


# --- interpreter facts, uid pool, sweeps -----------------------------------------------------------------

_lock = threading.Lock()
_interpreters: dict[str, dict] = {}
_checked: dict[tuple, dict] = {}
_warned: set[str] = set()
_uids_busy: set[int] = set()
_uids_verified: set[int] = set()


def _warn_once(kind: str, message: str) -> None:
    with _lock:
        if kind in _warned:
            return
        _warned.add(kind)
    log.warning(message)


def _env(workdir: str) -> dict:
    return {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir}


def _interpreter(python: str) -> dict:
    """The interpreter's import folders (to keep reachable in the sandbox); SafeevalError if it cannot run."""
    with _lock:
        if python in _interpreters:
            return _interpreters[python]
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise SafeevalError(
            f"The code sandbox cannot start: Python interpreter {python} does not exist or is not "
            "executable; set the scorer option 'python' to a Python 3.8+ interpreter."
        )
    probe = "import json, sys; print(json.dumps([sys.version_info[:2], sys.prefix, sys.base_prefix, sys.path]))"
    try:
        out = subprocess.run(
            [python, "-I", "-c", probe],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            env=_env("/"),
            stdin=subprocess.DEVNULL,
            cwd="/",
        )
        version, prefix, base, paths = json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise SafeevalError(
            f"The code sandbox cannot start: Python interpreter {python} did not run "
            f"({type(exc).__name__}: {str(exc)[:200]})."
        ) from None
    if tuple(version) < (3, 8):
        raise SafeevalError(
            f"The code sandbox cannot start: {python} is Python {version[0]}.{version[1]}; it needs 3.8+."
        )
    dirs = {os.path.realpath(p) for p in [prefix, base, *paths] if p and os.path.isdir(p)}
    # Keep the outermost folders only: binding one binds everything under it.
    dirs = sorted(d for d in dirs if not any(d != o and d.startswith(o.rstrip("/") + "/") for o in dirs))
    info = {"dirs": dirs, "version": version}
    with _lock:
        _interpreters[python] = info
    return info


def _blocked_ancestor(path: str) -> str | None:
    """The outermost folder above `path` that 'others' cannot traverse (x bit), if any."""
    parts = Path(path).parts
    for i in range(2, len(parts)):
        folder = str(Path(*parts[:i]))
        try:
            if not os.stat(folder).st_mode & 0o001:
                return folder
        except OSError:
            return None
    return None


def _hide_plan(python_dirs: list[str], workdir: str, mode: str) -> list[list]:
    """[[folder to cover with an empty tmpfs, [folders under it to bind back]], ...]."""
    hidden: set[str] = set()
    if mode == "root":
        hidden = {top for top in map(_blocked_ancestor, python_dirs) if top}
    else:
        home = os.path.realpath(pwd.getpwuid(os.getuid()).pw_dir or "/")
        if home != "/" and os.path.isdir(home):
            hidden.add(home)
    plan = []
    for top in sorted(hidden):

        def under(d: str, top: str = top) -> bool:
            return d == top or d.startswith(top.rstrip("/") + "/")

        if under(workdir):
            raise SafeevalError(
                f"The code sandbox cannot start: its temporary folder {workdir} lies inside {top}, "
                "which the sandbox hides; set TMPDIR to a folder elsewhere (e.g. /tmp)."
            )
        binds = [d for d in python_dirs if under(d) and d != top]
        plan.append([top, binds])
    return plan


def _uid_range() -> range:
    """A block of uids nobody uses, inside this (possibly user-namespaced) system's valid range."""
    base = 0x70010000  # systemd's unused range 0x70000000-0x7FFEFFFF
    try:
        with open("/proc/self/uid_map") as f:
            spans = [tuple(int(x) for x in line.split()) for line in f if line.strip()]
    except OSError:
        spans = [(0, 0, 2**32 - 1)]
    for inside, _, count in spans:
        if inside <= base and base + UID_POOL <= inside + count:
            return range(base, base + UID_POOL)
    inside, _, count = max(spans, key=lambda s: s[2])  # a user-namespaced container: the top of its largest range
    top = min(inside + count, 65534)
    pool = range(max(inside + 1, top - UID_POOL), top)
    if not pool:
        raise _refusal("root", sys.executable, "user", "no uid besides root is mapped into this user namespace")
    return pool


def _lock_dir() -> Path:
    for base in ("/run", tempfile.gettempdir()):
        folder = Path(base) / "safeeval-sandbox-uids"
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            st = os.lstat(folder)
            if st.st_uid == 0 and (st.st_mode & 0o077) == 0 and not Path(folder).is_symlink():
                return folder
        except OSError:
            continue
    raise SafeevalError("The code sandbox cannot start: no private folder for its uid locks (/run or the temp folder).")


def _uid_procs(uid: int) -> list[int]:
    """Live processes of `uid` (zombies hold nothing and run nothing: a container's init may never reap them)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                for line in f:
                    if line.startswith("State:") and line.split()[1] in ("Z", "X"):
                        break
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            found.append(int(name))
                        break
        except (OSError, ValueError, IndexError):
            continue
    return found


def _pidns_procs(ns: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.readlink(f"/proc/{name}/ns/pid") == ns and not _zombie(name):
                    found.append(int(name))
            except OSError:
                continue
    return found


def _zombie(pid: str) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def _acquire_uid() -> tuple[int, int]:
    """A uid (= gid) no other run, here or in another safeeval process, is using; with its lock file's fd."""
    folder = _lock_dir()
    for uid in _uid_range():
        with _lock:
            if uid in _uids_busy:
                continue
            _uids_busy.add(uid)
        fd = os.open(folder / f"{uid}.lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            with _lock:
                _uids_busy.discard(uid)
            continue
        if uid not in _uids_verified:
            if _uid_taken(uid) or _uid_procs(uid):  # someone else's uid: never ours to run or kill
                os.close(fd)
                continue  # stays marked busy, so it is not tried again
            _uids_verified.add(uid)
        return uid, fd
    raise SafeevalError(f"The code sandbox cannot start: all {UID_POOL} sandbox uids are in use.")


def _uid_taken(uid: int) -> bool:
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(uid)
            return True
        except KeyError:
            pass
    return False


def _release_uid(uid: int, fd: int) -> None:
    os.close(fd)
    with _lock:
        _uids_busy.discard(uid)


def _sweep(find, deadline_s: float = 10.0) -> bool:
    """SIGKILL every process `find()` returns until none is left; False if some outlived the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        pids = find()
        if not pids:
            return True
        if time.monotonic() > end:
            return False
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.005)


def _tail(data: bytes, n: int) -> str:
    text = data.decode("utf-8", errors="replace")
    return text[-n:] if n else ""


def _read_tail(f, n: int) -> str:
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(max(0, size - 4 * n))
    return _tail(f.read(), n)


# --- what a run had, and refusing what it cannot have --------------------------------------------------------


class _Escaped(SafeevalError):
    """Processes of a run outlived the kill sweep: the run's uid must never be handed out again."""


def allowed(allow) -> tuple[str, ...]:
    """The user's opt-ins, checked: only protections in ALLOWABLE may be given up."""
    names = tuple(sorted(set(allow or ())))
    unknown = [n for n in names if n not in ALLOWABLE]
    if unknown:
        raise SafeevalError(
            f"The code sandbox cannot be allowed to run without {', '.join(map(repr, unknown))}: "
            f"only {' and '.join(ALLOWABLE)} may be given up (sandbox_allow / --sandbox-allow)."
        )
    return names


def isolation(mode: str, allow: tuple[str, ...], lost: dict[str, str], limits: dict) -> dict:
    """What a run actually had, for results.json: every promised protection, and any the user allowed it to lack."""
    namespaces = ["mount", "pid", "ipc", "uts", "network"] + (["user"] if mode == "userns" else [])
    return {
        "mode": mode,
        "user": "a fresh unprivileged uid per run" if mode == "root" else "a user namespace without capabilities",
        "namespaces": [n for n in namespaces if n not in lost],
        "filesystem": "read-only, one tmpfs to write in",
        "network": "HOST NETWORK (allowed)" if "network" in lost else "none",
        "proc": "the host's, read-only (allowed)" if "proc" in lost else "its own",
        "environment": "PATH, LANG, LC_ALL, HOME, TMPDIR only",
        "limits": limits,
        "tree_kill": "PID namespace" + (" and uid sweep" if mode == "root" else " sweep"),
        "allowed": list(allow),
        "lost": dict(sorted(lost.items())),  # protection -> why the kernel refused it (only ever an allowed one)
    }


def _refusal(mode: str, python: str, prot: str, why: str) -> SafeevalError:
    if prot not in PROTECTIONS:
        return SafeevalError(f"The code sandbox cannot start ({mode} mode, {python}): {why}.")
    what, how = PROTECTIONS[prot]
    return SafeevalError(f"The code sandbox cannot start: it cannot give {what} here ({mode} mode: {why}); {how}.")


# --- running a program -------------------------------------------------------------------------------------


def run_program(
    code: str,
    timeout_s: float,
    memory_mb: int,
    *,
    python: str | None = None,
    nproc: int = 32,
    file_mb: int = 16,
    work_mb: int = 64,
    nofile: int = 256,
    tail_chars: int = 4000,
    mode: str | None = None,
    allow=(),
) -> Result:
    """Run `code` as a Python program in the sandbox; see the module docstring for what that means.

    status: "passed" (exit 0), "failed" (non-zero exit: an exception, a failed assert, MemoryError),
    "timeout" (wall clock or CPU limit), "error" (killed by another signal). Raises SafeevalError when
    the sandbox itself cannot run, or cannot give a protection it promises that `allow` does not name.
    """
    python = python or sys.executable
    mode = mode or ("root" if os.geteuid() == 0 else "userns")
    allow = allowed(allow)
    info = _interpreter(python)
    uid = lock_fd = None
    if mode == "root":
        uid, lock_fd = _acquire_uid()
        gid = uid
    else:
        uid, gid = os.getuid(), os.getgid()
    workdir = tempfile.mkdtemp(prefix="safeeval-sbx-")
    keep_uid = False
    try:
        return _run(
            code,
            timeout_s,
            memory_mb,
            python,
            info,
            mode,
            uid,
            gid,
            workdir,
            dict(nproc=nproc, file_mb=file_mb, work_mb=work_mb, nofile=nofile),
            tail_chars,
            allow,
        )
    except _Escaped:
        keep_uid = True  # still busy (and locked) for as long as this process lives
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if lock_fd is not None and not keep_uid:
            _release_uid(uid, lock_fd)


def _run(code, timeout_s, memory_mb, python, info, mode, uid, gid, workdir, lim, tail_chars, allow) -> Result:
    os.chmod(workdir, 0o700)
    Path(workdir, "program.py").write_text(code, encoding="utf-8")
    status_r, status_w = os.pipe()
    cfg = _launcher_cfg(status_w, mode, uid, gid, workdir, allow, info, memory_mb, timeout_s, lim)
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    launch = _execute(python, cfg, status_r, out, err, timeout_s)
    lines = launch.lines
    errors = [x.split("\t", 2)[1:] for x in lines if x.startswith("error\t") and x.count("\t") == 2]
    lost = dict(x.split("\t", 2)[1:] for x in lines if x.startswith("lost\t") and x.count("\t") == 2)
    stdout, stderr = _read_tail(out, tail_chars), _read_tail(err, tail_chars)
    out.close()
    err.close()
    if launch.escaped:
        raise _Escaped(
            f"Processes of a sandboxed program ({f'uid {uid}' if mode == 'root' else launch.pidns}) outlived "
            "SIGKILL for 10 s; the run stops rather than leave them running: find them with ps and "
            "end them."
        )
    if errors or "ready" not in lines:
        last = (stderr.strip().splitlines() or [f"launcher exit code {launch.returncode}"])[-1]
        prot, why = errors[0] if errors else ("", last)
        raise _refusal(mode, python, prot, why)
    notes = []
    for prot, why in sorted(lost.items()):  # only ever a protection the user allowed to be missing
        notes.append(f"without {prot} isolation (allowed): {why}")
        _warn_once(
            prot,
            f"The code sandbox runs model-written code WITHOUT {PROTECTIONS[prot][0]} ({why}), "
            "as sandbox_allow permits.",
        )
    limits = {"timeout_s": timeout_s, "cpu_s": cfg["cpu"], "memory_mb": int(memory_mb), **lim}
    iso = isolation(mode, allow, lost, limits)
    duration = (launch.ended or time.monotonic()) - launch.started
    run_uid = uid if mode == "root" else None
    if launch.timed_out:
        return Result("timeout", None, stdout, stderr, duration, run_uid, notes, iso)
    if not launch.finished:
        return Result(
            "error",
            None,
            stdout,
            stderr,
            duration,
            run_uid,
            notes + ["the sandbox's init process ended without a status"],
            iso,
        )
    status, rc, killed = _exit_status(launch.finished[-1])
    return Result(status, rc, stdout, stderr, duration, run_uid, notes + killed, iso)


def _launcher_cfg(status_w, mode, uid, gid, workdir, allow, info, memory_mb, timeout_s, lim) -> dict:
    """What the launcher is told: where to report, whom to run as, what to hide and the program's limits."""
    return {
        "status_fd": status_w,
        "parent": os.getpid(),
        "mode": mode,
        "uid": uid,
        "gid": gid,
        "workdir": workdir,
        "allow": list(allow),
        "hide": _hide_plan(info["dirs"], workdir, mode),
        "memory": int(memory_mb) * 2**20,
        "cpu": max(1, math.ceil(timeout_s)),
        "nproc": int(lim["nproc"]),
        "fsize": int(lim["file_mb"]) * 2**20,
        "nofile": int(lim["nofile"]),
        "work_kb": int(lim["work_mb"]) * 1024,
        "inodes": 4096,
    }


@dataclass
class _Ended:
    """How one launch ended, as _run turns it into a Result or a refusal."""

    lines: list[str]  # the launcher's status lines
    finished: list[str]  # its "exit N" / "signal N" lines
    returncode: int | None  # the launcher's
    timed_out: bool
    escaped: bool  # processes of the run outlived the sweep
    started: float | None  # monotonic clock around the program (phase 2)
    ended: float | None
    pidns: str | None


class _StatusPipe:
    """The read end of the launcher's status pipe, split into lines as they come."""

    def __init__(self, fd: int):
        self.fd, self.buf, self.lines = fd, b"", []

    def read(self, wait_s: float) -> bool:
        """Read status lines for up to wait_s; False at end of file."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, wait_s))
        if not ready:
            return True
        chunk = os.read(self.fd, 65536)
        self.buf += chunk
        *done, self.buf = self.buf.split(b"\n")
        self.lines.extend(x.decode(errors="replace") for x in done)
        return bool(chunk)

    def close(self) -> None:
        """Take whatever is left without waiting (a killed launcher may end mid-line), then close."""
        try:
            os.set_blocking(self.fd, False)
            while True:
                try:
                    chunk = os.read(self.fd, 65536)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                self.buf += chunk
            self.lines.extend(x.decode(errors="replace") for x in self.buf.split(b"\n") if x)
        finally:
            os.close(self.fd)


def _spawn(python: str, cfg: dict, out, err) -> subprocess.Popen:
    """Start the launcher in a session of its own; our copy of the status pipe's write end is closed either way."""
    try:
        return subprocess.Popen(
            [python, "-I", "-B", "-c", _LAUNCHER, marshal.dumps(cfg, 2).hex()],
            cwd=cfg["workdir"],
            env=_env(cfg["workdir"]),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            pass_fds=(cfg["status_fd"],),
            close_fds=True,
        )
    except OSError as exc:
        raise SafeevalError(f"The code sandbox cannot start: {python}: {exc.strerror or exc}.") from None
    finally:
        os.close(cfg["status_fd"])


def _execute(python: str, cfg: dict, status_r: int, out, err, timeout_s: float) -> _Ended:
    """Start the launcher, wait out its set-up and then the program, and leave nothing of the run alive.

    The `finally` block is the last step of the isolation and stays here, in this order, whatever ended the run
    (a timeout, an error, an interrupt): sweep a still-running sandbox, kill the process group before the
    launcher is reaped, reap it, then sweep once more after any abnormal end."""
    mode, uid = cfg["mode"], cfg["uid"]
    pipe = _StatusPipe(status_r)
    proc = pidfd = None
    timed_out = escaped = False
    started = ended = None
    try:
        proc = _spawn(python, cfg, out, err)
        try:
            pidfd = os.pidfd_open(proc.pid)  # not yet reaped, so this is our launcher
        except (AttributeError, OSError) as exc:
            raise SafeevalError(
                f"The code sandbox cannot start: it needs pidfd_open (Linux 5.3+, Python 3.9+): {exc}."
            ) from None
        # Phase 1: set-up, up to the "ready" line (or the end of the status pipe: set-up failed).
        deadline = time.monotonic() + SETUP_TIMEOUT_S
        while "ready" not in pipe.lines:
            if time.monotonic() > deadline:
                raise SafeevalError(f"The code sandbox did not start within {SETUP_TIMEOUT_S:.0f} s.")
            if not pipe.read(0.2):
                break
        # Phase 2: the program, under the wall-clock limit; pidfd becomes readable when the launcher exits.
        if "ready" in pipe.lines:
            started = time.monotonic()
            done, _, _ = select.select([pidfd], [], [], timeout_s)
            timed_out = not done
            ended = time.monotonic()
    finally:
        if proc is not None:
            pipe.read(0)
        pidns = next((x[6:] for x in pipe.lines if x.startswith("pidns ")), None)
        find = (lambda: _uid_procs(uid)) if mode == "root" else ((lambda: _pidns_procs(pidns)) if pidns else None)
        if pidfd is not None and not select.select([pidfd], [], [], 0)[0] and find is not None:
            # Still running (a timeout, an interrupt): kill the sandbox's processes first, so that the launcher
            # reaps PID 1 itself, then give it a moment to exit.
            _sweep(find)
            select.select([pidfd], [], [], 5.0)
        # Kill the run's whole process group while the launcher is unreaped (its id cannot be reused yet).
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
        if pidfd is not None:
            os.close(pidfd)
        pipe.close()
        finished = [x for x in pipe.lines if x.split(" ")[0] in ("exit", "signal")]
        if proc is not None and (timed_out or not finished or proc.returncode != 0):
            # An abnormal end: make sure nothing of the run survives it.
            escaped = find is not None and not _sweep(find)
    return _Ended(pipe.lines, finished, proc.returncode, timed_out, escaped, started, ended, pidns)


def _exit_status(line: str) -> tuple[str, int, list[str]]:
    """The init process's last word ("exit N" or "signal N") -> status, returncode, and a note for a signal."""
    kind, value = line.split(" ")
    value = int(value)
    if kind == "exit":
        return ("passed" if value == 0 else "failed"), value, []
    status = "timeout" if value == signal.SIGXCPU else "error"
    try:
        return status, -value, [f"killed by {signal.Signals(value).name}"]
    except ValueError:
        return status, -value, [f"killed by signal {value}"]


def check_sandbox(python: str | None = None, memory_mb: int = 2048, allow=(), timeout_s: float = 30, **limits) -> dict:
    """Run a trivial program once per setting (and process); SafeevalError if the sandbox does not work, or
    cannot give a protection that `allow` does not name. Returns the isolation that run had."""
    python = python or sys.executable
    key = (python, os.geteuid(), memory_mb, allowed(allow), timeout_s, tuple(sorted(limits.items())))
    with _lock:
        if key in _checked:
            return _checked[key]
    res = run_program("print('sandbox-ok')", timeout_s, memory_mb, python=python, allow=allow, **limits)
    if res.status != "passed" or "sandbox-ok" not in res.stdout:
        raise SafeevalError(
            f"The code sandbox does not work: a trivial program ended '{res.status}' "
            f"({(res.stderr.strip().splitlines() or ['no output'])[-1][:200]})."
        )
    with _lock:
        _checked[key] = res.isolation
    return res.isolation
