"""`python -m train`: prints its usage until its issue lands."""
import sys

USAGE = """usage: python -m train ...

stage two: the conditional normalizing-flow trainer (issue 5).
Not built yet: this entry point prints its usage until its issue lands."""

if __name__ == "__main__":
    print(USAGE)
    sys.exit(2)
