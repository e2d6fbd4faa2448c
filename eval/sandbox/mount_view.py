"""unshare mode's set-up: build view.py's file system in a fresh mount namespace, then start the worker.

Runs as pid 1 of the new pid namespace with the privileges of its mount namespace (real root when
the evaluator is root, root of a fresh user namespace otherwise), before any model-written code:
mounts an empty tmpfs root, carries out the plan, pivots into it and detaches the host's file system,
then gives up its privileges for good - a root evaluator's set-up becomes the worker's own uid, an
unprivileged one enters a nested user namespace as its own uid (no capabilities over any mount) -
and executes the worker, which stays pid 1.

    python -I -S -c <this source> '<json: {"root", "ops", "uid", "argv", "env"}>'

Stdlib only: this file is sent as source text.
"""
import ctypes
import json
import os
import platform
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
CLONE_NEWUSER = 0x10000000
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217, "riscv64": 41}
# statvfs f_flag bits that a user namespace may not clear on a bind (they are locked): keep them
LOCKED = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC), (os.ST_NOATIME, MS_NOATIME),
          (os.ST_NODIRATIME, MS_NODIRATIME), (getattr(os, "ST_RELATIME", 4096), MS_RELATIME))

libc = ctypes.CDLL(None, use_errno=True)


def check(result, what):
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source, target, fstype, flags, data=None):
    check(libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(), flags,
                     data and data.encode()), f"mount {target}")


def readonly_bind(target, extra=0):
    """Remount a bind read-only, keeping the flags the source mount has (a user namespace must)."""
    kept = sum(ms for st, ms in LOCKED if os.statvfs(target).f_flag & st)
    mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | kept | extra)


def make_point(path, like_dir):
    if like_dir:
        os.makedirs(path, exist_ok=True)
    elif not os.path.lexists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").close()


def build(root, ops):
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for op in ops:
        kind, path = op[0], op[-1] if op[0] == "symlink" else op[1]
        inside = root + path
        if kind == "dir":
            os.makedirs(inside, exist_ok=True)
            os.chmod(inside, op[2])
        elif kind in ("ro-bind", "dev-bind"):
            make_point(inside, os.path.isdir(path))
            mount(path, inside, None, MS_BIND)
            if kind == "ro-bind":
                readonly_bind(inside, MS_NODEV)
            else:
                mount(None, inside, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NOEXEC
                      | sum(ms for st, ms in LOCKED if os.statvfs(inside).f_flag & st and ms != MS_NODEV))
        elif kind == "symlink":
            os.makedirs(os.path.dirname(inside), exist_ok=True)
            os.symlink(op[1], inside)
        elif kind == "tmpfs":
            os.makedirs(inside, exist_ok=True)
            mount("tmpfs", inside, "tmpfs", MS_NOSUID | MS_NODEV, f"size={op[2]},mode={op[3]:o}")
        elif kind == "mask":
            mount("tmpfs", inside, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,mode=0555")
        elif kind == "proc":
            os.makedirs(inside, exist_ok=True)
            mount("proc", inside, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        elif kind == "remount-ro":
            if path != "/":  # the root is made read-only after the pivot
                readonly_bind(inside)
        else:
            raise ValueError(f"unknown view operation {kind!r}")


def pivot(root):
    os.chdir(root)
    number = SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise OSError(f"pivot_root: unknown system call number on {platform.machine()}")
    check(libc.syscall(number, b".", b"."), "pivot_root")
    check(libc.umount2(b".", MNT_DETACH), "detach the host's file system")
    os.chdir("/")
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def give_up_privileges(uid):
    """Root evaluator: become `uid` (all capabilities go). Otherwise: a nested user namespace in which
    this process is its own uid and holds no capability over the mounts made above."""
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        return
    outer = os.getuid()  # 0 here; the host uid is what 0 maps to
    with open("/proc/self/uid_map") as fh:
        host_uid = int(fh.read().split()[1])
    with open("/proc/self/gid_map") as fh:
        host_gid = int(fh.read().split()[1])
    with open("/proc/sys/user/max_user_namespaces", "w") as fh:
        fh.write("1")  # counts the nested one below: the program can create no user namespace of its own
    check(libc.unshare(CLONE_NEWUSER), "unshare(CLONE_NEWUSER)")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{host_uid} {outer} 1"), ("gid_map", f"{host_gid} {outer} 1")):
        with open(f"/proc/self/{name}", "w") as fh:
            fh.write(text)


def main(spec):
    check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make mounts private")
    build(spec["root"], spec["ops"])
    pivot(spec["root"])
    give_up_privileges(spec["uid"])
    os.chdir("/tmp")
    os.execve(spec["argv"][0], spec["argv"], spec["env"])


if __name__ == "__main__":
    try:
        main(json.loads(sys.argv[1]))
    except Exception as exc:  # one line on stderr: the evaluator shows it as the reason the worker did not start
        print(f"sandbox set-up failed: {exc}", file=sys.stderr)
        sys.exit(1)
