#!/usr/bin/env python
"""Run the mgt-bench benchmark: ``python run_bench.py`` runs the shipped default config (see README)."""
import sys

from bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
