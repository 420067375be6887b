"""Two-photon acquisition: frame sources, xp backend, registration, ROIs, ΔF/F, pipeline."""
