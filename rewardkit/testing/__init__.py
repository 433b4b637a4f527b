"""Testing kit for reward plugins."""
