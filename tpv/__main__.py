"""`python -m tpv` runs the `tpv` command (handy under `accelerate launch -m tpv`)."""

import sys

from .cli import main

sys.exit(main())
