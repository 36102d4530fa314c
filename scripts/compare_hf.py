#!/usr/bin/env python3
"""Compare Lighthouse logits against HuggingFace transformers on an exported Llama checkpoint.

Run on a machine with torch + transformers (CPU or GPU):

    python3 scripts/compare_hf.py --export DIR --tokens tokens.bin --logits logits.bin \
        [--device cpu|cuda] [--threshold 1e-4] [--check-config]

File formats (all little-endian, no padding):
    tokens.bin  int32 B, int32 T, then B*T int32 token ids (row-major [B, T])
    logits.bin  int32 B, int32 T, int32 V, then B*T*V float32 logits (row-major [B, T, V])

DIR is what Lighthouse exports (config.json + model.safetensors), loaded with
LlamaForCausalLM.from_pretrained(DIR, dtype=torch.float32 (torch_dtype before transformers 4.56), attn_implementation="eager");
eager attention and float32 keep the reference deterministic and free of fused-kernel rounding.

Prints a JSON summary:
    max_abs_err            max |ours - hf| over all logits
    rel_err                ||ours - hf||_2 / ||hf||_2 over all logits
    max_row_rel_err        the same ratio per (b, t) row, maximum over rows (and its row)
Exit status: 0 when rel_err < threshold, 1 when it is not (or a NaN appears), 2 on bad input.
--check-config prints the config HF loaded (to see how the export was interpreted) and, unless
--tokens/--logits are also given, exits 0 after that.
"""
import argparse
import importlib.util
import json
import struct
import sys

try:
    import numpy as np
except ImportError:
    sys.exit("compare_hf.py needs numpy, torch and transformers (python3 -m pip install numpy torch transformers)")


def read_header(f, count, path):
    raw = f.read(4 * count)
    if len(raw) != 4 * count:
        raise ValueError(f"{path}: file too short for its {count}-int32 header")
    dims = struct.unpack("<" + "i" * count, raw)
    if any(d <= 0 for d in dims):
        raise ValueError(f"{path}: non-positive dimension in header {dims}")
    return dims


def read_tokens(path):
    with open(path, "rb") as f:
        b, t = read_header(f, 2, path)
        data = np.frombuffer(f.read(), dtype="<i4")
    if data.size != b * t:
        raise ValueError(f"{path}: header says [{b}, {t}] = {b * t} tokens, file holds {data.size}")
    return data.reshape(b, t).astype(np.int64)


def read_logits(path):
    with open(path, "rb") as f:
        b, t, v = read_header(f, 3, path)
        data = np.frombuffer(f.read(), dtype="<f4")
    if data.size != b * t * v:
        raise ValueError(f"{path}: header says [{b}, {t}, {v}] = {b * t * v} floats, "
                         f"file holds {data.size}")
    return data.reshape(b, t, v)


def load_model(export_dir, device):
    # Imported lazily so that --help and input validation work without torch installed.
    import torch
    import transformers
    from transformers import LlamaForCausalLM

    # transformers 4.56 renamed torch_dtype to dtype (the old name warns).
    major_minor = tuple(int(x) for x in transformers.__version__.split(".")[:2])
    dtype_key = "dtype" if major_minor >= (4, 56) else "torch_dtype"
    model = LlamaForCausalLM.from_pretrained(
        export_dir, attn_implementation="eager", **{dtype_key: torch.float32})
    # .float() as well: transformers versions differ in which dtype keyword they honour.
    model.float().to(device)
    model.eval()
    return model


def hf_logits(model, tokens, device):
    import torch

    with torch.no_grad():
        ids = torch.from_numpy(tokens).to(device)
        out = model(input_ids=ids, use_cache=False)
    # float64 for the error statistics so that the comparison adds no rounding of its own.
    return out.logits.detach().to("cpu", torch.float64).numpy()


def compare(ours, ref):
    diff = ours.astype(np.float64) - ref
    ref_norm = float(np.linalg.norm(ref))
    rows_diff = np.linalg.norm(diff.reshape(-1, diff.shape[-1]), axis=1)
    rows_ref = np.linalg.norm(ref.reshape(-1, ref.shape[-1]), axis=1)
    # Guard all-zero reference rows (only possible for degenerate models) against division by 0.
    row_rel = rows_diff / np.maximum(rows_ref, np.finfo(np.float64).tiny)
    worst = int(np.argmax(row_rel))
    t = ref.shape[1]
    return {
        "max_abs_err": float(np.max(np.abs(diff))),
        "rel_err": float(np.linalg.norm(diff)) / max(ref_norm, np.finfo(np.float64).tiny),
        "max_row_rel_err": float(row_rel[worst]),
        "worst_row": {"b": worst // t, "t": worst % t},
        "hf_logits_norm": ref_norm,
        "has_nan": bool(np.isnan(ours).any() or np.isnan(ref).any()),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--export", required=True, help="exported HF directory")
    ap.add_argument("--tokens", help="tokens.bin (int32 B, T, then B*T int32)")
    ap.add_argument("--logits", help="logits.bin (int32 B, T, V, then B*T*V float32)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threshold", type=float, default=1e-4,
                    help="fail when the overall relative error is >= this (default 1e-4)")
    ap.add_argument("--check-config", action="store_true", help="print the config HF loaded")
    args = ap.parse_args()
    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        print(json.dumps({"error": f"{' and '.join(missing)} not installed: python3 -m pip install {' '.join(missing)}"}))
        return 2

    if args.check_config:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(args.export)
        print(json.dumps({"config": cfg.to_dict()}, indent=2, default=str))
        if not args.tokens and not args.logits:
            return 0
    if not args.tokens or not args.logits:
        ap.error("--tokens and --logits are required unless only --check-config is given")

    try:
        tokens = read_tokens(args.tokens)
        ours = read_logits(args.logits)
    except (OSError, ValueError) as e:
        print(json.dumps({"error": str(e)}))
        return 2
    if ours.shape[:2] != tokens.shape:
        print(json.dumps({"error": f"logits shape {list(ours.shape)} does not match tokens "
                                   f"shape {list(tokens.shape)}"}))
        return 2

    model = load_model(args.export, args.device)
    vocab = model.config.vocab_size
    if tokens.min() < 0 or tokens.max() >= vocab:
        print(json.dumps({"error": f"token ids outside [0, {vocab})"}))
        return 2
    ref = hf_logits(model, tokens, args.device)
    if ref.shape != ours.shape:
        print(json.dumps({"error": f"HF logits shape {list(ref.shape)} != ours "
                                   f"{list(ours.shape)} (vocab size mismatch?)"}))
        return 2

    summary = compare(ours, ref)
    summary.update({
        "shape": list(ours.shape),
        "device": args.device,
        "threshold": args.threshold,
    })
    # NaN compares false against the threshold, so test passing explicitly rather than failing.
    summary["pass"] = bool(not summary["has_nan"] and summary["rel_err"] < args.threshold)
    print(json.dumps(summary, indent=2))
    return 0 if summary["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
