//! The scalar functions and row reductions the kernels' loops are made of, written to vectorise.

/// Independent accumulators for the row reductions: a float sum or maximum in one accumulator is
/// a chain the compiler may not reorder, in [`LANES`] of them it is one vector operation.
const LANES: usize = 16;

/// Folds `values` with `f` over [`LANES`] accumulators, then folds those.
#[inline(always)]
pub(super) fn reduce(values: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut lanes = [init; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = f(*lane, x);
        }
    }
    let folded = rest.iter().fold(init, |acc, &x| f(acc, x));
    lanes.into_iter().fold(folded, f)
}

/// `Σ x ⊙ y` over [`LANES`] accumulators.
#[inline(always)]
pub(super) fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    for (x, y) in x.chunks_exact(LANES).zip(y.chunks_exact(LANES)) {
        for ((lane, &x), &y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += x * y;
        }
    }
    let tail = x.len() - x.len() % LANES;
    let rest = x[tail..]
        .iter()
        .zip(&y[tail..])
        .map(|(&x, &y)| x * y)
        .sum::<f32>();
    lanes.into_iter().sum::<f32>() + rest
}

/// `erf` in `f32` as a rational function of `x` (Eigen's `generic_fast_erf_float`): no
/// branches, no `exp`, only multiplications, additions and one division, so a loop over it
/// vectorises (plain `a * b + c`: `mul_add` without hardware FMA is a slow library call).
/// Largest absolute error about `4.2e-7` (near `|x| = 3.3`), checked against `f64` `erf` in
/// the tests.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    // Outside [-4, 4] erf is ±1 to f32 precision.
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_4e-10 + 2.770_681_5e-8;
    p = x2 * p - 2.101_024e-6;
    p = x2 * p - 5.692_506_2e-5;
    p = x2 * p - 7.349_906_4e-4;
    p = x2 * p - 2.954_6e-3;
    p = x2 * p - 1.609_603_3e-2;
    let mut q = x2 * -1.456_607_15e-5 - 2.133_740_5e-4;
    q = x2 * q - 1.682_827e-3;
    q = x2 * q - 7.373_329_3e-3;
    q = x2 * q - 1.426_473_9e-2;
    x * p / q
}

/// `eˣ` in `f32` (Cephes' `expf`: `2^k · e^r` with `|r| ≤ ln 2 / 2` and a degree-7
/// polynomial), without branches or library calls so that a loop over it vectorises. Relative
/// error below `2e-7` on `[-87, 88]`; inputs outside are clamped to it (so `exp(-∞)` is about
/// `1.6e-38`, not 0, and NaN stays NaN).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // Round x / ln 2 to the nearest integer by adding and removing 1.5 · 2²³.
    let k = (x * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
    // r = x − k·ln 2, with ln 2 split so that k·0.693359375 is exact.
    let r = x - k * 0.693_359_4;
    let r = r + k * 2.121_944_4e-4;
    let mut p = r * 1.987_569_1e-4 + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let p = p * (r * r) + r + 1.0;
    // 2^k through the exponent bits (k is in [-126, 127] after the clamp).
    p * f32::from_bits(((k as i32 + 127) as u32) << 23)
}
