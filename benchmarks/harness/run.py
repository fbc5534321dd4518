"""A whole benchmark run: the stages in order, the ratios between them, the targets."""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import math
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from harness.cv_cell import CELL_FULL, CELL_QUICK, bench_cv_cell
from harness.data import describe_scan, make_bench_scans, slice_set_from_scans
from harness.evaluation import bench_evaluation
from harness.fit_path import bench_fit_path
from harness.machine import bench_machine
from harness.memory import FitMemory
from harness.network import POLICIES, bench_pipeline, bench_prediction
from harness.predict_files import bench_predict_files
from harness.settings import FULL, STAGES, BenchSettings
from harness.soft_masks import bench_soft_masks
from harness.teardown import bench_teardown
from harness.timing import CpuShare, load_average
from harness.xla import bench_xla
from mssoft.arrays.soft_masks import soft_mask
from mssoft.errors import ConfigError
from mssoft.files.folders import package_versions

__all__ = ["run_benchmarks", "ratios", "targets"]

logger = logging.getLogger(__name__)


def ratios(results: dict[str, Any]) -> dict[str, float]:
    """The ratios between stages that the issue asks for (those whose stages ran).

    ``soft_mask_speedup_vs_baseline`` (baseline seconds / ours),
    ``pipeline_over_training_<policy>`` and ``pipeline_over_training`` (pipeline slices/s over
    the fastest training), ``bfloat16_speedup``.
    """
    out: dict[str, float] = {}
    if "soft_mask" in results:
        out["soft_mask_speedup_vs_baseline"] = results["soft_mask"]["speedup_vs_baseline"]
    if "training" in results:
        rates = {p: results["training"][p]["slices_per_second"] for p in POLICIES}
        out["bfloat16_speedup"] = rates["mixed_bfloat16"] / rates["float32"]
        if "pipeline" in results:
            pipe = results["pipeline"]["slices_per_second"]
            for policy, rate in rates.items():
                out[f"pipeline_over_training_{policy}"] = pipe / rate
            out["pipeline_over_training"] = pipe / max(rates.values())
            disk = results["pipeline"].get("slices_per_second_disk")
            if disk is not None:
                out["pipeline_disk_over_training"] = disk / max(rates.values())
    for row in results.get("xla", {}).get("rows", []):
        name = f"xla_train_speedup_base{row['base_filters']}_{row['policy']}"
        out[name] = row["train_xla_speedup"]
        out[name.replace("train", "predict")] = row["predict_xla_speedup"]
    if "cv_cell" in results:
        out["cv_cell_speedup"] = results["cv_cell"]["speedup"]
    return out


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value and whether it is met.

    Soft mask < 0.3 s per scan; pipeline >= 10x the fastest training, from memory and from the
    on-disk slice cache; the fit path >= 95 % of the plain step's speed for every width and
    dtype policy; bfloat16 >= 1.8x float32 on the fit path (CPUs with AVX512_BF16 only);
    float32 training >= 50 % of the fp32 peak; evaluation < 0.1 s per scan; ``fit`` memory: at
    most 2 % of the peak more after the last epoch than after the middle one (the peak levels
    off once the memory allocator has warmed up: no growth with the number of epochs), and at
    most 5 % more for N2 than for N1 scans (slices in the on-disk cache).
    """
    rows: list[dict[str, Any]] = []

    def add(name: str, value: float, wanted: str, met: bool) -> None:
        rows.append({"name": name, "value": value, "target": wanted, "met": bool(met)})

    if "soft_mask" in results:
        value = results["soft_mask"]["seconds_per_scan"]
        add("soft mask, seconds per scan", value, "< 0.3", value < 0.3)
    value = results.get("ratios", {}).get("pipeline_over_training", math.nan)
    if math.isfinite(value):
        add("pipeline / fastest training (slices/s)", value, ">= 10", value >= 10)
    value = results.get("ratios", {}).get("pipeline_disk_over_training", math.nan)
    if math.isfinite(value):
        add("pipeline from disk cache / fastest training", value, ">= 10", value >= 10)
    if "training" in results:
        for row in results["training"]["paths"]:
            value = row["fit_over_plain"]
            add(
                f"fit path / plain step, base {row['base_filters']} {row['policy']}",
                value,
                ">= 0.95",
                value >= 0.95,
            )
        if "avx512_bf16" in results.get("machine", {}).get("vector_flags", []):
            for base, value in results["training"]["bfloat16_speedup_fit"].items():
                add(f"bfloat16 / float32, fit path, base {base}", value, ">= 1.8", value >= 1.8)
        value = results["training"]["float32"]["fraction_of_peak"]
        add("float32 training, fraction of fp32 peak", value, ">= 0.5", value >= 0.5)
    if "evaluation" in results:
        value = results["evaluation"]["seconds_per_scan"]
        add("evaluation, seconds per scan", value, "< 0.1", value < 0.1)
    if "teardown" in results:
        value = results["teardown"]["fixed"]["max_seconds"]
        add("pipeline iterator drop under CPU load, max seconds", value, "< 0.5", value < 0.5)
    if "cv_cell" in results:
        value = results["cv_cell"]["speedup"]
        add("cv cell fold, reference seconds / reuse seconds", value, ">= 1.5", value >= 1.5)
    if "memory" in results:
        memory = results["memory"]
        peak = max(r["peak_rss_mb_last_epoch"] for r in memory["runs"])
        value = memory["late_epoch_growth_mb"]
        add(
            "fit peak memory, 2nd half of the epochs (MB)",
            value,
            "<= 2 % of peak",
            value <= 0.02 * peak,
        )
        value = memory["scan_growth_mb"]
        base = memory["runs"][0]["peak_rss_mb_last_epoch"]
        add(
            "fit peak memory, N1 to N2 scans, disk cache (MB)",
            value,
            "<= 5 % of the N1 peak",
            value <= 0.05 * base,
        )
    return rows


@contextlib.contextmanager
def _scratch(workdir: str | Path | None) -> Iterator[Path]:
    if workdir is not None:
        path = Path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        yield path
    else:
        with tempfile.TemporaryDirectory(prefix="mssoft-bench-") as tmp:
            yield Path(tmp)


def _tensorflow_setup() -> dict[str, Any]:
    import os

    import tensorflow as tf

    return {
        "version": tf.__version__,
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or "auto",
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or "auto",
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset (oneDNN on)"),
        "data_format": "channels_last",
    }


def _check_stages(stages: Sequence[str] | None) -> list[str]:
    wanted = list(STAGES) if stages is None else ["machine", *stages]
    unknown = sorted(set(wanted) - set(STAGES))
    if unknown:
        raise ConfigError(
            f"Invalid value for `--stages`: unknown {', '.join(unknown)} "
            f"(choose from {', '.join(STAGES)})"
        )
    if "prediction" in wanted and "training" not in wanted:
        raise ConfigError("Invalid value for `--stages`: prediction needs training")
    return [s for s in STAGES if s in wanted]


def run_benchmarks(
    settings: BenchSettings = FULL,
    *,
    stages: Sequence[str] | None = None,
    workdir: str | Path | None = None,
) -> dict[str, Any]:
    """Run the benchmark stages and return every figure (JSON-ready).

    Parameters
    ----------
    settings : BenchSettings
        :data:`~harness.FULL` (``make bench``) or :data:`~harness.QUICK` (smoke test).
    stages : sequence of str, optional
        A subset of :data:`~harness.STAGES` (``machine`` always runs; prediction needs
        training). Default: all.
    workdir : path-like, optional
        Scratch folder of the memory stage (default: a temporary folder, removed afterwards).

    Returns
    -------
    dict
        ``created``, ``settings``, ``versions``, ``machine``, ``data``, one entry per stage,
        ``tensorflow``, ``ratios``, ``targets``, ``stage_seconds``, ``other_cpu_share`` (share of
        the CPU other processes used during each stage: timings taken on a busy machine are
        pessimistic), ``load_average`` and ``total_seconds``.

    Raises
    ------
    ConfigError
        Unknown stage, or prediction without training.
    MssoftError
        A ``fit`` run of the memory stage failed.
    """
    wanted = _check_stages(stages)
    start = time.perf_counter()
    share = CpuShare()
    results: dict[str, Any] = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": settings.to_dict(),
        "stages": wanted,
        "versions": package_versions(),
        "load_average": {"start": load_average()},
        "stage_seconds": {},
        "other_cpu_share": {},
    }

    @contextlib.contextmanager
    def stage(name: str) -> Iterator[None]:
        logger.info("benchmark stage: %s", name)
        share.since_last()
        t0 = time.perf_counter()
        yield
        results["stage_seconds"][name] = round(time.perf_counter() - t0, 2)
        results["other_cpu_share"][name] = share.since_last()

    with contextlib.ExitStack() as stack:
        memory = None
        if "memory" in wanted:
            memory = FitMemory(settings, stack.enter_context(_scratch(workdir)))
            if settings.memory_parallel:  # quick setting: alongside the other stages
                memory.start()
        with stage("machine"):
            results["machine"] = bench_machine(settings)
        machine = results["machine"]
        if set(wanted) & {"soft_mask", "pipeline", "training", "evaluation", "xla", "teardown"}:
            with stage("data"):
                scans = make_bench_scans(settings)
                results["data"] = [describe_scan(s, i) for i, s in enumerate(scans)]
            if "soft_mask" in wanted:
                with stage("soft_mask"):
                    results["soft_mask"], softs = bench_soft_masks(scans, settings)
            else:
                softs = [soft_mask(s.masks[1], s.images["flair"], spacing=s.spacing) for s in scans]
            slices = slice_set_from_scans(scans, softs)
        if "evaluation" in wanted:
            with stage("evaluation"):
                results["evaluation"] = bench_evaluation(scans, settings)
        if "pipeline" in wanted:
            with stage("pipeline"):
                results["pipeline"] = bench_pipeline(slices, settings)
        if "training" in wanted:
            with stage("training"):
                results["training"], models = bench_fit_path(
                    slices, settings, peak_gflops=machine["peak_gflops"], cores=machine["cores"]
                )
            results["tensorflow"] = _tensorflow_setup()
        if "prediction" in wanted:
            with stage("prediction"):
                results["prediction"] = bench_prediction(
                    models,
                    scans[0],
                    settings,
                    flops=results["training"]["model"],
                    peak_gflops=machine["peak_gflops"],
                )
                results["prediction"]["files"] = bench_predict_files(
                    models["float32"],
                    slices.modalities,
                    settings,
                    stack.enter_context(_scratch(None)),
                )
        if "xla" in wanted:
            with stage("xla"):
                results["xla"] = bench_xla(slices, settings)
        if "teardown" in wanted:
            with stage("teardown"):
                results["teardown"] = bench_teardown(slices, settings)
        if memory is not None:
            with stage("memory"):
                if not settings.memory_parallel:
                    memory.start()
                results["memory"] = memory.result()
    if "cv_cell" in wanted:
        with stage("cv_cell"), _scratch(None) as scratch:
            results["cv_cell"] = bench_cv_cell(
                scratch, CELL_QUICK if settings.quick else CELL_FULL
            )
    results["ratios"] = ratios(results)
    results["targets"] = targets(results)
    results["load_average"]["end"] = load_average()
    results["total_seconds"] = round(time.perf_counter() - start, 1)
    return results
