"""`python -m facepipe`: what Snakemake's jobs run, with the interpreter Snakemake runs in."""

import sys

from .cli import main

sys.exit(main())
