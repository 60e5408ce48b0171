"""CPU inference speed: onnxruntime vs PyTorch eager on the same exported embedding network.

iResNet-50 (width 1, 512-d, insightface's r50 shape) at 112 px, BatchNorm statistics set from
synthetic faces (so activations have a trained network's scale), exported with the project's
ONNX exporter (``fr_lightning.deploy.export_onnx``). Both engines get the same thread count
(``--threads``, default 2: torch.set_num_threads / onnxruntime intra-op threads, one inter-op
thread). For each batch size, after ``--warmup`` calls each, ``--repeats`` rounds alternate one
timed PyTorch call and one timed onnxruntime call (interleaved, so load from other processes
hits both alike); the median time per call gives images/s. The two outputs are compared on the
timed batch as a parity check.

    python benchmarks/onnx_runtime.py                        # batch 1 and 32, 2 threads
    python benchmarks/onnx_runtime.py --batches 1 8 32 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_network(size: int):
    """iResNet-50 with calibrated BatchNorm statistics, in eval mode."""
    import numpy as np
    import torch

    from fr_lightning.backbones import iresnet50
    from fr_lightning.data import SyntheticPairs, normalize_images

    torch.manual_seed(0)
    net = iresnet50(input_size=size)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    faces = SyntheticPairs("bench", pairs=20, set_seed=3).build(size).load(np.arange(16))
    net.train()
    with torch.no_grad():
        net(normalize_images(faces))
    return net.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds per batch size (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "onnx_runtime.json")
    args = parser.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch

    from fr_lightning.deploy import compare, export_onnx

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    net = build_network(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r50.onnx"
        t0 = time.perf_counter()
        export_onnx(net, path, args.size)
        export_s = time.perf_counter() - t0
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        rows = []
        for batch in args.batches:
            x = rng.uniform(-1, 1, size=(batch, 3, args.size, args.size)).astype(np.float32)
            xt = torch.from_numpy(x)

            def run_torch() -> np.ndarray:
                with torch.inference_mode():
                    return net(xt).numpy()

            def run_ort() -> np.ndarray:
                return session.run(None, {"input": x})[0]

            for _ in range(args.warmup):
                run_torch(), run_ort()
            times: dict[str, list[float]] = {"pytorch": [], "onnxruntime": []}
            outs = {}
            for _ in range(args.repeats):
                for name, fn in (("pytorch", run_torch), ("onnxruntime", run_ort)):
                    t = time.perf_counter()
                    outs[name] = fn()
                    times[name].append(time.perf_counter() - t)
            parity = compare(outs["pytorch"], outs["onnxruntime"])
            row = {"batch": batch, "parity": {"min_cosine": parity.min_cosine, "max_abs_diff": parity.max_abs_diff}}
            for name, ts in times.items():
                med = statistics.median(ts)
                row[name] = {"median_s": med, "img_per_s": batch / med, "times_s": ts}
            row["speedup_ort_over_torch"] = row["onnxruntime"]["img_per_s"] / row["pytorch"]["img_per_s"]
            rows.append(row)
            print(
                f"batch {batch:>3}: PyTorch {row['pytorch']['img_per_s']:8.2f} img/s | onnxruntime "
                f"{row['onnxruntime']['img_per_s']:8.2f} img/s | x{row['speedup_ort_over_torch']:.2f} | parity {parity}",
                flush=True,
            )
    result = {
        "benchmark": "onnx_runtime",
        "network": f"iresnet50 width 1, {args.size} px, 512-d",
        "threads": args.threads,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "export_s": export_s,
        "rows": rows,
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
        },
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
