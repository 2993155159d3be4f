"""fulmen.results (internal)."""
