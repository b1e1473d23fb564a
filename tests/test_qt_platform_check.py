"""The check before Qt starts: which X11 libraries the xcb plugin lacks, and what to install."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from desktop_app import launcher
from desktop_app import qt_platform_check as qpc

SONAME = re.compile(r"^lib[\w.+-]+\.so(\.\d+)*$")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb plugin is Linux only")

# `ldd libqxcb.so libQt6XcbQpa.so.6` on a Debian 12 machine without libxcb-icccm4 and libxcb-keysyms1
LDD_OUTPUT = """\
/venv/site-packages/PySide6/Qt/plugins/platforms/libqxcb.so:
\tlinux-vdso.so.1 (0x00007ffd6c1f2000)
\tlibQt6XcbQpa.so.6 => /venv/site-packages/PySide6/Qt/plugins/platforms/../../lib/libQt6XcbQpa.so.6 (0x00007f1c8a2e1000)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f1c8a2d9000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-util.so.1 => /lib/x86_64-linux-gnu/libxcb-util.so.1 (0x00007f1c8a2d0000)
\tlibxcb-keysyms.so.1 => not found
\t/lib64/ld-linux-x86-64.so.2 (0x00007f1c8a3c5000)
/venv/site-packages/PySide6/Qt/lib/libQt6XcbQpa.so.6:
\tlinux-vdso.so.1 (0x00007ffc2a5e4000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibX11.so.6 => /lib/x86_64-linux-gnu/libX11.so.6 (0x00007f0e5e8a1000)
"""

DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n'
UBUNTU = 'NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\n'
FEDORA = 'NAME="Fedora Linux"\nID=fedora\n'
ROCKY = 'NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\n'
ARCH = 'NAME="Arch Linux"\nID=arch\n'


def test_parser_returns_each_missing_soname_once_in_order() -> None:
    assert qpc.parse_ldd_not_found(LDD_OUTPUT) == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert qpc.parse_ldd_not_found(LDD_OUTPUT.replace("not found", "/lib/x.so (0x1)")) == []
    assert qpc.parse_ldd_not_found("\tnot a dynamic executable\n") == []


def test_the_trial_sonames_map_to_the_packages_that_ship_them() -> None:
    missing = qpc.parse_ldd_not_found(LDD_OUTPUT)
    assert qpc.packages_for(missing, "debian") == (["libxcb-icccm4", "libxcb-keysyms1"], [])
    assert qpc.packages_for(missing, "fedora") == (["xcb-util-wm", "xcb-util-keysyms"], [])
    # one Fedora package can ship several sonames: named once
    assert qpc.packages_for(["libxcb-shm.so.0", "libxcb-sync.so.1"], "fedora") == (["libxcb"], [])
    assert qpc.packages_for(["libnope.so.7"], "debian") == ([], ["libnope.so.7"])
    assert all(SONAME.match(soname) for soname in qpc.PACKAGES)


def test_message_names_the_packages_and_the_install_command() -> None:
    missing = ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    message = qpc.missing_libraries_message(missing, "debian", root=False)
    assert "libxcb-icccm.so.4 libxcb-keysyms.so.1" in message
    assert "sudo apt-get install -y libxcb-icccm4 libxcb-keysyms1" in message
    assert "sudo dnf install -y xcb-util-wm xcb-util-keysyms" in message
    assert "Debian/Ubuntu (this machine):" in message and "macOS" in message
    assert "xcb-cursor" not in message  # Qt's own hint names this one whatever is missing
    as_root = qpc.missing_libraries_message(missing, "fedora", root=True)
    assert "sudo" not in as_root
    assert as_root.index("dnf install -y xcb-util-wm") < as_root.index("apt-get install -y libxcb-icccm4")
    unknown = qpc.missing_libraries_message(["libnope.so.7"], None)
    assert "No known package for libnope.so.7" in unknown and "apt-get" not in unknown


@pytest.mark.parametrize(
    ("env", "platform", "expected"),
    [
        ({}, "linux", True),
        ({"QT_QPA_PLATFORM": "xcb"}, "linux", True),
        ({"QT_QPA_PLATFORM": "xcb:dpi=96"}, "linux", True),
        ({"QT_QPA_PLATFORM": "offscreen"}, "linux", False),
        ({"QT_QPA_PLATFORM": "wayland;xcb"}, "linux", False),
        ({"XDG_SESSION_TYPE": "wayland"}, "linux", False),
        ({"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}, "linux", False),
        ({"XDG_SESSION_TYPE": "wayland", "QT_QPA_PLATFORM": "xcb"}, "linux", True),
        ({}, "darwin", False),
        ({}, "win32", False),
    ],
)
def test_the_check_only_runs_when_qt_will_use_xcb(env: dict[str, str], platform: str, expected: bool) -> None:
    assert qpc.xcb_platform_expected(env, platform) is expected


def test_offscreen_and_the_opt_out_skip_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qpc, "missing_xcb_libraries", lambda qt_dir=None: ["libxcb-icccm.so.4"])
    assert qpc.check({"QT_QPA_PLATFORM": "offscreen"}) is None
    assert qpc.check({qpc.SKIP_ENV: "1"}) is None


@linux_only
def test_missing_libraries_and_missing_display_give_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qpc, "missing_xcb_libraries", lambda qt_dir=None: ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"])
    with_display = qpc.check({"DISPLAY": ":0"})
    assert with_display is not None and "libxcb-icccm4 libxcb-keysyms1" in with_display
    assert "DISPLAY" not in with_display
    without = qpc.check({})
    assert without is not None and "libxcb-icccm4" in without and "xvfb-run" in without
    monkeypatch.setattr(qpc, "missing_xcb_libraries", lambda qt_dir=None: [])
    assert qpc.check({"DISPLAY": ":0"}) is None
    assert qpc.check({}) == qpc.no_display_message()
    assert "xvfb-run -a make demo" in qpc.no_display_message()


@pytest.mark.parametrize(("text", "family"), [(DEBIAN, "debian"), (UBUNTU, "debian"), (FEDORA, "fedora"),
                                              (ROCKY, "fedora"), (ARCH, None), ("", None)])
def test_linux_family_from_os_release(text: str, family: str | None) -> None:
    assert qpc.linux_family(text) == family


@linux_only
def test_finder_runs_ldd_on_the_plugin_and_its_qt_library(tmp_path: Path) -> None:
    qt = tmp_path / "Qt"
    for name in qpc.XCB_PLUGIN_FILES[:2]:
        (qt / name).parent.mkdir(parents=True, exist_ok=True)
        (qt / name).write_bytes(b"")
    fake_ldd = tmp_path / "ldd"
    fake_ldd.write_text('#!/bin/sh\nfor f in "$@"; do echo "$f:"; echo "\tlibxcb-icccm.so.4 => not found"; done\n'
                        'echo "\tlibxcb-keysyms.so.1 => not found"\n')
    fake_ldd.chmod(0o755)
    assert qpc.missing_xcb_libraries(qt, str(fake_ldd)) == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]


@linux_only
def test_finder_never_blocks_when_it_cannot_tell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert qpc.missing_xcb_libraries(tmp_path) == []  # no plugin there
    (tmp_path / qpc.XCB_PLUGIN_FILES[0]).parent.mkdir(parents=True)
    (tmp_path / qpc.XCB_PLUGIN_FILES[0]).write_bytes(b"")
    assert qpc.missing_xcb_libraries(tmp_path, str(tmp_path / "no-such-ldd")) == []
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert qpc.missing_xcb_libraries(tmp_path) == []


@linux_only
def test_finder_on_this_machines_pyside6() -> None:
    """A real run: a list of sonames (empty where every library is installed)."""
    qt = qpc.pyside_qt_dir()
    assert qt is not None and (qt / qpc.XCB_PLUGIN_FILES[0]).is_file()
    missing = qpc.missing_xcb_libraries()
    assert isinstance(missing, list)
    assert all(SONAME.match(soname) for soname in missing), missing


@linux_only
@pytest.mark.skipif(shutil.which("ldd") is None, reason="needs ldd")
def test_every_x11_library_the_plugin_loads_has_a_package() -> None:
    """The mapping follows the real plugin: its X11/xcb/xkb/GL sonames, read with ldd."""
    qt = qpc.pyside_qt_dir()
    assert qt is not None
    files = [str(qt / f) for f in qpc.XCB_PLUGIN_FILES if (qt / f).is_file()]
    out = subprocess.run(["ldd", *files], capture_output=True, text=True, check=False).stdout
    loaded = set(re.findall(r"^\s*(\S+)\s+=>", out, re.MULTILINE))
    x11 = {s for s in loaded if re.match(r"lib(xcb|X11|xkbcommon|GL|EGL)\b", s)}
    assert "libxcb-icccm.so.4" in x11 and "libxcb-keysyms.so.1" in x11
    assert x11 - set(qpc.PACKAGES) == set()


def test_install_if_root_runs_apt_get_only_as_root_on_debian(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_run(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        calls.append(command)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(qpc.subprocess, "run", fake_run)
    monkeypatch.setattr(qpc, "missing_xcb_libraries", lambda qt_dir=None: ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"])
    monkeypatch.setattr(qpc, "linux_family", lambda os_release=None: "debian")
    monkeypatch.setattr(qpc.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(qpc, "_is_root", lambda: False)
    assert qpc.install_if_root({}) is False and calls == []
    monkeypatch.setattr(qpc, "_is_root", lambda: True)
    assert qpc.install_if_root({"QT_QPA_PLATFORM": "offscreen"}) is False and calls == []
    if sys.platform.startswith("linux"):
        assert qpc.install_if_root({}) is True
        assert calls == [["apt-get", "install", "-y", "--no-install-recommends", "libxcb-icccm4", "libxcb-keysyms1"]]
    monkeypatch.setattr(qpc, "linux_family", lambda os_release=None: "fedora")
    calls.clear()
    assert qpc.install_if_root({}) is False and calls == []


def test_segloop_exits_1_with_the_message_before_qt(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import desktop_app.app as app

    started: list[object] = []
    monkeypatch.setattr(app, "run_gui", lambda **kwargs: started.append(kwargs) or 0)
    monkeypatch.setattr(qpc, "check", lambda: "SegLoop cannot open its window: apt-get install -y libxcb-icccm4")
    assert launcher.main(["scan.nii.gz"]) == 1
    assert started == []
    assert "apt-get install -y libxcb-icccm4" in capsys.readouterr().err
    assert qpc.main([]) == 1
