//! Progress on long work: an [`indicatif`] bar with throughput and ETA when standard error is
//! a terminal, plain lines otherwise (logs, CI), nothing when switched off.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar over `len` items of `unit`s (`"sentences"`, `"batches"`) labelled `what`,
/// drawn on standard error when it is a terminal and hidden otherwise, so logs stay clean.
///
/// ```
/// let bar = lora_bert_train::progress::bar(100, "encoding", "sentences");
/// bar.inc(100);
/// bar.finish_and_clear();
/// ```
pub fn bar(len: u64, what: &str, unit: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), draw_target());
    bar.set_style(style(&format!(
        "{{prefix}} [{{elapsed_precise}}] {{wide_bar}} {{human_pos}}/{{human_len}} {unit} \
         ({{per_sec}}, eta {{eta}})"
    )));
    bar.set_prefix(what.to_owned());
    bar
}

fn draw_target() -> ProgressDrawTarget {
    if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// The trainer's progress: a bar (steps, loss, learning rate, steps/s, ETA) on a terminal,
/// a line every `every` steps otherwise.
pub(crate) struct StepProgress {
    every: usize,
    max_steps: usize,
    first_step: usize,
    started: Instant,
    bar: Option<ProgressBar>,
}

impl StepProgress {
    pub(crate) fn new(every: usize, step: usize, max_steps: usize) -> Self {
        let bar = (every > 0 && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(max_steps as u64).with_position(step as u64);
            bar.set_style(style(
                "train [{elapsed_precise}] {bar:30} {pos}/{len} steps ({per_sec}, eta {eta}) {msg}",
            ));
            bar.enable_steady_tick(Duration::from_millis(500));
            bar
        });
        Self {
            every,
            max_steps,
            first_step: step,
            started: Instant::now(),
            bar,
        }
    }

    pub(crate) fn step(&mut self, step: usize, loss: f64, lr: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(step as u64);
            bar.set_message(format!("loss {loss:.4} lr {lr:.2e}"));
        } else if self.every > 0 && step.is_multiple_of(self.every) {
            let done = step - self.first_step;
            let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            let eta = (self.max_steps - step) as f64 / rate.max(1e-9);
            eprintln!(
                "step {step}/{}  loss {loss:.4}  lr {lr:.2e}  {rate:.2} steps/s  eta {eta:.0}s",
                self.max_steps
            );
        }
    }

    pub(crate) fn evaluation(&self, step: usize, metric: f64) {
        if self.every == 0 {
            return;
        }
        let line = format!("eval at step {step}: {metric:.4}");
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub(crate) fn finish(&self, step: usize) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if self.every > 0 {
            eprintln!(
                "trained {} steps in {:.1}s",
                step - self.first_step,
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}
