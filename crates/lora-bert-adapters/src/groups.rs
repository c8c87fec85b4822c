//! The adapter installed at each projection: one slot per group, routed per batch or per
//! example.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData};
use lora_bert_encoder::{BaseLinear, ProjectionAdapter, Route};

use crate::scheme::Adapter;

/// The adapters of every group at one projection; slot `g` holds group id `g`'s module, or
/// nothing when the group does not cover this projection (or was removed).
#[derive(Module, Debug)]
pub struct SiteGroups<S: Adapter> {
    /// One slot per group id.
    pub slots: Vec<Option<S>>,
}

impl<S: Adapter> Default for SiteGroups<S> {
    fn default() -> Self {
        Self { slots: Vec::new() }
    }
}

impl<S: Adapter> SiteGroups<S> {
    /// The module of group `id` at this projection.
    pub fn get(&self, id: usize) -> Option<&S> {
        self.slots.get(id).and_then(Option::as_ref)
    }

    /// Puts `module` in slot `id` (growing the slots), returning what was there.
    pub fn set(&mut self, id: usize, module: Option<S>) -> Option<S> {
        if self.slots.len() <= id {
            // Nothing to clear beyond the end; grow only to store a module.
            module.as_ref()?;
            self.slots.resize_with(id + 1, || None);
        }
        std::mem::replace(&mut self.slots[id], module)
    }
}

impl<S: Adapter> ProjectionAdapter for SiteGroups<S> {
    fn forward(&self, input: Tensor<3>, base: BaseLinear<'_>, route: &Route) -> Tensor<3> {
        if let Some(g) = route.group_for_batch() {
            let base_output = base.forward(input.clone());
            return match self.get(g) {
                Some(adapter) => adapter.forward(input, base_output, base),
                None => base_output,
            };
        }
        let batch = input.dims()[0];
        // Examples grouped by the module that serves them (None: the plain projection).
        let mut rows: BTreeMap<Option<usize>, Vec<i64>> = BTreeMap::new();
        for i in 0..batch {
            let slot = route.group_of(i).filter(|&g| self.get(g).is_some());
            rows.entry(slot).or_default().push(i as i64);
        }
        let base_output = base.forward(input.clone());
        if rows.len() == 1 && rows.contains_key(&None) {
            return base_output;
        }
        // Run each group on its rows, then restore the batch order with one gather.
        let device = input.device();
        let mut parts = Vec::with_capacity(rows.len());
        let mut order = Vec::with_capacity(batch);
        for (slot, indices) in &rows {
            let index = Tensor::<1, Int>::from_data(
                TensorData::new(indices.clone(), [indices.len()]),
                &device,
            );
            let y = base_output.clone().select(0, index.clone());
            parts.push(match slot.and_then(|g| self.get(g)) {
                Some(adapter) => adapter.forward(input.clone().select(0, index), y, base),
                None => y,
            });
            order.extend(indices.iter().copied());
        }
        let mut inverse = vec![0i64; batch];
        for (position, &example) in order.iter().enumerate() {
            inverse[example as usize] = position as i64;
        }
        let inverse = Tensor::<1, Int>::from_data(TensorData::new(inverse, [batch]), &device);
        Tensor::cat(parts, 0).select(0, inverse)
    }
}
