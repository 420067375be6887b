"""The rig's core: config models, events, session store, clock, protocol, transports, devices.

Nothing here imports Qt, ``tasks``, ``acquisition`` or the composition layer.
"""
