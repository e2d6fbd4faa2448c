"""`python -m sustain ...` is the `sustain` command (what `accelerate launch -m sustain train sft` runs)."""
import sys

from sustain.cli import main

sys.exit(main())
