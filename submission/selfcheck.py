"""Can this Python run the runtime? ``python -m submission.selfcheck`` imports it and prints the versions it found.

The submission Dockerfile runs this at build time, so a base image that cannot run the runtime fails ``docker
build`` instead of the grading. Exit 1 with one line per problem: a runtime module that does not import, or a
library older than the runtime accepts (:data:`MINIMUM_VERSIONS`). vLLM is optional (the transformers engine runs
without it); its version is printed when present.
"""

from __future__ import annotations

import importlib
import re
import sys

from submission.versions import package_versions

# What the runtime accepts. transformers: vLLM 0.26's own floor (its Requires-Dist), the oldest a vLLM image can
# bring; the merged model's config.json and tokenizer must load there (README "Contest entry"). torch: the oldest the
# project installs (pyproject.toml). The CPU tests run the pins of pyproject.toml (transformers 5.17.0).
MINIMUM_VERSIONS: dict[str, tuple[int, ...]] = {"torch": (2, 11), "transformers": (5, 5, 3), "numpy": (1, 26)}
REPORTED = ("torch", "transformers", "tokenizers", "safetensors", "numpy", "vllm")
# Every module on the path from run.py to predictions.csv (vLLM's glue imports vLLM only when an engine starts).
RUNTIME_MODULES = ("submission.cli", "submission.runtime.runtime", "submission.scoring.scorer", "submission.data",
                   "submission.choice.autopick", "submission.prompts.prompting", "submission.prompts.sections", "submission.scoring.decoding",
                   "submission.scoring.priors", "submission.engines.devices", "submission.engines.engine_hf", "submission.engines.engine_vllm",
                   "transformers", "tokenizers", "safetensors")


def release(text: str) -> tuple[int, ...]:
    """'5.17.0' -> (5, 17, 0); '2.11.0+cu128' -> (2, 11, 0); pre-release tails are dropped."""
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])


def installed_versions() -> dict[str, str | None]:
    return package_versions(REPORTED)


def problems(found: dict[str, str | None]) -> list[str]:
    """One line per reason this interpreter cannot run the runtime (empty: it can)."""
    issues = []
    for name, floor in MINIMUM_VERSIONS.items():
        have = found.get(name)
        if have is None:
            issues.append(f"{name} is not installed (the runtime needs >= {'.'.join(map(str, floor))})")
        elif release(have) < floor:
            issues.append(f"{name} {have} is older than the runtime accepts (>= {'.'.join(map(str, floor))})")
    for module in RUNTIME_MODULES:
        try:
            importlib.import_module(module)
        except Exception as error:  # noqa: BLE001 - any import failure is reported, one line each
            issues.append(f"import {module} failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
    return issues


def main() -> int:
    found = installed_versions()
    print("runtime versions: " + ", ".join(f"{k} {v or 'not installed'}" for k, v in found.items()))
    issues = problems(found)
    for issue in issues:
        print(f"error: {issue}", file=sys.stderr)
    return 1 if issues else 0


if __name__ == "__main__":
    sys.exit(main())
