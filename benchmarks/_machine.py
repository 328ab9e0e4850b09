"""What the benchmarks print about the machine they ran on."""

from __future__ import annotations


def cpu_flags() -> str:
    """The CPU flags that change the speed of the detectors and networks (comma-separated)."""
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
        return ",".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags)
    except (OSError, StopIteration):
        return "?"
