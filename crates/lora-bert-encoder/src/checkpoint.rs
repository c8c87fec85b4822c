//! Hugging Face safetensors checkpoints: load into a [`BertModel`], save back with HF names.
//!
//! Names are accepted with or without the `bert.` prefix of `BertFor*` checkpoints; the
//! `embeddings.position_ids` buffer is skipped; LayerNorm parameters may be called
//! `weight`/`bias` or the older `gamma`/`beta`. Tensors the model does not use (a task head,
//! say) are reported in [`LoadReport::unexpected`]; a missing pooler is reported in
//! [`LoadReport::missing`] and the model is built without one; any other missing tensor, or a
//! shape that disagrees with the config, is an error naming the tensor.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::build::{WeightSource, build};
use crate::config::{BertConfig, ConfigError};
use crate::kernels::host_inference;
use crate::model::{BertModel, LayerNorm};
use crate::projection::{NoAdapter, Projection, ProjectionAdapter};
use crate::quantize::int8_tensor;
use crate::tensor_file::{StoredTensor, write_safetensors};
pub use crate::tensor_file::{decode_f32, f32_bytes, write_atomically};

/// Errors raised while reading or writing a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid safetensors file (truncated, corrupt header, ...).
    #[error("{path}: not a valid safetensors file: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the parser reported.
        message: String,
    },
    /// A tensor the model needs is absent.
    #[error("{path}: missing tensors: {}", names.join(", "))]
    Missing {
        /// The file.
        path: PathBuf,
        /// The HF names of the missing tensors.
        names: Vec<String>,
    },
    /// A tensor's shape disagrees with the config.
    #[error("{path}: tensor `{name}` has shape {actual:?}, the config expects {expected:?}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// The tensor's name as stored.
        name: String,
        /// Shape the config implies.
        expected: Vec<usize>,
        /// Shape in the file.
        actual: Vec<usize>,
    },
    /// A tensor has a dtype that cannot become f32.
    #[error("{path}: tensor `{name}` has dtype {dtype}, expected F32, F16, BF16 or F64")]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The tensor's name as stored.
        name: String,
        /// Its dtype.
        dtype: String,
    },
    /// A tensor holds NaN or infinite values.
    #[error("{path}: tensor `{name}` contains non-finite values")]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// The tensor's name as stored.
        name: String,
    },
    /// The file holds int8 weights and the device cannot run them.
    #[error(
        "{path}: holds int8 weights, which run on a CPU device without autodiff, not on {device}"
    )]
    Int8Device {
        /// The file.
        path: PathBuf,
        /// The device asked for.
        device: String,
    },
    /// Two stored tensor names mean the same tensor (`x` and `bert.x`).
    #[error("{path}: tensors `{first}` and `{second}` name the same tensor")]
    Duplicate {
        /// The file.
        path: PathBuf,
        /// One stored name (the smaller).
        first: String,
        /// The other.
        second: String,
    },
    /// Tensors were left that nothing reads.
    #[error("{path}: unexpected tensors: {}", names.join(", "))]
    Unexpected {
        /// The file.
        path: PathBuf,
        /// Their names.
        names: Vec<String>,
    },
    /// Tensors could not be serialised (bytes that do not match a dtype and shape).
    #[error("{path}: cannot write tensors: {message}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The config next to the weights is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// What loading found besides the tensors it used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Optional tensors the checkpoint lacks (the pooler, when absent).
    pub missing: Vec<String>,
    /// Tensors in the file the model does not use (task heads, ...), as stored.
    pub unexpected: Vec<String>,
    /// Whether the names carried the model's prefix (`bert.` for BERT checkpoints, `mpnet.`
    /// for [`MpnetModel`](crate::MpnetModel) checkpoints).
    pub bert_prefix: bool,
}

impl LoadReport {
    /// The unused tensors that belong to the encoder itself (its embeddings or layers, under
    /// any prefix): a file holding these was described by a config.json of a smaller model
    /// (fewer layers, say), so the model built from it is not the one that was saved. Unused
    /// task heads (`classifier.*`, `cls.*`) are not listed.
    ///
    /// ```
    /// use lora_bert_encoder::LoadReport;
    ///
    /// let report = LoadReport {
    ///     unexpected: vec!["bert.encoder.layer.6.output.dense.weight".into(), "classifier.bias".into()],
    ///     ..LoadReport::default()
    /// };
    /// assert_eq!(report.unused_encoder_tensors(), ["bert.encoder.layer.6.output.dense.weight"]);
    /// ```
    pub fn unused_encoder_tensors(&self) -> Vec<&str> {
        self.unexpected
            .iter()
            .map(String::as_str)
            .filter(|name| {
                let bare = name
                    .strip_prefix("bert.")
                    .or_else(|| name.strip_prefix("mpnet."))
                    .unwrap_or(name);
                bare.starts_with("encoder.") || bare.starts_with("embeddings.")
            })
            .collect()
    }
}

/// The files of a Hugging Face model directory.
#[derive(Debug, Clone)]
pub struct ModelDir {
    /// `config.json`.
    pub config: PathBuf,
    /// `model.safetensors`.
    pub weights: PathBuf,
}

impl ModelDir {
    /// `dir/config.json` and `dir/model.safetensors`.
    pub fn new(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        Self {
            config: dir.join("config.json"),
            weights: dir.join("model.safetensors"),
        }
    }
}

/// The HF name of the word-embedding table.
const WORD_EMBEDDINGS: &str = "embeddings.word_embeddings.weight";

/// Reads a whole checkpoint file, mapping I/O errors to [`CheckpointError::Io`].
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    std::fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_owned(),
        source,
    })
}

/// A parsed safetensors file that hands out tensors by their Hugging Face names, records
/// which ones were used, and reports every problem against the file and the tensor.
pub(crate) struct Reader<'a> {
    path: &'a Path,
    tensors: SafeTensors<'a>,
    /// The model prefix the names carry (`bert.`, `mpnet.`), or `""`.
    pub(crate) prefix: &'static str,
    used: BTreeSet<String>,
}

impl<'a> Reader<'a> {
    /// Parses `bytes`; names are looked up with `model_prefix` (say `bert.`) when the
    /// embeddings are stored under it, and without any prefix otherwise.
    pub(crate) fn new(
        path: &'a Path,
        bytes: &'a [u8],
        model_prefix: &'static str,
    ) -> Result<Self, CheckpointError> {
        let tensors = SafeTensors::deserialize(bytes).map_err(|e| CheckpointError::Corrupt {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let embeddings = format!("{model_prefix}embeddings.");
        let prefix = if tensors.names().iter().any(|n| n.starts_with(&embeddings)) {
            model_prefix
        } else {
            ""
        };
        Ok(Self {
            path,
            tensors,
            prefix,
            used: BTreeSet::new(),
        })
    }

    /// The stored name of `name` (with prefix and LayerNorm aliases), if present.
    fn find(&self, name: &str) -> Option<String> {
        let full = format!("{}{name}", self.prefix);
        let mut candidates = vec![full.clone()];
        if let Some(base) = full.strip_suffix("LayerNorm.weight") {
            candidates.push(format!("{base}LayerNorm.gamma"));
        } else if let Some(base) = full.strip_suffix("LayerNorm.bias") {
            candidates.push(format!("{base}LayerNorm.beta"));
        }
        let names = self.tensors.names();
        candidates.into_iter().find(|c| names.contains(&c.as_str()))
    }

    /// Whether the file holds `name` (under the prefix, with LayerNorm aliases).
    pub(crate) fn has(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    /// Whether `name` is stored as int8 (an int8 backbone's projection or word embeddings).
    pub(crate) fn is_int8(&self, name: &str) -> bool {
        self.find(name)
            .and_then(|stored| self.tensors.tensor(&stored).ok())
            .is_some_and(|view| view.dtype() == Dtype::I8)
    }

    /// The stored tensor `stored`, which must have shape `expected`.
    fn view(
        &self,
        stored: &str,
        expected: &[usize],
    ) -> Result<safetensors::tensor::TensorView<'a>, CheckpointError> {
        let view = self
            .tensors
            .tensor(stored)
            .map_err(|e| CheckpointError::Corrupt {
                path: self.path.to_owned(),
                message: e.to_string(),
            })?;
        if view.shape() != expected {
            return Err(CheckpointError::Shape {
                path: self.path.to_owned(),
                name: stored.to_owned(),
                expected: expected.to_vec(),
                actual: view.shape().to_vec(),
            });
        }
        Ok(view)
    }

    /// The int8 values of `name` (stored as `I8`), which must have shape `expected`.
    fn read_i8(&mut self, name: &str, expected: &[usize]) -> Result<Vec<i8>, CheckpointError> {
        let stored = self.find(name).unwrap_or_else(|| name.to_owned());
        let values = self
            .view(&stored, expected)?
            .data()
            .iter()
            .map(|&b| b as i8)
            .collect();
        self.used.insert(stored);
        Ok(values)
    }

    fn read(
        &mut self,
        name: &str,
        expected: &[usize],
        missing: &mut Vec<String>,
    ) -> Result<Option<Vec<f32>>, CheckpointError> {
        let Some(stored) = self.find(name) else {
            missing.push(format!("{}{name}", self.prefix));
            return Ok(None);
        };
        let view = self.view(&stored, expected)?;
        let Some(values) = decode_f32(view.dtype(), view.data()) else {
            return Err(CheckpointError::Dtype {
                path: self.path.to_owned(),
                name: stored,
                dtype: format!("{:?}", view.dtype()),
            });
        };
        if values.iter().any(|v| !v.is_finite()) {
            return Err(CheckpointError::NonFinite {
                path: self.path.to_owned(),
                name: stored,
            });
        }
        self.used.insert(stored);
        Ok(Some(values))
    }

    /// The stored names of every tensor not read so far (the `position_ids` buffer aside),
    /// sorted.
    pub(crate) fn unexpected(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .tensors
            .names()
            .into_iter()
            .filter(|n| !self.used.contains(*n) && !n.ends_with("embeddings.position_ids"))
            .map(str::to_owned)
            .collect();
        names.sort();
        names
    }
}

/// Reads weights from a checkpoint, deferring "missing" errors so one error lists every
/// missing tensor.
pub(crate) struct CheckpointSource<'r, 'a> {
    pub(crate) reader: &'r mut Reader<'a>,
    pub(crate) device: &'r Device,
    /// The full names of the tensors asked for but absent.
    pub(crate) missing: Vec<String>,
    /// Whether the model being built takes int8 weights (BERT does, MPNet does not): without
    /// it, an `I8` tensor is a dtype error.
    pub(crate) int8: bool,
}

impl<'r, 'a> CheckpointSource<'r, 'a> {
    /// A source reading from `reader` onto `device`.
    pub(crate) fn new(reader: &'r mut Reader<'a>, device: &'r Device) -> Self {
        Self {
            reader,
            device,
            missing: Vec::new(),
            int8: false,
        }
    }
}

impl WeightSource for CheckpointSource<'_, '_> {
    type Error = CheckpointError;

    fn tensor<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Tensor<D>, CheckpointError> {
        // Of the plain tensors, only the word embeddings may be int8.
        if self.int8 && D == 2 && name == WORD_EMBEDDINGS && self.reader.is_int8(name) {
            self.int8_device()?;
            let values = self.reader.read_i8(name, &shape)?;
            let [rows, cols] = [shape[0], shape[1]];
            return Ok(int8_tensor(values, [rows, cols], self.device).reshape(shape));
        }
        let values = self.reader.read(name, &shape, &mut self.missing)?;
        Ok(match values {
            Some(v) => Tensor::from_data(TensorData::new(v, shape), self.device),
            None => self.placeholder()?,
        })
    }

    fn linear_weight(
        &mut self,
        name: &str,
        d_in: usize,
        d_out: usize,
    ) -> Result<Tensor<2>, CheckpointError> {
        if self.int8 && self.reader.is_int8(name) {
            self.int8_device()?;
            let values = self.reader.read_i8(name, &[d_out, d_in])?;
            return Ok(int8_tensor(
                transpose(&values, d_out, d_in),
                [d_in, d_out],
                self.device,
            ));
        }
        let Some(values) = self.reader.read(name, &[d_out, d_in], &mut self.missing)? else {
            return self.placeholder();
        };
        // Transpose on the host so the device holds a contiguous [in, out] matrix.
        Ok(Tensor::from_data(
            TensorData::new(transpose(&values, d_out, d_in), [d_in, d_out]),
            self.device,
        ))
    }

    fn int8_scale(
        &mut self,
        weight: &str,
        kind: &str,
        len: usize,
    ) -> Result<Option<Tensor<1>>, CheckpointError> {
        if !(self.int8 && self.reader.is_int8(weight)) {
            return Ok(None);
        }
        let name = format!("{weight}_{kind}");
        Ok(Some(self.tensor(&name, [len])?))
    }
}

/// How many missing tensors are listed before loading stops: a config.json asking for far
/// more layers than the file holds fails at once instead of building them all.
const MISSING_LISTED: usize = 32;

impl CheckpointSource<'_, '_> {
    /// What stands in for a missing tensor while the rest are checked: one value, never the
    /// full size a (possibly hostile) config asks for. The missing list turns into an error
    /// before any model is returned; past [`MISSING_LISTED`] names it does so at once.
    fn placeholder<const D: usize>(&mut self) -> Result<Tensor<D>, CheckpointError> {
        if self.missing.len() >= MISSING_LISTED {
            let mut names = std::mem::take(&mut self.missing);
            names.push("(and more: listing stopped)".into());
            return Err(CheckpointError::Missing {
                path: self.reader.path.to_owned(),
                names,
            });
        }
        Ok(Tensor::zeros([1; D], self.device))
    }

    /// Refuses int8 weights on a device that cannot run them.
    fn int8_device(&self) -> Result<(), CheckpointError> {
        if host_inference(self.device) {
            Ok(())
        } else {
            Err(CheckpointError::Int8Device {
                path: self.reader.path.to_owned(),
                device: format!("{:?}", self.device),
            })
        }
    }
}

/// The transpose of a row-major `[rows, cols]` matrix.
fn transpose<T: Copy + Default>(values: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut t = vec![T::default(); values.len()];
    for (r, row) in values.chunks_exact(cols).enumerate() {
        for (c, v) in row.iter().enumerate() {
            t[c * rows + r] = *v;
        }
    }
    t
}

impl BertModel<NoAdapter> {
    /// Loads `config.json` and `model.safetensors` from a Hugging Face model directory.
    ///
    /// ```no_run
    /// use lora_bert_encoder::{BertModel, device};
    ///
    /// let device = device::device(device::Backend::Flex)?;
    /// let (model, report) = BertModel::load("all-MiniLM-L6-v2", &device)?;
    /// assert!(report.unexpected.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load(
        dir: impl AsRef<Path>,
        device: &Device,
    ) -> Result<(Self, LoadReport), CheckpointError> {
        let files = ModelDir::new(dir);
        let config = BertConfig::from_file(&files.config)?;
        Self::load_safetensors(&files.weights, &config, device)
    }

    /// Loads HF-named weights from a safetensors file into a model of `config`.
    pub fn load_safetensors(
        path: impl AsRef<Path>,
        config: &BertConfig,
        device: &Device,
    ) -> Result<(Self, LoadReport), CheckpointError> {
        let path = path.as_ref();
        let bytes = read_bytes(path)?;
        Self::load_safetensors_bytes(&bytes, path, config, device)
    }

    /// Loads from safetensors bytes already in memory; `path` is only used in messages.
    pub fn load_safetensors_bytes(
        bytes: &[u8],
        path: &Path,
        config: &BertConfig,
        device: &Device,
    ) -> Result<(Self, LoadReport), CheckpointError> {
        config.validate()?;
        load_checkpoint(bytes, path, "bert.", device, |source, has_pooler| {
            source.int8 = true;
            build(config, has_pooler, source)
        })
    }
}

/// What every HF checkpoint loader shares: reads `bytes` (names with or without `prefix`),
/// builds the model with `build` (told whether the file has a pooler), turns every missing
/// tensor into one [`CheckpointError::Missing`] and reports the absent pooler and unused
/// tensors.
pub(crate) fn load_checkpoint<M>(
    bytes: &[u8],
    path: &Path,
    prefix: &'static str,
    device: &Device,
    build: impl FnOnce(&mut CheckpointSource<'_, '_>, bool) -> Result<M, CheckpointError>,
) -> Result<(M, LoadReport), CheckpointError> {
    let mut reader = Reader::new(path, bytes, prefix)?;
    let prefixed = !reader.prefix.is_empty();
    let has_pooler = reader.has("pooler.dense.weight") || reader.has("pooler.dense.bias");
    let mut source = CheckpointSource::new(&mut reader, device);
    let model = build(&mut source, has_pooler)?;
    if !source.missing.is_empty() {
        return Err(CheckpointError::Missing {
            path: path.to_owned(),
            names: source.missing,
        });
    }
    let report = LoadReport {
        missing: if has_pooler {
            Vec::new()
        } else {
            vec![
                format!("{}pooler.dense.weight", reader.prefix),
                format!("{}pooler.dense.bias", reader.prefix),
            ]
        },
        unexpected: reader.unexpected(),
        bert_prefix: prefixed,
    };
    Ok((model, report))
}

impl<A: ProjectionAdapter> BertModel<A> {
    /// The base weights with their Hugging Face names and shapes (linear weights as `[out, in]`),
    /// in a stable order. Adapters are not included: they are saved by the adapter crate. Int8
    /// weights are given dequantized.
    pub fn hf_tensors(&self) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
        let mut out = BTreeMap::new();
        let mut put = |name: String, t: TensorData| {
            let shape = t.shape().to_vec();
            let values = t.try_into_vec_as::<f32>().expect("model weights are f32");
            out.insert(name, (shape, values));
        };
        let e = &self.embeddings;
        put(
            "embeddings.word_embeddings.weight".into(),
            e.word_embeddings_f32().into_data(),
        );
        put(
            "embeddings.position_embeddings.weight".into(),
            e.position_embeddings.val().into_data(),
        );
        put(
            "embeddings.token_type_embeddings.weight".into(),
            e.token_type_embeddings.val().into_data(),
        );
        let put_ln = |put: &mut dyn FnMut(String, TensorData), name: &str, ln: &LayerNorm| {
            put(
                format!("{name}.LayerNorm.weight"),
                ln.weight.val().into_data(),
            );
            put(format!("{name}.LayerNorm.bias"), ln.bias.val().into_data());
        };
        put_ln(&mut put, "embeddings", &e.layer_norm);
        fn put_dense<B: ProjectionAdapter>(
            put: &mut dyn FnMut(String, TensorData),
            name: &str,
            p: &Projection<B>,
        ) {
            put(
                format!("{name}.weight"),
                p.weight_f32().transpose().into_data(),
            );
            if let Some(bias) = &p.bias {
                put(format!("{name}.bias"), bias.val().into_data());
            }
        }
        for (i, layer) in self.encoder.layer.iter().enumerate() {
            for (kind, p) in layer.projections() {
                put_dense(
                    &mut put,
                    &format!("encoder.layer.{i}.{}", kind.hf_name()),
                    p,
                );
            }
            put_ln(
                &mut put,
                &format!("encoder.layer.{i}.attention.output"),
                &layer.attention.output.layer_norm,
            );
            put_ln(
                &mut put,
                &format!("encoder.layer.{i}.output"),
                &layer.output.layer_norm,
            );
        }
        if let Some(pooler) = &self.pooler {
            put_dense(&mut put, "pooler.dense", &pooler.dense);
        }
        out
    }

    /// Saves the base weights as an HF-named safetensors file, atomically (written to a
    /// temporary file in the same directory, then renamed). Int8 weights are written as int8
    /// with their scales (the layout is in [`crate::quantize`]); [`BertModel::load`] reads them
    /// back int8.
    pub fn save_safetensors(&self, path: impl AsRef<Path>) -> Result<(), CheckpointError> {
        let path = path.as_ref();
        let mut tensors: BTreeMap<String, StoredTensor> = self
            .hf_tensors()
            .into_iter()
            .map(|(name, (shape, values))| (name, StoredTensor::f32(shape, &values)))
            .collect();
        // Int8 weights are written as they are held: int8 values and their scales.
        tensors.extend(self.int8_tensors());
        write_safetensors(path, &tensors, None)
    }

    /// The int8 weights in the file layout of [`crate::quantize`]: `{weight}` as `I8` (linear
    /// weights as HF's `[out, in]`), `{weight}_scale` and, for projections,
    /// `{weight}_input_scale` as `F32`.
    fn int8_tensors(&self) -> Vec<(String, StoredTensor)> {
        // The values are held with a per-tensor scale of 1: dequantized, they are the integers.
        let ints = |t: Tensor<2>| -> Vec<u8> {
            t.dequantize()
                .into_data()
                .iter::<f32>()
                .map(|v| v as i8 as u8)
                .collect()
        };
        let floats = |t: Tensor<1>| -> StoredTensor {
            let values: Vec<f32> = t.into_data().iter::<f32>().collect();
            StoredTensor::f32(vec![values.len()], &values)
        };
        let mut out = Vec::new();
        let e = &self.embeddings;
        if let Some(scale) = &e.word_embeddings_scale {
            let name = "embeddings.word_embeddings.weight";
            let shape = e.word_embeddings.val().dims().to_vec();
            out.push((
                name.to_owned(),
                StoredTensor::new(Dtype::I8, shape, ints(e.word_embeddings.val())),
            ));
            out.push((format!("{name}_scale"), floats(scale.val())));
        }
        for (site, p) in self.projections() {
            let (Some(cols), Some(rows)) = (&p.weight_scale, &p.input_scale) else {
                continue;
            };
            let name = format!("{}.weight", site.hf_path());
            let [d_in, d_out] = p.weight.val().dims();
            let values = ints(p.weight.val());
            let hf: Vec<u8> = (0..d_out * d_in)
                .map(|k| values[(k % d_in) * d_out + k / d_in])
                .collect();
            out.push((
                name.clone(),
                StoredTensor::new(Dtype::I8, vec![d_out, d_in], hf),
            ));
            out.push((format!("{name}_scale"), floats(cols.val())));
            out.push((format!("{name}_input_scale"), floats(rows.val())));
        }
        out
    }

    /// Saves `config.json` and `model.safetensors` into `dir` (created if needed).
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<(), CheckpointError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| CheckpointError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let files = ModelDir::new(dir);
        write_atomically(&files.config, self.config.to_json_string().as_bytes())?;
        self.save_safetensors(&files.weights)
    }
}
