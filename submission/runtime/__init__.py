"""The runtime: test CSV -> validated predictions under a deadline, its settings and meta file."""
