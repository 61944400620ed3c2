"""Stage two: the conditional normalizing-flow trainer."""
