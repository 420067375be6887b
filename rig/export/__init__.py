"""NWB export of a session folder (pynwb)."""
