"""`make bench`: named performance figures of every stage, written to one report."""
