import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from harness import ratios, targets
from harness.command import bench
from harness.machine import fp32_flop_per_cycle, read_cpuinfo
from harness.soft_masks import baseline_soft_mask


def unet_macs_by_hand(height, width, channels, base, depth, head_pixels=None):
    """Forward MACs of mssoft's U-Net from its definition (3x3 convs, 2x2 stride-2 up-convs).

    ``height`` and ``width`` are the padded sizes; the 1x1 head runs on the slice cropped back
    to its own ``head_pixels``.
    """
    f = [base * 2**k for k in range(depth + 1)]  # level widths, bottleneck last
    size = [(height // 2**k) * (width // 2**k) for k in range(depth + 1)]
    macs, c_in = 0, channels
    for k in range(depth):  # contracting path
        macs += size[k] * 9 * (c_in * f[k] + f[k] * f[k])
        c_in = f[k]
    macs += size[depth] * 9 * (f[depth - 1] * f[depth] + f[depth] * f[depth])  # bottleneck
    for k in reversed(range(depth)):  # expansive path: up-conv, then convs on the concatenation
        macs += size[k + 1] * 4 * f[k + 1] * f[k] + size[k] * 9 * (2 * f[k] * f[k] + f[k] * f[k])
    return macs + (size[0] if head_pixels is None else head_pixels) * f[0]  # 1x1 head


@pytest.mark.parametrize(("shape", "base", "depth"), [((32, 48, 4), 4, 2), ((40, 24, 2), 2, 3)])
def test_unet_macs_match_the_architecture(shape, base, depth):
    from harness.network import unet_macs

    from mssoft.nn.unet import build_unet

    counted = unet_macs(build_unet(shape, base_filters=base, depth=depth))
    assert counted["forward_macs"] == unet_macs_by_hand(*shape, base, depth)
    assert counted["forward_macs"] == counted["conv_macs"] + counted["transposed_conv_macs"]


def test_model_flops_of_the_paper_unet_pads_and_triples():
    from harness.network import model_flops

    flops = model_flops((181, 217), 4, 32, 4)
    assert flops["padded_input"] == [192, 224]
    assert flops["params"] == 7_760_385
    # the whole model, head included, runs at the padded size (the crop is outside the model)
    assert flops["forward_macs"] == unet_macs_by_hand(192, 224, 4, 32, 4, head_pixels=192 * 224)
    assert flops["forward_macs"] == pytest.approx(7.93e9, rel=1e-3)  # reference/metrics-perf.md
    assert flops["forward_gflop_per_slice"] == pytest.approx(2 * flops["forward_macs"] / 1e9)
    assert flops["training_gflop_per_slice"] == pytest.approx(3 * flops["forward_gflop_per_slice"])


def test_flop_per_cycle_table_and_cpuinfo(tmp_path):
    assert fp32_flop_per_cycle("AuthenticAMD", 25, 17, ["fma", "avx2", "avx512f"])[:2] == (
        32,
        "Zen 4",
    )
    assert fp32_flop_per_cycle("AuthenticAMD", 25, 1, ["fma", "avx2"])[:2] == (32, "Zen 3")
    assert fp32_flop_per_cycle("GenuineIntel", 6, 85, ["fma", "avx2", "avx512f"])[0] == 64
    assert fp32_flop_per_cycle("ARM", 0, 0, [])[0] is None
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\ncpu family\t: 25\nmodel\t\t: 17\n\nprocessor\t: 1\nmodel\t: 9\n"
    )
    assert read_cpuinfo(info) == {"processor": "0", "cpu family": "25", "model": "17"}
    assert read_cpuinfo(tmp_path / "missing") == {}


def test_baseline_soft_mask_grows_to_the_exact_target():
    mask = np.zeros((20, 20, 20), bool)
    mask[5:9, 5:9, 5:9] = True  # 64 voxels
    mask[14:16, 14:16, 14:16] = True  # 8 voxels
    soft = baseline_soft_mask(mask, ratio=1.5, gamma=0.3, flair_threshold=None)
    assert np.count_nonzero(soft == np.float32(0.3)) == round(0.5 * 72)
    assert np.all(soft[mask] == 1) and set(np.unique(soft)) == {0.0, np.float32(0.3), 1.0}
    flair = np.where(np.indices(mask.shape)[0] < 10, 1.0, 2.0)  # half the brain is darker
    kept = baseline_soft_mask(mask, flair, ratio=1.5, flair_threshold=1.5)
    assert np.all(flair[kept == np.float32(0.3)] >= 1.5)


def test_ratios_and_targets_from_results():
    results = {
        "soft_mask": {"seconds_per_scan": 0.1, "speedup_vs_baseline": 2.0},
        "machine": {"vector_flags": ["avx512_bf16", "avx512f"]},
        "pipeline": {"slices_per_second": 100.0, "slices_per_second_disk": 30.0},
        "training": {
            "float32": {"slices_per_second": 4.0, "fraction_of_peak": 0.4},
            "mixed_bfloat16": {"slices_per_second": 8.0, "fraction_of_peak": 0.8},
            "paths": [
                {"base_filters": 32, "policy": "float32", "fit_over_plain": 0.96},
                {"base_filters": 32, "policy": "mixed_bfloat16", "fit_over_plain": 0.9},
            ],
            "bfloat16_speedup_fit": {"32": 1.7},
        },
        "evaluation": {"seconds_per_scan": 0.2},
        "memory": {
            "runs": [{"peak_rss_mb_last_epoch": 1000.0}, {"peak_rss_mb_last_epoch": 1030.0}],
            "epoch_growth_mb": 30.0,
            "late_epoch_growth_mb": 10.0,
            "scan_growth_mb": 30.0,
            "slice_data_growth_mb": 5.0,
        },
    }
    results["ratios"] = ratios(results)
    assert results["ratios"]["pipeline_over_training"] == 12.5  # against the faster (bf16)
    assert results["ratios"]["pipeline_over_training_float32"] == 25.0
    assert results["ratios"]["bfloat16_speedup"] == 2.0
    assert results["ratios"]["pipeline_disk_over_training"] == 3.75
    met = {t["name"]: t["met"] for t in targets(results)}
    assert met == {
        "soft mask, seconds per scan": True,
        "pipeline / fastest training (slices/s)": True,
        "pipeline from disk cache / fastest training": False,
        "fit path / plain step, base 32 float32": True,
        "fit path / plain step, base 32 mixed_bfloat16": False,
        "bfloat16 / float32, fit path, base 32": False,
        "float32 training, fraction of fp32 peak": False,
        "evaluation, seconds per scan": False,
        "fit peak memory, 2nd half of the epochs (MB)": True,  # 10 <= 2 % of 1030
        "fit peak memory, N1 to N2 scans, disk cache (MB)": True,  # 30 <= 5 % of 1000
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stages", "soft_mask,nope"], "unknown nope"),
        (["--stages", "prediction"], "prediction needs training"),
    ],
)
def test_bad_stages_fail_with_one_line(args, message):
    result = CliRunner().invoke(bench, args)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_harness_is_not_installed():
    import subprocess
    import sys

    code = "import mssoft.bench"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode != 0 and "No module named 'mssoft.bench'" in out.stderr


def test_out_must_not_be_a_folder(tmp_path):
    result = CliRunner().invoke(bench, ["--quick", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "--out" in result.output


@pytest.mark.slow
def test_quick_bench_writes_every_figure(tmp_path):
    out = tmp_path / "results.json"
    result = CliRunner().invoke(
        bench, ["--quick", "--out", str(out), "--workdir", str(tmp_path / "work")]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    for key in ("machine", "data", "soft_mask", "pipeline", "training", "prediction"):
        assert key in record
    for key in ("evaluation", "memory", "ratios", "targets", "stage_seconds", "other_cpu_share"):
        assert key in record
    machine = record["machine"]
    assert machine["cores"] >= 1 and machine["peak_gflops"] > 0
    assert machine["peak_gflops"] >= machine["sgemm_gflops"]
    for policy in ("float32", "mixed_bfloat16"):
        training = record["training"][policy]
        assert training["slices_per_second"] > 0 and 0 < training["fraction_of_peak"] < 1
        assert record["prediction"][policy]["output_ok"]
    assert record["training"]["model"]["training_gflop_per_slice"] > 0
    for name in (
        "soft_mask_speedup_vs_baseline",
        "pipeline_over_training",
        "pipeline_over_training_float32",
        "pipeline_over_training_mixed_bfloat16",
        "bfloat16_speedup",
    ):
        assert math.isfinite(record["ratios"][name]) and record["ratios"][name] > 0, name
    teardown = record["teardown"]
    for pipeline in ("fixed", "autotuned"):
        drops = teardown[pipeline]["drop_seconds"]
        assert len(drops) == teardown["rounds"] and min(drops) >= 0
    assert any(t["name"].startswith("pipeline iterator drop") for t in record["targets"])
    runs = record["memory"]["runs"]
    assert [r["scans"] for r in runs] == [2, 4]
    assert runs[0]["slices_kept"] < runs[1]["slices_kept"]
    for run in runs:
        assert list(run["peak_rss_mb_after_epoch"]) == ["1", "2"]
        assert run["peak_rss_mb_last_epoch"] >= run["peak_rss_mb_first_epoch"] > 50
    # soft mask, 2 pipelines, 2 fit paths (1 width x 2 policies), bf16 speed-up (on CPUs with
    # AVX512_BF16), fraction of peak, evaluation, the pipeline's teardown, 2 memory targets, the
    # cv cell's speed-up
    assert len(record["targets"]) == 11 + ("avx512_bf16" in machine["vector_flags"])
    for row in record["xla"]["rows"]:  # 1 width x 2 policies
        assert row["train_xla_speedup"] > 0 and row["predict_xla_speedup"] > 0
    assert len(record["xla"]["rows"]) == 2
    cell = record["cv_cell"]
    assert cell["max_prob_difference"] <= 1e-4  # reuse changes no result
    for run in ("reuse", "reference"):
        steps = cell[run]["steps"]
        # calibration: calibrate_run per cell (and, with reuse, the shared model load)
        assert steps["training"]["seconds"] > 0 and steps["calibration"]["calls"] >= 2
        assert steps["prediction"]["calls"] == 2 and steps["evaluation"]["calls"] == 2
        assert len(cell[run]["cell_seconds"]) == 2
        assert len(cell[run]["fit_end_seconds"]) == 2  # one per fit, both codes
    assert cell["reuse"]["steps"]["slice loading"]["calls"] == 2
    assert "cv cell" in result.output and "XLA on" in result.output
    assert "Pipeline iterator drop" in result.output
    for row in record["training"]["paths"]:
        assert row["fit_slices_per_second"] > 0 and row["plain_slices_per_second"] > 0
    assert record["pipeline"]["slices_per_second_disk"] > 0
    for policy in ("float32", "mixed_bfloat16"):
        assert record["prediction"]["files"][policy]["overlapped_seconds_per_scan"] > 0
    assert "Target" in result.output and "soft mask, per scan" in result.output
    assert result.output.rstrip().endswith(f"out={out}")


def test_step_clock_times_steps_exclusively_and_restores_the_functions():
    import time

    from harness.step_clock import StepClock

    import mssoft.workflows.overlap as overlap

    class Work:
        def outer(self):
            time.sleep(0.05)
            self.inner()

        def inner(self):
            time.sleep(0.1)

    original = overlap.read_ahead
    clock = StepClock(
        [(Work, "outer", "outer"), (Work, "inner", "inner"), (overlap, "read_ahead", "read")]
    )
    with clock.running():
        assert overlap.read_ahead is not original
        Work().outer()
    assert overlap.read_ahead is original and "timed" not in Work.outer.__qualname__
    assert 0.1 <= clock.seconds["inner"] < 0.2 and 0.05 <= clock.seconds["outer"] < 0.1
    assert clock.calls == {"outer": 1, "inner": 1, "read": 0}
    record = clock.record(wall=0.2)
    assert record["steps"]["other"]["seconds"] == pytest.approx(0.05, abs=0.04)
    assert record["steps"]["inner"]["share"] == pytest.approx(0.5, abs=0.2)
