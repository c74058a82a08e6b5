"""``python -m devstack demo|up|worker|events``: see :mod:`devstack.demo`."""

import sys

from .demo import main

sys.exit(main())
