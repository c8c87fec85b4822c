//! The readers on small inline and temporary-file inputs, good and bad.

use std::io::Write;
use std::path::{Path, PathBuf};

use lora_bert_data::read::{
    Column, ConllFormat, ConllReader, Decoding, DelimitedFormat, DelimitedReader, JsonlReader,
    NltkReader, PairFields, PairTsvReader, Separator, TaggedFields, TextFields, detect_scheme,
    normalise_scheme, read_conll, read_conll_documents, read_delimited, read_jsonl_tagged,
    read_nltk, read_nltk_paragraphs, read_pairs_jsonl, read_pairs_tsv, read_text,
};
use lora_bert_data::{DataError, LabeledText, Scheme, TaggedSentence, TextPair};

fn sentence(pairs: &[(&str, &str)]) -> TaggedSentence {
    TaggedSentence {
        tokens: pairs.iter().map(|p| p.0.to_owned()).collect(),
        tags: pairs.iter().map(|p| p.1.to_owned()).collect(),
    }
}

/// Asserts a `Parse` error at `line` of `origin` whose message contains `needle`.
#[track_caller]
fn assert_parse(err: DataError, origin: &Path, line: usize, needle: &str) {
    match err {
        DataError::Parse {
            path,
            line: l,
            message,
        } => {
            assert_eq!(path, origin);
            assert_eq!(l, line, "{message}");
            assert!(message.contains(needle), "`{message}` lacks `{needle}`");
        }
        other => panic!("expected a Parse error, got {other:?}"),
    }
}

fn write_temp(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn conll(text: &str, format: ConllFormat) -> Result<Vec<TaggedSentence>, DataError> {
    ConllReader::new(text.as_bytes(), "mem.conll", format).collect()
}

#[test]
fn conll_default_format_breaks_on_blank_whitespace_and_docstart_lines() {
    let text = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n   \n\
                German JJ B-NP B-MISC\n-DOCSTART- -X- -X- O\nPeter NNP B-NP B-PER\n";
    let got = conll(text, ConllFormat::default()).unwrap();
    assert_eq!(
        got,
        [
            sentence(&[("EU", "B-ORG"), ("rejects", "O")]),
            sentence(&[("German", "B-MISC")]),
            sentence(&[("Peter", "B-PER")]),
        ]
    );
}

#[test]
fn conll_tab_format_keeps_spaces_and_ends_tweets_on_tab_only_lines() {
    // WNUT-16 layout: a tweet ends with a line holding only a tab; CRLF line ends too.
    let text = "@paul\tO\nNew York\tB-geo-loc\n\t\r\nhi\tO\n\t\n";
    let got = conll(text, ConllFormat::tab()).unwrap();
    assert_eq!(
        got,
        [
            sentence(&[("@paul", "O"), ("New York", "B-geo-loc")]),
            sentence(&[("hi", "O")]),
        ]
    );
}

#[test]
fn conll_explicit_columns_and_docstart_off() {
    let format = ConllFormat {
        token_column: 1,
        tag_column: Some(0),
        separator: Separator::Whitespace,
        docstart: false,
        columns: None,
        entity_tags: false,
    };
    let got = conll("B-PER Ann x\nO sings y\n", format).unwrap();
    assert_eq!(got, [sentence(&[("Ann", "B-PER"), ("sings", "O")])]);
    // With `docstart` off the line is an ordinary token line.
    let format = ConllFormat {
        docstart: false,
        ..ConllFormat::default()
    };
    let got = conll("-DOCSTART- O\n", format).unwrap();
    assert_eq!(got, [sentence(&[("-DOCSTART-", "O")])]);
}

#[test]
fn conll_too_few_columns_names_the_line() {
    let err = conll("EU B-ORG\nrejects O\n\nGerman\n", ConllFormat::default()).unwrap_err();
    assert_parse(
        err,
        Path::new("mem.conll"),
        4,
        "at least 2 columns, found 1",
    );
    let format = ConllFormat {
        tag_column: Some(3),
        ..ConllFormat::default()
    };
    let err = conll("a b c d\na b c\n", format).unwrap_err();
    assert_parse(
        err,
        Path::new("mem.conll"),
        2,
        "at least 4 columns, found 3",
    );
}

#[test]
fn conll_invalid_utf8_is_a_parse_error_unless_lossy() {
    let bytes = b"ok O\n\nbad\xff O\n";
    let err = ConllReader::new(&bytes[..], "mem", ConllFormat::default())
        .collect::<Result<Vec<_>, _>>()
        .unwrap_err();
    assert_parse(err, Path::new("mem"), 3, "invalid UTF-8");
    let got = ConllReader::new(&bytes[..], "mem", ConllFormat::default())
        .decoding(Decoding::Lossy)
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(got[1], sentence(&[("bad\u{fffd}", "O")]));
}

#[test]
fn conll_file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(&dir, "x.conll", b"a O\nb\n");
    assert_parse(
        read_conll(&path, &ConllFormat::default()).unwrap_err(),
        &path,
        2,
        "columns",
    );
    let missing = dir.path().join("missing.conll");
    match read_conll(&missing, &ConllFormat::default()).unwrap_err() {
        DataError::Io { path, .. } => assert_eq!(path, missing),
        other => panic!("expected Io, got {other:?}"),
    }
}

/// A CoNLL-2003-shaped file: two documents (the first with two sentences), the
/// `-DOCSTART-` lines followed by a blank line, runs of spaces, a CRLF line end and trailing
/// blank lines.
const CONLL2003_FIXTURE: &str = "-DOCSTART- -X- -X- O\n\
\n\
EU NNP B-NP B-ORG\n\
rejects VBZ B-VP O\n\
German JJ B-NP B-MISC\n\
\n\
Peter NNP B-NP B-PER\n\
Blackburn   NNP I-NP I-PER\r\n\
\n\
-DOCSTART- -X- -X- O\n\
\n\
BRUSSELS NNP B-NP B-LOC\n\
1996-08-22 CD I-NP O\n\
\n\
\n";

#[test]
fn conll2003_fixture_keeps_documents_and_all_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(&dir, "train.txt", CONLL2003_FIXTURE.as_bytes());
    let documents = read_conll_documents(&path, &ConllFormat::conll2003()).unwrap();
    assert_eq!(documents.len(), 2);
    assert_eq!((documents[0].line, documents[1].line), (1, 10));
    let lines: Vec<Vec<usize>> = documents
        .iter()
        .map(|d| d.sentences.iter().map(|s| s.line).collect())
        .collect();
    assert_eq!(lines, [vec![3, 7], vec![12]]);
    let eu = &documents[0].sentences[0];
    assert_eq!(eu.tokens, ["EU", "rejects", "German"]);
    assert_eq!(eu.tags, ["B-ORG", "O", "B-MISC"]);
    assert_eq!(eu.extra, [["NNP", "VBZ", "JJ"], ["B-NP", "B-VP", "B-NP"]]);
    let peter = &documents[0].sentences[1];
    assert_eq!(
        peter.tagged(),
        sentence(&[("Peter", "B-PER"), ("Blackburn", "I-PER")])
    );
    assert_eq!(peter.extra, [["NNP", "NNP"], ["B-NP", "I-NP"]]);
    let brussels = &documents[1].sentences[0];
    assert_eq!(brussels.extra[0], ["NNP", "CD"]);
    assert_eq!(brussels.tags, ["B-LOC", "O"]);

    // The sentence-level readers give the same sentences, without the document boundaries.
    let flat: Vec<TaggedSentence> = documents
        .iter()
        .flat_map(|d| d.sentences.iter().map(|s| s.tagged()))
        .collect();
    assert_eq!(read_conll(&path, &ConllFormat::conll2003()).unwrap(), flat);
    let sentences = ConllReader::new(
        CONLL2003_FIXTURE.as_bytes(),
        "mem.conll",
        ConllFormat::conll2003(),
    )
    .sentences()
    .collect::<Result<Vec<_>, _>>()
    .unwrap();
    assert_eq!(sentences.len(), 3);
    assert_eq!(sentences[2], *brussels);
    // The default format reads the last column as the tag and keeps no other column.
    let plain = ConllReader::new(
        CONLL2003_FIXTURE.as_bytes(),
        "mem.conll",
        ConllFormat::default(),
    )
    .sentences()
    .collect::<Result<Vec<_>, _>>()
    .unwrap();
    assert!(plain.iter().all(|s| s.extra.is_empty()));
    assert_eq!(plain[0].tags, eu.tags);

    // Already IOB2: detected as such and left as it is.
    let mut sentences = sentences;
    let before = sentences.clone();
    assert_eq!(
        normalise_scheme(&mut sentences, &path, Scheme::Iob2).unwrap(),
        Scheme::Iob2
    );
    assert_eq!(sentences, before);
    // A file without `-DOCSTART-` is one document that starts at its first word.
    let documents = ConllReader::new(
        &b"\n\nEU NNP B-NP B-ORG\n\nPeter NNP B-NP B-PER\n"[..],
        "mem.conll",
        ConllFormat::conll2003(),
    )
    .documents()
    .collect::<Result<Vec<_>, _>>()
    .unwrap();
    assert_eq!(documents.len(), 1);
    assert_eq!((documents[0].line, documents[0].sentences.len()), (3, 2));
}

#[test]
fn conll_wrong_column_count_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    for (text, line, needle) in [
        (
            "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ O\n",
            4,
            "expected 4 columns, found 3",
        ),
        (
            "EU NNP B-NP B-ORG\n\nrejects VBZ B-VP O extra\n",
            3,
            "expected 4 columns, found 5",
        ),
        // A `-DOCSTART-` is not a word line whatever its columns; a word is.
        ("-DOCSTART-\n\nEU\n", 3, "expected 4 columns, found 1"),
    ] {
        let path = write_temp(&dir, "bad.txt", text.as_bytes());
        let err = read_conll_documents(&path, &ConllFormat::conll2003()).unwrap_err();
        assert_parse(err, &path, line, needle);
        let err = read_conll(&path, &ConllFormat::conll2003()).unwrap_err();
        assert_parse(err, &path, line, needle);
    }
    // Without `columns` any number from two up is accepted, as before.
    let got = conll("a NN O\nb O\n", ConllFormat::default()).unwrap();
    assert_eq!(got, [sentence(&[("a", "O"), ("b", "O")])]);
}

#[test]
fn conll_unknown_entity_tag_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["PER", "B_PER", "X-PER", "B-", "o", "b-PER", "O-PER"] {
        let text = format!("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\n\nPeter NNP B-NP {bad}\n");
        let path = write_temp(&dir, "bad.txt", text.as_bytes());
        match read_conll_documents(&path, &ConllFormat::conll2003()).unwrap_err() {
            DataError::UnknownTag { path: p, line, tag } => {
                assert_eq!((p.as_path(), line, tag.as_str()), (path.as_path(), 5, bad));
            }
            other => panic!("{bad}: expected UnknownTag, got {other:?}"),
        }
        let message = read_conll(&path, &ConllFormat::conll2003())
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(&format!("{}:5: unknown tag `{bad}`", path.display())),
            "{message}"
        );
    }
    // Every scheme's prefixes are known tags; without `entity_tags` any tag is (POS tags).
    let good = "a x x S-PER\nb x x E-LOC\nc x x L-ORG\nd x x U-MISC\ne x x I-geo-loc\n";
    assert_eq!(conll(good, ConllFormat::conll2003()).unwrap()[0].len(), 5);
    assert_eq!(
        conll("a NNP\n", ConllFormat::default()).unwrap(),
        [sentence(&[("a", "NNP")])]
    );
}

/// The file at `path` read as CoNLL-2003 columns and checked for one scheme.
fn detect_in(path: &Path) -> Result<Scheme, DataError> {
    let documents = read_conll_documents(path, &ConllFormat::conll2003())?;
    detect_scheme(documents.iter().flat_map(|d| &d.sentences), path)
}

#[track_caller]
fn assert_mixed(err: DataError, origin: &Path, line: usize, needles: &[&str]) {
    match err {
        DataError::MixedSchemes {
            path,
            line: l,
            message,
        } => {
            assert_eq!(path, origin);
            assert_eq!(l, line, "{message}");
            for needle in needles {
                assert!(message.contains(needle), "`{message}` lacks `{needle}`");
            }
        }
        other => panic!("expected MixedSchemes, got {other:?}"),
    }
}

#[test]
fn conll_mixed_tag_schemes_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    // IOB1 (an entity starts with I-) in the first document, IOB2 (one starts with B- after
    // O) in the second.
    let mixed = "-DOCSTART- -X- -X- O\n\n\
                 EU NNP I-NP I-ORG\nrejects VBZ I-VP O\n\n\
                 -DOCSTART- -X- -X- O\n\n\
                 the DT B-NP O\nPeter NNP I-NP B-PER\n";
    let path = write_temp(&dir, "mixed.txt", mixed.as_bytes());
    let err = detect_in(&path).unwrap_err();
    assert_mixed(
        err,
        &path,
        9,
        &[
            "not IOB1 (line 9, `B-PER`",
            "is IOB2, which line 3 above is not",
        ],
    );
    // normalise_scheme refuses it the same way and leaves the tags alone.
    let mut documents = read_conll_documents(&path, &ConllFormat::conll2003()).unwrap();
    let before = documents.clone();
    let err = normalise_scheme(
        documents.iter_mut().flat_map(|d| &mut d.sentences),
        &path,
        Scheme::Iob2,
    )
    .unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "{}:9: tags do not follow one scheme",
            path.display()
        )),
        "{err}"
    );
    assert_eq!(documents, before);

    // IOB2 then IOBES (S- is no IOB2 prefix) within one document.
    let mixed = "a x x B-PER\nb x x O\n\nc x x S-LOC\n";
    let path = write_temp(&dir, "mixed2.txt", mixed.as_bytes());
    assert_mixed(
        detect_in(&path).unwrap_err(),
        &path,
        4,
        &["not IOB2 (line 4"],
    );

    // A sentence that fits no scheme at all.
    let broken = "a x x O\n\nb x x B-PER\nc x x I-LOC\n";
    let path = write_temp(&dir, "broken.txt", broken.as_bytes());
    assert_mixed(
        detect_in(&path).unwrap_err(),
        &path,
        4,
        &["the sentence fits no scheme: not IOB2 (line 4, `I-LOC`"],
    );
}

#[test]
fn conll_iob1_is_detected_and_normalised_to_iob2() {
    // The layout of the 2003 release: I- starts entities, B- only splits two adjacent ones.
    let iob1 = "-DOCSTART- -X- -X- O\n\n\
                EU NNP I-NP I-ORG\nrejects VBZ I-VP O\nGerman JJ I-NP I-MISC\n\n\
                all DT I-NP O\n\n\
                Peter NNP I-NP I-PER\nBlackburn NNP I-NP I-PER\nPaul NNP B-NP B-PER\n";
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(&dir, "iob1.txt", iob1.as_bytes());
    assert_eq!(detect_in(&path).unwrap(), Scheme::Iob1);
    let mut documents = read_conll_documents(&path, &ConllFormat::conll2003()).unwrap();
    let found = normalise_scheme(
        documents.iter_mut().flat_map(|d| &mut d.sentences),
        &path,
        Scheme::Iob2,
    )
    .unwrap();
    assert_eq!(found, Scheme::Iob1);
    let tags: Vec<Vec<String>> = documents[0]
        .sentences
        .iter()
        .map(|s| s.tags.clone())
        .collect();
    assert_eq!(
        tags,
        [
            vec!["B-ORG", "O", "B-MISC"],
            vec!["O"],
            vec!["B-PER", "I-PER", "B-PER"]
        ]
    );
    // Only the tag column changes.
    assert_eq!(documents[0].sentences[2].extra[1], ["I-NP", "I-NP", "B-NP"]);
    // All O fits every scheme: the first of the preference, IOB2.
    let path = write_temp(&dir, "o.txt", b"a x x O\n\nb x x O\n");
    assert_eq!(detect_in(&path).unwrap(), Scheme::Iob2);
}

#[test]
fn conll_empty_document_names_its_docstart_line() {
    let dir = tempfile::tempdir().unwrap();
    for (text, line, next) in [
        // Two -DOCSTART- lines in a row, with and without blank lines between.
        (
            "-DOCSTART- -X- -X- O\n\n-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\n",
            1,
            Some(3),
        ),
        (
            "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\n\n-DOCSTART- -X- -X- O\n-DOCSTART- -X- -X- O\n\na x x O\n",
            5,
            Some(6),
        ),
        // A -DOCSTART- at the end of the file.
        (
            "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\n\n-DOCSTART- -X- -X- O\n\n\n",
            5,
            None,
        ),
        ("-DOCSTART- -X- -X- O\n", 1, None),
    ] {
        let path = write_temp(&dir, "empty.txt", text.as_bytes());
        let err = read_conll_documents(&path, &ConllFormat::conll2003()).unwrap_err();
        let message = err.to_string();
        match err {
            DataError::EmptyDocument {
                path: p,
                line: l,
                next: n,
            } => {
                assert_eq!(
                    (p.as_path(), l, n),
                    (path.as_path(), line, next),
                    "{text:?}"
                );
            }
            other => panic!("expected EmptyDocument, got {other:?}"),
        }
        assert!(
            message.starts_with(&format!("{}:{line}: empty document", path.display())),
            "{message}"
        );
    }
    // An empty file holds no document, and is no error.
    let path = write_temp(&dir, "nothing.txt", b"\n\n");
    assert!(
        read_conll_documents(&path, &ConllFormat::conll2003())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn nltk_tag_is_after_the_last_slash() {
    let text = "\n\n\tThe/at 1/2/cd fraction/nn ./.\nIt/pps ran/vbd\n\n\n\tNew/jj-tl ./.\n";
    let got: Vec<_> = NltkReader::new(text.as_bytes(), "mem")
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        got,
        [
            sentence(&[("The", "at"), ("1/2", "cd"), ("fraction", "nn"), (".", ".")]),
            sentence(&[("It", "pps"), ("ran", "vbd")]),
            sentence(&[("New", "jj-tl"), (".", ".")]),
        ]
    );
    let paragraphs: Vec<_> = NltkReader::new(text.as_bytes(), "mem")
        .paragraphs()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(paragraphs.len(), 2);
    assert_eq!(paragraphs[0], got[..2]);
    assert_eq!(paragraphs[1], got[2..]);
}

#[test]
fn nltk_bad_tokens_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(&dir, "cz01", b"The/at dog/nn\n\nA/at cat\n");
    assert_parse(
        read_nltk(&path).unwrap_err(),
        &path,
        3,
        "`cat` has no `/tag`",
    );
    let path = write_temp(&dir, "cz02", b"\n\nok/uh\nx/ /nn\n");
    assert_parse(
        read_nltk_paragraphs(&path).unwrap_err(),
        &path,
        4,
        "`x/` has an empty word or tag",
    );
    let err = NltkReader::new(&b"a/b\n/nn\n"[..], "mem")
        .collect::<Result<Vec<_>, _>>()
        .unwrap_err();
    assert_parse(err, Path::new("mem"), 2, "empty word or tag");
}

#[test]
fn jsonl_tagged_and_texts() {
    let text = r#"{"tokens": ["New", "York"], "tags": ["B-LOC", "I-LOC"]}

{"words": ["hi"], "ner": ["O"], "id": 3}
"#;
    let got: Vec<_> = JsonlReader::new(
        text.lines()
            .take(2)
            .collect::<Vec<_>>()
            .join("\n")
            .as_bytes(),
        "m",
        TaggedFields::default(),
    )
    .collect::<Result<_, _>>()
    .unwrap();
    assert_eq!(got, [sentence(&[("New", "B-LOC"), ("York", "I-LOC")])]);
    let fields = TaggedFields {
        tokens: "words".into(),
        tags: "ner".into(),
    };
    let got: Vec<_> = JsonlReader::new(text.lines().nth(2).unwrap().as_bytes(), "m", fields)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got, [sentence(&[("hi", "O")])]);

    let text = "{\"text\": \"good\", \"label\": \"pos\"}\n{\"text\": \"bad\", \"label\": 0}\n\
                {\"body\": \"meh\", \"y\": 12}\n";
    let got: Vec<LabeledText> = JsonlReader::new(text.as_bytes(), "m", TextFields::default())
        .take(2)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got[0].label, "pos");
    assert_eq!(got[1].label, "0");
    let fields = TextFields {
        text: "body".into(),
        label: "y".into(),
    };
    let got: Vec<LabeledText> = JsonlReader::new(text.as_bytes(), "m", fields)
        .skip(2)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        got,
        [LabeledText {
            text: "meh".into(),
            label: "12".into()
        }]
    );
}

#[test]
fn jsonl_bad_input_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(
        &dir,
        "t.jsonl",
        b"{\"tokens\": [\"a\"], \"tags\": [\"O\"]}\n\n{\"tokens\": [\"a\", \"b\"], \"tags\": [\"O\"]}\n",
    );
    assert_parse(
        read_jsonl_tagged(&path, &TaggedFields::default()).unwrap_err(),
        &path,
        3,
        "2 tokens but 1 tags",
    );
    let path = write_temp(
        &dir,
        "b.jsonl",
        b"{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\",\n",
    );
    assert_parse(
        read_jsonl_texts(&path, &TextFields::default()).unwrap_err(),
        &path,
        2,
        "invalid JSON",
    );
    for (line, needle) in [
        ("{\"text\": \"a\", \"label\": 1.5}", "string or an integer"),
        ("{\"text\": \"a\"}", "missing field `label`"),
        ("{\"text\": 3, \"label\": \"x\"}", "`text` is not a string"),
        ("[1, 2]", "expected a JSON object"),
    ] {
        let err = JsonlReader::new(line.as_bytes(), "m", TextFields::default())
            .collect::<Result<Vec<_>, _>>()
            .unwrap_err();
        assert_parse(err, Path::new("m"), 1, needle);
    }
    let err = JsonlReader::new(
        &b"{\"tokens\": [\"a\", 1], \"tags\": [\"O\", \"O\"]}"[..],
        "m",
        TaggedFields::default(),
    )
    .collect::<Result<Vec<_>, _>>()
    .unwrap_err();
    assert_parse(err, Path::new("m"), 1, "non-string item `1`");
}

use lora_bert_data::read::read_jsonl_texts;

#[test]
fn delimited_by_name_and_by_index_with_quotes() {
    let csv = "category,text,movie\nfresh,\"Warm, \"\"witty\"\"\nand long\",m1\n\nrotten,Dull,m2\n";
    let format = DelimitedFormat::default().columns("text", "category");
    let got: Vec<_> = DelimitedReader::new(csv.as_bytes(), "rt.csv", &format)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        got,
        [
            LabeledText {
                text: "Warm, \"witty\"\nand long".into(),
                label: "fresh".into()
            },
            LabeledText {
                text: "Dull".into(),
                label: "rotten".into()
            },
        ]
    );
    let tsv = "spam\tWin \"big\" now\nham\tLunch?\n";
    let format = DelimitedFormat {
        has_header: false,
        ..DelimitedFormat::tsv()
    }
    .columns(1, 0);
    let got: Vec<_> = DelimitedReader::new(tsv.as_bytes(), "m.tsv", &format)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got[0].text, "Win \"big\" now");
    assert_eq!(got[1].label, "ham");
}

#[test]
fn delimited_bad_input_names_the_line() {
    let format = DelimitedFormat::default().columns("text", "category");
    let err = DelimitedReader::new(&b"cat,text\na,b\n"[..], "h.csv", &format)
        .err()
        .unwrap();
    assert_parse(
        err,
        Path::new("h.csv"),
        1,
        "no column `category` in the header (cat, text)",
    );

    // A quoted field spanning lines 2-3 moves the short record to line 4.
    let csv = "category,text\nfresh,\"a\nb\"\nrotten\n";
    let err = DelimitedReader::new(csv.as_bytes(), "m.csv", &format)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap_err();
    assert_parse(
        err,
        Path::new("m.csv"),
        4,
        "expected at least 2 fields, found 1",
    );

    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(&dir, "u.csv", b"category,text\nfresh,ok\nrotten,caf\xe9\n");
    assert_parse(
        read_delimited(&path, &format).unwrap_err(),
        &path,
        3,
        "invalid UTF-8",
    );
    let latin1 = DelimitedFormat {
        decoding: Decoding::Latin1Fallback,
        ..format.clone()
    };
    assert_eq!(read_delimited(&path, &latin1).unwrap()[1].text, "café");

    let no_header = DelimitedFormat {
        has_header: false,
        ..format
    };
    assert!(matches!(
        DelimitedReader::new(&b"a,b\n"[..], "m", &no_header)
            .err()
            .unwrap(),
        DataError::InvalidArgument { what: "column", .. }
    ));
    let by_index = DelimitedFormat::default().columns(Column::Index(5), Column::Index(0));
    let err = DelimitedReader::new(&b"text,label\na,b\n"[..], "m", &by_index)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap_err();
    assert_parse(
        err,
        Path::new("m"),
        2,
        "expected at least 6 fields, found 2",
    );
}

#[test]
fn pairs_tsv_and_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(&dir, "p.tsv", b"subject\tbody text\n\nq\ta\n");
    assert_eq!(
        read_pairs_tsv(&path).unwrap(),
        [
            TextPair {
                anchor: "subject".into(),
                positive: "body text".into()
            },
            TextPair {
                anchor: "q".into(),
                positive: "a".into()
            },
        ]
    );
    let path = write_temp(
        &dir,
        "p.jsonl",
        b"{\"anchor\": \"q\", \"positive\": \"a\"}\n",
    );
    assert_eq!(
        read_pairs_jsonl(&path, &PairFields::default()).unwrap()[0].positive,
        "a"
    );
    let path = write_temp(&dir, "bad.jsonl", b"\n{\"anchor\": \"q\"}\n");
    assert_parse(
        read_pairs_jsonl(&path, &PairFields::default()).unwrap_err(),
        &path,
        2,
        "missing field `positive`",
    );
    for (text, line, needle) in [
        ("a\tb\n\na\tb\tc\n", 3, "2 tab-separated columns, found 3"),
        ("only one\n", 1, "found 1"),
        ("a\tb\n \tb\n", 2, "empty anchor"),
    ] {
        let err = PairTsvReader::new(text.as_bytes(), "m")
            .collect::<Result<Vec<_>, _>>()
            .unwrap_err();
        assert_parse(err, Path::new("m"), line, needle);
    }
}

const CONLL: &str = "EU B-ORG\nrejects O\n\nPeter B-PER\n";

fn bz2(bytes: &[u8]) -> Vec<u8> {
    let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[test]
fn compressed_round_trips_detected_by_magic_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let plain = read_conll(
        &write_temp(&dir, "a.conll", CONLL.as_bytes()),
        &ConllFormat::default(),
    )
    .unwrap();
    assert_eq!(plain.len(), 2);
    // Named .txt on purpose: detection is by content, not by extension.
    for (name, bytes) in [
        ("b.bz2", bz2(CONLL.as_bytes())),
        ("g.txt", gz(CONLL.as_bytes())),
    ] {
        let path = write_temp(&dir, name, &bytes);
        assert_eq!(
            read_conll(&path, &ConllFormat::default()).unwrap(),
            plain,
            "{name}"
        );
    }
    // Two concatenated streams are read to the end.
    let (half1, half2) = CONLL.split_at(CONLL.find("Peter").unwrap());
    let multi = [bz2(half1.as_bytes()), bz2(half2.as_bytes())].concat();
    let path = write_temp(&dir, "multi.bz2", &multi);
    assert_eq!(read_conll(&path, &ConllFormat::default()).unwrap(), plain);
    let multi = [gz(half1.as_bytes()), gz(half2.as_bytes())].concat();
    let path = write_temp(&dir, "multi.gz", &multi);
    assert_eq!(read_text(&path, Decoding::Strict).unwrap(), CONLL);
}

#[test]
fn truncated_compressed_input_is_a_parse_error_at_the_line_reading_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let format = ConllFormat::default();
    // The four lines decode, then the missing end of the stream is met reading line 5.
    let whole = bz2(CONLL.as_bytes());
    let path = write_temp(&dir, "end.bz2", &whole[..whole.len() - 10]);
    assert_parse(
        read_conll(&path, &format).unwrap_err(),
        &path,
        5,
        "corrupt or truncated",
    );
    let whole = gz(CONLL.as_bytes());
    let path = write_temp(&dir, "end.gz", &whole[..whole.len() - 4]);
    assert_parse(
        read_conll(&path, &format).unwrap_err(),
        &path,
        5,
        "corrupt or truncated",
    );

    // bzip2 decodes whole blocks: cut inside the only block, not even line 1 comes out.
    let big: String = (0..5000).map(|i| format!("w{i} O\n\n")).collect();
    let whole = bz2(big.as_bytes());
    let path = write_temp(&dir, "half.bz2", &whole[..whole.len() / 2]);
    assert_parse(
        read_conll(&path, &format).unwrap_err(),
        &path,
        1,
        "corrupt or truncated",
    );
    // gzip streams: the error comes somewhere inside the 10,000 lines.
    let whole = gz(big.as_bytes());
    let path = write_temp(&dir, "half.gz", &whole[..whole.len() / 2]);
    match read_conll(&path, &format).unwrap_err() {
        DataError::Parse { line, .. } => assert!((2..10_000).contains(&line), "{line}"),
        other => panic!("expected Parse, got {other:?}"),
    }
}

#[test]
fn read_text_reports_the_line_of_invalid_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(&dir, "m.txt", b"Subject: hi\n\nPrice \xa3 15\n");
    assert_parse(
        read_text(&path, Decoding::Strict).unwrap_err(),
        &path,
        3,
        "invalid UTF-8",
    );
    assert_eq!(
        read_text(&path, Decoding::Lossy).unwrap(),
        "Subject: hi\n\nPrice \u{fffd} 15\n"
    );
    assert_eq!(
        read_text(&path, Decoding::Latin1Fallback).unwrap(),
        "Subject: hi\n\nPrice £ 15\n"
    );
}
