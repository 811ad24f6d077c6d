"""Benchmarks: speed (``speed.py``, run by ``python -m trainer bench``) and judge quality (``quality.py``,
``quality_minus_one.py``, scripts). Results and the tables made from them: bench/results/ and BENCHMARKS.md."""
