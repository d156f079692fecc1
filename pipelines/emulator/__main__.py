"""`python -m pipelines.emulator serve ...`, the same as `efw emulator serve`."""

import sys

from pipelines.emulator.cli import main

sys.exit(main())
