"""Pure functions the methods are built on (no Lightning inside)."""
