"""The README's commands themselves."""

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_scripts_test_fails_when_no_test_is_collected():
    """A mistyped -k must not look like a green run (CI's no-test case is .ci/run's)."""
    r = subprocess.run([str(REPO / "scripts/test"), "-q", "-k", "no_such_test_anywhere_xyz"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 5, r.stdout + r.stderr
    assert "deselected" in r.stdout


def _check_pi_deps(*args):
    import json
    import sys
    r = subprocess.run([sys.executable, str(REPO / "scripts/check-pi-deps"), *args],
                       capture_output=True, text=True, timeout=600)
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert rows, r.stderr
    return r.returncode, rows[-1], {p["project"].lower(): p for p in rows[:-1]}


def test_every_dependency_installs_on_a_pi_without_a_compiler():
    """Resolved from the package index for Raspberry Pi OS Bookworm 64-bit (aarch64,
    CPython 3.11, glibc 2.36): every project is an aarch64 or pure wheel, or a pure
    Python source release (pyDes) that builds with no compiler. lgpio (the `pi`
    extra) has an aarch64 wheel for CPython 3.11."""
    rc, summary, projects = _check_pi_deps("--extra", "pi")
    assert rc == 0 and summary["ok"], (summary, projects)
    for name in ("gpiozero", "nfcpy", "pyserial", "sqlite-utils", "cryptography", "click", "rich",
                 "lgpio", "libosdp", "segno"):
        assert projects[name]["ok"], projects[name]
    assert "aarch64" in projects["cryptography"]["how"] and "aarch64" in projects["lgpio"]["how"]
    assert "aarch64" in projects["libosdp"]["how"]      # OSDP readers: a C extension
    assert "pure Python source release" in projects["pydes"]["how"]


def test_on_python_3_13_lgpio_would_need_a_compiler():
    """Raspberry Pi OS Trixie's CPython 3.13 has no lgpio wheel on the index: the check
    catches it, which is why install-on-pi takes python3-lgpio from the OS first."""
    rc, summary, projects = _check_pi_deps("--python-version", "3.13", "--glibc", "2.41",
                                           "--extra", "pi")
    assert rc == 1 and summary["needs_compiler_or_missing"] == ["lgpio"], (summary, projects)
    assert "needs a C compiler" in projects["lgpio"]["how"]


def test_the_documents_say_one_thing_about_lgpio_on_aarch64():
    """pyproject.toml, check-pi-deps, the README and install-on-pi agree with what the
    check above finds: PyPI has lgpio's aarch64 wheel for CPython 3.11 and 3.12, and
    only a Python without one (3.13) builds it from source."""
    texts = {name: (REPO / name).read_text() for name in
             ("pyproject.toml", "scripts/check-pi-deps", "README.md", "scripts/install-on-pi")}
    for name, text in texts.items():
        flat = " ".join(text.replace("#", " ").split())   # (comments wrap)
        assert "has no aarch64 wheel" not in flat and "builds it where the OS has none" \
            not in flat, name
        assert "aarch64 wheel" in flat and "3.12" in flat, name
