"""What this CPU runs natively, from the kernel's CPU flags: bf16 is fast only with AVX512-BF16 or AMX, and is
emulated (slower than fp32) elsewhere, so a bf16 path must know before it starts. Benchmark tables name the CPU
with `describe_cpu`."""

import os
import platform

import torch

# The flags that decide which inference path is fastest (Linux /proc/cpuinfo names).
SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags (empty where the kernel does not list them, e.g. off Linux)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def native_bf16(flags: set[str] | None = None) -> bool:
    return bool(set(BF16_FLAGS) & (cpu_flags() if flags is None else flags))


def describe_cpu() -> str:
    flags = cpu_flags()
    present = [flag for flag in SPEED_FLAGS if flag in flags]
    return f"{cpu_model()}, {os.cpu_count()} logical cores, flags: {' '.join(present) or 'none of ' + str(SPEED_FLAGS)}"


def check_bf16(device: str, flags: set[str] | None = None) -> None:
    """Raises a clear error where bf16 autocast would be emulated (slow) rather than run natively."""

    if device.startswith("cuda"):
        if not torch.cuda.is_bf16_supported():
            raise ValueError("--dtype bf16: this GPU has no bf16 support; use fp32.")
        return
    if not native_bf16(flags):
        raise ValueError(
            "--dtype bf16 on this CPU would be emulated and slower than fp32: it has neither AVX512-BF16 nor AMX "
            f"({describe_cpu() if flags is None else 'flags: ' + ' '.join(sorted(flags))}). Use --dtype fp32."
        )
