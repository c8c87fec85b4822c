//! Splits, stratified subsets and grouped splits.

use std::collections::{HashMap, HashSet};

use lora_bert_data::DataError;
use lora_bert_data::split::{part_sizes, split, split_groups, split_indices, stratified_subset};
use proptest::prelude::*;

fn fractions() -> impl Strategy<Value = [f64; 3]> {
    (0.0f64..1.0, 0.0f64..1.0, 0.0f64..1.0)
        .prop_filter("not all zero", |(a, b, c)| a + b + c > 1e-3)
        .prop_map(|(a, b, c)| {
            let s = a + b + c;
            [a / s, b / s, c / s]
        })
}

fn check_partition(parts: [&[usize]; 3], n: usize) -> Result<(), TestCaseError> {
    let mut all: Vec<usize> = parts.concat();
    for p in parts {
        prop_assert!(p.windows(2).all(|w| w[0] < w[1]), "part not sorted");
    }
    all.sort_unstable();
    prop_assert_eq!(all, (0..n).collect::<Vec<_>>());
    Ok(())
}

proptest! {
    #[test]
    fn splits_are_disjoint_covering_and_sized(n in 1usize..500, f in fractions(), seed in any::<u64>()) {
        let s = split_indices(n, f, seed).unwrap();
        check_partition([&s.train, &s.dev, &s.test], n)?;
        for (len, frac) in [(s.train.len(), f[0]), (s.dev.len(), f[1]), (s.test.len(), f[2])] {
            prop_assert!((len as f64 - frac * n as f64).abs() < 1.0 + 1e-9);
        }
        prop_assert_eq!(split_indices(n, f, seed).unwrap(), s);
    }

    #[test]
    fn grouped_split_never_crosses_groups(
        groups in prop::collection::vec(0u32..40, 1..300),
        f in fractions(),
        seed in any::<u64>(),
    ) {
        let s = split_groups(&groups, f, seed).unwrap();
        check_partition([&s.train, &s.dev, &s.test], groups.len())?;
        let mut part_of: HashMap<u32, usize> = HashMap::new();
        for (p, part) in [&s.train, &s.dev, &s.test].into_iter().enumerate() {
            for &i in part {
                let first = *part_of.entry(groups[i]).or_insert(p);
                prop_assert_eq!(first, p, "group {} in two parts", groups[i]);
            }
        }
        // Fractions apply to groups.
        let distinct = groups.iter().collect::<HashSet<_>>().len();
        let mut per_part = [HashSet::new(), HashSet::new(), HashSet::new()];
        for (p, part) in [&s.train, &s.dev, &s.test].into_iter().enumerate() {
            per_part[p].extend(part.iter().map(|&i| groups[i]));
        }
        let got = per_part.map(|g| g.len());
        prop_assert_eq!(got, part_sizes(distinct, f).unwrap());
    }

    #[test]
    fn stratified_subset_keeps_proportions(
        labels in prop::collection::vec(0u8..6, 1..400),
        fraction in 0.01f64..=1.0,
        seed in any::<u64>(),
    ) {
        let subset = stratified_subset(&labels, fraction, seed).unwrap();
        prop_assert!(subset.windows(2).all(|w| w[0] < w[1]));
        let mut total: HashMap<u8, usize> = HashMap::new();
        let mut kept: HashMap<u8, usize> = HashMap::new();
        for &l in &labels {
            *total.entry(l).or_default() += 1;
        }
        for &i in &subset {
            *kept.entry(labels[i]).or_default() += 1;
        }
        for (label, &count) in &total {
            let k = kept.get(label).copied().unwrap_or(0);
            prop_assert!(k >= 1, "label {} dropped", label);
            prop_assert!(k <= count);
            prop_assert!((k as f64 - fraction * count as f64).abs() <= 1.0, "label {}: {} of {}", label, k, count);
        }
        prop_assert_eq!(stratified_subset(&labels, fraction, seed).unwrap(), subset);
    }
}

#[test]
fn sizes_by_hand_and_seed_changes_membership() {
    let a = split_indices(100, [0.8, 0.1, 0.1], 1).unwrap();
    assert_eq!((a.train.len(), a.dev.len(), a.test.len()), (80, 10, 10));
    let b = split_indices(100, [0.8, 0.1, 0.1], 2).unwrap();
    assert_ne!(a.test, b.test);
    // 3.5, 1.75, 1.75: floors 3, 1, 1; the two left over go to the .75 remainders.
    assert_eq!(part_sizes(7, [0.5, 0.25, 0.25]).unwrap(), [3, 2, 2]);
    assert_eq!(part_sizes(2, [0.5, 0.25, 0.25]).unwrap(), [1, 1, 0]);
}

#[test]
fn split_items_follows_the_indices() {
    let items: Vec<String> = (0..20).map(|i| format!("item{i}")).collect();
    let idx = split_indices(20, [0.6, 0.2, 0.2], 5).unwrap();
    let s = split(&items, [0.6, 0.2, 0.2], 5).unwrap();
    assert_eq!(
        s.dev,
        idx.dev
            .iter()
            .map(|&i| items[i].clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(s.train.len(), 12);
}

#[test]
fn stratified_subset_by_hand() {
    // 10 "a", 3 "b", 1 "c" at 20%: round(2.0) = 2, round(0.6) = 1, round(0.2) = 0 -> 1.
    let labels: Vec<&str> = [vec!["a"; 10], vec!["b"; 3], vec!["c"]].concat();
    let s = stratified_subset(&labels, 0.2, 0).unwrap();
    assert_eq!(s.len(), 4);
    assert!(s.contains(&13));
    assert_eq!(s.iter().filter(|&&i| labels[i] == "b").count(), 1);
    // 25% of 6: 1.5 rounds half away from zero to 2.
    assert_eq!(stratified_subset(&["x"; 6], 0.25, 0).unwrap().len(), 2);
    assert_eq!(
        stratified_subset(&labels, 1.0, 0).unwrap(),
        (0..14).collect::<Vec<_>>()
    );
}

#[test]
fn bad_arguments_are_refused() {
    for f in [
        [0.5, 0.5, 0.5],
        [1.2, -0.1, -0.1],
        [f64::NAN, 0.5, 0.5],
        [0.5, 0.2, 0.2],
    ] {
        assert!(
            matches!(
                split_indices(10, f, 0),
                Err(DataError::InvalidArgument {
                    what: "fractions",
                    ..
                })
            ),
            "{f:?} accepted"
        );
    }
    assert!(matches!(
        split_indices(0, [0.8, 0.1, 0.1], 0),
        Err(DataError::Empty(_))
    ));
    assert!(matches!(
        split_groups::<u32>(&[], [0.8, 0.1, 0.1], 0),
        Err(DataError::Empty(_))
    ));
    for f in [0.0, -0.5, 1.5, f64::NAN] {
        assert!(matches!(
            stratified_subset(&[1, 2], f, 0),
            Err(DataError::InvalidArgument {
                what: "fraction",
                ..
            })
        ));
    }
    assert!(matches!(
        stratified_subset::<u8>(&[], 0.5, 0),
        Err(DataError::Empty(_))
    ));
}
