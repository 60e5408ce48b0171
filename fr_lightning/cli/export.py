"""``fr export MODEL OUT``: write a checkpoint's evaluation embedding network for deployment.

MODEL is a ``.ckpt`` of ``fr fit`` (rebuilt from its run's ``config.yaml`` or ``--config``) or a
bare ``backbone.pth`` with ``--backbone NAME`` (e.g. insightface's published weights).

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
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from fr_lightning.deploy.checkpoint import LoadedModel

__all__ = ["ExportCheckError", "backbone_state_from_checkpoint", "check_export", "export", "infer_format", "main"]

FORMATS = ("onnx", "torchscript", "pth")
#: Agreement an export must reach with PyTorch on the check batch (float32; fp16 only the cosine).
CHECK_COSINE, CHECK_ABS, CHECK_COSINE_FP16 = 0.99999, 1e-4, 0.999


def backbone_state_from_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The backbone's tensors of a checkpoint (or of a bare backbone state_dict), read with ``weights_only=True``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is neither a checkpoint of ``fr fit`` nor a state_dict, or has no backbone tensors.
    """
    from fr_lightning.deploy.weights import read_weights

    return read_weights(path).backbone_state()


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
    backbone: str | None = None,
    image_size: int | None = None,
) -> list[str]:
    """Write ``checkpoint``'s embedding network to ``output``; returns the lines to print.

    ``checkpoint`` is a ``.ckpt`` (``configs``: recipes describing its model, default the run's
    config.yaml) or a bare ``backbone.pth`` whose architecture ``backbone`` names. The file is
    written under a temporary name beside ``output`` and renamed only after it passed its check:
    a failed export or check, a full disk or a kill leaves a previous ``output`` as it was.
    """
    final = Path(output)
    fmt = infer_format(final, fmt)
    tmp = final.with_name(f".{final.stem}.tmp-{os.getpid()}{final.suffix}")  # the suffix stays: writers read it
    try:
        lines = _export_to(tmp, checkpoint, fmt, configs, fp16, opset, backbone, image_size)
        os.replace(tmp, final)
    except ExportCheckError as err:
        raise ExportCheckError(str(err).replace(str(tmp), str(final))) from None
    except OSError as err:
        if err.filename not in (None, str(tmp)) or err.errno is None:
            raise  # e.g. the checkpoint is missing: not about the output
        raise type(err)(err.errno, err.strerror or str(err), str(final)) from err
    finally:
        tmp.unlink(missing_ok=True)
    return [line.replace(str(tmp), str(final)) for line in lines]


def _export_to(
    out: Path,
    checkpoint: str | Path,
    fmt: str,
    configs: list[str] | None,
    fp16: bool,
    opset: int,
    backbone: str | None,
    image_size: int | None,
) -> list[str]:
    """:func:`export` into ``out`` (its temporary file), in the format ``fmt``."""
    if backbone is not None and configs:
        raise ValueError("--backbone describes a bare backbone.pth; --config describes a .ckpt: pass one of them")
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
    from fr_lightning.deploy.formats import export_onnx, export_torchscript

    loaded = _load_network(checkpoint, configs or [], backbone, image_size)
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


def _load_network(model: str | Path, configs: list[str], backbone: str | None, image_size: int | None) -> LoadedModel:
    """The network to export: a checkpoint rebuilt by the one loader, or a named backbone with its weights."""
    from fr_lightning.cli.compose import read_config
    from fr_lightning.deploy.checkpoint import LoadedModel, load_model
    from fr_lightning.deploy.weights import build_named_backbone, read_weights

    if backbone is not None:
        net = build_named_backbone(backbone, read_weights(model).backbone_state(), model, image_size).eval().requires_grad_(False)
        return LoadedModel(net, net, int(net.input_size), int(net.embedding_dim), [])
    config = read_config(list(configs)) if configs else None
    return load_model(model, config, " + ".join(configs) if configs else None)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: ``fr export CKPT OUT [--format onnx|torchscript|pth] [--config YAML] [--fp16]``."""
    parser = argparse.ArgumentParser(prog="fr export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .ckpt written by fr fit, or a backbone.pth with --backbone")
    parser.add_argument("output", help="output file (.onnx, .pt/.ts or .pth)")
    parser.add_argument("--format", choices=FORMATS, default=None, help="default: from the output suffix")
    parser.add_argument(
        "--config", action="append", default=None, metavar="YAML",
        help="recipe/config describing the model (repeatable); default: the run's config.yaml",
    )
    parser.add_argument("--backbone", default=None, metavar="NAME", help="architecture of a bare backbone.pth (iresnet18/34/50/100/200, mobilefacenet, ...)")
    parser.add_argument("--image-size", type=int, default=None, help="input side of a backbone.pth (default 112 when its shapes allow it)")
    parser.add_argument("--fp16", action="store_true", help="float16 compute (float32 input and output)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 17; default 18)")
    args = parser.parse_args(argv)
    try:
        lines = export(args.checkpoint, args.output, args.format, args.config, args.fp16, args.opset, args.backbone, args.image_size)
    except (OSError, ValueError, ImportError, ExportCheckError) as err:
        print(f"fr export: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    print("\n".join(lines))


if __name__ == "__main__":
    main()

