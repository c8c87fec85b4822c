//! Invariants of the scores, over random tag sequences and labels.

use lora_bert_metrics::bootstrap::Counts;
use lora_bert_metrics::{ClassificationReport, Mode, NerReport, Scheme};
use proptest::prelude::*;

fn tag() -> impl Strategy<Value = String> {
    (0usize..5, 0usize..3).prop_map(|(p, t)| match p {
        0 => "O".to_owned(),
        _ => format!(
            "{}-{}",
            ["B", "I", "B", "I"][p - 1],
            ["PER", "LOC", "ORG"][t]
        ),
    })
}

fn sentences() -> impl Strategy<Value = Vec<Vec<String>>> {
    proptest::collection::vec(proptest::collection::vec(tag(), 0..8), 1..6)
}

proptest! {
    #[test]
    fn gold_against_itself_scores_one(gold in sentences()) {
        for mode in [Mode::Default, Mode::Strict(Scheme::Iob2), Mode::Strict(Scheme::Iob1)] {
            let r = NerReport::new(&gold, &gold, mode).unwrap();
            for (t, prf) in &r.per_type {
                prop_assert_eq!((prf.precision, prf.recall, prf.f1), (1.0, 1.0, 1.0), "{}", t);
            }
            if !r.per_type.is_empty() {
                prop_assert_eq!(r.averages.micro_avg.f1, 1.0);
            }
            let tokens: usize = gold.iter().map(Vec::len).sum();
            if tokens > 0 {
                prop_assert_eq!(r.accuracy, 1.0);
            }
        }
    }

    /// The per-sentence counts the bootstrap resamples add up to the corpus report.
    #[test]
    fn sentence_counts_sum_to_the_report(
        pairs in proptest::collection::vec(
            proptest::collection::vec((tag(), tag()), 0..8), 1..6),
    ) {
        let gold: Vec<Vec<String>> = pairs.iter().map(|s| s.iter().map(|p| p.0.clone()).collect()).collect();
        let pred: Vec<Vec<String>> = pairs.iter().map(|s| s.iter().map(|p| p.1.clone()).collect()).collect();
        for mode in [Mode::Default, Mode::Strict(Scheme::Iob2), Mode::Strict(Scheme::Iob1)] {
            let report = NerReport::new(&gold, &pred, mode).unwrap();
            let counts = NerReport::sentence_counts(&gold, &pred, mode).unwrap();
            prop_assert_eq!(counts.len(), gold.len());
            let entities = Counts::sum(counts.iter().map(|c| &c.entities));
            prop_assert_eq!(entities.correct as usize, report.correct);
            prop_assert_eq!(entities.predicted as usize, report.found);
            prop_assert_eq!(entities.gold as usize, report.averages.micro_avg.support);
            prop_assert!((entities.score() - report.averages.micro_avg.f1).abs() < 1e-12);
            let tokens = Counts::sum(counts.iter().map(|c| &c.tokens));
            if tokens.gold > 0 {
                prop_assert!((tokens.score() - report.accuracy).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn sentence_order_does_not_matter(
        pairs in proptest::collection::vec(
            proptest::collection::vec((tag(), tag()), 0..8), 1..6),
        rotate in 0usize..6,
    ) {
        let gold: Vec<Vec<String>> = pairs.iter().map(|s| s.iter().map(|p| p.0.clone()).collect()).collect();
        let pred: Vec<Vec<String>> = pairs.iter().map(|s| s.iter().map(|p| p.1.clone()).collect()).collect();
        let k = rotate % gold.len();
        let (mut g2, mut p2) = (gold.clone(), pred.clone());
        g2.rotate_left(k);
        p2.rotate_left(k);
        for mode in [Mode::Default, Mode::Strict(Scheme::Iob2)] {
            let a = NerReport::new(&gold, &pred, mode).unwrap();
            let b = NerReport::new(&g2, &p2, mode).unwrap();
            prop_assert_eq!(a.per_type.len(), b.per_type.len());
            for (t, x) in &a.per_type {
                let y = &b.per_type[t];
                prop_assert_eq!((x.precision, x.recall, x.f1, x.support), (y.precision, y.recall, y.f1, y.support));
            }
        }
    }

    #[test]
    fn classification_scores_are_bounded_and_consistent(
        pairs in proptest::collection::vec((0u8..4, 0u8..4), 1..60),
    ) {
        let gold: Vec<String> = pairs.iter().map(|p| format!("c{}", p.0)).collect();
        let pred: Vec<String> = pairs.iter().map(|p| format!("c{}", p.1)).collect();
        let r = ClassificationReport::new(&gold, &pred).unwrap();
        let total: usize = r.confusion.iter().flatten().sum();
        prop_assert_eq!(total, gold.len());
        // Micro-averaged F1 of single-label classification is the accuracy.
        prop_assert!((r.averages.micro_avg.f1 - r.accuracy).abs() < 1e-12);
        for prf in r.per_class.values() {
            for v in [prf.precision, prf.recall, prf.f1] {
                prop_assert!((0.0..=1.0).contains(&v));
            }
        }
        let same = ClassificationReport::new(&gold, &gold).unwrap();
        prop_assert_eq!(same.accuracy, 1.0);
    }
}
