"""Unit tests of the pure pricing domain."""
