//! Full-batch L-BFGS with a backtracking Armijo line search, its vectors in f64 on the host.

use super::problem::Objective;
use super::{ProbeConfig, ProbeFit};
use crate::Result;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |a, x| a.max(x.abs()))
}

/// Minimises `objective` from `theta` with L-BFGS (memory 10) and a backtracking Armijo line
/// search.
pub(super) fn lbfgs(
    objective: &Objective<'_, '_>,
    mut theta: Vec<f64>,
    config: &ProbeConfig,
) -> Result<(Vec<f64>, ProbeFit)> {
    const MEMORY: usize = 10;
    let (mut loss, mut grad) = objective.eval(&theta)?;
    let mut pairs: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)> =
        std::collections::VecDeque::with_capacity(MEMORY);
    let mut fit = ProbeFit {
        steps: 0,
        loss,
        gradient: max_abs(&grad),
        converged: fit_done(&grad, config),
    };
    while !fit.converged && fit.steps < config.max_steps {
        // Two-loop recursion: d = −H·g.
        let mut q = grad.clone();
        let mut alphas = Vec::with_capacity(pairs.len());
        for (s, y, rho) in pairs.iter().rev() {
            let a = rho * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(q, y)| *q -= a * y);
            alphas.push(a);
        }
        if let Some((s, y, _)) = pairs.back() {
            let gamma = dot(s, y) / dot(y, y);
            q.iter_mut().for_each(|q| *q *= gamma);
        } else {
            // First step: a unit-length move along −g.
            let norm = dot(&grad, &grad).sqrt().max(1e-12);
            q.iter_mut().for_each(|q| *q /= norm);
        }
        for ((s, y, rho), a) in pairs.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(y, &q);
            q.iter_mut().zip(s).for_each(|(q, s)| *q += (a - b) * s);
        }
        let mut direction: Vec<f64> = q.into_iter().map(|v| -v).collect();
        let mut slope = dot(&grad, &direction);
        if slope >= 0.0 {
            // Not a descent direction (curvature lost to rounding): restart from −g.
            pairs.clear();
            direction = grad.iter().map(|g| -g).collect();
            slope = -dot(&grad, &grad);
        }
        let mut step = 1.0f64;
        let mut accepted = None;
        for _ in 0..40 {
            let trial: Vec<f64> = theta
                .iter()
                .zip(&direction)
                .map(|(t, d)| t + step * d)
                .collect();
            let (trial_loss, trial_grad) = objective.eval(&trial)?;
            if trial_loss <= loss + 1e-4 * step * slope {
                accepted = Some((trial, trial_loss, trial_grad));
                break;
            }
            step *= 0.5;
        }
        let Some((next, next_loss, next_grad)) = accepted else {
            // The line search found no decrease: the loss is flat to rounding here.
            break;
        };
        let s: Vec<f64> = next.iter().zip(&theta).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = next_grad.iter().zip(&grad).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 * dot(&y, &y).max(1e-300) {
            if pairs.len() == MEMORY {
                pairs.pop_front();
            }
            pairs.push_back((s, y, 1.0 / sy));
        }
        (theta, loss, grad) = (next, next_loss, next_grad);
        fit = ProbeFit {
            steps: fit.steps + 1,
            loss,
            gradient: max_abs(&grad),
            converged: fit_done(&grad, config),
        };
    }
    Ok((theta, fit))
}

fn fit_done(grad: &[f64], config: &ProbeConfig) -> bool {
    max_abs(grad) <= config.tolerance
}
