"""The PyQt6 + pyqtgraph app: the only package that imports Qt."""
