"""fulmen.loops (internal)."""
