"""Command line: ``python -m alkit run params/paper/02_vaal_vs_random.yaml`` and friends."""
from .cli import main

raise SystemExit(main())
