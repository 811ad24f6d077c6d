"""Device and dtype rules both engines share: which device, which dtype on it, and accelerator out-of-memory.

torch is imported inside each function, so importing this module costs nothing.
"""

from __future__ import annotations

import re

# What every ``--device`` flag takes (the runtime's, ``trainer bench|evaluate|distill``): ``auto`` is a GPU when one is
# visible, else the CPU.
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def device_problem(device: str) -> str | None:
    """What is wrong with a ``--device`` value, as the one line a CLI prints after ``error:``; None when valid."""
    if _DEVICE.fullmatch(str(device)):
        return None
    return f"--device {device!r}: choose {DEVICE_CHOICES}"


def resolve_device(device: str | None = None) -> str:
    """``device`` as given, or (None / ``auto``) ``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    if device and device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def device_kind(device: str) -> str:
    """``cuda`` for any CUDA device (``cuda:1`` too), else ``cpu``: the key of the per-device settings tables."""
    return "cuda" if device.startswith("cuda") else "cpu"


def preferred_dtype(device: str) -> str:
    """``bfloat16`` on a GPU that supports it, ``float16`` on older GPUs (T4, V100), ``float32`` on the CPU.

    One rule for both engines: vLLM takes the name, transformers the torch dtype of the same name.
    """
    if device_kind(device) != "cuda":
        return "float32"
    import torch

    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA (or other accelerator) out-of-memory errors, whatever torch version raised them."""
    import torch

    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def release_accelerator_memory() -> None:
    """Collect garbage and return cached accelerator memory (after an OOM, or before another engine loads)."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
