#!/usr/bin/env python3
"""Generate reference fixtures for the ``lora-bert-metrics`` crate.

The Rust tests in ``crates/lora-bert-metrics`` compare the crate's sequence
labeling metrics against seqeval and its classification metrics against
scikit-learn.  CI never runs Python: the output of this script is committed
and only needs to be regenerated when the fixtures change.

Versions used to produce the committed fixtures (also recorded in each file)::

    pip install seqeval==1.2.2 scikit-learn==1.9.1 numpy

(Python 3.11.7, numpy 2.4.6 at the time.)  Exception messages recorded in
``seqeval.json`` can depend on the Python version (the ``Allowed prefixes``
part of seqeval's ValueError is ``str()`` of an ``enum.Flag``).

Usage::

    # write crates/lora-bert-metrics/tests/fixtures/{seqeval,classification}.json
    python scripts/metrics_fixtures.py

    # write elsewhere, or with another seed for the random cases
    python scripts/metrics_fixtures.py --out DIR --seed 20240601

    # regenerate in memory and compare with the files on disk (exit 1 on a difference)
    python scripts/metrics_fixtures.py --check

Output (compact JSON, one case per line; floats are Python ``repr``, i.e. the
shortest string that round-trips the double exactly):

``seqeval.json``::

    {"generator", "versions", "conventions",
     "cases": [{"name", "mode": "default"|"strict",
                "scheme": null|"IOB1"|"IOB2"|"IOE1"|"IOE2"|"IOBES"|"BILOU",
                "y_true": [[tag, ...], ...], "y_pred": [[...], ...],
                "error": null | "<ExceptionType>: <message>",
                "report": null | {<type>: {"precision","recall","f1-score","support"}, ...,
                                  "micro avg": {...}, "macro avg": {...}, "weighted avg": {...}},
                "accuracy": float | null, "accuracy_error": null | "<ExceptionType>: <message>",
                "entities_true": [...] | null, "entities_pred": [...] | null,
                "entities_true_error": ..., "entities_pred_error": ...}]}

``report`` is ``seqeval.metrics.classification_report(y_true, y_pred,
output_dict=True, mode=None|"strict", scheme=<class>|None, zero_division=0)``.
See the "conventions" string written into the file for the entity formats and
the NaN encoding.

``classification.json``::

    {"generator", "versions", "conventions",
     "cases": [{"name", "y_true", "y_pred", "labels", "accuracy",
                "per_class": {label: {"precision","recall","f1-score","support"}},
                "macro avg": {...}, "weighted avg": {...}, "confusion_matrix": [[...]]}]}

from sklearn's ``classification_report(output_dict=True, zero_division=0)``,
``accuracy_score`` and ``confusion_matrix(labels=labels)``; the script asserts
that ``f1_score(average="macro", zero_division=0)`` equals the report's macro f1.

Everything is deterministic: random cases come from ``random.Random(seed)``
and the script re-executes itself with ``PYTHONHASHSEED=0`` so that no set
iteration order can leak into the output.  Running it twice gives identical
bytes.
"""

from __future__ import annotations

import os
import sys

# No output here depends on set order as far as we know (seqeval sorts type
# names), but fix the hash seed anyway so the bytes cannot depend on it.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import warnings  # noqa: E402
from importlib.metadata import version as pkg_version  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import seqeval.scheme  # noqa: E402
import sklearn  # noqa: E402
import sklearn.metrics as skm  # noqa: E402
from seqeval.metrics import accuracy_score as seq_accuracy_score  # noqa: E402
from seqeval.metrics import classification_report as seq_classification_report  # noqa: E402
from seqeval.metrics.sequence_labeling import get_entities  # noqa: E402
from seqeval.scheme import Entities  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "crates" / "lora-bert-metrics" / "tests" / "fixtures"
GENERATOR = "scripts/metrics_fixtures.py"
DEFAULT_SEED = 20240601

SCHEMES = ["IOB1", "IOB2", "IOE1", "IOE2", "IOBES", "BILOU"]
TYPES = ["PER", "LOC", "ORG", "MISC"]
# Non-O prefixes of each scheme's tag alphabet.
SCHEME_PREFIXES = {
    "IOB1": ["I", "B"],
    "IOB2": ["B", "I"],
    "IOE1": ["I", "E"],
    "IOE2": ["I", "E"],
    "IOBES": ["B", "I", "E", "S"],
    "BILOU": ["B", "I", "L", "U"],
}

SEQEVAL_CONVENTIONS = """\
Floats are Python repr (full double precision). A NaN (seqeval's macro avg when neither y_true nor y_pred has any entity: np.average of an empty array) is written as null. \
Integers (support) are plain ints. \
"error" is "<ExceptionType>: <message>" when classification_report raised; then "report" is null. accuracy is seqeval.metrics.accuracy_score (mode-independent: \
number of equal tokens over zip(flat y_true, flat y_pred) / number of y_true tokens, so unequal lengths do not raise; ZeroDivisionError when y_true has no token); null plus "accuracy_error" when it raised. \
entities_true / entities_pred are computed independently of the report (null plus entities_*_error when that extraction raised). \
mode "default": classification_report(mode=None), scheme is ignored by seqeval and recorded as null; entities are seqeval.metrics.sequence_labeling.get_entities(y) on the list of sentences: \
seqeval flattens it as concat(sentence + ["O"] for each sentence) (one "O" after every sentence, the last one included), appends one more "O" sentinel, and returns \
3-tuples [type, start, end] with start/end indices into that flattened sequence and end INCLUSIVE (sentence k begins at offset sum_{j<k}(len_j + 1)). \
Scores compare the sets {(start, end)} per type. \
mode "strict": classification_report(mode="strict", scheme=<seqeval.scheme class>); entities are seqeval.scheme.Entities(y, scheme).entities flattened in sentence order, \
recorded as 4-tuples [sent, type, start, end] (Entity.to_tuple order) with start/end indices within sentence `sent` and end EXCLUSIVE. \
Scores compare the sets {(sent, type, start, end)} per type. \
Report keys: entity types sorted (Python str order = byte order) then "micro avg", "macro avg", "weighted avg"; zero_division=0."""

CLASSIFICATION_CONVENTIONS = """\
Floats are Python repr (full double precision). labels = sorted(set(y_true) | set(y_pred)) (Python str order = byte order). \
per_class/macro avg/weighted avg come from sklearn.metrics.classification_report(y_true, y_pred, output_dict=True, zero_division=0) \
(per-class f1 as sklearn computes it: 2*tp / (2*tp + fp + fn)); accuracy from accuracy_score; \
confusion_matrix from confusion_matrix(y_true, y_pred, labels=labels), rows = true label, columns = predicted label, both in `labels` order. \
macro avg f1 equals f1_score(average='macro', zero_division=0) (asserted by the generator)."""


# --------------------------------------------------------------------------
# helpers


def err_str(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def plain(x):
    """numpy scalars -> Python scalars; NaN -> None."""
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        f = float(x)
        return None if math.isnan(f) else f
    if isinstance(x, (int, str)) or x is None:
        return x
    raise TypeError(f"unexpected value {x!r} of type {type(x)}")


def plain_row(row: dict) -> dict:
    return {k: plain(row[k]) for k in ("precision", "recall", "f1-score", "support")}


def dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def write_doc(header: dict, cases: list[dict]) -> str:
    """Compact JSON with one case per line (valid JSON, diff-friendly)."""
    head = dumps(header)
    assert head.endswith("}")
    lines = ",\n".join(dumps(c) for c in cases)
    return head[:-1] + ',"cases":[\n' + lines + "\n]}\n"


# --------------------------------------------------------------------------
# seqeval: random cases


def sample_entities(rng: random.Random, n: int) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end_exclusive, type), sorted; some adjacent."""
    ents = []
    i = 0
    adjacent = False
    while i < n:
        if adjacent or rng.random() < 0.35:
            length = min(rng.choice([1, 1, 2, 2, 3, 4]), n - i)
            if adjacent and ents and rng.random() < 0.6:
                typ = ents[-1][2]
            else:
                typ = rng.choice(TYPES)
            ents.append((i, i + length, typ))
            i += length
            adjacent = rng.random() < 0.3
        else:
            i += 1
            adjacent = False
    return ents


def encode(n: int, ents: list[tuple[int, int, str]], scheme: str) -> list[str]:
    """Valid tag sequence of `scheme` for the given entities."""
    tags = ["O"] * n
    ents = sorted(ents)
    for k, (s, e, t) in enumerate(ents):
        length = e - s
        prev_adjacent_same = k > 0 and ents[k - 1][1] == s and ents[k - 1][2] == t
        next_adjacent_same = k + 1 < len(ents) and ents[k + 1][0] == e and ents[k + 1][2] == t
        for j in range(s, e):
            tags[j] = "I-" + t
        if scheme == "IOB1":
            if prev_adjacent_same:
                tags[s] = "B-" + t
        elif scheme == "IOB2":
            tags[s] = "B-" + t
        elif scheme == "IOE1":
            if next_adjacent_same:
                tags[e - 1] = "E-" + t
        elif scheme == "IOE2":
            tags[e - 1] = "E-" + t
        elif scheme == "IOBES":
            if length == 1:
                tags[s] = "S-" + t
            else:
                tags[s] = "B-" + t
                tags[e - 1] = "E-" + t
        elif scheme == "BILOU":
            if length == 1:
                tags[s] = "U-" + t
            else:
                tags[s] = "B-" + t
                tags[e - 1] = "L-" + t
        else:
            raise ValueError(scheme)
    return tags


def corrupt_entities(rng, n, ents):
    ents = list(ents)
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        op = rng.choice(["drop", "insert", "type", "shrink", "grow", "split"])
        if op == "drop" and ents:
            ents.pop(rng.randrange(len(ents)))
        elif op == "insert":
            occupied = {j for s, e, _ in ents for j in range(s, e)}
            free = [j for j in range(n) if j not in occupied]
            if free:
                s = rng.choice(free)
                e = s + 1
                while e < n and e not in occupied and rng.random() < 0.5:
                    e += 1
                ents.append((s, e, rng.choice(TYPES)))
        elif op == "type" and ents:
            k = rng.randrange(len(ents))
            s, e, t = ents[k]
            ents[k] = (s, e, rng.choice([x for x in TYPES if x != t]))
        elif op == "shrink" and ents:
            k = rng.randrange(len(ents))
            s, e, t = ents[k]
            if e - s > 1:
                ents[k] = (s + 1, e, t) if rng.random() < 0.5 else (s, e - 1, t)
        elif op == "grow" and ents:
            k = rng.randrange(len(ents))
            s, e, t = ents[k]
            occupied = {j for i, (a, b, _) in enumerate(ents) if i != k for j in range(a, b)}
            if e < n and e not in occupied:
                ents[k] = (s, e + 1, t)
            elif s > 0 and s - 1 not in occupied:
                ents[k] = (s - 1, e, t)
        elif op == "split" and ents:
            k = rng.randrange(len(ents))
            s, e, t = ents[k]
            if e - s > 1:
                m = rng.randrange(s + 1, e)
                ents[k : k + 1] = [(s, m, t), (m, e, t)]
    return sorted(ents)


def corrupt_tokens(rng, tags, scheme):
    tags = list(tags)
    prefixes = SCHEME_PREFIXES[scheme]
    for _ in range(rng.choice([0, 0, 1, 1, 2])):
        if not tags:
            break
        j = rng.randrange(len(tags))
        op = rng.choice(["prefix", "type", "random", "outside"])
        if op == "prefix" and tags[j] != "O":
            tags[j] = rng.choice(prefixes) + tags[j][1:]
        elif op == "type" and tags[j] != "O":
            tags[j] = tags[j][:2] + rng.choice(TYPES)
        elif op == "random":
            tags[j] = "O" if rng.random() < 0.25 else rng.choice(prefixes) + "-" + rng.choice(TYPES)
        elif op == "outside":
            tags[j] = "O"
    return tags


def random_seqeval_pair(rng, scheme):
    """1-6 sentences of 0-12 tokens; y_true has at least one entity (the
    adversarial cases cover the entity-free ones)."""
    while True:
        y_true, y_pred = _random_seqeval_pair(rng, scheme)
        if any(t != "O" for sent in y_true for t in sent):
            return y_true, y_pred


def _random_seqeval_pair(rng, scheme):
    y_true, y_pred = [], []
    for _ in range(rng.randint(1, 6)):
        n = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, rng.randint(3, 12)])
        ents = sample_entities(rng, n)
        y_true.append(encode(n, ents, scheme))
        if rng.random() < 0.15:
            y_pred.append(list(y_true[-1]))
            continue
        pred = encode(n, corrupt_entities(rng, n, ents), scheme)
        if rng.random() < 0.5:
            pred = corrupt_tokens(rng, pred, scheme)
        y_pred.append(pred)
    return y_true, y_pred


# --------------------------------------------------------------------------
# seqeval: adversarial cases
#
# (name, y_true, y_pred, strict schemes to run it under).  Every case also
# runs in default mode.


def S(s: str) -> list[str]:
    """'B-PER I-PER O' -> ['B-PER', 'I-PER', 'O']; '' -> []."""
    return s.split()


ADVERSARIAL = [
    ("perfect", [S("B-PER I-PER O B-LOC"), S("O B-ORG")], [S("B-PER I-PER O B-LOC"), S("O B-ORG")],
     ["IOB2", "IOB1"]),
    ("i_without_b_pred", [S("O B-PER I-PER O"), S("B-LOC O")], [S("O I-PER I-PER O"), S("I-LOC O")],
     ["IOB2", "IOB1"]),
    ("i_without_b_both", [S("I-PER I-PER O I-LOC")], [S("I-PER O O I-LOC")], ["IOB2", "IOB1", "IOE2"]),
    ("i_after_o_mid", [S("B-PER O I-PER I-PER O")], [S("B-PER I-PER I-PER I-PER O")], ["IOB2", "IOB1"]),
    ("type_change_inside", [S("B-PER I-PER I-PER O")], [S("B-PER I-LOC I-LOC O")], ["IOB2", "IOB1"]),
    ("type_change_mid_span", [S("B-PER I-PER I-LOC I-LOC O B-ORG I-MISC")],
     [S("B-PER I-PER B-LOC I-LOC O B-ORG B-MISC")], ["IOB2", "IOB1"]),
    ("b_b_same_type", [S("B-PER B-PER I-PER B-PER")], [S("B-PER I-PER I-PER B-PER")], ["IOB2", "IOB1"]),
    ("e_s_under_iob2", [S("B-PER I-PER O B-LOC O")], [S("B-PER E-PER O S-LOC O")], ["IOB2", "IOBES"]),
    ("e_s_odd_places", [S("B-PER I-PER E-PER O S-LOC")],
     [S("E-PER I-PER E-PER S-LOC E-LOC")], ["IOBES"]),
    ("iobes_odd", [S("B-PER E-PER S-LOC O B-ORG I-ORG E-ORG")],
     [S("B-PER I-PER S-LOC E-LOC B-ORG B-ORG E-ORG")], ["IOBES"]),
    ("iobes_i_after_e", [S("S-PER B-LOC E-LOC O O")], [S("S-PER I-PER E-LOC I-LOC O")], ["IOBES"]),
    ("iobes_s_then_e", [S("S-PER E-PER O B-LOC E-LOC")], [S("S-PER S-PER O B-LOC S-LOC")], ["IOBES"]),
    ("iobes_e_e", [S("B-PER E-PER E-PER O")], [S("E-PER E-PER E-PER O")], ["IOBES", "IOE2"]),
    ("bilou_basic", [S("B-PER I-PER L-PER O U-LOC"), S("U-ORG U-ORG")],
     [S("B-PER I-PER L-PER O U-LOC"), S("B-ORG L-ORG")], ["BILOU"]),
    ("bilou_odd", [S("B-PER L-PER O U-LOC O B-ORG I-ORG L-ORG")],
     [S("L-PER U-PER O B-LOC U-LOC I-LOC L-ORG O")], ["BILOU"]),
    ("bilou_stale_begin", [S("E-PER U-PER O S-LOC L-LOC O")], [S("B-PER U-PER O U-LOC L-LOC O")],
     ["BILOU", "IOBES"]),
    ("bilou_l_then_b", [S("B-PER L-PER B-PER L-PER O")], [S("U-PER U-PER U-PER U-PER O")], ["BILOU"]),
    ("bilou_under_iob2", [S("B-PER I-PER O")], [S("B-PER L-PER O")], ["IOB2", "BILOU"]),
    ("empty_sentences", [[], S("B-PER I-PER"), [], S("O")], [[], S("B-PER O"), [], S("B-LOC")],
     ["IOB2", "IOBES"]),
    ("all_empty_sentences", [[], []], [[], []], ["IOB2"]),
    ("all_o", [S("O O O"), S("O")], [S("O O O"), S("O")], ["IOB2", "BILOU"]),
    ("pred_no_entities", [S("B-PER I-PER O B-LOC"), S("B-ORG")], [S("O O O O"), S("O")], ["IOB2"]),
    ("gold_no_entities", [S("O O O O"), S("O")], [S("B-PER I-PER O B-LOC"), S("B-ORG")], ["IOB2"]),
    ("type_only_in_pred", [S("B-PER O B-PER I-PER")], [S("B-PER O B-MISC I-MISC")], ["IOB2"]),
    ("single_token_sentence", [S("B-PER")], [S("B-PER")], ["IOB2", "IOB1", "IOE2", "IOBES", "BILOU"]),
    ("single_token_i", [S("I-PER")], [S("B-PER")], ["IOB2", "IOB1", "IOE1", "IOE2"]),
    ("single_token_sentences", [S("B-PER"), S("O"), S("B-LOC")], [S("B-PER"), S("B-LOC"), S("O")],
     ["IOB2"]),
    ("iob1_adjacent_same_type", [S("I-PER I-PER B-PER I-PER O I-LOC B-LOC I-ORG")],
     [S("I-PER I-PER I-PER I-PER O I-LOC I-LOC I-ORG")], ["IOB1", "IOB2"]),
    ("iob1_b_after_other_type", [S("I-PER B-LOC I-LOC O B-PER")], [S("I-PER I-LOC I-LOC O I-PER")],
     ["IOB1"]),
    ("ioe1_adjacent_same_type", [S("I-PER E-PER I-PER O I-LOC I-LOC")],
     [S("I-PER I-PER I-PER O I-LOC E-LOC")], ["IOE1", "IOE2"]),
    ("ioe2_odd", [S("I-PER E-PER O E-LOC I-ORG")], [S("I-PER I-PER O E-LOC E-ORG")],
     ["IOE2", "IOE1"]),
    ("span_across_sentence_boundary", [S("O B-PER I-PER"), S("I-PER O")], [S("O B-PER I-PER"), S("B-PER O")],
     ["IOB2", "IOB1"]),
    ("bare_tags", [S("B I O B O I")], [S("B I I O O B")], ["IOB2"]),
    ("multi_hyphen_type", [S("B-ORG-X I-ORG-X O B-PER")], [S("B-ORG-X I-ORG-Y O B-PER")], ["IOB2"]),
    ("inconsistent_lengths", [S("B-PER I-PER O")], [S("B-PER I-PER")], ["IOB2"]),
    ("inconsistent_sentence_count", [S("B-PER"), S("O")], [S("B-PER")], ["IOB2"]),
    ("zero_sentences", [], [], ["IOB2"]),
    ("unknown_prefix", [S("B-PER I-PER O")], [S("X-PER I-PER O")], ["IOB2"]),
    ("invalid_in_gold", [S("B-PER E-PER O")], [S("B-PER I-PER O")], ["IOB2"]),
]


def seqeval_case(name, mode, scheme_name, y_true, y_pred):
    scheme = getattr(seqeval.scheme, scheme_name) if scheme_name else None
    case = {
        "name": name,
        "mode": mode,
        "scheme": scheme_name,
        "y_true": y_true,
        "y_pred": y_pred,
        "error": None,
        "report": None,
    }
    try:
        rep = seq_classification_report(
            y_true, y_pred, output_dict=True, mode="strict" if mode == "strict" else None,
            scheme=scheme, zero_division=0,
        )
        case["report"] = {k: plain_row(v) for k, v in rep.items()}
    except Exception as exc:  # noqa: BLE001 - recorded in the fixture
        case["error"] = err_str(exc)
    try:
        case["accuracy"] = plain(seq_accuracy_score(y_true, y_pred))
        case["accuracy_error"] = None
    except Exception as exc:  # noqa: BLE001
        case["accuracy"] = None
        case["accuracy_error"] = err_str(exc)
    for key, y in (("entities_true", y_true), ("entities_pred", y_pred)):
        try:
            if mode == "default":
                ents = [[t, int(s), int(e)] for t, s, e in get_entities(y)]
            else:
                ents = [list(ent.to_tuple()) for sent in Entities(y, scheme).entities for ent in sent]
            case[key] = ents
            case[key + "_error"] = None
        except Exception as exc:  # noqa: BLE001
            case[key] = None
            case[key + "_error"] = err_str(exc)
    return case


def seqeval_cases(seed: int, n_random: int) -> list[dict]:
    cases = []
    for si, scheme in enumerate(SCHEMES):
        for mi, mode in enumerate(["default", "strict"]):
            rng = random.Random(seed * 1000 + si * 10 + mi)
            for k in range(n_random):
                y_true, y_pred = random_seqeval_pair(rng, scheme)
                cases.append(seqeval_case(
                    f"random-{mode}-{scheme}-{k:02d}", mode, scheme if mode == "strict" else None,
                    y_true, y_pred,
                ))
    for name, y_true, y_pred, strict_schemes in ADVERSARIAL:
        cases.append(seqeval_case(f"adv-{name}", "default", None, y_true, y_pred))
        for scheme in strict_schemes:
            cases.append(seqeval_case(f"adv-{name}-strict-{scheme}", "strict", scheme, y_true, y_pred))
    names = [c["name"] for c in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    return cases


# --------------------------------------------------------------------------
# sklearn classification

CLASS_NAMES = ["neg", "pos", "neutral", "Other", "b", "a", "class_10", "class_9"]


def classification_case(name, y_true, y_pred):
    labels = sorted(set(y_true) | set(y_pred))
    rep = skm.classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    per_class_keys = [k for k in rep if k not in ("accuracy", "micro avg", "macro avg", "weighted avg")]
    assert per_class_keys == labels, (per_class_keys, labels)
    macro_f1 = skm.f1_score(y_true, y_pred, average="macro", zero_division=0)
    assert float(macro_f1) == float(rep["macro avg"]["f1-score"]), (name, macro_f1, rep["macro avg"])
    acc = skm.accuracy_score(y_true, y_pred)
    if "accuracy" in rep:
        assert float(rep["accuracy"]) == float(acc)
    cm = skm.confusion_matrix(y_true, y_pred, labels=labels)
    return {
        "name": name,
        "y_true": list(y_true),
        "y_pred": list(y_pred),
        "labels": labels,
        "accuracy": plain(acc),
        "per_class": {k: plain_row(rep[k]) for k in labels},
        "macro avg": plain_row(rep["macro avg"]),
        "weighted avg": plain_row(rep["weighted avg"]),
        "confusion_matrix": [[int(x) for x in row] for row in cm],
    }


def classification_cases(seed: int, n_random: int) -> list[dict]:
    rng = random.Random(seed + 7)
    cases = []
    sizes = [1, 2, 3, 5, 8, 13, 20, 37, 50, 64, 99, 120, 150, 181, 200]
    for k in range(n_random):
        n_classes = rng.randint(2, 6)
        classes = rng.sample(CLASS_NAMES, n_classes)
        n = sizes[k % len(sizes)] if k < len(sizes) else rng.randint(1, 200)
        # Some classes are never predicted, some never appear in y_true.
        true_pool = list(classes)
        pred_pool = list(classes)
        if n_classes >= 3 and rng.random() < 0.5:
            pred_pool.remove(rng.choice(pred_pool))
        if n_classes >= 3 and rng.random() < 0.5:
            true_pool.remove(rng.choice(true_pool))
        weights = [rng.random() + 0.1 for _ in true_pool]
        accuracy_target = rng.choice([0.3, 0.6, 0.8, 0.95])
        y_true = rng.choices(true_pool, weights=weights, k=n)
        y_pred = [t if (t in pred_pool and rng.random() < accuracy_target) else rng.choice(pred_pool)
                  for t in y_true]
        cases.append(classification_case(f"random-{k:02d}", y_true, y_pred))
    adversarial = [
        ("single_sample_correct", ["pos"], ["pos"]),
        ("single_sample_wrong", ["pos"], ["neg"]),
        ("all_pred_one_class", ["a", "b", "c", "a", "b", "c", "a"], ["a"] * 7),
        ("class_only_in_pred", ["a", "a", "b", "b"], ["a", "z", "b", "z"]),
        ("class_only_in_true", ["a", "b", "c", "c"], ["a", "b", "a", "b"]),
        ("single_class_everywhere", ["x", "x", "x"], ["x", "x", "x"]),
        ("all_wrong", ["a", "b", "a", "b"], ["b", "a", "b", "a"]),
        ("perfect_multiclass", ["a", "b", "c", "d", "a"], ["a", "b", "c", "d", "a"]),
        ("case_sensitive_sort", ["B", "a", "b", "A"], ["a", "a", "b", "B"]),
    ]
    for name, y_true, y_pred in adversarial:
        cases.append(classification_case(f"adv-{name}", y_true, y_pred))
    return cases


# --------------------------------------------------------------------------


def versions() -> dict:
    return {
        "seqeval": pkg_version("seqeval"),
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def build(seed: int, n_seq: int, n_cls: int) -> dict[str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seq = seqeval_cases(seed, n_seq)
        cls = classification_cases(seed, n_cls)
    base = {"generator": GENERATOR, "versions": versions(), "seed": seed}
    return {
        "seqeval.json": write_doc({**base, "conventions": SEQEVAL_CONVENTIONS}, seq),
        "classification.json": write_doc({**base, "conventions": CLASSIFICATION_CONVENTIONS}, cls),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the random cases")
    ap.add_argument("--seqeval-random", type=int, default=8,
                    help="random cases per (scheme, mode) pair (default 8)")
    ap.add_argument("--classification-random", type=int, default=15,
                    help="random classification cases (default 15)")
    ap.add_argument("--check", action="store_true",
                    help="compare with the files in --out instead of writing; exit 1 on a difference")
    args = ap.parse_args()

    docs = build(args.seed, args.seqeval_random, args.classification_random)
    for fname, text in docs.items():
        json.loads(text)  # sanity: valid JSON
        path = args.out / fname
        if args.check:
            old = path.read_text(encoding="utf-8") if path.exists() else None
            if old != text:
                print(f"{path}: differs from a fresh generation", file=sys.stderr)
                return 1
            print(f"{path}: up to date")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            n = len(json.loads(text)["cases"])
            print(f"wrote {path} ({len(text.encode('utf-8'))} bytes, {n} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
