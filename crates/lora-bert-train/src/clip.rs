//! Global-norm gradient clipping (PyTorch's `clip_grad_norm_`): every gradient of a module is
//! scaled by `min(1, max_norm / ‖g‖)`, where `‖g‖` is the L2 norm of all gradients together.
//!
//! burn's own `GradientClipping::Norm` clips each parameter on its own, which changes the
//! direction of the update; this is the variant the BERT recipes use.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

/// Scales the gradients of `module`'s parameters in `grads` so that their global L2 norm is at
/// most `max_norm`; returns the norm before clipping.
pub fn clip_global_norm<M: Module>(module: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    let mut squares = SumSquares { grads, total: 0.0 };
    module.visit(&mut squares);
    let norm = squares.total.sqrt();
    if norm.is_finite() && norm > max_norm && norm > 0.0 {
        let mut scale = Scale {
            grads,
            factor: max_norm / (norm + 1e-6),
        };
        module.visit(&mut scale);
    }
    norm
}

struct SumSquares<'a> {
    grads: &'a GradientsParams,
    total: f64,
}

impl ModuleVisitor for SumSquares<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let s: f32 = g.powi_scalar(2).sum().into_scalar();
            self.total += f64::from(s);
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.factor));
        }
    }
}
