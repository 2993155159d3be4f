"""fulmen.trainer (internal)."""
