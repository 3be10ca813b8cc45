"""``python -m tnc``: the same as the ``tnc`` command (:mod:`tnc.cli`)."""
import sys

from tnc.cli import main

sys.exit(main())
