"""`python -m paramstore.server [--address ...]`: the same as `paramstore serve`."""

import sys

from paramstore.server.app import main

sys.exit(main())
