"""What the CPU at hand can do, read once, and the cores a worker is given.

Machines sold as one kind differ: a 2-vCPU cloud instance may be an AVX2-only AMD EPYC (bf16
5-7x slower than fp32), an AVX-512 EPYC with VNNI and BF16, or an AMX Xeon (bf16 1.78x faster).
So precision choices are measured per CPU (see `probe` and `decision`), and every measurement
is filed under the CPU's *signature*: its model name and the instruction-set flags that change
which kernels run.
Reading the flags never imports torch (an int8 worker must not); torch's own view
(``get_cpu_capability()``) is added when torch is already loaded, for the log.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
#: Flags that change which int8 / bf16 / fp16 / fp32 kernels ONNX Runtime and torch pick.
KERNEL_FLAGS = frozenset({
    "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8",
    "amx_fp16", "asimd", "sve", "bf16", "i8mm",
})
BF16_UNITS = frozenset({"avx512_bf16", "amx_bf16"})
FP16_UNITS = frozenset({"avx512_fp16", "amx_fp16"})
INT8_DOT_UNITS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


@dataclass(frozen=True, slots=True)
class CpuFeatures:
    """The CPU model and its kernel-relevant flags."""

    model_name: str
    flags: frozenset[str]

    @property
    def bf16_units(self) -> bool:
        """Native bf16 arithmetic (AVX-512-BF16 or AMX-BF16)."""
        return bool(self.flags & BF16_UNITS)

    @property
    def fp16_units(self) -> bool:
        """Native fp16 arithmetic (AVX-512-FP16 or AMX-FP16)."""
        return bool(self.flags & FP16_UNITS)

    @property
    def int8_dot(self) -> bool:
        """int8 dot-product instructions (VNNI or AMX-INT8)."""
        return bool(self.flags & INT8_DOT_UNITS)

    def signature(self) -> str:
        """A short stable id of (model name, kernel flags): what a measurement is valid for."""
        text = self.model_name + "|" + ",".join(sorted(self.flags))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> str:
        """One line for logs and refusals: the model and its notable flags."""
        notable = sorted(self.flags - {"avx", "fma", "f16c"}) or ["no SIMD flags"]
        return f"{self.model_name} ({' '.join(notable)})"


def parse_cpuinfo(text: str) -> CpuFeatures:
    """Features from the text of ``/proc/cpuinfo`` (the first processor's block)."""
    name, flags = "unknown CPU", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and name == "unknown CPU":
            name = " ".join(value.split())
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split()) & KERNEL_FLAGS
    return CpuFeatures(name, flags)


def read_cpu_features(path: Path = CPUINFO) -> CpuFeatures:
    """This machine's features; an unreadable cpuinfo gives an empty flag set, never an error."""
    try:
        return parse_cpuinfo(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return CpuFeatures("unknown CPU", frozenset())


def torch_capability() -> str | None:
    """torch's own kernel level (e.g. ``AVX2``, ``AVX512``) if torch is already imported."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    return str(torch.backends.cpu.get_cpu_capability())


def cores_given() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def threads_per_process(processes: int, override: int | None = None) -> int:
    """Intra-op threads for each pool process: the given cores shared out, at least one.

    processes x threads never exceeds the cores (oversubscription measured 8x slower here),
    and one process per core with one thread each measured best for batch-32 encoders.
    """
    if override is not None:
        return override
    return max(1, cores_given() // max(1, processes))
