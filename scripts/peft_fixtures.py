#!/usr/bin/env python3
"""Generate and cross-check PEFT LoRA / IA³ fixtures for all-MiniLM-L6-v2.

The Rust tests in ``crates/lora-bert-adapters`` read small LoRA and IA³
adapters made by Hugging Face PEFT together with the outputs PEFT computes
for them (``expected.json``), so that the Rust loader and forward pass can be checked
against the reference implementation.  CI never runs this script: its output
is committed.  Rerun it only to regenerate or extend the fixtures.

Versions used to produce the committed fixtures (CPU, float32)::

    pip install torch==2.15.0 transformers==5.24.0 peft==0.21.2 safetensors numpy

(safetensors 0.8.0 and numpy 2.4.6 at the time; the exact torch,
transformers and peft versions are also recorded in every expected.json.)

The base model is read from a local directory holding the Hugging Face
checkpoint of ``sentence-transformers/all-MiniLM-L6-v2`` (config.json,
model.safetensors, tokenizer.json, vocab.txt).  No network access is needed;
HF_HUB_OFFLINE=1 is set by default.

Usage::

    # write the PEFT-made fixtures (default output:
    # crates/lora-bert-adapters/tests/fixtures/peft/<name>/)
    python scripts/peft_fixtures.py make --model /path/to/all-MiniLM-L6-v2

    # load adapters written by another tool (adapter_config.json +
    # adapter_model.safetensors in PEFT's layout; LoRA or IA³) with PEFT,
    # verify that every tensor in the file was loaded, and write
    # <dir>/expected.json
    python scripts/peft_fixtures.py check --model /path/to/all-MiniLM-L6-v2 DIR [DIR ...]

Each fixture directory holds adapter_config.json, adapter_model.safetensors
(as written by PEFT's save_pretrained; the README.md PEFT writes is removed)
and expected.json::

    {"generator": "scripts/peft_fixtures.py",
     "versions": {"torch": ..., "transformers": ..., "peft": ...},
     "texts": [3 texts],
     "input_ids": [[...]], "attention_mask": [[...]], "token_type_ids": [[...]],
     "last_hidden_state": [[[...]]],   # [batch, seq, 384], padded positions included
     "pooler_output": [[...]],         # [batch, 384]
     "base_max_abs_diff": float}       # max |adapted - base| of last_hidden_state over mask=1 positions

The batch is padded on the right with id 0 (tokenizer of the model dir,
padding=True).  Floats are rounded to 7 significant digits.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# PEFT stores target_modules as a set, so its order in adapter_config.json
# depends on string hashing; fix the hash seed to make the output
# byte-for-byte reproducible.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from peft import IA3Config, LoraConfig, PeftModel, get_peft_model  # noqa: E402
from peft.tuners.tuners_utils import BaseTunerLayer  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "crates" / "lora-bert-adapters" / "tests" / "fixtures" / "peft"
BASE_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
GENERATOR = "scripts/peft_fixtures.py"

TEXTS = [
    "A man is eating food.",
    "The quick brown fox jumps over the lazy dog near the riverbank at dawn.",
    "Paris",
]

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "expected.json", "README.md")

# name -> (config class, config kwargs, seed, init), where init maps a
# parameter-name marker to the (mean, std) of the normal distribution its
# parameters are overwritten with after get_peft_model (parameters are visited
# in named_parameters() order under torch.manual_seed(seed)).
FIXTURES = {
    # "dense" is a suffix match, so PEFT also adapts attention.output.dense,
    # intermediate.dense, output.dense *and* pooler.dense.
    "key-dense-r2": (
        LoraConfig,
        dict(target_modules=["key", "dense"], r=2, lora_alpha=4, lora_dropout=0.1),
        1001,
        {".lora_A.": (0.0, 0.05), ".lora_B.": (0.0, 0.05)},
    ),
    # rsLoRA: scaling = lora_alpha / sqrt(r) = 8 / 2 = 4.
    "qv-last2-rslora": (
        LoraConfig,
        dict(target_modules=["query", "value"], r=4, lora_alpha=8, layers_to_transform=[4, 5], use_rslora=True),
        1002,
        {".lora_A.": (0.0, 0.05), ".lora_B.": (0.0, 0.05)},
    ),
    # A string target_modules is re.fullmatch'ed against the full module name
    # (e.g. "encoder.layer.0.attention.self.query").
    "regex-r2": (
        LoraConfig,
        dict(
            target_modules=r"encoder\.layer\.(0|2)\.(attention\.self\.query|intermediate\.dense)",
            r=2,
            lora_alpha=2,
        ),
        1003,
        {".lora_A.": (0.0, 0.05), ".lora_B.": (0.0, 0.05)},
    ),
    # IA³.  target_modules uses the dotted suffix rule, so "output.dense" also
    # matches attention.output.dense; feedforward_modules uses a plain
    # str.endswith, so attention.output.dense is feed-forward too.
    # Feed-forward layers scale the input:  y = W (x * l) + b,  l: [1, in];
    # the others scale the output:          y = (W x + b) * l,  l: [out, 1]
    # (the bias is scaled as well).  PEFT initialises l to 1 (the identity),
    # so it is overwritten with 1 + N(0, 0.1^2).
    "ia3-kv-ff": (
        IA3Config,
        dict(target_modules=["key", "value", "output.dense"], feedforward_modules=["output.dense"]),
        1004,
        {".ia3_l.": (1.0, 0.1)},
    ),
}

# Modules that must carry the adapter (names relative to the BertModel).
EXPECTED_ADAPTED_MODULES = {
    "key-dense-r2": [
        f"encoder.layer.{i}.{m}"
        for i in range(6)
        for m in ("attention.self.key", "attention.output.dense", "intermediate.dense", "output.dense")
    ]
    + ["pooler.dense"],
    "qv-last2-rslora": [
        f"encoder.layer.{i}.attention.self.{m}" for i in (4, 5) for m in ("query", "value")
    ],
    "regex-r2": [
        f"encoder.layer.{i}.{m}" for i in (0, 2) for m in ("attention.self.query", "intermediate.dense")
    ],
    "ia3-kv-ff": [
        f"encoder.layer.{i}.{m}"
        for i in range(6)
        for m in ("attention.self.key", "attention.self.value", "attention.output.dense", "output.dense")
    ],
}

# IA³ only: the adapted modules that PEFT must treat as feed-forward.
EXPECTED_FEEDFORWARD_MODULES = {
    "ia3-kv-ff": [f"encoder.layer.{i}.{m}" for i in range(6) for m in ("attention.output.dense", "output.dense")],
}


def fail(msg: str) -> None:
    print(f"ERROR: {msg}", file=sys.stderr)
    sys.exit(1)


def versions() -> dict:
    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}


def round7(x):
    if isinstance(x, list):
        return [round7(v) for v in x]
    if isinstance(x, float):
        return float(f"{x:.7g}")
    return x


def load_base(model_dir: Path):
    model = AutoModel.from_pretrained(str(model_dir), dtype=torch.float32)
    model.eval()
    # Never record a local path as the base model: PEFT reads
    # model.name_or_path (an instance attribute) when building the config.
    model.config._name_or_path = BASE_MODEL_ID
    model.name_or_path = BASE_MODEL_ID
    if model.pooler is None:
        fail("the base model has no pooler")
    return model


def encode(model_dir: Path) -> dict:
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    if tok.padding_side != "right" or tok.pad_token_id != 0:
        fail(f"unexpected tokenizer padding: side={tok.padding_side} id={tok.pad_token_id}")
    return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


@torch.no_grad()
def forward(model, enc: dict):
    out = model(**enc)
    return out.last_hidden_state.detach().clone(), out.pooler_output.detach().clone()


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1)


def masked_max_abs_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    return float(((a - b).abs() * mask.unsqueeze(-1).to(a.dtype)).max())


def report_diff(name: str, base_h, base_p, h, p, enc) -> float:
    mask = enc["attention_mask"]
    d = masked_max_abs_diff(h, base_h, mask)
    cos = torch.nn.functional.cosine_similarity(mean_pool(h, mask), mean_pool(base_h, mask), dim=-1)
    print(
        f"[{name}] max|adapted-base| last_hidden_state (mask=1): {d:.5f}; "
        f"pooler_output: {float((p - base_p).abs().max()):.5f}; "
        f"mean-pool cosine vs base: {[round(float(c), 4) for c in cos]}; "
        f"max|h| base {float(base_h.abs().max()):.3f} adapted {float(h.abs().max()):.3f}"
    )
    if not torch.isfinite(h).all() or not torch.isfinite(p).all():
        fail(f"[{name}] non-finite outputs")
    return d


def expected_json(enc: dict, h: torch.Tensor, p: torch.Tensor, base_diff: float) -> dict:
    return {
        "generator": GENERATOR,
        "versions": versions(),
        "texts": TEXTS,
        "input_ids": enc["input_ids"].tolist(),
        "attention_mask": enc["attention_mask"].tolist(),
        "token_type_ids": enc["token_type_ids"].tolist(),
        "last_hidden_state": round7(h.tolist()),
        "pooler_output": round7(p.tolist()),
        "base_max_abs_diff": round7(base_diff),
    }


def write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, separators=(",", ":")) + "\n")


def file_key_to_param(key: str) -> str:
    """adapter_model.safetensors key -> PeftModel parameter name (adapter 'default')."""
    for suffix in (".weight", ".bias"):
        if key.endswith(suffix):
            return key[: -len(suffix)] + ".default" + suffix
    return key + ".default"


def adapter_param_names(model) -> set:
    """Names of the adapter parameters of the model (lora_A/lora_B/..., ia3_l, ...).

    Uses the adapter_layer_names of every PEFT tuner layer, so it works for
    any PEFT method, not only LoRA.
    """
    layer_names = set()
    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            layer_names.update(module.adapter_layer_names)
    names = set()
    for n in dict(model.named_parameters()):
        parts = n.split(".")
        if any(ln in parts for ln in layer_names) or ".lora_" in n:
            names.add(n)
    return names


def verify_loaded(model, adapter_dir: Path) -> dict:
    """Check that every tensor of the adapter file is in the model, and vice versa."""
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    params = dict(model.named_parameters())
    adapter_params = adapter_param_names(model)
    if not adapter_params:
        fail(f"{adapter_dir}: the loaded model has no adapter parameters")
    errors = []
    seen = set()
    for key, t in tensors.items():
        pname = file_key_to_param(key)
        if pname not in params:
            errors.append(f"file tensor {key!r} has no model parameter {pname!r}")
            continue
        seen.add(pname)
        p = params[pname]
        if tuple(p.shape) != tuple(t.shape):
            errors.append(f"{key}: shape {tuple(t.shape)} in file, {tuple(p.shape)} in model")
        elif not torch.equal(t.to(torch.float32), p.detach().to(torch.float32)):
            errors.append(f"{key}: values differ from the loaded model parameter")
    for n in sorted(adapter_params - seen):
        errors.append(f"model adapter parameter {n!r} is not in the file")
    if errors:
        fail(f"{adapter_dir}: " + "\n  ".join([""] + errors))
    print(f"[{adapter_dir.name}] all {len(tensors)} file tensors match model parameters; no extra adapter params")
    return tensors


def check_dir(model_dir: Path, adapter_dir: Path, enc: dict) -> dict:
    for f in ("adapter_config.json", "adapter_model.safetensors"):
        if not (adapter_dir / f).is_file():
            fail(f"{adapter_dir}: missing {f}")
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    print(f"[{adapter_dir.name}] base_model_name_or_path = {cfg.get('base_model_name_or_path')!r}")
    base = load_base(model_dir)
    base_h, base_p = forward(base, enc)
    model = PeftModel.from_pretrained(base, str(adapter_dir))
    model.eval()
    verify_loaded(model, adapter_dir)
    h, p = forward(model, enc)
    d = report_diff(adapter_dir.name, base_h, base_p, h, p, enc)
    return expected_json(enc, h, p, d)


def check_ia3_layers(name: str, pm) -> None:
    """IA³: check which adapted modules are feed-forward and the ia3_l shapes."""
    ff, shapes = [], {}
    for mname, module in pm.base_model.model.named_modules():
        if isinstance(module, BaseTunerLayer) and hasattr(module, "is_feedforward"):
            base = module.get_base_layer()
            want = (1, base.in_features) if module.is_feedforward else (base.out_features, 1)
            got = tuple(module.ia3_l["default"].shape)
            if got != want:
                fail(f"[{name}] {mname}: ia3_l shape {got}, expected {want}")
            shapes[mname] = (module.is_feedforward, got)
            if module.is_feedforward:
                ff.append(mname)
    if sorted(ff) != sorted(EXPECTED_FEEDFORWARD_MODULES[name]):
        fail(f"[{name}] feed-forward modules {sorted(ff)} != expected {sorted(EXPECTED_FEEDFORWARD_MODULES[name])}")
    for mname in sorted(shapes):
        is_ff, shape = shapes[mname]
        print(f"[{name}] {mname}: {'feed-forward (input)' if is_ff else 'output'} scaling, ia3_l {list(shape)}")


def cmd_make(args) -> None:
    model_dir = Path(args.model)
    out = Path(args.out)
    enc = encode(model_dir)
    names = args.only or list(FIXTURES)
    for name in names:
        config_cls, kwargs, seed, init = FIXTURES[name]
        model = load_base(model_dir)
        base_h, base_p = forward(model, enc)
        pm = get_peft_model(model, config_cls(**kwargs))
        pm.eval()
        if pm.peft_config["default"].base_model_name_or_path != BASE_MODEL_ID:
            fail(f"[{name}] base_model_name_or_path = {pm.peft_config['default'].base_model_name_or_path!r}")

        torch.manual_seed(seed)
        adapted = []
        with torch.no_grad():
            for pname, param in pm.named_parameters():
                for marker, (mean, std) in init.items():
                    if marker in pname:
                        param.normal_(mean, std)
                        adapted.append((pname, marker))
                        break
        if set(n for n, _ in adapted) != adapter_param_names(pm):
            fail(f"[{name}] initialised {sorted(n for n, _ in adapted)} != adapter params {sorted(adapter_param_names(pm))}")
        mods = sorted({n.split("base_model.model.", 1)[1].rsplit(m, 1)[0] for n, m in adapted})
        if mods != sorted(EXPECTED_ADAPTED_MODULES[name]):
            fail(f"[{name}] adapted modules {mods} != expected {sorted(EXPECTED_ADAPTED_MODULES[name])}")
        if name in EXPECTED_FEEDFORWARD_MODULES:
            check_ia3_layers(name, pm)

        h, p = forward(pm, enc)
        d = report_diff(name, base_h, base_p, h, p, enc)
        if d < 0.05:
            fail(f"[{name}] adapter too weak: max diff {d}")
        expected = expected_json(enc, h, p, d)

        fdir = out / name
        fdir.mkdir(parents=True, exist_ok=True)
        for f in ADAPTER_FILES:
            (fdir / f).unlink(missing_ok=True)
        pm.save_pretrained(str(fdir))
        (fdir / "README.md").unlink(missing_ok=True)
        extra = sorted(set(os.listdir(fdir)) - set(ADAPTER_FILES))
        if extra:
            fail(f"[{name}] unexpected files written: {extra}")
        cfg_text = (fdir / "adapter_config.json").read_text()
        for bad in (str(model_dir.resolve()), str(Path.home()), "/work", ".cache"):
            if bad in cfg_text:
                fail(f"[{name}] adapter_config.json contains a local path ({bad!r})")
        write_json(fdir / "expected.json", expected)

        # Self-test: the check path (reload from disk with PeftModel) must
        # reproduce exactly the same expected.json.
        again = check_dir(model_dir, fdir, enc)
        if again != expected:
            fail(f"[{name}] reloading with PeftModel.from_pretrained gives different outputs")
        print(f"[{name}] wrote {fdir}")


def cmd_check(args) -> None:
    model_dir = Path(args.model)
    enc = encode(model_dir)
    for d in args.dirs:
        adapter_dir = Path(d)
        expected = check_dir(model_dir, adapter_dir, enc)
        write_json(adapter_dir / "expected.json", expected)
        print(f"[{adapter_dir.name}] wrote {adapter_dir / 'expected.json'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    mk = sub.add_parser("make", help="create the PEFT-made fixtures")
    mk.add_argument("--model", required=True, help="local all-MiniLM-L6-v2 directory (config.json, model.safetensors)")
    mk.add_argument("--out", default=str(DEFAULT_OUT), help=f"output directory (default: {DEFAULT_OUT.relative_to(REPO_ROOT)})")
    mk.add_argument("--only", nargs="+", choices=list(FIXTURES), help="only these fixtures")
    mk.set_defaults(func=cmd_make)

    ck = sub.add_parser("check", help="load adapters written by another tool with PEFT and write expected.json")
    ck.add_argument("--model", required=True, help="local all-MiniLM-L6-v2 directory (config.json, model.safetensors)")
    ck.add_argument("dirs", nargs="+", metavar="DIR", help="adapter directory (adapter_config.json + adapter_model.safetensors)")
    ck.set_defaults(func=cmd_check)

    args = ap.parse_args()
    torch.set_grad_enabled(False)
    args.func(args)


if __name__ == "__main__":
    main()
