"""``python -m longlora_kit.cli`` (what ``accelerate launch -m longlora_kit.cli`` runs)."""

import sys

from . import main

sys.exit(main())
