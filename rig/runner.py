"""Session runner (composition layer): devices from the rig config, task, session store.

Implemented by the lever-tasks work; see docs/architecture.md.
"""
