"""motor-rig: real-time behavioral rig controller with GPU two-photon acquisition.

Layering (enforced by import-linter, see ``pyproject.toml``)::

    gui  ->  rig.cli / rig.runner (composition)  ->  tasks, acquisition  ->  rig.core

``rig.core`` never imports Qt, tasks or acquisition.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("motor-rig")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
