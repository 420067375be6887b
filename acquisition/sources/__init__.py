"""Frame sources: ScanImage TIFF files/folders, a TCP stream, and synthetic movies with truth."""
