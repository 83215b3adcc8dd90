"""The run directory: its files, lock, manifest and images."""
