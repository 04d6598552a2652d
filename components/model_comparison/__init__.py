"""ModelComparison: two evaluations side by side on every metric, with paired intervals of the
differences (component.py declares it, executor.py computes and reads the comparison)."""
