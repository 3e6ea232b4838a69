"""``python -m cvzoo`` is the ``cvzoo`` command."""

import sys

from cvzoo.cli.main import main

sys.exit(main())
