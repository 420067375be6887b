"""Session runners (composition layer): devices from the rig config, a task, the session store.

``rig.runner.lever`` runs the lever tasks; ``rig.runner.rotarod`` the rotarod protocol.
"""
