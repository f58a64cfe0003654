"""Planted investigations (C2 with victims, relay chains, an enterprise talking to a bad host)."""
