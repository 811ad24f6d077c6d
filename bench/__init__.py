"""Judge-quality benchmarks (``quality.py``, ``quality_minus_one.py``, ``engines_cpu.py``: scripts over the installed
``trainer`` and ``submission`` packages; never imported by them). The speed benchmark ships with the package:
``python -m trainer bench`` (trainer/bench/). Results and the tables made from them: bench/results/ and BENCHMARKS.md."""
