"""A seccomp filter the fork-server installs on itself, so every program it forks inherits it.

Namespaces, mounts and the kernel's rarer interfaces are no business of a program under test, and
they are where a sandbox's walls are thinnest: creating a user namespace (which grants capabilities
inside it), mounting, other processes' memory (ptrace, process_vm_*), keyrings, BPF, io_uring,
userfaultfd, kernel modules. Those calls fail with EPERM; clone3 fails with ENOSYS so that the C
library falls back to clone, whose namespace flags are checked; system calls of another ABI (i386
or x32 on x86_64) kill the process. No new privileges are ever gained after this (setuid files).

Stdlib only: this file is sent into the sandbox as source text.
"""
import ctypes
import platform
import struct

PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
RET_KILL_PROCESS, RET_ERRNO, RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
EPERM, ENOSYS = 1, 38
LD_ABS, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
NAMESPACE_FLAGS = 0x7E020080  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME

BLOCKED_NAMES = (
    "unshare setns mount umount2 pivot_root chroot fsopen fsmount fspick move_mount open_tree mount_setattr "
    "ptrace process_vm_readv process_vm_writev keyctl add_key request_key bpf perf_event_open userfaultfd "
    "io_uring_setup io_uring_enter io_uring_register kexec_load init_module finit_module delete_module "
    "open_by_handle_at name_to_handle_at acct swapon swapoff reboot syslog quotactl"
).split()
ARCHES = {
    "x86_64": (0xC000003E, {
        "clone": 56, "clone3": 435, "unshare": 272, "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155,
        "chroot": 161, "fsopen": 430, "fsmount": 432, "fspick": 433, "move_mount": 429, "open_tree": 428,
        "mount_setattr": 442, "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "keyctl": 250,
        "add_key": 248, "request_key": 249, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "kexec_load": 246, "init_module": 175,
        "finit_module": 313, "delete_module": 176, "open_by_handle_at": 304, "name_to_handle_at": 303, "acct": 163,
        "swapon": 167, "swapoff": 168, "reboot": 169, "syslog": 103, "quotactl": 179}),
    "aarch64": (0xC00000B7, {
        "clone": 220, "clone3": 435, "unshare": 97, "setns": 268, "mount": 40, "umount2": 39, "pivot_root": 41,
        "chroot": 51, "fsopen": 430, "fsmount": 432, "fspick": 433, "move_mount": 429, "open_tree": 428,
        "mount_setattr": 442, "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "keyctl": 219,
        "add_key": 217, "request_key": 218, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "kexec_load": 104, "init_module": 105,
        "finit_module": 273, "delete_module": 106, "open_by_handle_at": 265, "name_to_handle_at": 264, "acct": 89,
        "swapon": 224, "swapoff": 225, "reboot": 142, "syslog": 116, "quotactl": 60}),
}


def _op(code, k, jt=0, jf=0):
    return struct.pack("HBBI", code, jt, jf, k)


def program(machine):
    """The filter's BPF instructions for this machine, or None when its system call table is not known."""
    if machine not in ARCHES:
        return None
    audit_arch, numbers = ARCHES[machine]
    ops = [_op(LD_ABS, 4), _op(JEQ, audit_arch, 1, 0), _op(RET, RET_KILL_PROCESS), _op(LD_ABS, 0)]
    if machine == "x86_64":  # the x32 ABI numbers its calls from 0x40000000
        ops += [_op(JGE, 0x40000000, 0, 1), _op(RET, RET_KILL_PROCESS)]
    ops += [_op(JEQ, numbers["clone"], 0, 4), _op(LD_ABS, 16), _op(JSET, NAMESPACE_FLAGS, 0, 1),
            _op(RET, RET_ERRNO | EPERM), _op(RET, RET_ALLOW)]
    ops += [_op(JEQ, numbers["clone3"], 0, 1), _op(RET, RET_ERRNO | ENOSYS)]
    for name in BLOCKED_NAMES:
        ops += [_op(JEQ, numbers[name], 0, 1), _op(RET, RET_ERRNO | EPERM)]
    ops.append(_op(RET, RET_ALLOW))
    return ops


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install():
    """Install the filter on this process (and so on every process it forks); False on an unknown machine."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    ops = program(platform.machine())
    if ops is None:
        return False
    code = ctypes.create_string_buffer(b"".join(ops))
    fprog = _Program(len(ops), ctypes.cast(code, ctypes.c_void_p))
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")
    return True
