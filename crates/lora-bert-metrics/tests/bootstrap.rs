//! The paired bootstrap against hand computations on cases small enough to enumerate, its
//! coverage on simulated data, and its refusals.

use lora_bert_metrics::MetricsError;
use lora_bert_metrics::bootstrap::{
    BootstrapOptions, Counts, Run, TaskPair, paired_bootstrap, quantile,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn units(right: &[bool]) -> Vec<Counts> {
    right.iter().map(|&r| Counts::unit(r)).collect()
}

fn options(confidence: f64) -> BootstrapOptions {
    BootstrapOptions {
        resamples: 20_000,
        confidence,
        seed: 7,
    }
}

/// The bootstrap distribution of every case below, worked by hand, is
/// `P(Δ* = 0) = 1/4, P(Δ* = 1/2) = 1/2, P(Δ* = 1) = 1/4` (two equally likely draws of which one
/// is "A right, B wrong"). Its 0.2 and 0.8 quantiles are 0 and 1, its 0.3 and 0.7 quantiles
/// both 1/2.
fn assert_quarter_half_quarter(tasks: &[TaskPair<'_>], estimate: f64) {
    let wide = paired_bootstrap(tasks, &options(0.6)).unwrap();
    assert_eq!((wide.low, wide.high), (0.0, 1.0), "{wide:?}");
    assert!((wide.estimate - estimate).abs() < 1e-12, "{wide:?}");
    let narrow = paired_bootstrap(tasks, &options(0.4)).unwrap();
    assert_eq!((narrow.low, narrow.high), (0.5, 0.5), "{narrow:?}");
}

#[test]
fn items_are_resampled_in_pairs() {
    // Two texts: A gets the first right, B neither. Drawing the items (0,0), (0,1), (1,0),
    // (1,1) gives Δ = 1, 1/2, 1/2, 0.
    let a = [Run::new(0, 0, units(&[true, false]))];
    let b = [Run::new(0, 0, units(&[false, false]))];
    assert_quarter_half_quarter(&[TaskPair::new(&a, &b)], 0.5);
}

#[test]
fn seeds_are_resampled_in_pairs() {
    // One text, two seeds: A is right under seed 0 only, B under neither. Δ per seed is 1 and
    // 0, and drawing the seeds (0,0), (0,1), (1,0), (1,1) gives Δ = 1, 1/2, 1/2, 0.
    let a = [
        Run::new(0, 0, units(&[true])),
        Run::new(0, 1, units(&[false])),
    ];
    let b = [
        Run::new(0, 0, units(&[false])),
        Run::new(0, 1, units(&[false])),
    ];
    assert_quarter_half_quarter(&[TaskPair::new(&a, &b)], 0.5);
}

#[test]
fn groups_are_resampled_per_arm() {
    // Two pre-finetuning seeds (groups) for A, one for B (no pre-finetuning), one seed, one
    // text: A's backbone of group 3 gets it right, of group 9 wrong.
    let a = [
        Run::new(3, 0, units(&[true])),
        Run::new(9, 0, units(&[false])),
    ];
    let b = [Run::new(0, 0, units(&[false]))];
    assert_quarter_half_quarter(&[TaskPair::new(&a, &b)], 0.5);
}

#[test]
fn a_family_is_the_mean_of_its_tasks() {
    // Task 1: A is right on both of 2 items, B on none (Δ = 1 under every draw). Task 2: the
    // arms agree (Δ = 0). The family Δ is 1/2 under every draw.
    let a1 = [Run::new(0, 0, units(&[true, true]))];
    let b1 = [Run::new(0, 0, units(&[false, false]))];
    let a2 = [Run::new(0, 0, units(&[true, false, true]))];
    let b2 = a2.clone();
    let tasks = [TaskPair::new(&a1, &b1), TaskPair::new(&a2, &b2)];
    let d = paired_bootstrap(&tasks, &options(0.95)).unwrap();
    assert_eq!((d.estimate, d.low, d.high), (0.5, 0.5, 0.5));
    // The same arm against itself: exactly 0.
    let same = paired_bootstrap(&[TaskPair::new(&a2, &b2)], &options(0.95)).unwrap();
    assert_eq!((same.estimate, same.low, same.high), (0.0, 0.0, 0.0));
}

#[test]
fn entity_counts_score_as_micro_f1() {
    // Sentence 1: 2 gold, 3 predicted, 2 right; sentence 2: 1 gold, 0 predicted.
    // P = 2/3, R = 2/3, F1 = 2/3 = 2·2 / (3 + 3).
    let items = [Counts::entities(2, 3, 2), Counts::entities(0, 0, 1)];
    let f1 = Counts::sum(&items).score();
    let (p, r) = (2.0 / 3.0, 2.0 / 3.0);
    assert!((f1 - 2.0 * p * r / (p + r)).abs() < 1e-15);
    // Nothing predicted and nothing gold: 0, as seqeval.
    assert_eq!(Counts::entities(0, 0, 0).score(), 0.0);
    // Token accuracy of a sentence: 3 of 4.
    assert_eq!(Counts::tokens(3, 4).score(), 0.75);
    assert_eq!(
        Run::new(0, 0, units(&[true, false, true, true])).score(),
        0.75
    );
}

#[test]
fn quantiles_are_numpys_linear_ones() {
    // numpy.quantile([1, 2, 3, 4], q) for q = 0, 0.25, 0.5, 0.9, 1.
    let s = [1.0, 2.0, 3.0, 4.0];
    for (q, want) in [(0.0, 1.0), (0.25, 1.75), (0.5, 2.5), (0.9, 3.7), (1.0, 4.0)] {
        assert!((quantile(&s, q) - want).abs() < 1e-12, "q {q}");
    }
    assert!(quantile(&[], 0.5).is_nan());
}

/// On simulated tasks whose true difference is known, the 95% interval covers it about 95% of
/// the time. The arms agree on most items (an item's difficulty is shared 80% of the time),
/// as two models of one task do: a bootstrap that forgot a source of variance would cover far
/// less, one that did not pair the items far more.
#[test]
fn intervals_cover_the_true_difference() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (trials, n) = (300, 150);
    for (pa, pb) in [(0.7, 0.7), (0.8, 0.7)] {
        let mut covered = 0;
        for trial in 0..trials {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for _ in 0..n {
                let u: f64 = rng.random();
                let v = if rng.random_bool(0.8) {
                    u
                } else {
                    rng.random()
                };
                a.push(Counts::unit(u < pa));
                b.push(Counts::unit(v < pb));
            }
            let a = [Run::new(0, 0, a)];
            let b = [Run::new(0, 0, b)];
            let opts = BootstrapOptions {
                resamples: 400,
                confidence: 0.95,
                seed: trial,
            };
            let d = paired_bootstrap(&[TaskPair::new(&a, &b)], &opts).unwrap();
            covered += usize::from(d.low <= pa - pb && pa - pb <= d.high);
        }
        let rate = covered as f64 / trials as f64;
        assert!(
            (0.90..=0.985).contains(&rate),
            "{pa} vs {pb}: coverage {rate}"
        );
    }
}

#[test]
fn a_clear_gain_excludes_zero_and_equal_arms_are_equivalent() {
    let a = [Run::new(
        0,
        0,
        units(
            &[true; 90]
                .iter()
                .chain(&[false; 10])
                .copied()
                .collect::<Vec<_>>(),
        ),
    )];
    let b = [Run::new(
        0,
        0,
        units(
            &[true; 50]
                .iter()
                .chain(&[false; 50])
                .copied()
                .collect::<Vec<_>>(),
        ),
    )];
    let d = paired_bootstrap(&[TaskPair::new(&a, &b)], &BootstrapOptions::default()).unwrap();
    assert!(d.above_zero() && !d.below_zero(), "{d:?}");
    assert!(!d.within(0.01));
    let same = paired_bootstrap(&[TaskPair::new(&a, &a)], &BootstrapOptions::default()).unwrap();
    assert!(same.within(0.01) && !same.above_zero());
    // Reproducible: the same options give the same interval.
    assert_eq!(
        d,
        paired_bootstrap(&[TaskPair::new(&a, &b)], &BootstrapOptions::default()).unwrap()
    );
}

#[test]
fn runs_that_cannot_be_paired_are_refused() {
    let run = |group, seed, n| Run::new(group, seed, units(&vec![true; n]));
    let opts = BootstrapOptions::default();
    let check = |a: &[Run], b: &[Run], needle: &str| {
        let e = paired_bootstrap(&[TaskPair::new(a, b)], &opts).unwrap_err();
        assert!(
            matches!(&e, MetricsError::Unpaired { message } if message.contains(needle)),
            "{e}"
        );
    };
    // Other seeds in B.
    check(&[run(0, 0, 3)], &[run(0, 1, 3)], "seeds");
    // Group 1 of A lacks seed 1.
    check(
        &[run(0, 0, 3), run(0, 1, 3), run(1, 0, 3)],
        &[run(0, 0, 3), run(0, 1, 3)],
        "no run of group 1, seed 1",
    );
    // A seed twice in one group.
    check(&[run(0, 0, 3), run(0, 0, 3)], &[run(0, 0, 3)], "two runs");
    // Different test sets.
    check(&[run(0, 0, 3)], &[run(0, 0, 4)], "items");
    // Tasks with other seeds.
    let (a, b) = ([run(0, 0, 2)], [run(0, 5, 2)]);
    let e = paired_bootstrap(&[TaskPair::new(&a, &a), TaskPair::new(&b, &b)], &opts).unwrap_err();
    assert!(matches!(e, MetricsError::Unpaired { .. }), "{e}");
    // Nothing to resample.
    assert_eq!(paired_bootstrap(&[], &opts), Err(MetricsError::Empty));
    assert_eq!(
        paired_bootstrap(&[TaskPair::new(&[], &a)], &opts),
        Err(MetricsError::Empty)
    );
    let none = [Run::new(0, 0, Vec::new())];
    assert_eq!(
        paired_bootstrap(&[TaskPair::new(&none, &none)], &opts),
        Err(MetricsError::Empty)
    );
    for confidence in [0.0, 1.0, f64::NAN] {
        let bad = BootstrapOptions { confidence, ..opts };
        assert!(matches!(
            paired_bootstrap(&[TaskPair::new(&a, &a)], &bad),
            Err(MetricsError::InvalidArgument { .. })
        ));
    }
}
