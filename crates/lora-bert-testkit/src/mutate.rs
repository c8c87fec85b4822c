//! Generators of damaged inputs: hostile JSON values, field and byte edits, and safetensors
//! files with their header, length prefix and bytes edited.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Values that break a field: wrong types, zero, negative, huge, not finite in f32, empty.
pub fn hostile_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!(true)),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1)),
        Just(json!(3)),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(1u64 << 40)),
        Just(json!(1_000_000_000_000u64)),
        Just(json!(1_000_000_000_000_000_000u64)),
        Just(json!(1e308)),
        Just(json!(-1e308)),
        Just(json!(0.5)),
        Just(json!(-0.0)),
        Just(json!(5e-324)),
        Just(json!("")),
        Just(json!("384")),
        Just(json!("gelu")),
        Just(json!("relative_key")),
        Just(json!("\u{0}é\u{202e}")),
        Just(json!([])),
        Just(json!([1, 2])),
        Just(json!({})),
        Just(json!({"a": {"b": [null]}})),
        any::<i64>().prop_map(Value::from),
        any::<u32>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ]
}

/// An edit of a JSON object: a field set to a value, removed, or added under a new name.
#[derive(Debug, Clone)]
pub enum FieldEdit {
    Set(usize, Value),
    Remove(usize),
    Add(String, Value),
}

/// Up to a few [`FieldEdit`]s.
pub fn field_edits() -> impl Strategy<Value = Vec<FieldEdit>> {
    let edit = prop_oneof![
        4 => (any::<usize>(), hostile_value()).prop_map(|(k, v)| FieldEdit::Set(k, v)),
        1 => any::<usize>().prop_map(FieldEdit::Remove),
        1 => ("[a-z_]{1,12}", hostile_value()).prop_map(|(k, v)| FieldEdit::Add(k, v)),
    ];
    prop::collection::vec(edit, 0..4)
}

/// Applies `edits` to `object`; an index picks a field modulo the number of fields.
pub fn apply_field_edits(object: &mut Map<String, Value>, edits: &[FieldEdit]) {
    for edit in edits {
        let keys: Vec<String> = object.keys().cloned().collect();
        match edit {
            FieldEdit::Set(k, v) if !keys.is_empty() => {
                object.insert(keys[k % keys.len()].clone(), v.clone());
            }
            FieldEdit::Remove(k) if !keys.is_empty() => {
                object.remove(&keys[k % keys.len()]);
            }
            FieldEdit::Add(k, v) => {
                object.insert(k.clone(), v.clone());
            }
            _ => {}
        }
    }
}

/// An edit of a file's bytes after the structured edits: cut it short, overwrite a byte
/// (possibly making it invalid UTF-8), or append garbage.
#[derive(Debug, Clone)]
pub enum ByteEdit {
    Truncate(usize),
    Xor(usize, u8),
    Append(Vec<u8>),
}

/// Up to a few [`ByteEdit`]s.
pub fn byte_edits() -> impl Strategy<Value = Vec<ByteEdit>> {
    let edit = prop_oneof![
        any::<usize>().prop_map(ByteEdit::Truncate),
        (any::<usize>(), 1..=255u8).prop_map(|(i, x)| ByteEdit::Xor(i, x)),
        prop::collection::vec(any::<u8>(), 1..16).prop_map(ByteEdit::Append),
    ];
    // Mostly none: most cases should reach the checks behind the parser.
    prop_oneof![
        3 => Just(Vec::new()),
        1 => prop::collection::vec(edit, 1..3),
    ]
}

/// Applies `edits` to `bytes`; an index is taken modulo the length.
pub fn apply_byte_edits(bytes: &mut Vec<u8>, edits: &[ByteEdit]) {
    for edit in edits {
        match edit {
            ByteEdit::Truncate(at) => bytes.truncate(at % (bytes.len() + 1)),
            ByteEdit::Xor(i, x) if !bytes.is_empty() => {
                let i = i % bytes.len();
                bytes[i] ^= x;
            }
            ByteEdit::Append(extra) => bytes.extend_from_slice(extra),
            _ => {}
        }
    }
}

/// An edit of a safetensors header: a tensor's dtype, shape or offsets replaced, the tensor
/// dropped, renamed or listed twice, or the metadata replaced.
#[derive(Debug, Clone)]
pub enum HeaderEdit {
    Dtype(usize, Value),
    Shape(usize, Value),
    Offsets(usize, Value),
    Drop(usize),
    Rename(usize, String),
    Twice(usize, String),
    Metadata(Value),
}

/// A tensor dimension: small, the sizes of the tiny models, huge or any.
pub fn dim() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(2),
        Just(4),
        Just(8),
        Just(12),
        Just(1 << 20),
        Just(1 << 32),
        Just(u64::MAX),
        any::<u64>(),
    ]
}

/// Up to a few [`HeaderEdit`]s.
pub fn header_edits() -> impl Strategy<Value = Vec<HeaderEdit>> {
    let dtype = prop_oneof![
        Just(json!("F32")),
        Just(json!("F16")),
        Just(json!("BF16")),
        Just(json!("F64")),
        Just(json!("I8")),
        Just(json!("I32")),
        Just(json!("U8")),
        Just(json!("BOOL")),
        Just(json!("F8_E4M3")),
        Just(json!("F4")),
        Just(json!("XX")),
        Just(json!(7)),
    ];
    let shape = prop_oneof![
        3 => prop::collection::vec(dim(), 0..4).prop_map(|d| json!(d)),
        1 => hostile_value(),
    ];
    let offsets = prop_oneof![
        3 => (dim(), dim()).prop_map(|(a, b)| json!([a, b])),
        1 => hostile_value(),
    ];
    let name = prop_oneof![
        Just("bert.".to_owned()),
        Just("".to_owned()),
        Just("embeddings.position_ids".to_owned()),
        "[a-z.]{0,12}",
    ];
    let edit = prop_oneof![
        (any::<usize>(), dtype).prop_map(|(k, v)| HeaderEdit::Dtype(k, v)),
        (any::<usize>(), shape).prop_map(|(k, v)| HeaderEdit::Shape(k, v)),
        (any::<usize>(), offsets).prop_map(|(k, v)| HeaderEdit::Offsets(k, v)),
        any::<usize>().prop_map(HeaderEdit::Drop),
        (any::<usize>(), name.clone()).prop_map(|(k, n)| HeaderEdit::Rename(k, n)),
        (any::<usize>(), name).prop_map(|(k, n)| HeaderEdit::Twice(k, n)),
        hostile_value().prop_map(HeaderEdit::Metadata),
    ];
    prop::collection::vec(edit, 0..3)
}

/// The length prefix: kept, set, or moved by a few bytes.
#[derive(Debug, Clone)]
pub enum Prefix {
    Keep,
    Set(u64),
    Shift(i64),
}

/// Mostly [`Prefix::Keep`].
pub fn prefix() -> impl Strategy<Value = Prefix> {
    prop_oneof![
        6 => Just(Prefix::Keep),
        1 => prop_oneof![Just(0u64), Just(u64::MAX), Just(100_000_001), any::<u64>()]
            .prop_map(Prefix::Set),
        1 => (-9i64..9).prop_map(Prefix::Shift),
    ]
}

/// `from` with `to` put in front, after PEFT's `base_model.model.` when it starts with it.
pub fn renamed(from: &str, to: &str) -> String {
    match from.strip_prefix("base_model.model.") {
        Some(rest) => format!("base_model.model.{to}{rest}"),
        None => format!("{to}{from}"),
    }
}

/// `bytes` (a valid safetensors file) with its header, prefix and bytes edited.
pub fn mutate_safetensors(
    bytes: &[u8],
    header_edits: &[HeaderEdit],
    prefix: &Prefix,
    edits: &[ByteEdit],
) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: Map<String, Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    for edit in header_edits {
        let names: Vec<String> = header
            .keys()
            .filter(|k| *k != "__metadata__")
            .cloned()
            .collect();
        let pick = |k: usize| names[k % names.len()].clone();
        if names.is_empty() {
            break;
        }
        match edit {
            HeaderEdit::Dtype(k, v) => header[&pick(*k)]["dtype"] = v.clone(),
            HeaderEdit::Shape(k, v) => header[&pick(*k)]["shape"] = v.clone(),
            HeaderEdit::Offsets(k, v) => header[&pick(*k)]["data_offsets"] = v.clone(),
            HeaderEdit::Drop(k) => {
                header.remove(&pick(*k));
            }
            HeaderEdit::Rename(k, to) => {
                let from = pick(*k);
                let info = header.remove(&from).unwrap();
                header.insert(renamed(&from, to), info);
            }
            HeaderEdit::Twice(k, to) => {
                let from = pick(*k);
                let info = header[&from].clone();
                header.insert(renamed(&from, to), info);
            }
            HeaderEdit::Metadata(v) => {
                header.insert("__metadata__".into(), v.clone());
            }
        }
    }
    let header = serde_json::to_vec(&header).unwrap();
    let len = match prefix {
        Prefix::Keep => header.len() as u64,
        Prefix::Set(n) => *n,
        Prefix::Shift(d) => (header.len() as u64).wrapping_add_signed(*d),
    };
    let mut out = len.to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    apply_byte_edits(&mut out, edits);
    out
}
