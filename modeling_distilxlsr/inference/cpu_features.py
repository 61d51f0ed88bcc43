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


# Caps that leave bf16 emulated whatever the CPU has: torch's own kernels (ATEN_CPU_CAPABILITY) and oneDNN's, which
# run its bf16 matmuls and convolutions (ONEDNN_MAX_CPU_ISA, named as oneDNN names its ISAs).
ATEN_CAPS_WITHOUT_BF16 = ("default", "avx2")
ONEDNN_CAPS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI")


def isa_capped_below_bf16(environ=os.environ) -> bool:
    """True where the environment caps torch or oneDNN to an ISA without bf16 (e.g. the AVX2 caps the benchmarks
    set to measure an AVX2 CPU on a newer one): bf16 is then emulated even on a CPU whose flags list it."""
    aten, onednn = environ.get("ATEN_CPU_CAPABILITY", ""), environ.get("ONEDNN_MAX_CPU_ISA", "")
    return aten.lower() in ATEN_CAPS_WITHOUT_BF16 or onednn.upper() in ONEDNN_CAPS_WITHOUT_BF16


def native_bf16(flags: set[str] | None = None) -> bool:
    """The CPU runs bf16 natively (its flags, or `flags`) and no ISA cap in the environment takes it away."""
    return bool(set(BF16_FLAGS) & (cpu_flags() if flags is None else flags)) and not isa_capped_below_bf16()


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
            f"({describe_cpu() if flags is None else 'flags: ' + ' '.join(sorted(flags))}"
            + (
                ", or an ISA cap in the environment (ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA) takes them away"
                if isa_capped_below_bf16()
                else ""
            )
            + "). Use --dtype fp32."
        )
