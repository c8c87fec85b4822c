//! The training loop on a tiny BERT with a classifier: the loss goes down, frozen parameters
//! stay frozen, early stopping keeps the best model, a NaN stops the run, and a run killed
//! mid-way resumes to exactly the weights and metrics of an uninterrupted one.

use std::sync::Mutex;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use lora_bert_encoder::{BertConfig, BertInput, BertModel, Route, device, mean_pool};
use lora_bert_train::schedule::Decay;
use lora_bert_train::{TrainConfig, TrainError, Trainer};

/// The CPU backends draw dropout masks and initial values from one process-wide generator,
/// which the trainer reseeds at every micro-batch: tests that train run one at a time.
static BACKEND_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    BACKEND_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Module, Debug)]
struct Classifier {
    bert: BertModel,
    head: Param<Tensor<2>>,
}

fn tiny_config() -> BertConfig {
    serde_json::from_str(
        r#"{"vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 32,
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}"#,
    )
    .unwrap()
}

fn cpu() -> Device {
    device::autodiff(device::device(device::Backend::NdArray).unwrap())
}

fn classifier(device: &Device) -> Classifier {
    classifier_with(&tiny_config(), device)
}

/// The same classifier for a config and device at every call of this process.
///
/// burn draws from one process-wide generator, lazily (on a parameter's first use), and tests
/// run on parallel threads, so seeding before `init` does not give every call the same weights;
/// the first model is kept and cloned (clones share their parameters' initialisation).
fn classifier_with(config: &BertConfig, device: &Device) -> Classifier {
    static MADE: Mutex<Vec<(String, Classifier)>> = Mutex::new(Vec::new());
    let key = format!("{config:?} {device:?}");
    let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, model)) = made.iter().find(|(k, _)| *k == key) {
        return model.clone();
    }
    let model = seeded_classifier(config, device);
    made.push((key, model.clone()));
    model
}

fn seeded_classifier(config: &BertConfig, device: &Device) -> Classifier {
    device.seed(11);
    let bert = BertModel::init(config, false, device);
    let head = Tensor::<2>::random(
        [16, 2],
        burn::tensor::Distribution::Normal(0.0, 0.1),
        device,
    );
    Classifier {
        bert,
        head: Param::from_tensor(head),
    }
}

/// Batch `k`: 4 sequences of 6 ids; class 1 when the ids come from the upper half of the vocab.
fn batch(k: usize, device: &Device) -> (BertInput, Tensor<1, Int>) {
    let (mut ids, mut labels) = (Vec::new(), Vec::new());
    for i in 0..4 {
        let class = (k + i) % 2;
        labels.push(class as i64);
        for j in 0..6 {
            ids.push(1 + (class * 24 + (k * 5 + i * 7 + j * 3) % 24) as i64);
        }
    }
    let input = BertInput {
        input_ids: Tensor::from_data(TensorData::new(ids, [4, 6]), device),
        token_type_ids: Tensor::zeros([4, 6], device),
        attention_mask: Tensor::ones([4, 6], device),
    };
    (
        input,
        Tensor::from_data(TensorData::new(labels, [4]), device),
    )
}

fn loss_of(model: &Classifier, k: usize) -> lora_bert_train::Result<Tensor<1>> {
    let device = model.head.val().device();
    let (input, labels) = batch(k, &device);
    let out = model.bert.forward(&input, &Route::Base).unwrap();
    let pooled = mean_pool(out.last_hidden_state, input.attention_mask);
    let logp = log_softmax(pooled.matmul(model.head.val()), 1);
    Ok(logp.gather(1, labels.reshape([4, 1])).mean().neg())
}

/// Dev metric: minus the loss over batches 1000..1004.
fn dev_metric(model: &Classifier) -> lora_bert_train::Result<f64> {
    let mut total = 0.0;
    for k in 1000..1004 {
        let v: f32 = loss_of(model, k)?.into_scalar();
        total += f64::from(v);
    }
    Ok(-total / 4.0)
}

struct Values(Vec<Vec<f32>>);

impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0
            .push(param.val().into_data().try_into_vec::<f32>().unwrap());
    }
}

fn values<M: Module>(m: &M) -> Vec<Vec<f32>> {
    let mut v = Values(Vec::new());
    m.visit(&mut v);
    v.0
}

/// Bit-for-bit equality, reported as the largest difference per tensor.
fn assert_same(a: &[Vec<f32>], b: &[Vec<f32>]) {
    assert_eq!(a.len(), b.len());
    let diffs: Vec<f32> = a
        .iter()
        .zip(b)
        .map(|(x, y)| {
            x.iter()
                .zip(y)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f32::max)
        })
        .collect();
    assert!(
        diffs.iter().all(|&d| d == 0.0),
        "max |diff| per tensor: {diffs:?}"
    );
}

fn config(steps: usize) -> TrainConfig {
    TrainConfig {
        learning_rate: 1e-2,
        warmup_steps: 2,
        decay: Decay::Linear,
        seed: 3,
        ..TrainConfig::new(steps)
    }
}

#[test]
fn the_loss_goes_down() {
    let _rng = serial();
    let device = cpu();
    let trainer = Trainer::new(config(40));
    let (_, report) = trainer
        .fit(classifier(&device), 0.., loss_of, |_| Ok(0.0))
        .unwrap();
    let first: f64 = report.losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = report.losses[35..].iter().sum::<f64>() / 5.0;
    assert_eq!(report.steps, 40);
    assert!(last < 0.5 * first, "loss {first:.4} -> {last:.4}");
}

#[test]
fn frozen_parameters_stay_bit_for_bit() {
    let _rng = serial();
    let device = cpu();
    let mut model = classifier(&device);
    model.bert = model.bert.no_grad();
    let bert0 = values(&model.bert);
    let head0 = values(&model.head);
    let (model, _) = Trainer::new(config(5))
        .fit(model, 0.., loss_of, |_| Ok(0.0))
        .unwrap();
    assert_eq!(values(&model.bert), bert0, "a frozen backbone moved");
    assert_ne!(values(&model.head), head0, "the head did not train");
}

#[test]
fn a_killed_run_resumes_to_the_same_weights_and_metrics() {
    let _rng = serial();
    let device = cpu();
    let cfg = TrainConfig {
        accumulation: 2,
        eval_every: Some(3),
        ..config(12)
    };
    let whole = tempfile::tempdir().unwrap();
    let (reference, reference_report) = Trainer::new(cfg.clone())
        .with_checkpoints(whole.path())
        .fit(classifier(&device), 0.., loss_of, dev_metric)
        .unwrap();

    // Killed while computing step 7 (micro-batches 14, 15): checkpoints exist for steps 3, 6.
    let dir = tempfile::tempdir().unwrap();
    let crash = Trainer::new(cfg.clone()).with_checkpoints(dir.path()).fit(
        classifier(&device),
        0..,
        |m, k| {
            if k == 15 {
                return Err(TrainError::InvalidArgument {
                    what: "test",
                    message: "simulated kill".into(),
                });
            }
            loss_of(m, k)
        },
        dev_metric,
    );
    assert!(crash.is_err());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("latest")).unwrap(),
        "step-000006"
    );

    // A fresh process: a model with other initial values, the same folder.
    device.seed(999);
    let other = Classifier {
        bert: BertModel::init(&tiny_config(), false, &device),
        head: Param::from_tensor(Tensor::zeros([16, 2], &device)),
    };
    let (resumed, report) = Trainer::new(cfg)
        .with_checkpoints(dir.path())
        .fit(other, 0.., loss_of, dev_metric)
        .unwrap();
    assert_eq!(report.resumed_from, Some(6));
    assert_eq!(report.steps, 12);
    assert_same(&values(&resumed), &values(&reference));
    assert_eq!(report.losses, reference_report.losses);
    assert_eq!(report.history, reference_report.history);
    assert_eq!(report.best, reference_report.best);
}

#[test]
fn a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let _rng = serial();
    let device = cpu();
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        checkpoint_every: Some(2),
        ..config(10)
    };
    let err = Trainer::new(cfg.clone())
        .with_checkpoints(dir.path())
        .fit(
            classifier(&device),
            0..,
            |m, k| {
                let loss = loss_of(m, k)?;
                Ok(if k == 5 {
                    loss.div_scalar(0.0).mul_scalar(0.0)
                } else {
                    loss
                })
            },
            |_| Ok(0.0),
        )
        .unwrap_err();
    assert!(
        matches!(err, TrainError::NonFiniteLoss { step: 5, value } if value.is_nan()),
        "{err:?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("latest")).unwrap(),
        "step-000004"
    );
    // The checkpoint loads: a resumed run (without the NaN) finishes.
    let (_, report) = Trainer::new(cfg)
        .with_checkpoints(dir.path())
        .fit(classifier(&device), 0.., loss_of, |_| Ok(0.0))
        .unwrap();
    assert_eq!((report.resumed_from, report.steps), (Some(4), 10));
}

#[test]
fn early_stopping_returns_the_best_model() {
    let _rng = serial();
    let device = cpu();
    let cfg = TrainConfig {
        eval_every: Some(1),
        patience: Some(2),
        ..config(20)
    };
    let scripted = [0.1, 0.5, 0.4, 0.3, 0.9];
    let mut snapshots = Vec::new();
    let mut calls = 0;
    let (best, report) = Trainer::new(cfg)
        .fit(classifier(&device), 0.., loss_of, |m| {
            snapshots.push(values(m));
            calls += 1;
            Ok(scripted[calls - 1])
        })
        .unwrap();
    assert!(report.stopped_early);
    assert_eq!(report.steps, 4);
    assert_eq!(report.best, Some((0.5, 2)));
    assert_eq!(values(&best), snapshots[1]);
}

#[test]
fn a_checkpoint_of_another_configuration_is_refused() {
    let _rng = serial();
    let device = cpu();
    let dir = tempfile::tempdir().unwrap();
    Trainer::new(config(2))
        .with_checkpoints(dir.path())
        .fit(classifier(&device), 0.., loss_of, |_| Ok(0.0))
        .unwrap();
    let err = Trainer::new(config(3))
        .with_checkpoints(dir.path())
        .fit(classifier(&device), 0.., loss_of, |_| Ok(0.0))
        .unwrap_err();
    assert!(
        matches!(
            &err,
            TrainError::InvalidArgument {
                what: "checkpoint",
                message,
            } if message.contains("(max_steps: 2 in the checkpoint, 3 in this run)")
        ),
        "{err:?}"
    );
}

#[test]
fn bad_configurations_are_refused() {
    let _rng = serial();
    let device = cpu();
    for cfg in [
        TrainConfig::new(0),
        TrainConfig {
            accumulation: 0,
            ..TrainConfig::new(1)
        },
        TrainConfig {
            learning_rate: f64::NAN,
            ..TrainConfig::new(1)
        },
        TrainConfig {
            max_grad_norm: Some(0.0),
            ..TrainConfig::new(1)
        },
        TrainConfig {
            eval_every: Some(0),
            ..TrainConfig::new(1)
        },
    ] {
        let err = Trainer::new(cfg)
            .fit(classifier(&device), 0.., loss_of, |_| Ok(0.0))
            .unwrap_err();
        assert!(matches!(err, TrainError::InvalidArgument { .. }), "{err:?}");
    }
}

/// Data parallelism needs dropout off to compare runs: the CPU backends share one generator,
/// which two replicas would draw from at once.
fn no_dropout() -> BertConfig {
    let mut config = tiny_config();
    config.hidden_dropout_prob = 0.0;
    config.attention_probs_dropout_prob = 0.0;
    config
}

/// A fresh classifier without dropout trained by `trainer` on batches `0..`, no evaluation.
fn fit_plain(
    trainer: Trainer,
    device: &Device,
) -> lora_bert_train::Result<(Classifier, lora_bert_train::FitReport)> {
    trainer.fit(classifier_with(&no_dropout(), device), 0.., loss_of, |_| {
        Ok(0.0)
    })
}

fn flex() -> Device {
    device::device(device::Backend::Flex).unwrap()
}

#[test]
fn two_replicas_equal_one_device_with_twice_the_accumulation() {
    let _rng = serial();
    let device = cpu();
    let one = TrainConfig {
        accumulation: 2,
        ..config(6)
    };
    let (single, single_report) = fit_plain(Trainer::new(one), &device).unwrap();
    // The same backend twice: each micro-batch computes exactly as on one device and the
    // gradients are summed in the same order, so the runs agree bit for bit.
    let plain = device::device(device::Backend::NdArray).unwrap();
    let (parallel, parallel_report) = fit_plain(
        Trainer::new(config(6)).with_devices([plain.clone(), plain]),
        &device,
    )
    .unwrap();
    assert_eq!(parallel_report.steps, 6);
    assert_eq!(single_report.losses, parallel_report.losses);
    assert_same(&values(&single), &values(&parallel));
}

#[test]
fn replicas_on_two_cpu_backends_train_like_one_device() {
    let _rng = serial();
    let device = cpu();
    let one = TrainConfig {
        accumulation: 2,
        ..config(8)
    };
    let (single, single_report) = fit_plain(Trainer::new(one), &device).unwrap();
    // ndarray and flex: the replica on flex gets its copy of the weights and its gradients
    // come back to the ndarray model.
    let seen = std::sync::Mutex::new(Vec::new());
    let (parallel, parallel_report) = Trainer::new(config(8))
        .with_devices([device::device(device::Backend::NdArray).unwrap(), flex()])
        .fit(
            classifier_with(&no_dropout(), &device),
            0..,
            |m: &Classifier, k| {
                seen.lock().unwrap().push((k, m.head.val().device()));
                loss_of(m, k)
            },
            |_| Ok(0.0),
        )
        .unwrap();
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.len(), 16, "8 steps of 2 micro-batches");
    for (k, d) in &seen {
        let expected = if k % 2 == 0 {
            device.clone()
        } else {
            flex().autodiff()
        };
        assert_eq!(d, &expected, "micro-batch {k} ran on {d:?}");
    }
    for (s, (a, b)) in single_report
        .losses
        .iter()
        .zip(&parallel_report.losses)
        .enumerate()
    {
        assert!((a - b).abs() < 1e-4, "step {s}: {a} vs {b}");
    }
    let last = parallel_report.losses.last().unwrap();
    assert!(
        last < &parallel_report.losses[0],
        "{:?}",
        parallel_report.losses
    );
    // The trained model stays on the model's device.
    assert_eq!(parallel.head.val().device(), device);
    let diff = values(&single)
        .iter()
        .zip(values(&parallel))
        .flat_map(|(x, y)| {
            x.iter()
                .zip(y)
                .map(|(p, q)| (p - q).abs())
                .collect::<Vec<_>>()
        })
        .fold(0.0, f32::max);
    assert!(diff < 1e-3, "max |weight difference| {diff}");
}

#[test]
fn a_checkpoint_of_another_device_count_is_refused() {
    let _rng = serial();
    let device = cpu();
    let dir = tempfile::tempdir().unwrap();
    let plain = device::device(device::Backend::NdArray).unwrap();
    let two = Trainer::new(config(2)).with_devices([plain.clone(), plain]);
    fit_plain(two.with_checkpoints(dir.path()), &device).unwrap();
    let one = Trainer::new(config(2)).with_checkpoints(dir.path());
    let err = fit_plain(one, &device).unwrap_err();
    assert!(
        matches!(&err, TrainError::InvalidArgument { message, .. } if message.contains("2 device")),
        "{err}"
    );
}

/// A `latest` pointer that leaves `checkpoints/` is refused before anything is loaded or
/// deleted: the folder it names, elsewhere, keeps its files.
#[test]
fn a_latest_pointer_outside_the_checkpoints_is_refused() {
    let _rng = serial();
    let device = cpu();
    let root = tempfile::tempdir().unwrap();
    let run = root.path().join("run");
    Trainer::new(config(2))
        .with_checkpoints(&run)
        .fit(classifier(&device), 0.., loss_of, |_| Ok(0.0))
        .unwrap();
    // A folder elsewhere that looks like a checkpoint, holding a user's file.
    let elsewhere = root.path().join("elsewhere").join("step-000002");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::copy(
        run.join("checkpoints/step-000002/state.json"),
        elsewhere.join("state.json"),
    )
    .unwrap();
    std::fs::write(elsewhere.join("notes.txt"), "mine").unwrap();
    for pointer in [
        "../../elsewhere/step-000002",
        elsewhere.to_str().unwrap(),
        "step-000002/../../../elsewhere/step-000002",
    ] {
        std::fs::write(run.join("latest"), pointer).unwrap();
        let err = Trainer::new(config(4))
            .with_checkpoints(&run)
            .fit(classifier(&device), 0.., loss_of, |_| Ok(0.0))
            .unwrap_err();
        assert!(
            matches!(&err, TrainError::Format { path, message }
                if path.ends_with("latest") && message.contains("not a checkpoint of this folder")),
            "{pointer}: {err:?}"
        );
        assert_eq!(
            std::fs::read_to_string(elsewhere.join("notes.txt")).unwrap(),
            "mine"
        );
    }
}

/// Two runs on one folder: the second is refused while the first holds it, and the folder
/// is free again once the first returns.
#[test]
fn a_second_run_on_a_busy_checkpoints_folder_is_refused() {
    let _rng = serial();
    let device = cpu();
    let dir = tempfile::tempdir().unwrap();
    let second = Mutex::new(None);
    Trainer::new(config(2))
        .with_checkpoints(dir.path())
        .fit(
            classifier(&device),
            0..,
            |m, k| {
                if k == 0 {
                    let run = Trainer::new(config(2)).with_checkpoints(dir.path()).fit(
                        classifier(&device),
                        0..,
                        loss_of,
                        |_| Ok(0.0),
                    );
                    *second.lock().unwrap() = Some(run.map(|_| ()));
                }
                loss_of(m, k)
            },
            |_| Ok(0.0),
        )
        .unwrap();
    let err = second.into_inner().unwrap().unwrap().unwrap_err();
    assert!(
        matches!(&err, TrainError::Locked { path } if path == dir.path()),
        "{err:?}"
    );
    // Released: the same run resumes (at its end) without complaint.
    let (_, report) = Trainer::new(config(2))
        .with_checkpoints(dir.path())
        .fit(classifier(&device), 0.., loss_of, |_| Ok(0.0))
        .unwrap();
    assert_eq!(report.resumed_from, Some(2));
}

/// A run killed in the middle of swapping `best/` (old one renamed aside, new one not yet in)
/// resumes with the old best model, and temporary folders of killed runs are deleted.
#[test]
fn an_interrupted_best_swap_and_temporary_folders_are_recovered() {
    let _rng = serial();
    let device = cpu();
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        eval_every: Some(2),
        ..config(4)
    };
    let (_, first) = Trainer::new(cfg.clone())
        .with_checkpoints(dir.path())
        .fit(classifier(&device), 0.., loss_of, dev_metric)
        .unwrap();
    let root = dir.path();
    let best_model = std::fs::read(root.join("best/model.bpk")).unwrap();
    std::fs::rename(root.join("best"), root.join("best.old")).unwrap();
    let junk = [
        root.join("best.tmp-4242"),
        root.join("checkpoints/step-000006.tmp-4242"),
    ];
    for j in &junk {
        std::fs::create_dir_all(j).unwrap();
        std::fs::write(j.join("model.bpk"), [0u8; 16]).unwrap();
    }
    let (_, report) = Trainer::new(cfg)
        .with_checkpoints(root)
        .fit(classifier(&device), 0.., loss_of, dev_metric)
        .unwrap();
    assert_eq!(report.best, first.best);
    assert_eq!(
        std::fs::read(root.join("best/model.bpk")).unwrap(),
        best_model
    );
    assert!(!root.join("best.old").exists());
    for j in &junk {
        assert!(!j.exists(), "{} left behind", j.display());
    }
}
