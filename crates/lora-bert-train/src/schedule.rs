//! Learning-rate schedules: linear warm-up, then constant, linear or cosine decay, with the
//! exact step semantics of Hugging Face `transformers` (`get_linear_schedule_with_warmup`,
//! `get_cosine_schedule_with_warmup`, `get_constant_schedule_with_warmup`).

use serde::{Deserialize, Serialize};

/// What the learning rate does after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decay {
    /// Stays at the peak.
    Constant,
    /// Falls linearly from the peak to 0 at the last step.
    #[default]
    Linear,
    /// Follows half a cosine from the peak to 0 at the last step.
    Cosine,
}

/// A learning-rate schedule over `total_steps` optimizer steps.
///
/// Step `s` (0-based, the step about to be taken) gets `peak · f(s)` with
/// `f(s) = s / warmup` during warm-up (so the very first step of a warm-up has rate 0, as in
/// `transformers`), then for `progress = (s - warmup) / max(1, total - warmup)`:
/// `1` (constant), `max(0, 1 - progress)` (linear) or `0.5 · (1 + cos(π · progress))`
/// (cosine, floored at 0).
///
/// ```
/// use lora_bert_train::schedule::{Decay, LrSchedule};
///
/// let s = LrSchedule { peak: 1e-3, warmup_steps: 10, total_steps: 110, decay: Decay::Linear };
/// assert_eq!(s.lr(0), 0.0);
/// assert!((s.lr(5) - 5e-4).abs() < 1e-12);
/// assert!((s.lr(10) - 1e-3).abs() < 1e-12);
/// assert!((s.lr(60) - 5e-4).abs() < 1e-12);
/// assert_eq!(s.lr(110), 0.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// The rate at the end of warm-up.
    pub peak: f64,
    /// Steps of linear warm-up from 0.
    pub warmup_steps: usize,
    /// Steps of the whole run.
    pub total_steps: usize,
    /// What happens after warm-up.
    pub decay: Decay,
}

impl LrSchedule {
    /// The learning rate of step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        self.peak * self.factor(step)
    }

    /// The schedule's factor of step `step` (0-based), in `[0, 1]`: the rate is `peak × factor`.
    /// A parameter group with its own peak `p` gets `p × factor(step)` (see
    /// [`TrainConfig::group_learning_rates`](crate::TrainConfig::group_learning_rates)).
    ///
    /// ```
    /// use lora_bert_train::schedule::{Decay, LrSchedule};
    ///
    /// let s = LrSchedule { peak: 1e-3, warmup_steps: 4, total_steps: 10, decay: Decay::Linear };
    /// assert_eq!(s.factor(2), 0.5);
    /// assert_eq!(s.lr(2), 1e-3 * s.factor(2));
    /// ```
    pub fn factor(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return step as f64 / self.warmup_steps.max(1) as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = (step - self.warmup_steps) as f64 / span;
        match self.decay {
            Decay::Constant => 1.0,
            Decay::Linear => (1.0 - progress).max(0.0),
            Decay::Cosine => {
                (0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())).max(0.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// transformers' lr lambdas, written out as in `optimization.py`.
    fn hf(decay: Decay, step: usize, warmup: usize, total: usize) -> f64 {
        let (s, w, t) = (step as f64, warmup as f64, total as f64);
        if s < w {
            return s / w.max(1.0);
        }
        match decay {
            Decay::Constant => 1.0,
            Decay::Linear => 0.0f64.max((t - s) / (t - w).max(1.0)),
            Decay::Cosine => {
                let progress = (s - w) / (t - w).max(1.0);
                0.0f64.max(0.5 * (1.0 + (std::f64::consts::PI * 2.0 * 0.5 * progress).cos()))
            }
        }
    }

    #[test]
    fn matches_the_transformers_lambdas() {
        for decay in [Decay::Constant, Decay::Linear, Decay::Cosine] {
            for (warmup, total) in [(0, 10), (3, 10), (10, 10), (7, 50)] {
                let s = LrSchedule {
                    peak: 2.0,
                    warmup_steps: warmup,
                    total_steps: total,
                    decay,
                };
                for step in 0..total {
                    let want = 2.0 * hf(decay, step, warmup, total);
                    assert!(
                        (s.lr(step) - want).abs() < 1e-12,
                        "{decay:?} w{warmup} t{total} s{step}: {} vs {want}",
                        s.lr(step)
                    );
                }
            }
        }
    }
}
