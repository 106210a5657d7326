"""`python -m tpv` runs the `tpv` command (handy under `accelerate launch -m tpv`)."""

import sys

from tpv.cli import main

sys.exit(main())
