#!/usr/bin/env python3
"""Side by side: lora-bert against PyTorch and onnxruntime on all-MiniLM-L6-v2 (fp32, CPU).

Run through scripts/bench_side_by_side.sh, which makes the virtual environment and builds the
Rust side; not part of CI. Every measurement runs in a process of its own (so each peak RSS is
that measurement's alone), in rounds: one process per implementation per round, implementations
interleaved so that a change in machine load hits all of them alike. A round's figure is the
median of its timed iterations; the table gives the median over rounds.

Measurements (the same as `examples/bench_compare.rs`):
  infer B: encoder forward pass on B rows of exactly 128 tokens of real text (no padding), the
           last hidden state read back as an array; PyTorch in inference mode, onnxruntime on the
           model exported by torch.onnx.
  train 16: one LoRA fine-tuning step on 16 x 128: LoRA r8, alpha 16, on query/value of every
           layer (PEFT), mean pooling, linear head over 2 classes, cross-entropy, AdamW lr 3e-3,
           dropout 0.1 (the model's config), gradient clipping at 1.

  python scripts/bench_reference.py one --impl torch --mode infer --batch 32 --model-dir DIR
  python scripts/bench_reference.py all --rust target/release/examples/bench_compare \
      --out target/bench-side-by-side.json
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

# The text of benches/encoder.rs and examples/bench_compare.rs.
TEXT = (
    "When the small research team finally gathered in the crowded laboratory late "
    "on Friday evening, the senior scientist carefully explained why the unexpected measurements "
    "from the northern observatory could not be dismissed as a simple calibration error. "
)


def encode(model_dir, batch, seq):
    from transformers import BertTokenizerFast

    tok = BertTokenizerFast(vocab_file=os.path.join(model_dir, "vocab.txt"))
    enc = tok(
        [TEXT * (seq // 16 + 1)] * batch,
        truncation=True,
        max_length=seq,
        padding=False,
        return_tensors="np",
    )
    assert enc["input_ids"].shape == (batch, seq), enc["input_ids"].shape
    return enc


def peak_rss_bytes():
    """VmHWM, as examples/bench_compare.rs reads it. (Not getrusage's ru_maxrss: Linux carries
    the parent's peak into a child through fork and exec.)"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise SystemExit("no VmHWM in /proc/self/status")


def timed(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def torch_infer(args):
    import torch
    from transformers import BertModel

    torch.set_num_threads(args.threads)
    enc = encode(args.model_dir, args.batch, args.seq)
    model = BertModel.from_pretrained(args.model_dir, add_pooling_layer=False).eval()
    feeds = {k: torch.from_numpy(v) for k, v in enc.items()}

    def run():
        with torch.inference_mode():
            model(**feeds).last_hidden_state.numpy()

    return timed(run, args.warmup, args.iters)


def onnx_path(args, batch):
    """Exports the model for `batch` x 128 once (cached) and returns the file.

    One graph per shape, by torch.onnx's dynamo exporter, checked against PyTorch at that shape
    before anything is timed. (The TorchScript exporter, `dynamo=False`, gave graphs that
    differ from PyTorch by 0.76 to 1.8 with torch 2.15 / transformers 5.24, even at the traced
    shape and with eager attention.)
    """
    import onnxruntime as ort
    import torch
    from transformers import BertModel

    path = os.path.join(args.cache, f"all-minilm-l6-v2-{batch}x{args.seq}.onnx")
    if os.path.exists(path):
        return path
    os.makedirs(args.cache, exist_ok=True)
    bert = BertModel.from_pretrained(args.model_dir, add_pooling_layer=False).eval()

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    model = Encoder()
    names = ("input_ids", "attention_mask", "token_type_ids")
    enc = encode(args.model_dir, batch, args.seq)
    feeds = tuple(torch.from_numpy(enc[k]) for k in names)
    tmp = path + ".tmp"
    # onnxruntime applies its own graph optimisations when the session starts (default level:
    # all). Its offline BERT optimizer (onnxruntime.transformers.optimizer) found no attention
    # to fuse in this graph and wrote a model onnxruntime 1.32 refused to load, so it is not used.
    torch.onnx.export(model, feeds, tmp, input_names=list(names),
                      output_names=["last_hidden_state"], dynamo=True)
    session = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
    got = session.run(None, {k: enc[k].astype("int64") for k in names})[0]
    with torch.inference_mode():
        want = model(*feeds).numpy()
    diff = float(abs(got - want).max())
    if diff > 1e-4:
        raise SystemExit(f"the ONNX export differs from PyTorch by {diff} at {batch} x {args.seq}")
    os.replace(tmp, path)
    return path


def ort_infer(args):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(onnx_path(args, args.batch), options,
                                   providers=["CPUExecutionProvider"])
    enc = encode(args.model_dir, args.batch, args.seq)
    feeds = {k: enc[k].astype("int64") for k in ("input_ids", "attention_mask", "token_type_ids")}

    def run():
        session.run(None, feeds)

    return timed(run, args.warmup, args.iters)


def torch_train(args):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import BertModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    enc = encode(args.model_dir, args.batch, args.seq)
    feeds = {k: torch.from_numpy(v) for k, v in enc.items()}
    labels = torch.arange(args.batch) % 2
    backbone = BertModel.from_pretrained(args.model_dir, add_pooling_layer=False)
    backbone = get_peft_model(
        backbone, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["query", "value"])
    )
    head = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(384, 2))
    backbone.train()
    head.train()
    params = [p for p in backbone.parameters() if p.requires_grad] + list(head.parameters())
    optim = torch.optim.AdamW(params, lr=3e-3, weight_decay=0.01)
    mask = feeds["attention_mask"].unsqueeze(-1).float()

    def step():
        hidden = backbone(**feeds).last_hidden_state
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        loss = torch.nn.functional.cross_entropy(head(pooled), labels)
        optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()

    return timed(step, args.warmup, args.iters)


def one(args):
    fn = {("torch", "infer"): torch_infer, ("ort", "infer"): ort_infer,
          ("torch", "train"): torch_train}[(args.impl, args.mode)]
    times = fn(args)
    versions = {}
    import torch

    versions["torch"] = torch.__version__
    if args.impl == "ort":
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    name = {"torch": f"PyTorch {torch.__version__.split('+')[0]}",
            "ort": f"onnxruntime {versions.get('onnxruntime', '')}"}[args.impl]
    print(json.dumps({
        "impl": name, "mode": args.mode, "batch": args.batch, "seq": args.seq,
        "median_s": statistics.median(times), "times_s": times,
        "peak_rss_bytes": peak_rss_bytes(), "threads": args.threads,
    }))


CASES = [("infer", 1, 20), ("infer", 32, 5), ("train", 16, 5)]


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def all_(args):
    model_dir = args.model_dir or subprocess.run(
        [args.rust, "--model-dir"], check=True, capture_output=True, text=True).stdout.strip()
    me = [sys.executable, os.path.abspath(__file__), "one", "--model-dir", model_dir,
          "--threads", str(args.threads), "--cache", args.cache]
    if "ort" in args.impls:  # export outside the timed processes
        for mode, batch, _ in CASES:
            if mode == "infer":
                onnx_path(argparse.Namespace(model_dir=model_dir, cache=args.cache, seq=128), batch)
    results = []
    for mode, batch, iters in CASES:
        impls = [i for i in args.impls if not (i == "ort" and mode == "train")]
        rounds = {i: [] for i in impls}
        for r in range(args.rounds):
            for impl in impls:
                if impl.startswith("rust-"):
                    # rust-<backend>, or rust-<backend>-system-malloc for glibc's own settings
                    backend = impl[len("rust-"):].removesuffix("-system-malloc")
                    cmd = [args.rust, "--mode", mode, "--batch", str(batch), "--backend",
                           backend, "--warmup", "2", "--iters", str(iters)]
                    if impl.endswith("-system-malloc"):
                        cmd.append("--system-malloc")
                else:
                    cmd = me + ["--impl", impl, "--mode", mode, "--batch", str(batch),
                                "--warmup", "2", "--iters", str(iters)]
                res = run_json(cmd)
                rounds[impl].append(res)
                print(f"round {r + 1}/{args.rounds} {mode} {batch}x128 {res['impl']}: "
                      f"{res['median_s'] * 1e3:.1f} ms, peak RSS "
                      f"{res['peak_rss_bytes'] / 2**20:.0f} MiB", file=sys.stderr, flush=True)
        for impl, rs in rounds.items():
            results.append({
                "impl": rs[0]["impl"], "key": impl, "mode": mode, "batch": batch, "seq": 128,
                "median_s": statistics.median(x["median_s"] for x in rs),
                "round_medians_s": [x["median_s"] for x in rs],
                "peak_rss_bytes": max(x["peak_rss_bytes"] for x in rs),
            })
    report = {
        "machine": {"cpus": os.cpu_count(), "processor": cpu_name(), "python": platform.python_version()},
        "threads": args.threads, "rounds": args.rounds, "results": results,
        "date": time.strftime("%Y-%m-%d"),
    }
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1)
    os.replace(tmp, args.out)
    print(markdown(report))


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def markdown(report):
    rows = ["| measurement | implementation | median time | peak RSS | time vs lora-bert (flex) |",
            "|---|---|---|---|---|"]
    for mode, batch, _ in CASES:
        case = [r for r in report["results"] if r["mode"] == mode and r["batch"] == batch]
        ours = next((r for r in case if r["key"] == "rust-flex"), None)
        for r in case:
            ratio = ""
            if ours and r is not ours:
                q = ours["median_s"] / r["median_s"]
                ratio = f"lora-bert {q:.2f}× its time"
            t = r["median_s"]
            shown = f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.3f} s"
            rows.append(f"| {mode} {batch} × 128 | {r['impl']} | {shown} | "
                        f"{r['peak_rss_bytes'] / 2**20:.0f} MiB | {ratio} |")
    return "\n".join(rows)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("one")
    o.add_argument("--impl", choices=["torch", "ort"], required=True)
    o.add_argument("--mode", choices=["infer", "train"], required=True)
    o.add_argument("--batch", type=int, default=32)
    o.add_argument("--seq", type=int, default=128)
    o.add_argument("--warmup", type=int, default=2)
    o.add_argument("--iters", type=int, default=10)
    o.add_argument("--model-dir", required=True)
    o.add_argument("--threads", type=int, default=os.cpu_count())
    o.add_argument("--cache", default="target/bench-reference")
    a = sub.add_parser("all")
    a.add_argument("--rust", default="target/release/examples/bench_compare")
    a.add_argument("--model-dir")
    a.add_argument("--impls", default="torch,ort,rust-flex,rust-flex-system-malloc,rust-ndarray")
    a.add_argument("--rounds", type=int, default=3)
    a.add_argument("--threads", type=int, default=os.cpu_count())
    a.add_argument("--cache", default="target/bench-reference")
    a.add_argument("--out", default="target/bench-side-by-side.json")
    args = p.parse_args()
    if args.cmd == "one":
        one(args)
    else:
        args.impls = args.impls.split(",")
        all_(args)


if __name__ == "__main__":
    main()
