//! Fixed-seed train/dev/test splits, stratified subsets and grouped splits.
//!
//! Everything here is deterministic for a seed ([`ChaCha8Rng`]) and returns sorted indices, so
//! a split keeps the dataset's own order inside each part (shuffling is the batch plan's job).
//!
//! ```
//! use lora_bert_data::split::{split_indices, stratified_subset};
//!
//! let s = split_indices(10, [0.8, 0.1, 0.1], 42)?;
//! assert_eq!((s.train.len(), s.dev.len(), s.test.len()), (8, 1, 1));
//!
//! let labels = ["pos", "pos", "neg", "pos", "neg", "pos", "pos", "pos", "pos", "pos"];
//! let subset = stratified_subset(&labels, 0.2, 42)?;
//! // pos: round(0.2 * 8) = 2, neg: round(0.2 * 2) = 0, raised to 1.
//! assert_eq!(subset.len(), 3);
//! # Ok::<(), lora_bert_data::DataError>(())
//! ```

use std::collections::HashMap;
use std::hash::Hash;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::{DataError, Result};

/// The three parts of a split: indices (or items) of train, dev and test.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Splits<T = usize> {
    /// Training part.
    pub train: Vec<T>,
    /// Development (validation) part.
    pub dev: Vec<T>,
    /// Test part.
    pub test: Vec<T>,
}

impl<T> Splits<T> {
    /// Number of entries in all three parts.
    pub fn len(&self) -> usize {
        self.train.len() + self.dev.len() + self.test.len()
    }

    /// `true` when all three parts are empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `[train, dev, test]` sizes.
    pub fn sizes(&self) -> [usize; 3] {
        [self.train.len(), self.dev.len(), self.test.len()]
    }

    /// All entries: train, then dev, then test.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.train.iter().chain(&self.dev).chain(&self.test)
    }

    /// Applies `f` to every entry of the three parts.
    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> Splits<U> {
        Splits {
            train: self.train.into_iter().map(&mut f).collect(),
            dev: self.dev.into_iter().map(&mut f).collect(),
            test: self.test.into_iter().map(&mut f).collect(),
        }
    }
}

/// Splits `0..n` into train, dev and test with `fractions = [train, dev, test]`.
///
/// The indices are shuffled with `seed`; train takes the first `sizes[0]`, dev the next
/// `sizes[1]`, test the rest, and each part is sorted. The sizes are the largest-remainder
/// rounding of `n * fractions` (see [`part_sizes`]): they sum to `n` and each is within 1 of
/// its exact share.
///
/// # Errors
///
/// [`DataError::Empty`] for `n = 0`; [`DataError::InvalidArgument`] for fractions that are
/// negative, not finite, or do not sum to 1 (within `1e-6`).
pub fn split_indices(n: usize, fractions: [f64; 3], seed: u64) -> Result<Splits> {
    if n == 0 {
        return Err(DataError::Empty("dataset to split".into()));
    }
    let sizes = part_sizes(n, fractions)?;
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    Ok(cut(order, sizes))
}

/// Splits `items` like [`split_indices`], cloning them into the parts (in dataset order).
///
/// # Errors
///
/// As [`split_indices`].
pub fn split<T: Clone>(items: &[T], fractions: [f64; 3], seed: u64) -> Result<Splits<T>> {
    Ok(split_indices(items.len(), fractions, seed)?.map(|i| items[i].clone()))
}

/// Splits items by group (document, speaker, thread): all items of a group land in the same
/// part. `groups[i]` is the group of item `i`.
///
/// Like scikit-learn's `GroupShuffleSplit`, the fractions apply to the number of **groups**:
/// the distinct groups (in order of first appearance) are shuffled with `seed` and cut with
/// [`part_sizes`], so the numbers of items per part follow the fractions only roughly when
/// groups differ in size. Returns sorted item indices.
///
/// # Errors
///
/// [`DataError::Empty`] for no item; otherwise as [`split_indices`].
pub fn split_groups<G: Hash + Eq>(groups: &[G], fractions: [f64; 3], seed: u64) -> Result<Splits> {
    if groups.is_empty() {
        return Err(DataError::Empty("dataset to split".into()));
    }
    let members = group_members(groups);
    let sizes = part_sizes(members.len(), fractions)?;
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let parts = cut(order, sizes);
    let items = |gs: Vec<usize>| -> Vec<usize> {
        let mut v: Vec<usize> = gs
            .iter()
            .flat_map(|&g| members[g].iter().copied())
            .collect();
        v.sort_unstable();
        v
    };
    Ok(Splits {
        train: items(parts.train),
        dev: items(parts.dev),
        test: items(parts.test),
    })
}

/// A stratified random subset (for low-resource runs): for every label present,
/// `max(1, round(fraction * count))` of its items (`f64::round`, halves away from zero),
/// chosen at random with `seed`. Returns sorted indices into `labels`.
///
/// Each label keeps its share within ±0.5 of `fraction * count`, except that a label is never
/// dropped: one with `fraction * count < 0.5` keeps one item.
///
/// # Errors
///
/// [`DataError::Empty`] for no label; [`DataError::InvalidArgument`] for a fraction outside
/// `(0, 1]`.
pub fn stratified_subset<L: Hash + Eq>(
    labels: &[L],
    fraction: f64,
    seed: u64,
) -> Result<Vec<usize>> {
    if labels.is_empty() {
        return Err(DataError::Empty("labels to subsample".into()));
    }
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(DataError::InvalidArgument {
            what: "fraction",
            message: format!("{fraction} is not in (0, 1]"),
        });
    }
    let members = group_members(labels);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for mut items in members {
        let keep = ((fraction * items.len() as f64).round() as usize).clamp(1, items.len());
        items.shuffle(&mut rng);
        out.extend_from_slice(&items[..keep]);
    }
    out.sort_unstable();
    Ok(out)
}

/// Sizes of the three parts of `n` items: the largest-remainder (Hamilton) rounding of
/// `n * fractions`. Each part first gets `floor(n * f)`; the items left over go one each to
/// the parts with the largest fractional remainders, ties to the earlier part (train, then
/// dev, then test). The sizes sum to `n` and each is within 1 of `n * f` (the fractions are
/// first divided by their sum, which is 1 up to rounding).
///
/// ```
/// use lora_bert_data::split::part_sizes;
///
/// assert_eq!(part_sizes(10, [0.8, 0.1, 0.1])?, [8, 1, 1]);
/// assert_eq!(part_sizes(7, [0.5, 0.25, 0.25])?, [3, 2, 2]); // 3.5, 1.75, 1.75: remainders .5 < .75
/// # Ok::<(), lora_bert_data::DataError>(())
/// ```
///
/// # Errors
///
/// [`DataError::InvalidArgument`] for fractions that are negative, not finite, or do not sum
/// to 1 (within `1e-6`).
pub fn part_sizes(n: usize, fractions: [f64; 3]) -> Result<[usize; 3]> {
    if fractions.iter().any(|f| !(f.is_finite() && *f >= 0.0)) {
        return Err(DataError::InvalidArgument {
            what: "fractions",
            message: format!("{fractions:?} must be finite and >= 0"),
        });
    }
    let sum: f64 = fractions.iter().sum();
    if (sum - 1.0).abs() > 1e-6 {
        return Err(DataError::InvalidArgument {
            what: "fractions",
            message: format!("{fractions:?} sum to {sum}, not 1"),
        });
    }
    // Normalised, so a sum off by rounding cannot give more than `n` items.
    let exact = fractions.map(|f| f / sum * n as f64);
    let mut sizes = exact.map(|x| (x.floor() as usize).min(n));
    let mut by_remainder = [0, 1, 2];
    // Stable sort: equal remainders keep train, dev, test order.
    by_remainder
        .sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    let mut left = n.saturating_sub(sizes.iter().sum());
    for &i in by_remainder.iter().cycle() {
        if left == 0 {
            break;
        }
        sizes[i] += 1;
        left -= 1;
    }
    Ok(sizes)
}

/// Cuts `order` into runs of `sizes`, each sorted.
fn cut(order: Vec<usize>, [a, b, _]: [usize; 3]) -> Splits {
    let mut parts = [&order[..a], &order[a..a + b], &order[a + b..]].map(<[usize]>::to_vec);
    for p in &mut parts {
        p.sort_unstable();
    }
    let [train, dev, test] = parts;
    Splits { train, dev, test }
}

/// Item indices of each distinct key, keys in order of first appearance.
fn group_members<K: Hash + Eq>(keys: &[K]) -> Vec<Vec<usize>> {
    let mut ids: HashMap<&K, usize> = HashMap::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let id = *ids.entry(k).or_insert_with(|| {
            members.push(Vec::new());
            members.len() - 1
        });
        members[id].push(i);
    }
    members
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_by_hand() {
        assert_eq!(part_sizes(1, [0.0, 0.5, 0.5]).unwrap(), [0, 1, 0]);
        assert_eq!(part_sizes(3, [1.0 / 3.0; 3]).unwrap(), [1, 1, 1]);
        assert_eq!(part_sizes(5, [1.0, 0.0, 0.0]).unwrap(), [5, 0, 0]);
        assert_eq!(part_sizes(11, [0.8, 0.1, 0.1]).unwrap(), [9, 1, 1]); // 8.8, 1.1, 1.1
        assert_eq!(part_sizes(0, [0.8, 0.1, 0.1]).unwrap(), [0, 0, 0]);
    }

    #[test]
    fn group_members_in_first_appearance_order() {
        let m = group_members(&["b", "a", "b", "c", "a"]);
        assert_eq!(m, vec![vec![0, 2], vec![1, 4], vec![3]]);
    }
}
