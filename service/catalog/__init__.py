"""The published catalog: plan versions stored once, never edited, read by everything that rates."""
