"""Writes the corpora of nasty files that the `hostile` tests load (issue 18).

Each file is a few bytes to a few KB, made from nothing but the standard library, so the
corpus can be regenerated and reviewed: `python3 scripts/hostile_corpus.py` from the
repository root rewrites every file under `crates/*/tests/corpus/`. The expected outcome of
each file is in the test that loads it (`crates/<crate>/tests/hostile.rs`).
"""

import json
import math
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def write(crate, *parts, data):
    path = os.path.join(ROOT, "crates", crate, "tests", "corpus", *parts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(path, "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None, header_override=None):
    """tensors: list of (name, dtype, shape, raw bytes), laid out in order."""
    header, blob, at = {}, b"", 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [at, at + len(raw)]}
        blob += raw
        at += len(raw)
    if header_override is not None:
        header = header_override(header)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + blob


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def wave(n, phase=0.0):
    return [0.1 * math.sin(0.7 * i + phase) for i in range(n)]


# ----------------------------------------------------------------------------------------------
# lora-bert-encoder: config.json and safetensors

TINY = {
    "vocab_size": 12, "hidden_size": 4, "num_hidden_layers": 1, "num_attention_heads": 2,
    "intermediate_size": 8, "max_position_embeddings": 8, "type_vocab_size": 2,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
    "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
    "position_embedding_type": "absolute", "model_type": "bert",
}


def config(**changes):
    c = dict(TINY)
    for k, v in changes.items():
        c[k] = v
    return json.dumps(c, indent=1) + "\n"


def encoder_corpus():
    w = lambda name, text: write("lora-bert-encoder", "config", name, data=text)
    w("layers-1e18.json", config(num_hidden_layers=10**18))
    w("vocab-1e12.json", config(vocab_size=10**12))
    w("vocab-u64-max.json", config(vocab_size=2**64 - 1))
    w("hidden-zero.json", config(hidden_size=0))
    w("heads-do-not-divide.json", config(num_attention_heads=3))
    w("layers-negative.json", config(num_hidden_layers=-1))
    w("layers-float.json", config(num_hidden_layers=1.5))
    w("layers-string.json", config(num_hidden_layers="1"))
    w("dropout-one.json", config(hidden_dropout_prob=1.0))
    w("eps-zero.json", config(layer_norm_eps=0.0))
    w("init-range-negative.json", config(initializer_range=-0.02))
    w("pad-outside-vocab.json", config(pad_token_id=12))
    w("model-type-gpt2.json", config(model_type="gpt2"))
    w("nan-literal.json", config().replace("0.02", "NaN"))
    w("truncated.json", config()[:57])
    w("not-an-object.json", "[" + config() + "]\n")
    w("nested-deep.json", "[" * 200 + "]" * 200 + "\n")
    w("empty.json", "")
    write("lora-bert-encoder", "config", "invalid-utf8.json",
          data=config().encode().replace(b'"bert"', b'"b\xffrt"'))
    w("unknown-fields.json", config(architectures=["BertModel"], use_cache=True, foo={"x": None}))

    # tokenizers 0.23 panicked on a file that ends inside its `decoder` object.
    write("lora-bert-encoder", "tokenizer", "truncated-in-decoder.json",
          data='{"version":"1.0","decoder":{"type":"WordPiece","prefix":"##')
    # ... and on any string in it that does not decode: a byte that is not UTF-8, or an escape
    # naming half a surrogate pair (JSON checks neither until a string is read).
    decoder = '{"version":"1.0","decoder":{"type":"WordPiece","prefix":"%s","cleanup":true}}\n'
    write("lora-bert-encoder", "tokenizer", "invalid-utf8-in-decoder.json",
          data=(decoder % "#\xff").encode("latin-1"))
    write("lora-bert-encoder", "tokenizer", "lone-surrogate-in-decoder.json",
          data=decoder % "\\ud800")
    write("lora-bert-encoder", "tokenizer", "not-json.json", data="tokenizer\n")
    write("lora-bert-encoder", "tokenizer", "empty-object.json", data="{}\n")

    h, v, ff, pos, types = 4, 12, 8, 8, 2
    tensors = []

    def t(name, shape, values=None):
        n = 1
        for d in shape:
            n *= d
        tensors.append((name, "F32", shape, f32(values if values is not None else wave(n, len(tensors)))))

    t("embeddings.word_embeddings.weight", [v, h])
    t("embeddings.position_embeddings.weight", [pos, h])
    t("embeddings.token_type_embeddings.weight", [types, h])
    t("embeddings.LayerNorm.weight", [h], [1.0] * h)
    t("embeddings.LayerNorm.bias", [h])
    p = "encoder.layer.0."
    for m in ["attention.self.query", "attention.self.key", "attention.self.value",
              "attention.output.dense"]:
        t(p + m + ".weight", [h, h])
        t(p + m + ".bias", [h])
    t(p + "attention.output.LayerNorm.weight", [h], [1.0] * h)
    t(p + "attention.output.LayerNorm.bias", [h])
    t(p + "intermediate.dense.weight", [ff, h])
    t(p + "intermediate.dense.bias", [ff])
    t(p + "output.dense.weight", [h, ff])
    t(p + "output.dense.bias", [h])
    t(p + "output.LayerNorm.weight", [h], [1.0] * h)
    t(p + "output.LayerNorm.bias", [h])
    t("pooler.dense.weight", [h, h])
    t("pooler.dense.bias", [h])

    s = lambda name, data: write("lora-bert-encoder", "safetensors", name, data=data)
    valid = safetensors(tensors, {"format": "pt"})
    s("valid-tiny.safetensors", valid)
    s("empty.safetensors", b"")
    s("prefix-only.safetensors", struct.pack("<Q", 16))
    s("header-len-u64-max.safetensors", struct.pack("<Q", 2**64 - 1) + valid[8:])
    s("header-len-beyond-file.safetensors", struct.pack("<Q", len(valid)) + valid[8:])
    s("header-not-json.safetensors", struct.pack("<Q", 16) + b"{not json here!}" + valid[-64:])

    def shape_overflow(hd):
        hd["embeddings.word_embeddings.weight"]["shape"] = [2**32, 2**32, 2**32]
        return hd

    s("shape-overflows.safetensors", safetensors(tensors, header_override=shape_overflow))

    def overlap(hd):
        hd["embeddings.position_embeddings.weight"]["data_offsets"] = [0, 128]
        return hd

    s("offsets-overlap.safetensors", safetensors(tensors, header_override=overlap))

    def past_end(hd):
        last = "pooler.dense.bias"
        a, b = hd[last]["data_offsets"]
        hd[last]["data_offsets"] = [a, b + 4096]
        hd[last]["shape"] = [4 + 1024]
        return hd

    s("offsets-past-end.safetensors", safetensors(tensors, header_override=past_end))
    s("no-tensors.safetensors", safetensors([]))
    as_i32 = [(n, "I32" if n.startswith("embeddings.word") else d, sh, raw)
              for n, d, sh, raw in tensors]
    s("word-embeddings-i32.safetensors", safetensors(as_i32))
    nan = [(n, d, sh, f32([float("nan")] + wave(47)) if n.startswith("embeddings.word") else raw)
           for n, d, sh, raw in tensors]
    s("word-embeddings-nan.safetensors", safetensors(nan))
    transposed = [(n, d, [h, v] if n.startswith("embeddings.word") else sh, raw)
                  for n, d, sh, raw in tensors]
    s("word-embeddings-transposed.safetensors", safetensors(transposed))


# ----------------------------------------------------------------------------------------------
# lora-bert-adapters: PEFT adapter folders for a BERT of hidden size 8, 2 layers, feed-forward 16

LORA_CONFIG = {
    "peft_type": "LORA", "base_model_name_or_path": None, "task_type": None,
    "inference_mode": True, "r": 2, "lora_alpha": 4, "lora_dropout": 0.0, "use_rslora": False,
    "init_lora_weights": True, "bias": "none", "fan_in_fan_out": False, "use_dora": False,
    "target_modules": ["query", "value"], "layers_to_transform": None,
    "rank_pattern": {}, "alpha_pattern": {}, "modules_to_save": None,
}

IA3_CONFIG = {
    "peft_type": "IA3", "base_model_name_or_path": None, "task_type": None,
    "inference_mode": True, "target_modules": ["key", "value"], "feedforward_modules": [],
    "fan_in_fan_out": False, "init_ia3_weights": True, "modules_to_save": None,
}

PEFT = "base_model.model.encoder.layer.%d.attention.self.%s"


def lora_tensors(r=2, values=None):
    out = []
    for layer in range(2):
        for m in ["query", "value"]:
            a = values if values is not None else wave(r * 8, layer)
            b = values if values is not None else wave(8 * r, layer + 1)
            out.append((PEFT % (layer, m) + ".lora_A.weight", "F32", [r, 8], f32(a[: r * 8])))
            out.append((PEFT % (layer, m) + ".lora_B.weight", "F32", [8, r], f32(b[: 8 * r])))
    return out


def ia3_tensors(scale):
    return [(PEFT % (layer, m) + ".ia3_l", "F32", [8, 1], f32([scale] * 8))
            for layer in range(2) for m in ["key", "value"]]


def adapter(name, config, tensors=None, raw=None):
    if isinstance(config, dict):
        config = json.dumps(config, indent=1) + "\n"
    write("lora-bert-adapters", "peft", name, "adapter_config.json", data=config)
    data = raw if raw is not None else safetensors(tensors, {"format": "pt"})
    write("lora-bert-adapters", "peft", name, "adapter_model.safetensors", data=data)


def lora(**changes):
    c = dict(LORA_CONFIG)
    c.update(changes)
    return c


def adapters_corpus():
    adapter("lora-valid", lora(), lora_tensors())
    adapter("lora-r-huge", lora(r=2**40), lora_tensors())
    adapter("lora-r-negative", lora(r=-2), lora_tensors())
    adapter("lora-r-zero", lora(r=0), lora_tensors())
    adapter("lora-alpha-1e308", lora(lora_alpha=1e308), lora_tensors(values=[1.0] * 16))
    adapter("lora-alpha-negative", lora(lora_alpha=-4), lora_tensors())
    adapter("lora-dropout-one", lora(lora_dropout=1.0), lora_tensors())
    adapter("lora-use-dora", lora(use_dora=True), lora_tensors())
    adapter("lora-unknown-field", lora(megabytes_of_fun=1), lora_tensors())
    adapter("lora-layers-out-of-range", lora(layers_to_transform=[7]), lora_tensors())
    adapter("lora-regex-too-big", lora(target_modules="(query|value){1000}{1000}"), lora_tensors())
    adapter("lora-regex-invalid", lora(target_modules="(query"), lora_tensors())
    adapter("lora-peft-type-ia3", lora(peft_type="IA3"), lora_tensors())
    adapter("lora-config-not-object", "[1, 2, 3]\n", lora_tensors())
    adapter("lora-config-truncated", json.dumps(lora())[:40], lora_tensors())
    duplicate = lora_tensors()
    first = duplicate[0]
    duplicate.append((first[0].replace("model.encoder", "model.bert.encoder"), "F32", first[2],
                      f32(wave(16, 9.0))))
    adapter("lora-duplicate-tensor", lora(), duplicate)
    adapter("lora-missing-tensor", lora(), lora_tensors()[1:])
    adapter("lora-extra-tensor", lora(), lora_tensors() + [("base_model.model.classifier.weight",
                                                            "F32", [2], f32([0.0, 1.0]))])
    swapped = [(n, d, list(reversed(sh)), raw) for n, d, sh, raw in lora_tensors()]
    adapter("lora-shape-swapped", lora(), swapped)
    nan = lora_tensors()
    nan[3] = (nan[3][0], "F32", nan[3][2], f32([float("inf")] + wave(15)))
    adapter("lora-inf-value", lora(), nan)
    half = [(n, "F16", sh, struct.pack("<%de" % (len(raw) // 4), *struct.unpack("<%df" % (len(raw) // 4), raw)))
            for n, d, sh, raw in lora_tensors()]
    adapter("lora-f16", lora(), half)
    ints = [(n, "I64", sh, raw + raw) for n, d, sh, raw in lora_tensors()]
    adapter("lora-i64", lora(), ints)
    adapter("lora-weights-truncated", lora(), raw=safetensors(lora_tensors())[:200])
    adapter("ia3-valid", IA3_CONFIG, ia3_tensors(1.5))
    adapter("ia3-zero-scale", IA3_CONFIG, ia3_tensors(0.0))
    adapter("ia3-layers-to-transform", dict(IA3_CONFIG, layers_to_transform=[0]), ia3_tensors(1.0))
    adapter("ia3-wide-scale", IA3_CONFIG, [(n, d, [1, 8], raw) for n, d, sh, raw in ia3_tensors(1.0)])


# ----------------------------------------------------------------------------------------------
# lora-bert-data: one file per reader case


def data_corpus():
    import bz2
    import gzip

    def r(name, data):
        write("lora-bert-data", "readers", name, data=data)

    r("conll-ok.conll", "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"
                        "Peter NNP B-NP B-PER\n")
    r("conll-three-columns.conll", "-DOCSTART- -X- -X- O\n\nEU NNP B-ORG\n")
    r("conll-bad-tag.conll", "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP X-MISC\n")
    r("conll-invalid-utf8.conll", b"EU B-ORG\nr\xffjects O\n")
    r("conll-only-docstarts.conll", "-DOCSTART- -X- O\n\n-DOCSTART- -X- O\n")
    r("conll-crlf-and-blanks.conll", "\r\n \t\r\nEU B-ORG\r\nrejects O\r\n\r\n\r\nPeter B-PER\r\n")
    whole = gzip.compress(("EU B-ORG\nrejects O\n\n" * 40).encode(), mtime=0)
    r("conll-truncated.conll.gz", whole[:16])
    r("conll-garbage.conll.bz2", b"BZh91AY&SY" + bytes(range(7, 60)))
    r("conll-empty-document.conll", "-DOCSTART- -X- O\n\n-DOCSTART- -X- O\n\nEU B-ORG\n")
    r("nltk-ok.txt", "The/at jury/nn ./.\n\n\tIt/pps 1/2/cd ./.\n")
    r("nltk-no-tag.txt", "The/at jury/nn\nIt did/dod\n")
    r("csv-stray-quote.csv", 'text,label\nwarm a"b,pos\n"dull, ""very""",neg\n')
    r("csv-short-record.csv", "text,label\nfine,pos\nonly-text\n")
    r("csv-no-label-column.csv", "text,category\nx,y\n")
    r("jsonl-garbage-line.jsonl", '{"text":"a","label":1}\n\n{"text": "b", "label": \n')
    r("jsonl-deep.jsonl", "[" * 200 + "]" * 200 + "\n")
    r("jsonl-float-label.jsonl", '{"text":"a","label":"x"}\n{"text":"b","label":1.5}\n')
    r("jsonl-length-mismatch.jsonl", '{"tokens":["a","b"],"tags":["O"]}\n')
    r("pairs-three-columns.tsv", "a\tb\na\tb\tc\n")
    r("labels-duplicate.json", '{\n  "labels": [\n    "O",\n    "O"\n  ]\n}\n')
    r("labels-escaped-duplicate.json", '{"labels": ["a", "\\u0061"]}\n')
    r("labels-empty.json", '{"labels": []}\n')
    r("labels-not-a-list.json", '{"labels": "O"}\n')


# ----------------------------------------------------------------------------------------------
# lora-bert-train: checkpoint damages, teacher-cache indexes, app manifests, tagger manifests.
# A JSON object under checkpoints/*/state.json or cache/ holds fields that the test puts into
# the valid file it made; anything else replaces the file.


def train_corpus():
    def w(*parts, data):
        write("lora-bert-train", *parts, data=data)

    w("checkpoints", "latest-dotdot", "latest", data="../../elsewhere/step-000002")
    w("checkpoints", "latest-absolute", "latest", data="/tmp/step-000002")
    w("checkpoints", "latest-nul", "latest", data=b"step-\0\0\0\0\0\0")
    w("checkpoints", "latest-missing-step", "latest", data="step-000007\n")
    w("checkpoints", "state-step-beyond-max", "state.json", data='{"step": 99}\n')
    w("checkpoints", "state-step-overflows", "state.json", data='{"step": 18446744073709551615}\n')
    w("checkpoints", "state-losses-short", "state.json", data='{"losses": [0.5]}\n')
    w("checkpoints", "state-best-in-the-future", "state.json", data='{"best": [1.0, 3]}\n')

    w("cache", "num-sentences-1e15.json", data='{"num_sentences": 1000000000000000}\n')
    w("cache", "num-sentences-u64-max.json", data='{"num_sentences": 18446744073709551615}\n')
    w("cache", "shard-file-dotdot.json", data=json.dumps({"shards": [{
        "file": "../shard-00000.safetensors", "first_sentence": 0, "num_sentences": 2,
        "num_words": 3, "sha256": "00"}]}) + "\n")
    w("cache", "shard-sentences-u64-max.json", data=json.dumps({"shards": [{
        "file": "shard-00000.safetensors", "first_sentence": 0,
        "num_sentences": 2**64 - 1, "num_words": 3, "sha256": "00"}]}) + "\n")
    w("cache", "version-2.json", data='{"version": 2}\n')
    w("cache", "not-an-object.json", data="[]\n")

    app = {"kind": "token_classification", "task": "ner", "mode": "lora_head",
           "group": "app:ner", "backbone": False}
    w("app", "unknown-kind", "app.json", data=json.dumps(dict(app, kind="image_classification")))
    w("app", "unknown-field", "app.json", data=json.dumps(dict(app, extra=1)))
    w("app", "mode-number", "app.json", data=json.dumps(dict(app, mode=3)))
    w("app", "not-an-object", "app.json", data="[]")
    w("app", "truncated", "app.json", data=json.dumps(app)[:30])

    w("tagger", "sha-multibyte.json", data=json.dumps({
        "version": 1, "base": "tiny", "labels": ["O"], "weights_sha256": "a" + "\u00e9" * 20,
        "notes": None}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    encoder_corpus()
    adapters_corpus()
    data_corpus()
    train_corpus()
