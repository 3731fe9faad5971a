"""``billing bench``: benchmarks that start the real server on a fresh embedded PostgreSQL."""
