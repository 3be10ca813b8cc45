"""``python -m tnc.cli``: the same as the ``tnc`` command."""
import sys

from tnc.cli import main

sys.exit(main())
