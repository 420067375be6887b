"""The app's panels, one module each. Every panel only reads from a :class:`gui.bridge.QtBridge`
(and calls the runner's methods through the window); none holds a port, a writer or the GPU."""
