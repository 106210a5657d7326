"""`python -m tpv.cli` runs the `tpv` command (what `accelerate launch -m tpv.cli …` calls)."""

import sys

from tpv.cli.app import main

sys.exit(main())
