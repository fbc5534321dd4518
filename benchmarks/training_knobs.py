"""How fast can the U-Net train on this CPU? Training throughput under different settings.

Not part of ``make bench``: the investigation behind its training row. Each variant runs in its
own subprocess (threading and oneDNN are fixed when TensorFlow starts) and trains the model of
``mssoft fit`` (:func:`mssoft.workflows.fit.build_model`: U-Net base 32, depth 4, Adam, SoftDiceLoss) with
``train_on_batch`` on one batch of 181 x 217 x 4 slices: a first (tracing) step, one warm-up step,
then ``--steps`` timed steps (median).

Usage::

    python benchmarks/training_knobs.py [--steps 3] [--variants default,bf16,...]

Prints a table (slices/s, GFLOP/s, % of the peak measured by ``make bench``'s FMA probe when
``benchmarks/results.json`` exists) and writes ``benchmarks/training_knobs.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: name -> (environment variables, options of the measurement)
VARIANTS: dict[str, tuple[dict[str, str], dict[str, object]]] = {
    "default": ({}, {}),
    "intra2_inter1": ({}, {"intra": 2, "inter": 1}),
    "one_thread": ({}, {"intra": 1, "inter": 1}),
    "onednn_off": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, {}),
    "batch16": ({}, {"batch": 16}),
    "batch4": ({}, {"batch": 4}),
    "xla": ({}, {"jit": True}),
    "padded_input": ({}, {"shape": [192, 224]}),
    "bf16": ({}, {"policy": "mixed_bfloat16"}),
    "bf16_batch16": ({}, {"policy": "mixed_bfloat16", "batch": 16}),
}


def measure(options: dict[str, object], steps: int) -> dict[str, object]:
    """Train steps in this process with the given options; timings and throughput."""
    import keras
    import numpy as np
    import tensorflow as tf

    if options.get("intra"):
        tf.config.threading.set_intra_op_parallelism_threads(int(options["intra"]))
        tf.config.threading.set_inter_op_parallelism_threads(int(options["inter"]))
    keras.config.set_dtype_policy(str(options.get("policy", "float32")))

    from harness.network import model_flops

    from mssoft.nn.losses import SoftDiceLoss
    from mssoft.workflows.fit import build_model
    from mssoft.workflows.settings import TrainConfig

    batch = int(options.get("batch", 8))
    height, width = options.get("shape", [181, 217])
    config = TrainConfig(data=Path("."), out=Path("."), batch_size=batch)
    keras.utils.set_random_seed(0)
    model = build_model(config, 4)
    if options.get("jit"):
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=SoftDiceLoss(), jit_compile=True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, height, width, 4)).astype(np.float32)
    y = (rng.random((batch, height, width, 1)) > 0.95).astype(np.float32)
    t0 = time.perf_counter()
    model.train_on_batch(x, y)
    first = time.perf_counter() - t0
    model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - t0)
    step = float(np.median(times))
    flops = model_flops((height, width), 4, 32, 4)["training_gflop_per_slice"]
    return {
        "batch": batch,
        "step_seconds": step,
        "slices_per_second": batch / step,
        "gflops": batch / step * flops,
        "first_step_seconds": first,
        "load_average": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(VARIANTS[args.child][1], args.steps)))
        return
    peak = None
    results_file = HERE / "results.json"
    if results_file.is_file():
        peak = json.loads(results_file.read_text())["machine"]["peak_gflops"]
    rows = {}
    for name in args.variants.split(","):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **VARIANTS[name][0]}
        done = subprocess.run(
            [sys.executable, __file__, "--child", name, "--steps", str(args.steps)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        rows[name] = json.loads(done.stdout.strip().splitlines()[-1])
        r = rows[name]
        share = f"{100 * r['gflops'] / peak:5.0f} %" if peak else ""
        print(
            f"{name:<15} batch {r['batch']:>2}  {r['slices_per_second']:6.2f} slices/s  "
            f"{r['gflops']:6.0f} GFLOP/s {share}  (first step {r['first_step_seconds']:.1f} s, "
            f"load {r['load_average']:.1f})",
            flush=True,
        )
    (HERE / "training_knobs.json").write_text(json.dumps({"peak_gflops": peak, **rows}, indent=2))


if __name__ == "__main__":
    main()
