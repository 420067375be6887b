"""Task definitions, shaping rules, behavioral metrics and simulated mice."""
