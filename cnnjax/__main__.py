import sys

from cnnjax.cli import main

sys.exit(main())
