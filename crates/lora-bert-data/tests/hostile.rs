//! Hostile input for every reader of this crate: CoNLL columns (plain, gzip, bzip2), NLTK
//! `word/tag` text, CSV/TSV, JSON Lines (tagged, labelled, pairs), tab-separated pairs and
//! `labels.json`. Generated inputs must give a typed error naming the input, or examples that
//! hold the readers' promises (one tag per word, no empty word, entity tags well formed, ...),
//! never a panic, with an allocation bounded by the input's size; the committed corpus in
//! `tests/corpus/` pins the outcome of named cases.

use std::io::Write;
use std::path::{Path, PathBuf};

use lora_bert_data::read::{
    Column, ConllFormat, ConllReader, Decoding, DelimitedFormat, DelimitedReader, JsonlReader,
    NltkReader, PairFields, PairTsvReader, Separator, TaggedFields, TextFields, detect_scheme,
    normalise_scheme, read_conll, read_delimited, read_jsonl_tagged, read_jsonl_texts, read_nltk,
    read_pairs_tsv,
};
use lora_bert_data::{DataError, LabelVocab, Scheme};
use lora_bert_testkit::alloc::{Counting, MIB, peak_of, serial};
use lora_bert_testkit::corpus::assert_every_file_has_a_case;
use lora_bert_testkit::mutate::{
    ByteEdit, apply_byte_edits, apply_field_edits, byte_edits, field_edits,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

// The counting allocator bounds what each call allocates (see lora_bert_testkit::alloc).
#[global_allocator]
static ALLOCATOR: Counting = Counting;

// ---------------------------------------------------------------------------------------------
// Inputs

fn decoding() -> impl Strategy<Value = Decoding> {
    prop_oneof![
        3 => Just(Decoding::Strict),
        1 => Just(Decoding::Lossy),
        1 => Just(Decoding::Latin1Fallback),
    ]
}

/// Lines joined by `\n` or `\r\n`, then byte-edited (invalid UTF-8, truncation, garbage).
fn text(lines: &[String], crlf: bool, edits: &[ByteEdit]) -> Vec<u8> {
    let mut bytes = lines.join(if crlf { "\r\n" } else { "\n" }).into_bytes();
    apply_byte_edits(&mut bytes, edits);
    bytes
}

fn tag() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("O".to_owned()),
        Just("B-PER".to_owned()),
        Just("I-PER".to_owned()),
        Just("E-LOC".to_owned()),
        Just("S-MISC".to_owned()),
        Just("L-ORG".to_owned()),
        Just("U-X".to_owned()),
        Just("B-".to_owned()),
        Just("I".to_owned()),
        Just("X-PER".to_owned()),
        Just("-".to_owned()),
        Just("b-per".to_owned()),
        Just("B-I-O".to_owned()),
        Just("NNP".to_owned()),
        "[A-Z]{1,3}(-[A-Za-z]{0,3})?",
    ]
}

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("-DOCSTART-".to_owned()),
        Just("\u{200b}".to_owned()),
        Just("é".to_owned()),
        Just("\"".to_owned()),
        "[a-z]{1,4}",
        "\\PC{1,3}",
    ]
}

/// A CoNLL-style line: blank, `-DOCSTART-`, or columns of words and tags.
fn conll_line() -> impl Strategy<Value = String> {
    let sep = prop_oneof![Just(" "), Just("\t"), Just("  "), Just(" \t"), Just("\t\t")];
    let column = prop_oneof![word(), tag()];
    prop_oneof![
        1 => Just(String::new()),
        1 => Just(" \t ".to_owned()),
        1 => Just("-DOCSTART- -X- -X- O".to_owned()),
        8 => (prop::collection::vec(column, 1..6), sep).prop_map(|(c, s)| c.join(s)),
    ]
}

fn conll_format() -> impl Strategy<Value = ConllFormat> {
    (
        0..4usize,
        prop::option::of(0..5usize),
        prop_oneof![Just(Separator::Whitespace), Just(Separator::Tab)],
        any::<bool>(),
        prop::option::of(0..6usize),
        any::<bool>(),
    )
        .prop_map(
            |(token_column, tag_column, separator, docstart, columns, entity_tags)| ConllFormat {
                token_column,
                tag_column,
                separator,
                docstart,
                columns,
                entity_tags,
            },
        )
}

/// How a generated file is stored.
#[derive(Debug, Clone)]
enum Packing {
    Plain,
    Gzip(usize),
    Bzip2(usize),
}

fn packing() -> impl Strategy<Value = Packing> {
    prop_oneof![
        4 => Just(Packing::Plain),
        1 => any::<usize>().prop_map(Packing::Gzip),
        1 => any::<usize>().prop_map(Packing::Bzip2),
    ]
}

/// `bytes` compressed as asked, then cut at a point chosen by the packing (kept whole when the
/// point falls past the end).
fn pack(bytes: &[u8], packing: &Packing) -> Vec<u8> {
    let (mut out, cut) = match packing {
        Packing::Plain => return bytes.to_vec(),
        Packing::Gzip(cut) => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(bytes).unwrap();
            (e.finish().unwrap(), *cut)
        }
        Packing::Bzip2(cut) => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(bytes).unwrap();
            (e.finish().unwrap(), *cut)
        }
    };
    let keep = cut % (2 * out.len() + 1);
    out.truncate(keep.max(3));
    out
}

/// Writes `bytes` to a fresh file and calls `f` with its path.
fn with_file<T>(bytes: &[u8], f: impl FnOnce(&Path) -> T) -> T {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input");
    std::fs::write(&path, bytes).unwrap();
    f(&path)
}

/// The bound on what reading `n` bytes of (decompressed) input may allocate at once.
fn bound(n: usize) -> usize {
    4 * MIB + 64 * n
}

/// An error about input data names the origin and a line.
fn check_error(e: &DataError, origin: &str) -> Result<(), TestCaseError> {
    match e {
        DataError::Parse { path, line, .. }
        | DataError::UnknownTag { path, line, .. }
        | DataError::MixedSchemes { path, line, .. }
        | DataError::EmptyDocument { path, line, .. } => {
            prop_assert!(path.to_string_lossy().contains(origin), "{e}");
            prop_assert!(*line >= 1, "{e}");
        }
        DataError::InvalidArgument { .. } => {}
        other => prop_assert!(false, "unexpected error {other:?}"),
    }
    Ok(())
}

fn is_entity_tag(tag: &str) -> bool {
    tag == "O"
        || tag.split_once('-').is_some_and(|(prefix, kind)| {
            ["B", "I", "E", "S", "L", "U"].contains(&prefix) && !kind.is_empty()
        })
}

fn check_tagged(tokens: &[String], tags: &[String]) -> Result<(), TestCaseError> {
    prop_assert!(!tokens.is_empty());
    prop_assert_eq!(tokens.len(), tags.len());
    prop_assert!(tokens.iter().chain(tags).all(|s| !s.is_empty()));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig { cases: lora_bert_testkit::cases(256), ..ProptestConfig::default() })]

    /// CoNLL columns, any format, as sentences and as documents; the sentences read feed
    /// scheme detection and normalisation, which answer typed too.
    #[test]
    fn conll(
        lines in prop::collection::vec(conll_line(), 0..24),
        crlf in any::<bool>(),
        edits in byte_edits(),
        format in conll_format(),
        decoding in decoding(),
    ) {
        let _serial = serial();
        let bytes = text(&lines, crlf, &edits);
        let (sentences, peak) = peak_of(|| {
            ConllReader::new(&bytes[..], "in.conll", format.clone())
                .decoding(decoding)
                .sentences()
                .collect::<Result<Vec<_>, _>>()
        });
        prop_assert!(peak < bound(bytes.len()), "{peak} bytes for {}", bytes.len());
        match sentences {
            Ok(mut sentences) => {
                for s in &sentences {
                    check_tagged(&s.tokens, &s.tags)?;
                    prop_assert!(s.line >= 1);
                    if format.entity_tags {
                        prop_assert!(s.tags.iter().all(|t| is_entity_tag(t)), "{:?}", s.tags);
                    }
                    for column in &s.extra {
                        prop_assert_eq!(column.len(), s.tokens.len());
                    }
                    if format.columns.is_none() {
                        prop_assert!(s.extra.is_empty());
                    }
                }
                match detect_scheme(&sentences, "in.conll".as_ref()) {
                    Ok(scheme) => {
                        let found = normalise_scheme(&mut sentences, "in.conll".as_ref(), Scheme::Iob2);
                        prop_assert_eq!(found.ok(), Some(scheme));
                    }
                    Err(e) => check_error(&e, "in.conll")?,
                }
            }
            Err(e) => check_error(&e, "in.conll")?,
        }
        let documents = ConllReader::new(&bytes[..], "in.conll", format)
            .decoding(decoding)
            .documents()
            .collect::<Result<Vec<_>, _>>();
        match documents {
            Ok(documents) => prop_assert!(documents.iter().all(|d| !d.sentences.is_empty())),
            Err(e) => check_error(&e, "in.conll")?,
        }
    }

    /// The same through a file, plain or compressed (and cut short): `read_conll` answers the
    /// same as the reader on the decompressed bytes, or a `Parse` error for a corrupt stream.
    #[test]
    fn conll_files(
        lines in prop::collection::vec(conll_line(), 0..16),
        packing in packing(),
        damage in byte_edits(),
    ) {
        let _serial = serial();
        let bytes = text(&lines, false, &[]);
        let mut stored = pack(&bytes, &packing);
        // Damage after compression: flipped bits in a stream are corrupt data.
        apply_byte_edits(&mut stored, &damage);
        let format = ConllFormat::default();
        let (read, peak) = with_file(&stored, |path| peak_of(|| read_conll(path, &format)));
        prop_assert!(peak < bound(bytes.len() + stored.len()), "{peak} bytes");
        let direct = ConllReader::new(&stored[..], "x", format).collect::<Result<Vec<_>, _>>();
        match (read, &packing) {
            // A plain file that starts with a compressor's magic bytes is read as compressed.
            (Ok(read), Packing::Plain) if !stored.starts_with(b"BZh") && !stored.starts_with(&[0x1f, 0x8b]) => {
                prop_assert_eq!(Some(read), direct.ok())
            }
            (Ok(read), _) => {
                // A compressed stream that reads is a prefix of the text or all of it.
                for s in &read {
                    check_tagged(&s.tokens, &s.tags)?;
                }
            }
            (Err(e), _) => check_error(&e, "input")?,
        }
    }

    /// NLTK `word/tag` lines.
    #[test]
    fn nltk(
        lines in prop::collection::vec(
            prop::collection::vec(
                prop_oneof![
                    (word(), tag()).prop_map(|(w, t)| format!("{w}/{t}")),
                    Just("1/2/cd".to_owned()),
                    Just("/".to_owned()),
                    Just("a/".to_owned()),
                    Just("/nn".to_owned()),
                    Just("plain".to_owned()),
                    Just("".to_owned()),
                ],
                0..6,
            ).prop_map(|t| t.join(" ")),
            0..12,
        ),
        edits in byte_edits(),
        decoding in decoding(),
    ) {
        let _serial = serial();
        let bytes = text(&lines, false, &edits);
        let (read, peak) = peak_of(|| {
            NltkReader::new(&bytes[..], "in.txt").decoding(decoding).collect::<Result<Vec<_>, _>>()
        });
        prop_assert!(peak < bound(bytes.len()));
        match read {
            Ok(sentences) => {
                for s in &sentences {
                    check_tagged(&s.tokens, &s.tags)?;
                    prop_assert!(s.tokens.iter().all(|w| !w.chars().any(char::is_whitespace)));
                }
            }
            Err(e) => check_error(&e, "in.txt")?,
        }
    }

    /// CSV/TSV with stray quotes, embedded delimiters and newlines, ragged records, any
    /// delimiter and column choice.
    #[test]
    fn delimited(
        records in prop::collection::vec(
            prop::collection::vec(
                prop_oneof![
                    Just("text".to_owned()),
                    Just("label".to_owned()),
                    Just("\"".to_owned()),
                    Just("\"quoted, \"\"twice\"\"\"".to_owned()),
                    Just("a\"b".to_owned()),
                    Just("line\nbreak".to_owned()),
                    Just(String::new()),
                    "[a-z,;\t ]{0,6}",
                ],
                0..5,
            ),
            0..10,
        ),
        delimiter in prop_oneof![Just(b','), Just(b'\t'), Just(b';'), Just(b'"'), Just(b' '), Just(0u8)],
        has_header in any::<bool>(),
        quoting in any::<bool>(),
        text_column in prop_oneof![
            Just(Column::Name("text".into())),
            Just(Column::Name(String::new())),
            (0..4usize).prop_map(Column::Index),
            Just(Column::Index(usize::MAX)),
        ],
        label_column in prop_oneof![
            Just(Column::Name("label".into())),
            (0..4usize).prop_map(Column::Index),
        ],
        edits in byte_edits(),
        decoding in decoding(),
    ) {
        let _serial = serial();
        let sep = (delimiter as char).to_string();
        let lines: Vec<String> = records.iter().map(|r| r.join(&sep)).collect();
        let bytes = text(&lines, false, &edits);
        let format = DelimitedFormat {
            delimiter,
            has_header,
            quoting,
            text: text_column,
            label: label_column,
            decoding,
        };
        let (read, peak) = peak_of(|| {
            DelimitedReader::new(&bytes[..], "in.csv", &format)
                .and_then(|r| r.collect::<Result<Vec<_>, _>>())
        });
        prop_assert!(peak < bound(bytes.len()));
        if let Err(e) = read {
            check_error(&e, "in.csv")?;
        }
    }

    /// JSON Lines of tagged sentences, labelled texts and pairs: valid objects, wrong types,
    /// garbage, deep nesting.
    #[test]
    fn jsonl(
        lines in prop::collection::vec(
            prop_oneof![
                4 => (field_edits(), prop::collection::vec(word(), 0..4), prop::collection::vec(tag(), 0..4))
                    .prop_map(|(edits, tokens, tags)| {
                        let mut m = Map::new();
                        m.insert("tokens".into(), json!(tokens));
                        m.insert("tags".into(), json!(tags));
                        m.insert("text".into(), json!(tokens.join(" ")));
                        m.insert("label".into(), json!(tags.len()));
                        m.insert("anchor".into(), json!("a"));
                        m.insert("positive".into(), json!("p"));
                        apply_field_edits(&mut m, &edits);
                        Value::Object(m).to_string()
                    }),
                1 => Just("[".repeat(200)),
                1 => Just("{\"text\": \"x\", \"label\": 1e400}".to_owned()),
                1 => Just("{\"text\": \"x\", \"label\": 18446744073709551616}".to_owned()),
                1 => Just("   ".to_owned()),
                1 => ".{0,10}",
            ],
            0..10,
        ),
        edits in byte_edits(),
        decoding in decoding(),
    ) {
        let _serial = serial();
        let bytes = text(&lines, false, &edits);
        let (tagged, peak) = peak_of(|| {
            JsonlReader::new(&bytes[..], "in.jsonl", TaggedFields::default())
                .decoding(decoding)
                .collect::<Result<Vec<_>, _>>()
        });
        prop_assert!(peak < bound(bytes.len()));
        match tagged {
            Ok(sentences) => {
                for s in sentences {
                    prop_assert_eq!(s.tokens.len(), s.tags.len());
                }
            }
            Err(e) => check_error(&e, "in.jsonl")?,
        }
        let texts = JsonlReader::new(&bytes[..], "in.jsonl", TextFields::default())
            .decoding(decoding)
            .collect::<Result<Vec<_>, _>>();
        match texts {
            // One example per non-blank line at most.
            Ok(texts) => prop_assert!(texts.len() <= bytes.split(|&b| b == b'\n').count()),
            Err(e) => check_error(&e, "in.jsonl")?,
        }
        let pairs = JsonlReader::new(&bytes[..], "in.jsonl", PairFields::default())
            .decoding(decoding)
            .collect::<Result<Vec<_>, _>>();
        if let Err(e) = pairs {
            check_error(&e, "in.jsonl")?;
        }
    }

    /// `anchor<TAB>positive` lines.
    #[test]
    fn pairs_tsv(
        lines in prop::collection::vec(
            prop::collection::vec(prop_oneof![word(), Just(" ".to_owned()), Just(String::new())], 0..4)
                .prop_map(|c| c.join("\t")),
            0..12,
        ),
        edits in byte_edits(),
    ) {
        let _serial = serial();
        let bytes = text(&lines, false, &edits);
        let (read, peak) = peak_of(|| {
            PairTsvReader::new(&bytes[..], "in.tsv").collect::<Result<Vec<_>, _>>()
        });
        prop_assert!(peak < bound(bytes.len()));
        match read {
            Ok(pairs) => {
                for p in pairs {
                    prop_assert!(!p.anchor.trim().is_empty() && !p.positive.trim().is_empty());
                    prop_assert!(!p.anchor.contains('\t') && !p.positive.contains('\t'));
                }
            }
            Err(e) => check_error(&e, "in.tsv")?,
        }
    }

    /// `labels.json`: a valid file with its fields and bytes edited, and labels repeated
    /// (also written with escapes).
    #[test]
    fn label_vocab(
        labels in prop::collection::vec(prop_oneof![tag(), Just("a".to_owned()), Just("é".to_owned())], 0..8),
        edits in field_edits(),
        escaped in any::<bool>(),
        bytes in byte_edits(),
    ) {
        let _serial = serial();
        let mut m = Map::new();
        m.insert("labels".into(), json!(labels));
        apply_field_edits(&mut m, &edits);
        let mut text = serde_json::to_string_pretty(&Value::Object(m)).unwrap();
        if escaped {
            text = text.replace("\"a\"", "\"\\u0061\"");
        }
        let mut text = text.into_bytes();
        apply_byte_edits(&mut text, &bytes);
        let (loaded, peak) = with_file(&text, |path| peak_of(|| LabelVocab::load(path)));
        prop_assert!(peak < bound(text.len()));
        match loaded {
            Ok(vocab) => {
                prop_assert!(!vocab.is_empty());
                for (id, label) in vocab.iter() {
                    prop_assert_eq!(vocab.id(label).unwrap(), id);
                }
            }
            Err(DataError::Io { source, .. }) => {
                prop_assert_eq!(source.kind(), std::io::ErrorKind::InvalidData);
            }
            Err(e) => check_error(&e, "input")?,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Corpus

fn corpus(parts: &[&str]) -> PathBuf {
    let mut path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    for p in parts {
        path.push(p);
    }
    path
}

/// The `Parse`-like error's line, or `None` for another outcome.
fn error_line(result: Result<usize, DataError>) -> Result<usize, String> {
    match result {
        Ok(n) => Ok(n),
        Err(
            DataError::Parse { line, .. }
            | DataError::UnknownTag { line, .. }
            | DataError::EmptyDocument { line, .. }
            | DataError::MixedSchemes { line, .. },
        ) => Err(format!("line {line}")),
        Err(e) => Err(format!("{e:?}")),
    }
}

/// A reader of a corpus file: the number of examples it read.
type Reader = Box<dyn Fn(&Path) -> Result<usize, DataError>>;

/// Every file of `tests/corpus/readers`, read by the reader its extension names, with the
/// outcome it must have: `Ok(n)` examples, or `Err("line N")` for an error at line N.
#[test]
fn corpus_readers() {
    let _serial = serial();
    let conll = |format: ConllFormat| move |p: &Path| read_conll(p, &format).map(|s| s.len());
    let conll2003 = conll(ConllFormat::conll2003());
    let plain = conll(ConllFormat::default());
    let cases: Vec<(&str, Reader, Result<usize, String>)> = vec![
        ("conll-ok.conll", Box::new(conll2003.clone()), Ok(2)),
        (
            "conll-three-columns.conll",
            Box::new(conll2003.clone()),
            Err("line 3".into()),
        ),
        (
            "conll-bad-tag.conll",
            Box::new(conll2003.clone()),
            Err("line 4".into()),
        ),
        (
            "conll-invalid-utf8.conll",
            Box::new(plain.clone()),
            Err("line 2".into()),
        ),
        ("conll-only-docstarts.conll", Box::new(plain.clone()), Ok(0)),
        (
            "conll-crlf-and-blanks.conll",
            Box::new(plain.clone()),
            Ok(2),
        ),
        (
            "conll-truncated.conll.gz",
            Box::new(plain.clone()),
            Err("line 1".into()),
        ),
        (
            "conll-garbage.conll.bz2",
            Box::new(plain),
            Err("line 1".into()),
        ),
        (
            "conll-empty-document.conll",
            Box::new(|p: &Path| {
                lora_bert_data::read::read_conll_documents(p, &ConllFormat::default())
                    .map(|d| d.len())
            }),
            Err("line 1".into()),
        ),
        (
            "nltk-ok.txt",
            Box::new(|p: &Path| read_nltk(p).map(|s| s.len())),
            Ok(2),
        ),
        (
            "nltk-no-tag.txt",
            Box::new(|p: &Path| read_nltk(p).map(|s| s.len())),
            Err("line 2".into()),
        ),
        (
            "csv-stray-quote.csv",
            Box::new(|p: &Path| read_delimited(p, &DelimitedFormat::default()).map(|t| t.len())),
            Ok(2),
        ),
        (
            "csv-short-record.csv",
            Box::new(|p: &Path| read_delimited(p, &DelimitedFormat::default()).map(|t| t.len())),
            Err("line 3".into()),
        ),
        (
            "csv-no-label-column.csv",
            Box::new(|p: &Path| read_delimited(p, &DelimitedFormat::default()).map(|t| t.len())),
            Err("line 1".into()),
        ),
        (
            "jsonl-garbage-line.jsonl",
            Box::new(|p: &Path| read_jsonl_texts(p, &TextFields::default()).map(|t| t.len())),
            Err("line 3".into()),
        ),
        (
            "jsonl-deep.jsonl",
            Box::new(|p: &Path| read_jsonl_texts(p, &TextFields::default()).map(|t| t.len())),
            Err("line 1".into()),
        ),
        (
            "jsonl-float-label.jsonl",
            Box::new(|p: &Path| read_jsonl_texts(p, &TextFields::default()).map(|t| t.len())),
            Err("line 2".into()),
        ),
        (
            "jsonl-length-mismatch.jsonl",
            Box::new(|p: &Path| read_jsonl_tagged(p, &TaggedFields::default()).map(|t| t.len())),
            Err("line 1".into()),
        ),
        (
            "pairs-three-columns.tsv",
            Box::new(|p: &Path| read_pairs_tsv(p).map(|t| t.len())),
            Err("line 2".into()),
        ),
        (
            "labels-duplicate.json",
            Box::new(|p: &Path| LabelVocab::load(p).map(|v| v.len())),
            Err("line 4".into()),
        ),
        (
            "labels-escaped-duplicate.json",
            Box::new(|p: &Path| LabelVocab::load(p).map(|v| v.len())),
            Err("line 1".into()),
        ),
        (
            "labels-empty.json",
            Box::new(|p: &Path| LabelVocab::load(p).map(|v| v.len())),
            Err("line 1".into()),
        ),
        (
            "labels-not-a-list.json",
            Box::new(|p: &Path| LabelVocab::load(p).map(|v| v.len())),
            Err("line 1".into()),
        ),
    ];
    assert_every_file_has_a_case(&corpus(&["readers"]), cases.iter().map(|c| c.0));
    for (name, read, expected) in cases {
        let path = corpus(&["readers", name]);
        let size = std::fs::metadata(&path).unwrap().len() as usize;
        // bzip2 allocates its block buffers (about 3.6 MiB for `BZh9`) whatever the input.
        let (result, peak) = peak_of(|| read(&path));
        assert!(peak < bound(size), "{name}: {peak} bytes");
        assert_eq!(error_line(result), expected, "{name}");
    }
}
