"""Run a command the way systemd runs a service, from the unit file itself.

Used by tests/test_unit_sandbox.py where systemd is not PID 1 (CI, a container):
it reads `systemd/accessd.service` and applies, in a private mount namespace,

| unit setting                   | done here                                          |
|--------------------------------|----------------------------------------------------|
| ProtectSystem=strict           | every mount but /dev /proc /sys re-mounted ro      |
| ReadWritePaths=, State-/RuntimeDirectory= | bound read-write from test directories  |
| ProtectHome=yes, PrivateTmp=yes| empty tmpfs over /root /home /run/user, /tmp /var/tmp |
| WorkingDirectory=, Environment=, UMask= | as systemd does                           |
| User=, Group=, SupplementaryGroups= | setgroups/setgid/setuid (a numeric id if the user does not exist) |
| CapabilityBoundingSet=, NoNewPrivileges= | capabilities dropped, PR_SET_NO_NEW_PRIVS |
| SystemCallFilter=, SystemCallErrorNumber=, ProtectClock= | a libseccomp filter built from `systemd-analyze syscall-filter` |

Not applied: RestrictAddressFamilies=, DevicePolicy= (no devices are used),
the Protect{Kernel*,ControlGroups}= remounts (ProtectSystem=strict already makes
them read-only). Paths a test machine keeps where ProtectHome/PrivateTmp would
hide them (a checkout under /tmp, an interpreter under /root) are bound back in
read-only with --keep: on a Pi they live under /opt and /usr.

It needs root, Debian's python3 with python3-seccomp (`/usr/bin/python3 -I`),
and systemd-analyze; it is started by `unshare --mount --propagation private`.

    unshare -m --propagation private /usr/bin/python3 -I tests/unit_sandbox.py \\
        --unit systemd/accessd.service --which ExecStart \\
        --bind /etc/accessd=DIR --bind /var/lib/accessd=DIR --bind /run/accessd=DIR \\
        --bind /opt/accessd=REPO --keep PATH --user-id 64123 --env NOTIFY_SOCKET=...
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import os
import shlex
import subprocess
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
API_FS = ("/proc", "/sys", "/dev")


def parse_unit(path: str) -> dict[str, list[str]]:
    """The [Service] section as key -> every value it was given (systemd allows repeats)."""
    out: dict[str, list[str]] = {}
    section = None
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            if section == "Service" and "=" in line:
                k, v = line.split("=", 1)
                out.setdefault(k.strip(), []).append(v.strip())
    return out


def one(unit: dict, key: str, default: str | None = None) -> str | None:
    vals = unit.get(key)
    return vals[-1] if vals else default


def yes(unit: dict, key: str) -> bool:
    return (one(unit, key, "no") or "no").lower() in ("yes", "true", "1", "on")


def expand_syscalls(names: list[str], seen: set[str] | None = None) -> set[str]:
    """Names and @sets (expanded recursively through systemd-analyze) -> syscall names."""
    seen = set() if seen is None else seen
    calls: set[str] = set()
    for name in names:
        if not name.startswith("@"):
            calls.add(name)
            continue
        if name in seen:
            continue
        seen.add(name)
        text = subprocess.run(["systemd-analyze", "syscall-filter", name], check=True,
                              capture_output=True, text=True).stdout
        members = [ln.strip() for ln in text.splitlines()[1:]
                   if ln.strip() and not ln.strip().startswith("#")]
        calls |= expand_syscalls(members, seen)
    return calls


def syscall_allow_list(unit: dict) -> set[str]:
    allow: set[str] = set()
    deny: set[str] = set()
    for value in unit.get("SystemCallFilter", []):
        if value.startswith("~"):
            deny |= expand_syscalls(value[1:].split())
        else:
            allow |= expand_syscalls(value.split())
    if not allow:
        raise SystemExit("unit_sandbox: only allow-list SystemCallFilter= is supported")
    allow |= expand_syscalls(["@default"])  # systemd.exec(5): always permitted
    if yes(unit, "ProtectClock"):
        deny |= expand_syscalls(["@clock"])
    return allow - deny


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [ln.split()[4].replace("\\040", " ") for ln in f]
    return sorted(set(points), key=len)


def under(path: str, roots) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def build_mounts(unit: dict, binds: dict[str, str], keeps: list[str]) -> None:
    mount("--make-rprivate", "/")
    keep_fds = {k: os.open(k, os.O_PATH) for k in keeps}
    src_fds = {dst: os.open(src, os.O_PATH) for dst, src in binds.items()}
    for dst in binds:
        os.makedirs(dst, exist_ok=True)  # a mount point (made before / goes read-only)
    if one(unit, "ProtectSystem") == "strict":
        for mp in mount_points():
            if not under(mp, API_FS):
                subprocess.run(["mount", "-o", "remount,bind,ro", mp], check=False,
                               capture_output=True)
    if yes(unit, "ProtectHome"):
        for d in ("/root", "/home", "/run/user"):
            if os.path.isdir(d):
                mount("-t", "tmpfs", "-o", "mode=0755,nosuid,nodev", "tmpfs", d)
    if yes(unit, "PrivateTmp"):
        for d in ("/tmp", "/var/tmp"):
            mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", d)
    writable = {p.lstrip("-") for v in unit.get("ReadWritePaths", []) for p in v.split()}
    for key, base in (("StateDirectory", "/var/lib"), ("RuntimeDirectory", "/run")):
        for v in unit.get(key, []):
            writable |= {f"{base}/{p}" for p in v.split()}
    for dst, fd in src_fds.items():
        mount("--no-canonicalize", "--bind", f"/proc/{os.getpid()}/fd/{fd}", dst)
        # a bind copies the flags of the mount it came from (read-only by now): set them
        mount("-o", "remount,bind," + ("rw" if dst in writable else "ro"), dst)
    for k, fd in keep_fds.items():
        if not os.path.exists(k):  # hidden by the tmpfs of ProtectHome/PrivateTmp
            os.makedirs(k, exist_ok=True)
            mount("--no-canonicalize", "--bind", f"/proc/{os.getpid()}/fd/{fd}", k)
            mount("-o", "remount,bind,ro", k)
    for fd in (*keep_fds.values(), *src_fds.values()):
        os.close(fd)


def drop_privileges(unit: dict, uid: int, gid: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if one(unit, "CapabilityBoundingSet", None) == "":
        for cap in range(64):
            if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == errno.EINVAL:
                break
    groups = []
    import grp
    for v in unit.get("SupplementaryGroups", []):
        for name in v.split():
            try:
                groups.append(grp.getgrnam(name).gr_gid)
            except KeyError:
                print(f"unit_sandbox: group {name} does not exist here; not added",
                      file=sys.stderr)
    os.setgroups(groups)
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if yes(unit, "NoNewPrivileges") and libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")


def load_seccomp(unit: dict) -> int:
    import seccomp
    errname = one(unit, "SystemCallErrorNumber", "EPERM")
    f = seccomp.SyscallFilter(defaction=seccomp.ERRNO(getattr(errno, errname)))
    n = 0
    for name in sorted(syscall_allow_list(unit)):
        try:
            f.add_rule(seccomp.ALLOW, name)
            n += 1
        except (RuntimeError, ValueError, OSError):
            pass  # not a syscall on this architecture (e.g. arm_fadvise64_64 on x86-64)
    f.load()
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--unit", required=True)
    ap.add_argument("--which", default="ExecStart", help="ExecStart or ExecStopPost")
    ap.add_argument("--bind", action="append", default=[], metavar="DEST=SRC")
    ap.add_argument("--keep", action="append", default=[], metavar="PATH")
    ap.add_argument("--user-id", type=int, help="numeric uid when the unit's user does not exist")
    ap.add_argument("--group-id", type=int, help="numeric gid to go with --user-id")
    ap.add_argument("--env", action="append", default=[], metavar="K=V")
    a = ap.parse_args()

    unit = parse_unit(a.unit)
    binds = dict(b.split("=", 1) for b in a.bind)
    allow = syscall_allow_list(unit)  # resolve before seccomp and the ro remount
    import pwd
    try:
        pw = pwd.getpwnam(one(unit, "User"))
        uid, gid = pw.pw_uid, pw.pw_gid
    except KeyError:
        if a.user_id is None:
            raise SystemExit(f"unit_sandbox: no user {one(unit, 'User')}: pass --user-id")
        uid = a.user_id
        gid = a.user_id if a.group_id is None else a.group_id
    build_mounts(unit, binds, a.keep)

    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin", "LANG": "C.UTF-8",
           "USER": one(unit, "User") or "", "LOGNAME": one(unit, "User") or "",
           "HOME": "/", "SHELL": "/usr/sbin/nologin"}
    for v in unit.get("Environment", []):
        for kv in shlex.split(v):
            k, _, val = kv.partition("=")
            env[k] = val
    for key, base, var in (("RuntimeDirectory", "/run", "RUNTIME_DIRECTORY"),
                           ("StateDirectory", "/var/lib", "STATE_DIRECTORY")):
        if unit.get(key):
            env[var] = ":".join(f"{base}/{p}" for v in unit[key] for p in v.split())
    if one(unit, "WatchdogSec"):
        env["WATCHDOG_USEC"] = str(int(float(one(unit, "WatchdogSec")) * 1_000_000))
    env.update(kv.split("=", 1) for kv in a.env)
    os.chdir(one(unit, "WorkingDirectory", "/"))
    os.umask(int(one(unit, "UMask", "0022"), 8))
    drop_privileges(unit, uid, gid)
    argv = shlex.split(one(unit, a.which).lstrip("-+!@:"))
    n = load_seccomp(unit)
    print(f"unit_sandbox: {a.which} as uid {uid} with {n} of {len(allow)} syscalls allowed",
          file=sys.stderr, flush=True)
    os.execve(argv[0], argv, env)


if __name__ == "__main__":
    main()
