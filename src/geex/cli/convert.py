"""``geex convert``: checkpoints in and out of the Geex format.

geex convert codegeex CKPT [CKPT ...] OUT_DIR   original CodeGeeX .pt (or its partitions)
geex convert to-codegeex GEEX_DIR OUT_FILE      back to CodeGeeX's layout, for its own code
geex convert to-hf GEEX_DIR OUT_DIR             a transformers folder (trust_remote_code)
geex convert from-hf HF_DIR OUT_DIR             such a folder back to Geex

The output is written beside itself and renamed into place when complete; it may not be the
input. An existing output is replaced only with --overwrite, and then only if it is an
earlier output of the same kind (an empty OUT_DIR is always fine).
"""

from __future__ import annotations

import argparse

DTYPES = ("fp16", "bf16", "fp32")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert checkpoints: CodeGeeX <-> Geex <-> Hugging Face",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")

    codegeex = verbs.add_parser(
        "codegeex",
        help="import an original CodeGeeX PyTorch checkpoint",
        description="Import a CodeGeeX checkpoint: one .pt file (plain or fused-qkv layout), "
        "a folder of Megatron mp_rank_XX_model_states.pt partitions, or the partition files.",
    )
    codegeex.add_argument("ckpt", nargs="+", metavar="CKPT", help="file(s) or partition folder")
    codegeex.add_argument("out_dir", metavar="OUT_DIR", help="Geex checkpoint folder to write")
    codegeex.add_argument(
        "--n-head",
        type=int,
        help="attention heads (not readable from the weights; default 40 for d_model 5120)",
    )
    codegeex.add_argument(
        "--vocab-size",
        type=int,
        help="real vocabulary size, below the padded rows (default 50400, if it fits)",
    )
    _add_options(codegeex, "default: keep the checkpoint's")
    codegeex.add_argument("--tokenizer", metavar="PATH", help="tokenizer to save alongside")
    codegeex.add_argument(
        "--unsafe-pickle",
        action="store_true",
        help="unpickle any Python object in CKPT. Unpickling can run arbitrary code: only for "
        "files from a source you trust, when the safe loader refuses them",
    )
    codegeex.set_defaults(handler=_codegeex)

    to_codegeex = verbs.add_parser(
        "to-codegeex", help="export a Geex checkpoint to CodeGeeX's .pt layout"
    )
    to_codegeex.add_argument("geex_dir", metavar="GEEX_DIR")
    to_codegeex.add_argument("out_file", metavar="OUT_FILE", help=".pt file to write")
    to_codegeex.add_argument(
        "--fused-qkv", action="store_true", help="write the fused inference layout (get_ckpt_qkv)"
    )
    _add_options(to_codegeex, "default: keep; CodeGeeX's inference code runs fp16")
    to_codegeex.set_defaults(handler=_to_codegeex)

    to_hf = verbs.add_parser("to-hf", help="export to a Hugging Face transformers folder")
    to_hf.add_argument("geex_dir", metavar="GEEX_DIR")
    to_hf.add_argument("out_dir", metavar="OUT_DIR")
    _add_options(to_hf, "default: keep")
    to_hf.set_defaults(handler=_to_hf)

    from_hf = verbs.add_parser("from-hf", help="import a folder written by to-hf")
    from_hf.add_argument("hf_dir", metavar="HF_DIR")
    from_hf.add_argument("out_dir", metavar="OUT_DIR")
    _add_options(from_hf, "default: keep")
    from_hf.set_defaults(handler=_from_hf)


def _add_options(parser, default_help: str) -> None:
    """The options every verb shares: the weights' dtype, and --overwrite."""
    parser.add_argument("--dtype", choices=DTYPES, help=f"weights dtype ({default_help})")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output of this kind (a folder of anything else is still refused)",
    )


def _torch_dtype(name: str | None):
    import torch

    return {None: None, "fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[name]


def _codegeex(args) -> int:
    from geex.model.convert_codegeex import convert_codegeex

    out = convert_codegeex(
        args.ckpt,
        args.out_dir,
        n_head=args.n_head,
        vocab_size=args.vocab_size,
        dtype=_torch_dtype(args.dtype),
        tokenizer=args.tokenizer,
        unsafe_pickle=args.unsafe_pickle,
        overwrite=args.overwrite,
    )
    print(f"wrote {out}")
    return 0


def _to_codegeex(args) -> int:
    from geex.model.convert_codegeex import export_codegeex

    out = export_codegeex(
        args.geex_dir,
        args.out_file,
        dtype=_torch_dtype(args.dtype),
        fused_qkv=args.fused_qkv,
        overwrite=args.overwrite,
    )
    print(f"wrote {out}")
    return 0


def _to_hf(args) -> int:
    from geex.model.hf_export import export_hf

    out = export_hf(
        args.geex_dir, args.out_dir, dtype=_torch_dtype(args.dtype), overwrite=args.overwrite
    )
    print(f"wrote {out}")
    return 0


def _from_hf(args) -> int:
    from geex.model.hf_export import import_hf

    out = import_hf(
        args.hf_dir, args.out_dir, dtype=_torch_dtype(args.dtype), overwrite=args.overwrite
    )
    print(f"wrote {out}")
    return 0
