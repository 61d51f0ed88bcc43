"""The bf16 CPU path: autocast parity with fp32, and a clear refusal where the CPU would emulate bf16."""

import sys

import pytest
import torch
from conftest import run_script

from modeling_distilxlsr.inference.cpu_features import check_bf16, cpu_flags, describe_cpu, native_bf16


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some Xeon\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile\n")
    assert cpu_flags(str(cpuinfo)) == {"fpu", "avx2", "avx512f", "amx_bf16", "amx_tile"}
    assert cpu_flags(str(tmp_path / "missing")) == set()
    assert "logical cores" in describe_cpu()


@pytest.mark.parametrize(
    ("flags", "native"),
    [({"avx2", "avx512f", "avx512_vnni"}, False), ({"avx2"}, False), ({"avx512_bf16"}, True), ({"amx_bf16"}, True)],
)
def test_bf16_is_refused_where_it_would_be_emulated(flags, native):
    assert native_bf16(flags) is native
    if native:
        check_bf16("cpu", flags)
    else:
        with pytest.raises(ValueError, match="emulated and slower than fp32.*AVX512-BF16 nor AMX"):
            check_bf16("cpu", flags)


@pytest.mark.parametrize(
    ("caps", "native"),
    [({"ATEN_CPU_CAPABILITY": "avx2"}, False), ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, False),
     ({"ONEDNN_MAX_CPU_ISA": "avx512_core_vnni"}, False), ({"ATEN_CPU_CAPABILITY": "avx512"}, True),
     ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, True), ({}, True)],
)  # fmt: skip
def test_an_isa_cap_in_the_environment_takes_native_bf16_away(monkeypatch, caps, native):
    """The benchmarks' `--isa avx2` (and a user measuring an AVX2 CPU on a newer one) sets these: bf16 is then
    emulated, so no path offers it and `--dtype bf16` is refused with the reason."""
    for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    for name, value in caps.items():
        monkeypatch.setenv(name, value)
    assert native_bf16({"avx2", "avx512f", "avx512_bf16"}) is native
    if not native:
        with pytest.raises(ValueError, match="an ISA cap in the environment"):
            check_bf16("cpu", {"avx512_bf16"})


def test_bf16_autocast_matches_fp32(tiny_ctc_dir):
    """Numerics of the path (they do not depend on whether the CPU runs bf16 natively)."""
    _, model = tiny_ctc_dir
    wave = torch.randn(2, 32000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fp32 = model(wave).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(wave).logits
    cosine = torch.nn.functional.cosine_similarity(fp32.flatten(), bf16.float().flatten(), dim=0)
    assert cosine >= 0.999 and (fp32.argmax(-1) == bf16.argmax(-1)).float().mean() > 0.95


def test_transcribe_dtype_bf16_runs_or_is_refused_by_the_cpu(tiny_ctc_dir, tmp_path):
    import numpy as np
    import soundfile as sf

    model_dir, _ = tiny_ctc_dir
    sf.write(tmp_path / "a.wav", (np.random.default_rng(0).standard_normal(24000) * 0.1).astype(np.float32), 16000)
    command = [sys.executable, "transcribe.py", str(model_dir), str(tmp_path / "a.wav"), "--format", "jsonl"]
    result = run_script([*command, "--dtype", "bf16"], check=False)
    if native_bf16():
        assert result.returncode == 0 and '"status": "ok"' in result.stdout, result.stderr[-2000:]
    else:
        assert result.returncode != 0 and "emulated and slower than fp32" in result.stderr
