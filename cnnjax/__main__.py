from cnnjax.cli import entry

if __name__ == "__main__":  # Not when a spawned worker process (Grain's) imports it.
  entry()
