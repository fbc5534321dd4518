"""The machine's fp32 limit: the stated peak from ``/proc/cpuinfo`` and two measured ones.

Stated: ``cores x clock x FLOP per cycle``, with the clock of ``/proc/cpuinfo`` and the FLOP per
cycle of the micro-architecture (:func:`fp32_flop_per_cycle`, which states its assumption).
In a virtual machine ``/proc/cpuinfo`` shows the base clock only, while the cores may run at
their boost clock; so two measurements check it:

* a probe compiled with the C compiler, when there is one: a chain of dependent integer adds (one
  per cycle on every current x86 and arm64 core) measures the clock, and 12 independent chains
  of 256-bit and of 512-bit vector FMAs measure the FMA throughput; one copy runs on every core
  at once;
* a large float32 matrix product with NumPy (its BLAS, all cores).

The peak used for every "fraction of peak" is the highest of the three, so that no fraction is
flattered by a pessimistic peak.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.settings import BenchSettings
from harness.timing import timed, usable_cores

__all__ = ["read_cpuinfo", "fp32_flop_per_cycle", "fma_probe", "sgemm_gflops", "bench_machine"]

_PROBE_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
typedef float v8 __attribute__((vector_size(32)));
typedef float v16 __attribute__((vector_size(64)));
static double now(void) {
    struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec;
}
/* 12 independent chains of a = a * m + c: enough to fill two FMA pipes of latency 4-6. */
#define FMA_LOOP(T, NAME) static double NAME(long n, float s) { \
    T z = {0}; T m = z + 0.999999f, c = z + 1e-7f; \
    T a0 = z + s, a1 = z + 2 * s, a2 = z + 3 * s, a3 = z + 4 * s, a4 = z + 5 * s, a5 = z + 6 * s; \
    T a6 = z + 7 * s, a7 = z + 8 * s, a8 = z + 9 * s, a9 = z + 10 * s, a10 = z + 11 * s; \
    T a11 = z + 12 * s; double t = now(); \
    for (long i = 0; i < n; i++) { \
        a0 = a0 * m + c; a1 = a1 * m + c; a2 = a2 * m + c; a3 = a3 * m + c; \
        a4 = a4 * m + c; a5 = a5 * m + c; a6 = a6 * m + c; a7 = a7 * m + c; \
        a8 = a8 * m + c; a9 = a9 * m + c; a10 = a10 * m + c; a11 = a11 * m + c; } \
    t = now() - t; \
    T r = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11; \
    if (r[0] == 12345.0f) printf("#"); \
    return 24.0 * (sizeof(T) / sizeof(float)) * n / t / 1e9; }
FMA_LOOP(v8, fma256)
FMA_LOOP(v16, fma512)
/* Clock: a chain of dependent integer adds, one per cycle. */
static double clock_ghz(long n) {
    long x = 0; double t = now();
    for (long i = 0; i < n; i++) {
#if defined(__x86_64__)
        __asm__ volatile("add $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\t"
                         "add $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\tadd $1,%0" : "+r"(x));
#elif defined(__aarch64__)
        __asm__ volatile("add %0,%0,#1\n\tadd %0,%0,#1\n\tadd %0,%0,#1\n\tadd %0,%0,#1\n\t"
                         "add %0,%0,#1\n\tadd %0,%0,#1\n\tadd %0,%0,#1\n\tadd %0,%0,#1" : "+r"(x));
#else
        return 0.0;
#endif
    }
    return 8.0 * n / (now() - t) / 1e9;
}
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000000L;
    float s = (float)(argc + 1) * 0.01f;
    double before = clock_ghz(n / 8);
    double f8 = fma256(n / 4, s);
    double f16 = fma512(n / 8, s);
    double after = clock_ghz(n / 8);
    printf("%f %f %f\n", 0.5 * (before + after), f8, f16);
    return 0;
}
"""


def read_cpuinfo(path: str | Path = "/proc/cpuinfo") -> dict[str, str]:
    """The fields of the first processor in ``/proc/cpuinfo`` (empty where there is no such file).

    Returns
    -------
    dict of str to str
        E.g. ``{"vendor_id": "AuthenticAMD", "cpu family": "25", "model": "17", ...}``.
    """
    try:
        text = Path(path).read_text()
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if info:
                break
            continue
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return info


def fp32_flop_per_cycle(
    vendor: str, family: int, model: int, flags: Sequence[str]
) -> tuple[int | None, str, str]:
    """fp32 FLOP per cycle and core of a CPU, from its micro-architecture.

    One fused multiply-add is 2 FLOP. The table covers the x86 cores of the last decade; each
    entry states its assumption (number and width of the FMA pipes).

    Parameters
    ----------
    vendor : str
        ``vendor_id`` of ``/proc/cpuinfo`` (``AuthenticAMD``, ``GenuineIntel``).
    family, model : int
        ``cpu family`` and ``model``.
    flags : sequence of str
        CPU flags (``avx2``, ``fma``, ``avx512f``, ...).

    Returns
    -------
    flop_per_cycle : int or None
        None when the CPU is not in the table.
    microarchitecture : str
    rule : str
        How the number follows from the pipes.
    """
    flags = set(flags)
    two_256 = "2 FMA pipes x 256 bit = 16 fp32 FMA = 32 FLOP/cycle"
    if vendor == "AuthenticAMD" and "fma" in flags:
        if family == 0x17:
            if model < 0x30:
                return 16, "Zen/Zen+", "2 FMA pipes x 128 bit = 8 fp32 FMA = 16 FLOP/cycle"
            return 32, "Zen 2", two_256
        if family == 0x19:
            if 0x10 <= model <= 0x1F or 0x60 <= model <= 0x7F or 0xA0 <= model <= 0xAF:
                return 32, "Zen 4", "AVX-512 executed on " + two_256
            return 32, "Zen 3", two_256
        if family == 0x1A:
            return 64, "Zen 5", "2 FMA pipes x 512 bit = 64 FLOP/cycle (256-bit parts: half)"
    if vendor == "GenuineIntel":
        if "avx512f" in flags:
            return 64, "Intel AVX-512", "2 FMA units x 512 bit = 64 FLOP/cycle (1-unit parts: half)"
        if "avx2" in flags and "fma" in flags:
            return 32, "Intel AVX2", two_256
    if "avx2" in flags and "fma" in flags:
        return 32, "x86 AVX2", "assumed " + two_256
    return None, "unknown", "not in the table: no stated peak"


def _compile_probe(workdir: Path) -> tuple[Path | None, str]:
    """Build the probe; (binary, compiler command) or (None, why not)."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        return None, "no C compiler (cc, gcc or $CC)"
    source, binary = workdir / "probe.c", workdir / "probe"
    source.write_text(_PROBE_C)
    message = ""
    for arch in (["-march=native"], []):
        flags = ["-O2", *arch, "-ffp-contract=fast"]
        try:
            done = subprocess.run(
                [compiler, *flags, str(source), "-o", str(binary)],
                capture_output=True,
                text=True,
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{compiler}: {exc}"
        if done.returncode == 0:
            return binary, " ".join([Path(compiler).name, *flags])
        message = (done.stderr.strip().splitlines() or ["failed"])[-1]
    return None, f"{compiler}: {message}"


def _run_probes(binary: Path, iterations: int, cores: int) -> np.ndarray:
    """One probe per core at once; rows of (clock GHz, 256-bit GFLOP/s, 512-bit GFLOP/s)."""
    procs = [
        subprocess.Popen([str(binary), str(iterations)], stdout=subprocess.PIPE, text=True)
        for _ in range(cores)
    ]
    rows = []
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        if proc.returncode != 0:
            raise ValueError(f"exit code {proc.returncode}")
        rows.append([float(v) for v in out.split()])
    values = np.array(rows, dtype=np.float64)
    if values.shape != (cores, 3) or not np.all(values > 0):
        raise ValueError(f"unexpected output {rows}")
    return values


def fma_probe(iterations: int, cores: int, runs: int = 2) -> dict[str, Any]:
    """Measured clock and FMA throughput, one probe per core at once (best of ``runs``).

    Returns
    -------
    dict
        ``gflops`` (all cores), ``clock_ghz``, ``fma256_gflops_per_core``,
        ``fma512_gflops_per_core``, ``compiler``; or ``{"skipped": reason}``.
    """
    with tempfile.TemporaryDirectory(prefix="mssoft-bench-") as tmp:
        binary, compiler = _compile_probe(Path(tmp))
        if binary is None:
            return {"skipped": compiler}
        best: dict[str, Any] = {}
        for _ in range(runs):
            try:
                values = _run_probes(binary, iterations, cores)
            except (OSError, ValueError, subprocess.SubprocessError) as exc:
                return {"skipped": f"probe failed: {exc}", "compiler": compiler}
            total = float(values[:, 1:].max(axis=1).sum())
            if total > best.get("gflops", 0.0):
                best = {
                    "gflops": total,
                    "clock_ghz": float(values[:, 0].mean()),
                    "fma256_gflops_per_core": float(values[:, 1].mean()),
                    "fma512_gflops_per_core": float(values[:, 2].mean()),
                }
    return {**best, "compiler": compiler}


def sgemm_gflops(size: int, repeats: int = 3) -> float:
    """Best GFLOP/s of a ``size`` x ``size`` float32 matrix product with NumPy (all cores)."""
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    a @ b  # warm-up: thread pool, page faults
    timing, _ = timed(lambda: a @ b, repeats)
    return 2.0 * size**3 / min(timing.wall) / 1e9


def bench_machine(settings: BenchSettings) -> dict[str, Any]:
    """The CPU, its stated fp32 peak, the measured limits, and the peak used for fractions.

    Returns
    -------
    dict
        ``cpu``, ``vendor``, ``family``, ``model``, ``microarchitecture``, ``cores``,
        ``clock_ghz_nominal`` and its source, ``fp32_flop_per_cycle`` and ``flop_rule``,
        ``peak_gflops_nominal``, ``fma_probe``, ``sgemm_gflops``, ``peak_gflops`` and
        ``peak_source``, ``assumptions`` (lines for the report), ``memory_gb``.
    """
    import psutil

    info = read_cpuinfo()
    cores = usable_cores()
    flags = info.get("flags", "").split()
    vendor = info.get("vendor_id", platform.processor() or "unknown")
    family = int(info.get("cpu family", "0") or 0)
    model = int(info.get("model", "0") or 0)
    flop, arch, rule = fp32_flop_per_cycle(vendor, family, model, flags)
    mhz = float(info.get("cpu MHz", "nan") or "nan")
    bogomips = float(info.get("bogomips", "nan") or "nan")
    clock_source = "/proc/cpuinfo 'cpu MHz'"
    if not math.isfinite(mhz) and math.isfinite(bogomips):
        mhz, clock_source = bogomips / 2.0, "/proc/cpuinfo bogomips / 2"
    clock = mhz / 1000.0
    nominal = cores * clock * flop if flop and math.isfinite(clock) else math.nan
    probe = fma_probe(settings.probe_iterations, cores)
    if flop and "gflops" in probe:
        probe["flop_per_cycle_per_core"] = probe["gflops"] / (cores * probe["clock_ghz"])
    sgemm = sgemm_gflops(settings.sgemm_size)
    limits = {"stated": nominal, "fma_probe": probe.get("gflops", math.nan), "sgemm": sgemm}
    limits = {k: v for k, v in limits.items() if math.isfinite(v)}
    source = max(limits, key=lambda k: limits[k]) if limits else "none"
    assumptions = [
        f"fp32 FLOP/cycle/core = {flop} ({arch}: {rule})",
        f"stated clock {clock:.3f} GHz from {clock_source}: the base clock, boost is not shown",
        "1 FMA = 2 FLOP; stated peak = cores x clock x FLOP/cycle",
        "peak used for fractions = the highest of the stated peak, the FMA probe and the sgemm",
        "bf16 rows use the fp32 peak; the bf16 peak is about 2x (AVX512_BF16 dot products)",
    ]
    return {
        "cpu": info.get("model name", platform.processor() or platform.machine()),
        "vendor": vendor,
        "family": family,
        "model": model,
        "microarchitecture": arch,
        "cores": cores,
        "vector_flags": sorted(f for f in flags if f.startswith(("avx", "fma", "amx"))),
        "clock_ghz_nominal": clock,
        "clock_source": clock_source,
        "bogomips": bogomips,
        "fp32_flop_per_cycle": flop,
        "flop_rule": rule,
        "peak_gflops_nominal": nominal,
        "fma_probe": probe,
        "sgemm_gflops": sgemm,
        "sgemm_size": settings.sgemm_size,
        "peak_gflops": limits.get(source, math.nan),
        "peak_source": source,
        "assumptions": assumptions,
        "platform": platform.platform(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }
