"""fulmen.demos (internal)."""
