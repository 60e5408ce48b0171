"""``fr export CKPT OUT``: write a checkpoint's evaluation embedding network for deployment.

Formats (``--format``, default from OUT's suffix):

* ``onnx`` (``.onnx``): the embedding network in eval mode, input ``[N, 3, S, S]`` float32 RGB
  normalised as ``(x - 127.5) / 127.5`` outside the graph, dynamic ``N``, one output: the raw
  embedding (the caller flip-sums and L2-normalises). Loads unchanged in insightface's
  ``ArcFaceONNX``. Needs the ``[export]`` extra.
* ``torchscript`` (``.pt``/``.ts``): the same network traced with the same contract.
* ``pth`` (``.pth``): the backbone's ``state_dict`` only (insightface ``backbone.pth`` layout).

ONNX and TorchScript files are loaded back and run on 8 synthetic faces; the export fails if
they disagree with PyTorch. See docs/deploy.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

__all__ = ["ExportCheckError", "backbone_state_from_checkpoint", "check_export", "export", "infer_format", "main"]

FORMATS = ("onnx", "torchscript", "pth")
#: Agreement an export must reach with PyTorch on the check batch (float32; fp16 only the cosine).
CHECK_COSINE, CHECK_ABS, CHECK_COSINE_FP16 = 0.99999, 1e-4, 0.999


def backbone_state_from_checkpoint(path: str | Path, prefix: str = "backbone.") -> dict[str, torch.Tensor]:
    """Load a Lightning checkpoint safely (``weights_only=True``) and keep the backbone's tensors.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file holds no ``state_dict`` or no key starting with ``prefix``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a Lightning checkpoint (no 'state_dict' entry)")
    out = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not out:
        raise ValueError(f"{path}: no parameters under '{prefix}' in its state_dict")
    return out


def infer_format(output: Path, fmt: str | None) -> str:
    """``fmt`` if given, else from the suffix of ``output``."""
    if fmt:
        return fmt
    suffix = output.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix in (".pt", ".ts", ".torchscript"):
        return "torchscript"
    if suffix == ".pth":
        return "pth"
    raise ValueError(f"cannot tell the format from '{output.name}'; pass --format {'|'.join(FORMATS)}")


class ExportCheckError(RuntimeError):
    """The exported file does not reproduce PyTorch's embeddings."""


def check_export(network: torch.nn.Module, path: Path, fmt: str, image_size: int, fp16: bool, threads: int | None = None) -> str:
    """Run 8 synthetic faces (batch 8, then one alone) through the file and PyTorch; raise on mismatch."""
    from fr_lightning.deploy.formats import compare, reference_images, run_onnx
    from fr_lightning.deploy.images import normalize

    images = normalize(reference_images(image_size, 8))
    with torch.inference_mode():
        ref = network(torch.from_numpy(images)).float().numpy()
    if fmt == "onnx":
        batch, single = run_onnx(path, images, threads), run_onnx(path, images[:1], threads)
    else:
        loaded = torch.jit.load(str(path), map_location="cpu").eval()
        with torch.inference_mode():
            batch = loaded(torch.from_numpy(images)).float().numpy()
            single = loaded(torch.from_numpy(images[:1])).float().numpy()
    report = compare(ref, batch)
    alone = compare(ref[:1], single)
    need = (CHECK_COSINE_FP16, float("inf")) if fp16 else (CHECK_COSINE, CHECK_ABS)
    if not (report.ok(*need) and alone.ok(*need)):
        raise ExportCheckError(
            f"{path} does not reproduce PyTorch on 8 check images: batch of 8: {report}; batch of 1: {alone}; "
            f"required min cosine {need[0]}" + ("" if fp16 else f" and max |diff| <= {need[1]} x max(1, max |value|)")
        )
    return f"check on 8 synthetic faces vs PyTorch: {report}"


def export(
    checkpoint: str | Path,
    output: str | Path,
    fmt: str | None = None,
    configs: list[str] | None = None,
    fp16: bool = False,
    opset: int = 18,
) -> list[str]:
    """Write ``checkpoint``'s embedding network to ``output``; returns the lines to print."""
    out = Path(output)
    fmt = infer_format(out, fmt)
    if fmt == "pth":
        if fp16:
            raise ValueError("--fp16 applies to onnx and torchscript; pth keeps the trained float32 tensors")
        state = backbone_state_from_checkpoint(checkpoint)
        out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, out)
        back = torch.load(out, map_location="cpu", weights_only=True)
        if set(back) != set(state) or any(not torch.equal(back[k], state[k]) for k in state):
            raise ExportCheckError(f"{out} does not read back as the checkpoint's backbone tensors")
        return [f"wrote {len(state)} tensors of the backbone to {out}"]
    from fr_lightning.deploy.checkpoint import load_model
    from fr_lightning.deploy.formats import export_onnx, export_torchscript

    loaded = load_model(checkpoint, configs or [])
    size = loaded.image_size
    if fmt == "onnx":
        try:
            import onnx
            import onnxruntime  # noqa: F401
        except ImportError as err:
            raise ImportError("ONNX export needs the export extra: pip install 'fr-lightning[export]'") from err
        from fr_lightning.deploy.insightface import check_insightface_contract

        export_onnx(loaded.network, out, size, opset=opset, fp16=fp16)
        view = check_insightface_contract(out)
        model = onnx.load(str(out), load_external_data=False)
        written = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), opset)
        where = "routed to ArcFaceONNX by model_zoo.get_model" if view.routed else "load with ArcFaceONNX(model_file=...) (model_zoo routes only sizes >= 112, multiples of 16)"
        lines = [
            f"wrote ONNX (opset {written}{', float16 compute' if fp16 else ''}) to {out}",
            f"input '{view.input_name}' {view.input_shape} RGB, (x - 127.5) / 127.5; output {view.output_names[0]} [N, {loaded.embedding_dim}] raw embedding",
            f"insightface: mean/std 127.5/127.5 inferred; {where}",
        ]
    else:
        export_torchscript(loaded.network, out, size, fp16=fp16)
        lines = [f"wrote TorchScript{' (float16 compute)' if fp16 else ''} to {out}: input [N, 3, {size}, {size}] RGB, (x - 127.5) / 127.5; raw embedding"]
    lines.append(check_export(loaded.network, out, fmt, size, fp16))
    return lines


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: ``fr export CKPT OUT [--format onnx|torchscript|pth] [--config YAML] [--fp16]``."""
    parser = argparse.ArgumentParser(prog="fr export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .ckpt written by fr fit")
    parser.add_argument("output", help="output file (.onnx, .pt/.ts or .pth)")
    parser.add_argument("--format", choices=FORMATS, default=None, help="default: from the output suffix")
    parser.add_argument(
        "--config", action="append", default=None, metavar="YAML",
        help="recipe/config describing the model (repeatable); default: the run's config.yaml",
    )
    parser.add_argument("--fp16", action="store_true", help="float16 compute (float32 input and output)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 17; default 18)")
    args = parser.parse_args(argv)
    try:
        lines = export(args.checkpoint, args.output, args.format, args.config, args.fp16, args.opset)
    except (FileNotFoundError, ValueError, ImportError, ExportCheckError) as err:
        print(f"fr export: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    print("\n".join(lines))


if __name__ == "__main__":
    main()

