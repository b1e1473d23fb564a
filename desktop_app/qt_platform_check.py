"""Before Qt starts: can its xcb platform plugin load here? (No Qt import.)

On Linux the PySide6 wheel brings Qt but not the X11 client libraries its ``xcb`` platform
plugin links against. When one is missing, Qt aborts while creating the QApplication and its
hint names ``libxcb-cursor0`` whatever is actually missing. This module runs ``ldd`` on the
plugin and the Qt libraries it loads, and turns the sonames it reports ``not found`` into
one message with the exact packages and the command to install them (apt on
Debian/Ubuntu, dnf on Fedora; macOS and Windows need none: Qt ships its own cocoa /
windows plugin). It never blocks a machine where it cannot tell: no ``ldd``, no PySide6
layout it knows, or another platform than xcb (offscreen, wayland, ...) skip the check;
``SEGLOOP_SKIP_QT_CHECK=1`` turns it off.

``python -m desktop_app.qt_platform_check [--install-if-root]``: print the message and exit 1
when the window cannot open; with ``--install-if-root``, as root on Debian/Ubuntu, first
install the missing packages with apt-get (``make demo`` does this).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

# The xcb plugin and the Qt libraries that load it or that it loads, relative to PySide6/Qt.
XCB_PLUGIN_FILES = (
    "plugins/platforms/libqxcb.so",
    "lib/libQt6XcbQpa.so.6",
    "lib/libQt6Gui.so.6",
    "lib/libQt6Widgets.so.6",
)

# soname -> (Debian/Ubuntu package, Fedora package), from the plugin's NEEDED entries (and
# their own), the Debian names read with ``dpkg -S`` on Debian 12.
PACKAGES: dict[str, tuple[str, str]] = {
    "libxcb.so.1": ("libxcb1", "libxcb"),
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libX11.so.6": ("libx11-6", "libX11"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb"),
    "libXau.so.6": ("libxau6", "libXau"),
    "libXdmcp.so.6": ("libxdmcp6", "libXdmcp"),
    "libGL.so.1": ("libgl1", "libglvnd-glx"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2"),
    "libgthread-2.0.so.0": ("libglib2.0-0", "glib2"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs"),
    "libstdc++.so.6": ("libstdc++6", "libstdc++"),
}

_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found\s*$", re.MULTILINE)
SKIP_ENV = "SEGLOOP_SKIP_QT_CHECK"


def parse_ldd_not_found(text: str) -> list[str]:
    """Sonames that ``ldd`` output reports as ``=> not found``, once each, in order."""
    return list(dict.fromkeys(_NOT_FOUND.findall(text)))


def pyside_qt_dir() -> Path | None:
    """PySide6's bundled ``Qt`` folder, found without importing PySide6 (None: not installed)."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    qt = Path(next(iter(spec.submodule_search_locations))) / "Qt"
    return qt if qt.is_dir() else None


def missing_xcb_libraries(qt_dir: Path | None = None, ldd: str | None = None) -> list[str]:
    """Sonames the xcb plugin (or the Qt libraries around it) needs and cannot find here.

    Empty when nothing is missing, and also when it cannot tell (not Linux, no ``ldd``, no
    xcb plugin in PySide6): the check must never stop a machine where Qt may work.
    """
    if not sys.platform.startswith("linux"):
        return []
    qt_dir = qt_dir or pyside_qt_dir()
    ldd = ldd or shutil.which("ldd")
    if qt_dir is None or ldd is None or not (qt_dir / XCB_PLUGIN_FILES[0]).is_file():
        return []
    files = [str(qt_dir / f) for f in XCB_PLUGIN_FILES if (qt_dir / f).is_file()]
    try:
        done = subprocess.run([ldd, *files], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_ldd_not_found(done.stdout + "\n" + done.stderr)


def xcb_platform_expected(environ: Mapping[str, str] | None = None, platform: str | None = None) -> bool:
    """Will Qt pick its xcb plugin? Linux only; ``QT_QPA_PLATFORM`` unset (and no Wayland
    session) or naming xcb first. Offscreen, wayland, eglfs, ... skip the check."""
    env = os.environ if environ is None else environ
    if not (platform or sys.platform).startswith("linux"):
        return False
    requested = env.get("QT_QPA_PLATFORM", "").strip()
    if requested:  # "xcb", "xcb:option=value", "wayland;xcb" (first one wins when it loads)
        return requested.split(";")[0].split(":")[0].strip() == "xcb"
    return not (env.get("XDG_SESSION_TYPE") == "wayland" or env.get("WAYLAND_DISPLAY"))


def linux_family(os_release: str | None = None) -> str | None:
    """``"debian"`` (Debian, Ubuntu and derivatives), ``"fedora"`` (Fedora, RHEL, CentOS) or
    None, from the text of ``/etc/os-release`` (read when not given)."""
    if os_release is None:
        try:
            os_release = Path("/etc/os-release").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    ids: list[str] = []
    for line in os_release.splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("ID", "ID_LIKE"):
            ids += value.strip().strip("\"'").lower().split()
    if {"debian", "ubuntu"} & set(ids):
        return "debian"
    if {"fedora", "rhel", "centos"} & set(ids):
        return "fedora"
    return None


def packages_for(sonames: Iterable[str], family: str) -> tuple[list[str], list[str]]:
    """(packages providing ``sonames`` on ``family`` "debian" or "fedora", sonames with no known package)."""
    column = 0 if family == "debian" else 1
    packages: list[str] = []
    unknown: list[str] = []
    for soname in sonames:
        if soname in PACKAGES:
            packages.append(PACKAGES[soname][column])
        else:
            unknown.append(soname)
    return list(dict.fromkeys(packages)), unknown


def install_command(packages: Iterable[str], family: str, root: bool = False) -> str:
    """The shell command that installs ``packages`` on ``family`` (``sudo`` unless root)."""
    tool = "apt-get install -y" if family == "debian" else "dnf install -y"
    return ("" if root else "sudo ") + tool + " " + " ".join(packages)


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


_DISPLAY_HINT = (
    "Run it from a desktop session, or under a virtual display: xvfb-run -a make demo\n"
    "  (Xvfb: 'apt-get install xvfb' on Debian/Ubuntu, 'dnf install xorg-x11-server-Xvfb' on Fedora).\n"
    "Without any window, the headless subcommands work: segloop --help."
)


def no_display_message() -> str:
    """What to do when Qt would use xcb and ``DISPLAY`` is not set."""
    return "SegLoop cannot open its window: there is no X display (DISPLAY is not set).\n" + _DISPLAY_HINT


def missing_libraries_message(sonames: list[str], family: str | None = None, root: bool = False) -> str:
    """One message naming the missing sonames, the packages for Debian/Ubuntu and Fedora
    (the detected ``family`` first) and the command to install them."""
    lines = [
        "SegLoop cannot open its window: Qt's X11 (xcb) platform plugin needs system libraries "
        "that are not installed:",
        "  " + " ".join(sonames),
        "Install them, then run 'make demo' (or segloop) again:",
    ]
    order = ["fedora", "debian"] if family == "fedora" else ["debian", "fedora"]
    unknown: list[str] = []
    for fam in order:
        packages, unknown = packages_for(sonames, fam)
        label = ("Debian/Ubuntu" if fam == "debian" else "Fedora") + (" (this machine)" if fam == family else "") + ":"
        if packages:
            lines.append(f"  {label:<30}{install_command(packages, fam, root)}")
    if unknown:
        lines.append(
            "  No known package for " + " ".join(unknown) + ": find it with 'apt-file search NAME' or "
            "'dnf provides \"*/NAME\"'."
        )
    lines.append(f"  {'macOS, Windows:':<30}nothing to install (Qt ships its own platform plugin).")
    return "\n".join(lines)


def check(environ: Mapping[str, str] | None = None, qt_dir: Path | None = None) -> str | None:
    """The message that says why the window cannot open here, or None (fine, or cannot tell)."""
    env = os.environ if environ is None else environ
    if env.get(SKIP_ENV) or not xcb_platform_expected(env):
        return None
    missing = missing_xcb_libraries(qt_dir)
    no_display = not env.get("DISPLAY")
    if missing:
        message = missing_libraries_message(missing, linux_family(), _is_root())
        return message + ("\nThere is no X display either (DISPLAY is not set). " + _DISPLAY_HINT if no_display else "")
    return no_display_message() if no_display else None


def install_if_root(environ: Mapping[str, str] | None = None, qt_dir: Path | None = None) -> bool:
    """As root on Debian/Ubuntu, ``apt-get install`` the packages the xcb plugin lacks (an
    ``apt-get update`` and one retry if that fails); True when it installed something."""
    env = os.environ if environ is None else environ
    if env.get(SKIP_ENV) or not xcb_platform_expected(env) or not _is_root():
        return False
    if linux_family() != "debian" or shutil.which("apt-get") is None:
        return False
    missing = missing_xcb_libraries(qt_dir)
    packages, _ = packages_for(missing, "debian")
    if not packages:
        return False
    command = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    print(f"Qt's window needs {' '.join(missing)}; running as root, so installing: {' '.join(command)}", flush=True)
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(command, env=apt_env, check=False).returncode != 0:
        print("apt-get install failed; running apt-get update and trying again", flush=True)
        subprocess.run(["apt-get", "update"], env=apt_env, check=False)
        subprocess.run(command, env=apt_env, check=False)
    return True


def main(argv: list[str] | None = None) -> int:
    """Exit 1 with the message when the window cannot open here, else 0."""
    parser = argparse.ArgumentParser(prog="python -m desktop_app.qt_platform_check", description=__doc__.split("\n")[0])
    parser.add_argument("--install-if-root", action="store_true",
                        help="as root on Debian/Ubuntu, apt-get install the missing packages first")
    args = parser.parse_args(argv)
    if args.install_if_root:
        install_if_root()
    message = check()
    if message:
        print(message, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
