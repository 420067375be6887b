"""Detects any touch of a Qt object (or of GUI code) from a thread other than the Qt main thread.

Qt widgets are not thread-safe: touching one from a reader or pipeline thread works until it
corrupts memory or deadlocks in the field. The bridge keeps every emitter-side callback free of
Qt, and this checker proves it during a session: it installs a profile hook (``threading.
setprofile``) on every thread started after :meth:`ThreadChecker.install` and records each call
into PyQt6, pyqtgraph or the GUI's widget modules made off the main thread.

The hook costs time on worker threads, so it is for tests and diagnostics, not production.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import FrameType
from typing import Any

# Python modules whose code may only run on the Qt main thread.
_GUI_MODULE_PREFIXES = ("pyqtgraph", "gui.panels", "gui.app", "gui.forms", "PyQt6")


@dataclass(frozen=True)
class Violation:
    """One off-main-thread touch: which thread, and what it called."""

    thread: str
    target: str


def _qt_target(arg: Any) -> str | None:
    """Name of a C-level callable if it belongs to PyQt6, else ``None``."""
    owner = getattr(arg, "__self__", None)
    for obj in (arg, owner, type(owner) if owner is not None else None):
        mod = getattr(obj, "__module__", None) or ""
        if isinstance(mod, str) and mod.startswith("PyQt6"):
            return f"{mod}.{getattr(arg, '__qualname__', getattr(arg, '__name__', '?'))}"
    return None


class ThreadChecker:
    """Records calls into Qt / GUI code made off the main thread.

    Attributes
    ----------
    violations : list[Violation]
        Unique (thread, target) pairs, in the order first seen.
    """

    def __init__(self) -> None:
        self.violations: list[Violation] = []
        self._seen: set[tuple[str, str]] = set()
        self._main = threading.main_thread()
        self._lock = threading.Lock()
        self._installed = False

    def _record(self, target: str) -> None:
        name = threading.current_thread().name
        key = (name, target)
        with self._lock:
            if key not in self._seen:
                self._seen.add(key)
                self.violations.append(Violation(name, target))

    def _hook(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            mod = frame.f_globals.get("__name__", "")
            if mod.startswith(_GUI_MODULE_PREFIXES):
                self._record(f"{mod}.{frame.f_code.co_name}")
        elif event == "c_call":
            target = _qt_target(arg)
            if target is not None:
                self._record(target)

    def check_main_thread(self, what: str) -> None:
        """Explicit check for code that must run on the main thread (cheap, always on)."""
        if threading.current_thread() is not self._main:
            self._record(what)

    def install(self) -> None:
        """Hook every thread started from now on (threads already running are not hooked)."""
        threading.setprofile(self._hook)
        self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            threading.setprofile(None)
            self._installed = False

    def __enter__(self) -> ThreadChecker:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstall()


def current_thread_is_main() -> bool:
    return threading.current_thread() is threading.main_thread()


__all__ = ["ThreadChecker", "Violation", "current_thread_is_main"]
