"""`python -m eval`: prints its usage until its issue lands."""
import sys

USAGE = """usage: python -m eval ...

evaluation: EMDB, 3DPW and synthetic protocols, reports and plots (issue 6).
Not built yet: this entry point prints its usage until its issue lands."""

if __name__ == "__main__":
    print(USAGE)
    sys.exit(2)
