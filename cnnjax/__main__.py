import sys

from cnnjax.cli import main

if __name__ == "__main__":  # Not when a spawned worker process (Grain's) imports it.
  sys.exit(main())
