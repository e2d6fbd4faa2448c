"""What a sandboxed program sees of the file system: the same plan for every isolation mode.

The root is an empty tmpfs. Into it go, read-only and at their host paths, only the interpreter,
its standard library (every site-packages / dist-packages folder inside it hidden under an empty
mount) and the shared libraries the interpreter and its extension modules load, with the symlinks
the dynamic loader follows to reach them. Then a private /proc, a /dev of five device nodes, and
empty size-capped tmpfs mounts for /tmp, /var/tmp, /dev/shm and HOME. Nothing else: no /etc, no
home folders, no project tree, no package of any interpreter.

A plan is a list of operations (tuples), turned into bubblewrap arguments here (bwrap_args) or
carried out by mount_view.py (unshare mode):
    ("dir", path, mode)  ("ro-bind", path)  ("dev-bind", path)  ("symlink", target, path)
    ("tmpfs", path, size_bytes, mode)  ("mask", path)  ("proc", path)  ("remount-ro", path)
"""
from __future__ import annotations

import functools
import json
import os
import subprocess

HOME = "/home/sandbox"
PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", HOME)  # empty at start, wiped after every program
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
PACKAGE_DIRS = ("site-packages", "dist-packages")

# Run by the interpreter the workers will use: load every extension module it ships, then report
# what it mapped (the shared libraries it needs) and where its standard library lives.
PROBE = r"""
import json, os, sys, sysconfig
dynload = [p for p in sys.path if os.path.basename(p) == 'lib-dynload' and os.path.isdir(p)]
for folder in dynload:
    for name in sorted(os.listdir(folder)):
        if name.endswith('.so'):
            try:
                __import__(name.split('.')[0])
            except BaseException:
                pass
mapped = set()
with open('/proc/self/maps') as fh:
    for line in fh:
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith('/') and not parts[5].rstrip().endswith('(deleted)'):
            mapped.add(parts[5].rstrip('\n'))
paths = sysconfig.get_paths()
print(json.dumps({"executable": os.path.realpath(sys.executable), "mapped": sorted(mapped),
                  "stdlib": sorted({paths['stdlib'], paths['platstdlib'], *dynload}),
                  "zips": [p for p in sys.path if p.endswith('.zip') and os.path.isfile(p)]}))
"""


@functools.cache
def probe(python: str) -> dict:
    """The interpreter's real path, standard-library folders and mapped shared libraries (once per process)."""
    out = subprocess.run([python, "-I", "-S", "-c", PROBE], capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, cwd="/", check=True)
    return json.loads(out.stdout)


def plan(python: str, tmp_bytes: int) -> list[tuple]:
    """The operations that build the program's file system for this interpreter."""
    found = probe(python)
    binds: set[str] = set()
    links: dict[str, str] = {}
    wanted = [python, found["executable"], *found["stdlib"], *found["zips"], *found["mapped"],
              *_elf_interpreter(found["executable"])]
    for lib in found["mapped"]:
        wanted += _soname_links(lib)
    wanted += [p for p in ("/etc/ld.so.cache",) if os.path.isfile(p)]  # the loader's index of system libraries
    for path in wanted:
        _expose(path, binds, links, depth=0)
    binds = _outermost(binds)
    links = {path: target for path, target in links.items() if not any(_inside(path, b) for b in binds)}
    for top in sorted(os.listdir("/")):  # /lib -> usr/lib and the like: how the loader reaches libraries
        path = "/" + top
        if os.path.islink(path) and path not in links:
            links[path] = os.readlink(path)

    ops: list[tuple] = []
    folders = sorted({parent for p in [*binds, *links, *PRIVATE_DIRS, "/proc", "/dev"] for parent in _parents(p)})
    folders = [f for f in folders if f not in links and not any(_inside(f, b) for b in binds)]
    ops += [("dir", f, 0o755) for f in folders]
    for path in sorted(binds):
        ops.append(("ro-bind", path))
        if os.path.isdir(path) and path in found["stdlib"]:
            ops += [("mask", os.path.join(path, name)) for name in PACKAGE_DIRS if os.path.isdir(os.path.join(path, name))]
    ops += [("symlink", target, path) for path, target in sorted(links.items())]
    ops.append(("proc", "/proc"))
    ops.append(("tmpfs", "/dev", 1 << 20, 0o755))
    ops += [("dev-bind", d) for d in DEVICES if os.path.exists(d)]
    ops += [("symlink", f"/proc/self/fd/{i}", f"/dev/{name}") for i, name in enumerate(("stdin", "stdout", "stderr"))]
    ops.append(("symlink", "/proc/self/fd", "/dev/fd"))
    ops += [("tmpfs", d, tmp_bytes, 0o1777) for d in PRIVATE_DIRS]
    ops += [("remount-ro", "/dev"), ("remount-ro", "/")]
    return ops


def bwrap_args(ops: list[tuple]) -> list[str]:
    """The same plan as bubblewrap arguments."""
    args: list[str] = []
    for op in ops:
        kind = op[0]
        if kind == "dir":
            args += ["--perms", f"{op[2]:04o}", "--dir", op[1]]
        elif kind == "ro-bind":
            args += ["--ro-bind", op[1], op[1]]
        elif kind == "dev-bind":
            args += ["--dev-bind", op[1], op[1]]
        elif kind == "symlink":
            args += ["--symlink", op[1], op[2]]
        elif kind == "tmpfs":
            args += ["--perms", f"{op[3]:04o}", "--size", str(op[2]), "--tmpfs", op[1]]
        elif kind == "mask":
            args += ["--perms", "0555", "--size", "4096", "--tmpfs", op[1], "--remount-ro", op[1]]
        elif kind == "proc":
            args += ["--proc", op[1]]
        elif kind == "remount-ro":
            args += ["--remount-ro", op[1]]
        else:
            raise ValueError(f"unknown view operation {kind!r}")
    return args


def _expose(path: str, binds: set[str], links: dict[str, str], depth: int) -> None:
    """Make `path` reachable as the host reaches it: every symlink on the way recreated, the real file bound."""
    if depth > 40 or not os.path.exists(path):
        return
    parts = [p for p in os.path.normpath(path).split("/") if p]
    current = "/"
    for i, part in enumerate(parts):
        step = os.path.join(current, part)
        if os.path.islink(step):
            target = os.readlink(step)
            links[step] = target
            _expose(os.path.join(os.path.dirname(step), target, *parts[i + 1:]), binds, links, depth + 1)
            return
        current = step
    binds.add(current)


def _elf_interpreter(path: str) -> list[str]:
    """The dynamic loader an ELF executable names (PT_INTERP), e.g. /lib64/ld-linux-x86-64.so.2."""
    import struct

    with open(path, "rb") as fh:
        head = fh.read(64)
        if head[:4] != b"\x7fELF":
            return []
        wide, order = head[4] == 2, "<" if head[5] == 1 else ">"
        phoff, phentsize, phnum = (struct.unpack_from(order + "Q", head, 32)[0] if wide else struct.unpack_from(order + "I", head, 28)[0],
                                   *struct.unpack_from(order + "HH", head, 54 if wide else 42))
        for i in range(phnum):
            fh.seek(phoff + i * phentsize)
            entry = fh.read(phentsize)
            if struct.unpack_from(order + "I", entry, 0)[0] == 3:  # PT_INTERP
                offset, size = (struct.unpack_from(order + "QQ", entry, 8)[0], struct.unpack_from(order + "Q", entry, 32)[0]) if wide \
                    else (struct.unpack_from(order + "I", entry, 4)[0], struct.unpack_from(order + "I", entry, 16)[0])
                fh.seek(offset)
                return [fh.read(size).rstrip(b"\0").decode()]
    return []


def _soname_links(lib: str) -> list[str]:
    """Symlinks beside a library that resolve to it (libc.so.6 -> libc-2.31.so): the names the loader asks for."""
    folder, real = os.path.dirname(lib), os.path.realpath(lib)
    return [os.path.join(folder, name) for name, target in _links_in(folder).items() if target == real]


@functools.cache
def _links_in(folder: str) -> dict[str, str]:
    found = {}
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_symlink():
                    found[entry.name] = os.path.realpath(entry.path)
    except OSError:
        pass
    return found


def _outermost(paths: set[str]) -> set[str]:
    """Drop paths that lie inside another bound folder (the folder's bind already shows them)."""
    return {p for p in paths if not any(q != p and _inside(p, q) for q in paths)}


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _parents(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p]
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]
