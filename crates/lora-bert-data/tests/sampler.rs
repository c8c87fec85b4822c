//! Multi-task sampling: task frequencies, determinism, and per-task plans cycling through epochs.

use lora_bert_data::DataError;
use lora_bert_data::batch::{BatchConfig, BatchPlan};
use lora_bert_data::sampler::{MultiTaskSampler, Strategy};
use proptest::prelude::*;
use proptest::strategy::Strategy as _;

fn counts(sampler: &MultiTaskSampler, draws: usize) -> Vec<usize> {
    let mut c = vec![0; sampler.num_tasks()];
    for t in sampler.tasks().take(draws) {
        c[t] += 1;
    }
    c
}

fn strategy() -> impl proptest::strategy::Strategy<Value = Strategy> {
    prop_oneof![
        Just(Strategy::Proportional),
        (0.25f64..8.0).prop_map(Strategy::Temperature),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Observed frequencies match `probabilities()` within 5 binomial standard deviations.
    #[test]
    fn observed_mix_matches_probabilities(
        sizes in prop::collection::vec(1usize..20_000, 1..7),
        strategy in strategy(),
        seed in any::<u64>(),
    ) {
        let sampler = MultiTaskSampler::new(&sizes, strategy, seed).unwrap();
        let p = sampler.probabilities();
        prop_assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        // Expected probabilities worked out independently of the sampler.
        let exponent = match strategy {
            Strategy::Temperature(t) => 1.0 / t,
            _ => 1.0,
        };
        let w: Vec<f64> = sizes.iter().map(|&n| (n as f64).powf(exponent)).collect();
        let total: f64 = w.iter().sum();
        for (pi, wi) in p.iter().zip(&w) {
            prop_assert!((pi - wi / total).abs() < 1e-9, "{} vs {}", pi, wi / total);
        }
        let n = 20_000usize;
        for (task, &c) in counts(&sampler, n).iter().enumerate() {
            let expected = n as f64 * p[task];
            let sigma = (n as f64 * p[task] * (1.0 - p[task])).sqrt();
            prop_assert!(
                (c as f64 - expected).abs() <= 5.0 * sigma + 2.0,
                "task {} drawn {} times, expected {} ± {}", task, c, expected, 5.0 * sigma
            );
        }
    }

    #[test]
    fn round_robin_counts_are_exact(sizes in prop::collection::vec(1usize..1000, 1..7), rounds in 1usize..50) {
        let sampler = MultiTaskSampler::new(&sizes, Strategy::RoundRobin, 3).unwrap();
        let k = sizes.len();
        let seq: Vec<usize> = sampler.tasks().take(k * rounds).collect();
        prop_assert!(seq.iter().enumerate().all(|(i, &t)| t == i % k));
        prop_assert!(counts(&sampler, k * rounds).iter().all(|&c| c == rounds));
        prop_assert!(sampler.probabilities().iter().all(|&p| (p - 1.0 / k as f64).abs() < 1e-12));
    }
}

#[test]
fn same_seed_same_sequence() {
    let a = MultiTaskSampler::new(&[100, 20, 5], Strategy::Temperature(2.0), 9).unwrap();
    let b = MultiTaskSampler::new(&[100, 20, 5], Strategy::Temperature(2.0), 9).unwrap();
    let c = MultiTaskSampler::new(&[100, 20, 5], Strategy::Temperature(2.0), 10).unwrap();
    let seq: Vec<usize> = a.tasks().take(500).collect();
    assert_eq!(seq, b.tasks().take(500).collect::<Vec<_>>());
    assert_eq!(seq, a.tasks().take(500).collect::<Vec<_>>());
    assert_ne!(seq, c.tasks().take(500).collect::<Vec<_>>());
}

#[test]
fn temperature_limits() {
    let sizes = [1000, 100, 10];
    let one = MultiTaskSampler::new(&sizes, Strategy::Temperature(1.0), 0).unwrap();
    let prop = MultiTaskSampler::new(&sizes, Strategy::Proportional, 0).unwrap();
    for (a, b) in one.probabilities().iter().zip(prop.probabilities()) {
        assert!((a - b).abs() < 1e-12);
    }
    assert!((prop.probabilities()[0] - 1000.0 / 1110.0).abs() < 1e-12);
    let hot = MultiTaskSampler::new(&sizes, Strategy::Temperature(1e9), 0).unwrap();
    assert!(
        hot.probabilities()
            .iter()
            .all(|p| (p - 1.0 / 3.0).abs() < 1e-6)
    );
    // Very small T: all mass on the largest task, no NaN from underflow.
    let cold = MultiTaskSampler::new(&sizes, Strategy::Temperature(1e-3), 0).unwrap();
    assert_eq!(cold.probabilities(), [1.0, 0.0, 0.0]);
    assert!(cold.tasks().take(1000).all(|t| t == 0));
}

#[test]
fn invalid_arguments_are_refused() {
    assert!(matches!(
        MultiTaskSampler::new(&[], Strategy::Proportional, 0),
        Err(DataError::Empty(_))
    ));
    match MultiTaskSampler::new(&[5, 0, 3], Strategy::RoundRobin, 0) {
        Err(DataError::Empty(what)) => assert_eq!(what, "task 1"),
        other => panic!("expected Empty(task 1), got {other:?}"),
    }
    for t in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(
            matches!(
                MultiTaskSampler::new(&[5, 3], Strategy::Temperature(t), 0),
                Err(DataError::InvalidArgument {
                    what: "temperature",
                    ..
                })
            ),
            "T = {t} accepted"
        );
    }
    let sampler = MultiTaskSampler::new(&[5, 3], Strategy::Proportional, 0).unwrap();
    let plan = BatchPlan::new(vec![1; 5], BatchConfig::new(2)).unwrap();
    assert!(matches!(
        sampler.batches(vec![plan.clone()]),
        Err(DataError::LengthMismatch {
            expected: 2,
            found: 1,
            ..
        })
    ));
    let no_batch = BatchPlan::new(vec![1; 3], BatchConfig::new(4).drop_last(true)).unwrap();
    assert!(matches!(
        sampler.batches(vec![plan, no_batch]),
        Err(DataError::InvalidArgument { .. })
    ));
}

#[test]
fn each_task_walks_through_the_epochs_of_its_plan() {
    let plans = vec![
        BatchPlan::new(
            (0..50).map(|i| i % 13 + 1).collect(),
            BatchConfig::new(8).shuffled(1).bucketed(2),
        )
        .unwrap(),
        BatchPlan::new(vec![4; 7], BatchConfig::new(3).shuffled(2)).unwrap(),
        BatchPlan::new(vec![2; 20], BatchConfig::new(5).shuffled(3).drop_last(true)).unwrap(),
    ];
    let sampler = MultiTaskSampler::for_plans(&plans, Strategy::Temperature(3.0), 4).unwrap();
    assert_eq!(sampler.sizes(), [50, 7, 20]);
    let mut stream = sampler.batches(plans.clone()).unwrap();
    assert_eq!(stream.steps_per_epoch(), 7 + 3 + 4);
    let steps: Vec<_> = stream.by_ref().take(400).collect();
    // The task sequence is the sampler's.
    let tasks: Vec<usize> = steps.iter().map(|s| s.task).collect();
    assert_eq!(tasks, sampler.tasks().take(400).collect::<Vec<_>>());
    for (task, plan) in plans.iter().enumerate() {
        let mine: Vec<_> = steps.iter().filter(|s| s.task == task).collect();
        assert!(
            mine.len() > plan.num_batches(),
            "task {task} did not wrap around"
        );
        let expected: Vec<(u64, Vec<usize>)> = (0..)
            .flat_map(|e| plan.epoch(e).into_iter().map(move |b| (e, b)))
            .take(mine.len())
            .collect();
        let got: Vec<(u64, Vec<usize>)> =
            mine.iter().map(|s| (s.epoch, s.indices.clone())).collect();
        assert_eq!(got, expected, "task {task}");
    }
}
