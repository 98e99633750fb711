"""``python -m fedmark_cli`` = the ``fedmark`` command."""
import sys

from fedmark_cli import main

sys.exit(main())
