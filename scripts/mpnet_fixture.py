#!/usr/bin/env python3
"""Reference outputs of Hugging Face transformers' MPNetModel for the Rust MPNet encoder.

`tiny` writes a tiny random MPNetModel (config.json, model.safetensors) and what
transformers computes with it (expected.json) into
crates/lora-bert-encoder/tests/fixtures/mpnet-tiny/.  `real` records a few numbers of
the real all-mpnet-base-v2 (token ids, mean-pooled embeddings, cosines) into
crates/lora-bert-encoder/tests/fixtures/all-mpnet-base-v2.golden.json.

Both are deterministic (fixed seeds; weights are rounded to float32 and the forward pass
runs in float64, so the references carry no float32 noise).  See scripts/README.md.
"""

import argparse
import json
import math
import pathlib

import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, MPNetConfig, MPNetModel
from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "crates" / "lora-bert-encoder" / "tests" / "fixtures"

# Lengths of the three sequences of the padded batch: the longest (40) reaches relative
# distances of 39, beyond the exact buckets (distances < 8), so log-spaced buckets are used.
LENGTHS = [40, 23, 7]
BUCKET_RANGE = range(-200, 201)


def rounded(values, digits=8):
    """Nested lists of floats with `digits` significant digits (keeps the JSON small)."""
    if isinstance(values, list):
        return [rounded(v, digits) for v in values]
    return float(f"{values:.{digits}g}")


def tiny(out_dir: pathlib.Path, seed: int) -> None:
    torch.manual_seed(seed)
    config = MPNetConfig(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        hidden_act="gelu",
        max_position_embeddings=64,
        relative_attention_num_buckets=32,
        layer_norm_eps=1e-5,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    model = MPNetModel(config, add_pooling_layer=True).eval()
    # Weights of unit-ish scale (HF's 0.02 init would leave every layer close to identity),
    # LayerNorm scales around 1, and a relative attention bias large enough to matter.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("LayerNorm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith("relative_attention_bias.weight"):
                p.copy_(torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                fan_in = p.shape[-1]
                p.copy_(torch.randn_like(p) / math.sqrt(fan_in))
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config_dict = config.to_dict()
    for key in ("transformers_version", "dtype", "torch_dtype"):
        config_dict.pop(key, None)
    config_dict["architectures"] = ["MPNetModel"]
    (out_dir / "config.json").write_text(json.dumps(config_dict, indent=2, sort_keys=True) + "\n")

    gen = torch.Generator().manual_seed(seed + 1)
    seq = max(LENGTHS)
    input_ids = torch.full((len(LENGTHS), seq), config.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(LENGTHS), seq), dtype=torch.long)
    for row, n in enumerate(LENGTHS):
        body = torch.randint(3, config.vocab_size, (n - 2,), generator=gen)
        input_ids[row, :n] = torch.cat([torch.tensor([0]), body, torch.tensor([2])])
        attention_mask[row, :n] = 1

    model = model.double()
    with torch.no_grad():
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_hidden_states=True,
        )
    buckets = MPNetEncoder.relative_position_bucket(
        torch.tensor(list(BUCKET_RANGE)), num_buckets=32, max_distance=128
    )
    expected = {
        "generator": "scripts/mpnet_fixture.py tiny",
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
        "seed": seed,
        "input_ids": input_ids.tolist(),
        "attention_mask": attention_mask.tolist(),
        "last_hidden_state": rounded(out.last_hidden_state.tolist()),
        "pooler_output": rounded(out.pooler_output.tolist()),
        # Embedding output and the output of layer 0 (the last one is last_hidden_state).
        "hidden_states": rounded([h.tolist() for h in out.hidden_states[:-1]]),
        "relative_position_bucket": {
            "num_buckets": 32,
            "max_distance": 128,
            "relative_positions": list(BUCKET_RANGE),
            "buckets": buckets.tolist(),
        },
    }
    (out_dir / "expected.json").write_text(json.dumps(expected) + "\n")
    print(f"wrote {out_dir}")


SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The stock market fell sharply today.",
]


def real(model_dir: pathlib.Path, out: pathlib.Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = MPNetModel.from_pretrained(str(model_dir), add_pooling_layer=False).eval()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    model = model.double()
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).double()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    unit = torch.nn.functional.normalize(pooled, dim=-1)
    golden = {
        "generator": "scripts/mpnet_fixture.py real",
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
        "sentences": SENTENCES,
        "input_ids": [ids[: int(m.sum())] for ids, m in zip(batch["input_ids"].tolist(), batch["attention_mask"])],
        "pad_token_id": tokenizer.pad_token_id,
        "mean_pooled_first8": rounded(pooled[:, :8].tolist()),
        "mean_pooled_l2norm": rounded(pooled.norm(dim=-1).tolist()),
        "last_hidden_state_first_token_first8": rounded(hidden[:, 0, :8].tolist()),
        "cosine_0_1": float(f"{(unit[0] @ unit[1]).item():.8g}"),
        "cosine_0_2": float(f"{(unit[0] @ unit[2]).item():.8g}"),
    }
    out.write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("tiny", help="write the tiny random model and its expected outputs")
    t.add_argument("--out", type=pathlib.Path, default=FIXTURES / "mpnet-tiny")
    t.add_argument("--seed", type=int, default=20251126)
    r = sub.add_parser("real", help="record reference numbers of all-mpnet-base-v2")
    r.add_argument("--model", type=pathlib.Path, required=True, help="unpacked all-mpnet-base-v2 directory")
    r.add_argument("--out", type=pathlib.Path, default=FIXTURES / "all-mpnet-base-v2.golden.json")
    args = parser.parse_args()
    if args.command == "tiny":
        tiny(args.out, args.seed)
    else:
        real(args.model, args.out)


if __name__ == "__main__":
    main()
