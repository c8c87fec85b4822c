//! Agreement with Python seqeval 1.2.2 and scikit-learn 1.9.1 on the fixtures made by
//! `scripts/metrics_fixtures.py` (random and adversarial tag sequences and label lists).

use lora_bert_metrics::chunks::chunks;
use lora_bert_metrics::scheme::strict_entities;
use lora_bert_metrics::{ClassificationReport, MetricsError, Mode, NerReport, Prf, Scheme};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn tags(v: &Value) -> Vec<Vec<String>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s.as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_owned())
                .collect()
        })
        .collect()
}

/// Equal to 1e-12, NaN matching JSON null.
fn close(ours: f64, theirs: &Value, what: &str) {
    match theirs.as_f64() {
        None => assert!(ours.is_nan(), "{what}: ours {ours}, Python NaN"),
        Some(t) => assert!((ours - t).abs() <= 1e-12, "{what}: ours {ours}, Python {t}"),
    }
}

fn same_prf(ours: &Prf, theirs: &Value, what: &str) {
    close(
        ours.precision,
        &theirs["precision"],
        &format!("{what} precision"),
    );
    close(ours.recall, &theirs["recall"], &format!("{what} recall"));
    close(ours.f1, &theirs["f1-score"], &format!("{what} f1"));
    assert_eq!(
        ours.support as f64,
        theirs["support"].as_f64().unwrap(),
        "{what} support"
    );
}

#[test]
fn ner_reports_equal_seqeval() {
    let cases = fixture("seqeval.json");
    let mut checked = (0, 0);
    for case in cases["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let mode = match case["mode"].as_str().unwrap() {
            "default" => Mode::Default,
            _ => Mode::Strict(case["scheme"].as_str().unwrap().parse::<Scheme>().unwrap()),
        };
        let (gold, pred) = (tags(&case["y_true"]), tags(&case["y_pred"]));
        let ours = NerReport::new(&gold, &pred, mode);
        if let Some(error) = case["error"].as_str() {
            let err = ours.expect_err(name);
            let expected = if error.contains("inconsistent") {
                matches!(err, MetricsError::LengthMismatch { .. })
            } else if error.contains("without list of list") {
                err == MetricsError::Empty
            } else {
                matches!(err, MetricsError::InvalidTag { .. })
            };
            assert!(expected, "{name}: Python said {error:?}, we said {err}");
            checked.1 += 1;
            continue;
        }
        let ours = ours.unwrap_or_else(|e| panic!("{name}: {e}"));
        let report = case["report"].as_object().unwrap();
        let types: Vec<&String> = report.keys().filter(|k| !k.ends_with(" avg")).collect();
        assert_eq!(
            ours.per_type.keys().collect::<Vec<_>>(),
            types,
            "{name}: types"
        );
        for t in types {
            same_prf(&ours.per_type[t], &report[t], &format!("{name} {t}"));
        }
        same_prf(
            &ours.averages.micro_avg,
            &report["micro avg"],
            &format!("{name} micro"),
        );
        same_prf(
            &ours.averages.macro_avg,
            &report["macro avg"],
            &format!("{name} macro"),
        );
        same_prf(
            &ours.averages.weighted_avg,
            &report["weighted avg"],
            &format!("{name} weighted"),
        );
        close(
            ours.accuracy,
            &case["accuracy"],
            &format!("{name} accuracy"),
        );
        checked.0 += 1;
    }
    assert!(checked.0 > 150 && checked.1 > 10, "{checked:?}");
}

#[test]
fn entity_spans_equal_seqeval() {
    let cases = fixture("seqeval.json");
    for case in cases["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        for side in ["true", "pred"] {
            let expected = &case[format!("entities_{side}").as_str()];
            if expected.is_null() {
                continue;
            }
            let sentences = tags(&case[format!("y_{side}").as_str()]);
            let ours: Vec<Value> = match case["mode"].as_str().unwrap() {
                "default" => chunks(&sentences)
                    .into_iter()
                    // get_entities gives the last token, inclusive.
                    .map(|c| serde_json::json!([c.kind, c.start, c.end - 1]))
                    .collect(),
                _ => {
                    let scheme: Scheme = case["scheme"].as_str().unwrap().parse().unwrap();
                    sentences
                        .iter()
                        .enumerate()
                        .flat_map(|(i, s)| {
                            strict_entities(s, scheme, i)
                                .unwrap()
                                .into_iter()
                                .map(move |e| serde_json::json!([i, e.kind, e.start, e.end]))
                        })
                        .collect()
                }
            };
            assert_eq!(&Value::from(ours), expected, "{name}: {side} entities");
        }
    }
}

#[test]
fn classification_reports_equal_scikit_learn() {
    let cases = fixture("classification.json");
    for case in cases["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let strings = |k: &str| -> Vec<String> {
            case[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        let r = ClassificationReport::new(&strings("y_true"), &strings("y_pred")).unwrap();
        assert_eq!(r.labels, strings("labels"), "{name}");
        close(r.accuracy, &case["accuracy"], &format!("{name} accuracy"));
        for label in &r.labels {
            same_prf(
                &r.per_class[label],
                &case["per_class"][label],
                &format!("{name} {label}"),
            );
        }
        same_prf(
            &r.averages.macro_avg,
            &case["macro avg"],
            &format!("{name} macro"),
        );
        same_prf(
            &r.averages.weighted_avg,
            &case["weighted avg"],
            &format!("{name} weighted"),
        );
        let confusion: Vec<Vec<usize>> =
            serde_json::from_value(case["confusion_matrix"].clone()).unwrap();
        assert_eq!(r.confusion, confusion, "{name}");
    }
}
