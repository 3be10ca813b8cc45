"""``python -m tnc.cli``: the same as the ``tnc`` command."""
import sys

from . import main

sys.exit(main())
