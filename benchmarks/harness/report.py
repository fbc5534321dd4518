"""The benchmark results as a readable text table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from harness.network import POLICIES

__all__ = ["format_report"]


def _num(value: Any, unit: str = "") -> str:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "n/a"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}"
    return text + unit


def _pct(value: Any) -> str:
    return _num(100 * value, " %") if isinstance(value, (int, float)) else "n/a"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _machine_lines(m: dict[str, Any]) -> list[str]:
    lines = [
        f"Machine: {m['cpu']} ({m['vendor']} family {m['family']} model {m['model']} = "
        f"{m['microarchitecture']}), {m['cores']} cores, {m['memory_gb']} GB RAM",
        f"fp32 peak, stated:   {m['cores']} cores x {m['clock_ghz_nominal']:.3f} GHz x "
        f"{m['fp32_flop_per_cycle']} FLOP/cycle = {_num(m['peak_gflops_nominal'])} GFLOP/s",
    ]
    probe = m["fma_probe"]
    if "gflops" in probe:
        lines.append(
            f"fp32 peak, measured: FMA loop on every core {_num(probe['gflops'])} GFLOP/s at "
            f"{probe['clock_ghz']:.2f} GHz (= {_num(probe.get('flop_per_cycle_per_core'))} "
            f"FLOP/cycle/core); NumPy sgemm {_num(m['sgemm_gflops'])} GFLOP/s"
        )
    else:
        lines.append(
            f"fp32 peak, measured: NumPy sgemm {_num(m['sgemm_gflops'])} GFLOP/s "
            f"(FMA probe skipped: {probe['skipped']})"
        )
    lines.append(f"peak used below:     {_num(m['peak_gflops'])} GFLOP/s ({m['peak_source']})")
    return lines


def _bf16(record: dict[str, Any]) -> str:
    if "fraction_of_bf16_peak" not in record:
        return ""
    return f" ({_pct(record['fraction_of_bf16_peak'])} of a 2x bf16 peak)"


def _stage_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    peak = results["machine"]["peak_gflops"]
    ratios = results.get("ratios", {})
    if "soft_mask" in results:
        r = results["soft_mask"]
        rows.append(
            [
                "soft mask, per scan",
                _num(r["seconds_per_scan"], " s"),
                f"binary_dilation baseline {_num(r['baseline_seconds_per_scan'], ' s')}",
                _num(r["speedup_vs_baseline"], "x faster"),
            ]
        )
    if "pipeline" in results:
        r = results["pipeline"]
        reference = ""
        if "training" in results:
            best = max(results["training"][p]["slices_per_second"] for p in POLICIES)
            reference = f"fastest training step {_num(best, ' slices/s')}"
        rows.append(
            [
                "tf.data pipeline, rotation on",
                _num(r["slices_per_second"], " slices/s"),
                reference,
                _num(ratios.get("pipeline_over_training"), "x"),
            ]
        )
        if "slices_per_second_disk" in r:
            rows.append(
                [
                    "tf.data pipeline from the disk cache",
                    _num(r["slices_per_second_disk"], " slices/s"),
                    reference,
                    _num(ratios.get("pipeline_disk_over_training"), "x"),
                ]
            )
    if "training" in results:
        t = results["training"]
        for row in t["paths"]:
            rows.append(
                [
                    f"fit path, base {row['base_filters']} {row['policy']}, batch "
                    f"{t['batch_size']}",
                    _num(row["fit_slices_per_second"], " slices/s"),
                    f"plain step {_num(row['plain_slices_per_second'], ' slices/s')} (CPU s/step "
                    f"{_num(row['fit_cpu_seconds_per_step'])} vs "
                    f"{_num(row['plain_cpu_seconds_per_step'])})",
                    _num(row["fit_over_plain"], "x"),
                ]
            )
        for policy in POLICIES:
            r = t[policy]
            rows.append(
                [
                    f"fit path {policy}, base {t['model']['base_filters']}: FLOP rate",
                    f"{_num(r['gflops'])} GFLOP/s",
                    f"of {_num(peak)} GFLOP/s fp32 peak" + _bf16(r),
                    _pct(r["fraction_of_peak"]),
                ]
            )
    if "prediction" in results:
        for policy in POLICIES:
            r = results["prediction"][policy]
            rows.append(
                [
                    f"prediction {policy}, per scan",
                    _num(r["seconds_per_scan"], " s"),
                    f"{_num(r['slices_per_second'])} slices/s, {_num(r['gflops'])} GFLOP/s"
                    + _bf16(r),
                    _pct(r["fraction_of_peak"]),
                ]
            )
        files = results["prediction"].get("files")
        for policy in POLICIES if files else ():
            r = files[policy]
            rows.append(
                [
                    f"predict from files {policy}, per scan",
                    _num(r["overlapped_seconds_per_scan"], " s"),
                    f"reading/model/writing in turn {_num(r['sequential_seconds_per_scan'], ' s')}",
                    _num(r["speedup"], "x faster"),
                ]
            )
    if "evaluation" in results:
        r = results["evaluation"]
        rows.append(
            [
                "evaluation, per scan",
                _num(r["seconds_per_scan"], " s"),
                f"post-processing {_num(r['postprocess_seconds'], ' s')} + metrics vs "
                f"{r['raters']} raters",
                "",
            ]
        )
    return rows


def _memory_lines(mem: dict[str, Any]) -> list[str]:
    model = mem["model"]
    middle, last = mem["runs"][0]["late_epochs"]
    rows = [
        [
            str(r["scans"]),
            str(r["slices_kept"]),
            _num(r["slice_data_mb"], " MB"),
            *(_num(r["peak_rss_mb_after_epoch"][str(e)], " MB") for e in (1, middle, last)),
            _num(r["epoch_growth_mb"], " MB"),
            _num(r["late_epoch_growth_mb"], " MB"),
        ]
        for r in mem["runs"]
    ]
    header = ["Scans", "Slices kept", "Slice data", "Epoch 1", f"Epoch {middle}", f"Epoch {last}"]
    return [
        f"Peak resident memory of `mssoft fit` after each epoch "
        f"({' x '.join(map(str, mem['scan_shape']))} scans, U-Net base {model['base_filters']} "
        f"depth {model['depth']}, batch {model['batch_size']})",
        *_table([*header, f"Growth 1-{last}", f"Growth {middle}-{last}"], rows),
        f"N1 -> N2 scans: peak {_num(mem['scan_growth_mb'], ' MB')} more, for "
        f"{_num(mem['slice_data_growth_mb'], ' MB')} more slices kept",
    ]


def _xla_lines(xla: dict[str, Any]) -> list[str]:
    """Seconds per training step and prediction call without and with XLA, and their ratio."""
    lines = [
        f"XLA on {xla['device']} (batch {xla['batch_size']}, prediction batch "
        f"{xla['predict_batch_size']}; ratio = today's seconds / XLA's, > 1: XLA faster)"
    ]
    rows = [
        [
            f"base {r['base_filters']} {r['policy']}",
            f"{r['train_step_seconds_off']:.3f} / {r['train_step_seconds_on']:.3f}",
            f"{r['train_xla_speedup']:.2f}",
            f"{r['predict_seconds_off']:.3f} / {r['predict_seconds_on']:.3f}",
            f"{r['predict_xla_speedup']:.2f}",
            f"{r['first_train_seconds_on']:.1f}",
        ]
        for r in xla["rows"]
    ]
    return lines + _table(
        ["Model", "Train s off/on", "Ratio", "Predict s off/on", "Ratio", "XLA compile s"], rows
    )


def _teardown_lines(teardown: dict[str, Any]) -> list[str]:
    """Seconds to drop a pipeline iterator under CPU load, fixed against autotuned."""
    lines = [
        f"Pipeline iterator drop beside {teardown['load_processes']} busy processes "
        f"({teardown['rounds']} drops each, after {teardown['seconds_per_round']:g} s of batches; "
        f"wait = over {teardown['wait_threshold_seconds']:g} s)"
    ]
    rows = [
        [
            label,
            f"{teardown[key]['max_seconds']:.2f}",
            f"{teardown[key]['total_seconds']:.2f}",
            str(teardown[key]["waits"]),
        ]
        for key, label in (("fixed", "fixed (mssoft)"), ("autotuned", "autotuned (earlier)"))
    ]
    return lines + _table(["Pipeline", "Max s", "Total s", "Waits"], rows)


def format_report(results: dict[str, Any]) -> str:
    """Tables of a :func:`~harness.run_benchmarks` result (no trailing newline)."""
    s = results["settings"]
    busy = results.get("other_cpu_share", {})
    busiest = max(busy.values(), default=0.0)
    lines = [
        f"make bench, {'QUICK setting: numbers not meaningful' if s['quick'] else 'full run'}; "
        f"{results['created']}; {results['total_seconds']:.0f} s",
        *_machine_lines(results["machine"]),
    ]
    if busiest > 0.1:
        lines.append(
            f"WARNING: other processes used up to {100 * busiest:.0f} % of the CPU during a "
            "stage (other_cpu_share): timings are pessimistic"
        )
    if "data" in results:
        scans = "; ".join(
            f"{d['lesion_ml']:.1f} mL in {d['lesions']} lesions "
            f"({100 * d['periventricular_fraction']:.0f} % periventricular)"
            for d in results["data"]
        )
        grid = " x ".join(map(str, s["shape"]))
        lines += ["", f"Data: {len(results['data'])} generated {grid} scans: {scans}"]
    rows = _stage_rows(results)
    if rows:
        lines += ["", *_table(["Stage", "Measured", "Reference", "Ratio"], rows)]
    if "training" in results:
        m = results["training"]["model"]
        lines += [
            "",
            f"U-Net: {' x '.join(map(str, m['input']))} slices padded to "
            f"{' x '.join(map(str, m['padded_input']))}, base {m['base_filters']}, depth "
            f"{m['depth']}, {m['params']:,} parameters: {m['forward_gflop_per_slice']:.2f} GFLOP "
            f"forward, {m['training_gflop_per_slice']:.2f} GFLOP training per slice",
            f"  ({m['rule']})",
        ]
    if "xla" in results:
        lines += ["", *_xla_lines(results["xla"])]
    if "teardown" in results:
        lines += ["", *_teardown_lines(results["teardown"])]
    if "memory" in results:
        lines += ["", *_memory_lines(results["memory"])]
    if "cv_cell" in results:
        from harness.cv_cell import format_cell

        lines += ["", format_cell(results["cv_cell"])]
    if results.get("targets"):
        rows = [
            [t["name"], _num(t["value"]), t["target"], "yes" if t["met"] else "NO"]
            for t in results["targets"]
        ]
        lines += ["", *_table(["Target", "Value", "Wanted", "Met"], rows)]
    lines += ["", "Assumptions:", *(f"  {a}" for a in results["machine"]["assumptions"])]
    return "\n".join(lines)
