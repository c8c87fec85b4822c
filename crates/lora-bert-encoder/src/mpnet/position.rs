//! MPNet's positions: absolute ids after the padding index, and relative position buckets.

use burn::tensor::{Int, Tensor};

/// The bucket of a relative position `memory - context` (key index minus query index), as
/// transformers' `MPNetEncoder.relative_position_bucket`: half of the buckets for each sign
/// (keys before the query get the upper half), the distances below `num_buckets / 4`
/// exactly, larger ones log-spaced up to `max_distance`, beyond which all share the last
/// bucket of their half.
///
/// The log-spaced branch is computed in `f32`, as transformers does, so bucket edges agree.
///
/// ```
/// use lora_bert_encoder::mpnet::relative_position_bucket;
///
/// assert_eq!(relative_position_bucket(0, 32, 128), 0);
/// assert_eq!(relative_position_bucket(-3, 32, 128), 3);
/// assert_eq!(relative_position_bucket(3, 32, 128), 19);
/// assert_eq!(relative_position_bucket(-1000, 32, 128), 15);
/// assert_eq!(relative_position_bucket(1000, 32, 128), 31);
/// ```
pub fn relative_position_bucket(
    relative_position: i64,
    num_buckets: usize,
    max_distance: usize,
) -> usize {
    let half = num_buckets / 2;
    let n = -relative_position;
    let mut ret = if n < 0 { half } else { 0 };
    let n = n.unsigned_abs() as usize;
    let max_exact = half / 2;
    if n < max_exact {
        ret += n;
    } else {
        let ratio = (n as f32 / max_exact as f32).ln();
        let scale = (max_distance as f64 / max_exact as f64).ln() as f32;
        let large = max_exact + (ratio / scale * (half - max_exact) as f32) as usize;
        ret += large.min(half.saturating_sub(1));
    }
    ret
}

/// HF `create_position_ids_from_input_ids`: `cumsum(ids != pad) * (ids != pad) + pad`, so
/// real tokens count from `pad + 1` and padding tokens sit at `pad`.
pub fn position_ids(input_ids: Tensor<2, Int>, padding_idx: u32) -> Tensor<2, Int> {
    let real = input_ids
        .equal_elem(i64::from(padding_idx))
        .bool_not()
        .int();
    (real.clone().cumsum(1) * real).add_scalar(i64::from(padding_idx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_symmetric_in_shape_and_saturate() {
        for d in 0..8 {
            assert_eq!(relative_position_bucket(-d, 32, 128), d as usize);
        }
        for d in 1..8 {
            assert_eq!(relative_position_bucket(d, 32, 128), 16 + d as usize);
        }
        let mut last = 0;
        for d in 0..300 {
            let b = relative_position_bucket(-d, 32, 128);
            assert!(b >= last && b < 16, "{d}: {b}");
            last = b;
        }
        assert_eq!(relative_position_bucket(-127, 32, 128), 15);
        assert_eq!(relative_position_bucket(400, 32, 128), 31);
    }
}
