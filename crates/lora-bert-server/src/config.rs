//! What a server accepts and how it batches: [`ServerConfig`].

use std::time::Duration;

/// Limits and batching of a [`Server`](crate::Server). [`Default`] gives the values the
/// command line defaults to.
///
/// ```
/// use std::time::Duration;
/// use lora_bert_server::ServerConfig;
///
/// let config = ServerConfig {
///     max_batch_tokens: 8192,
///     max_wait: Duration::from_millis(5),
///     ..ServerConfig::default()
/// };
/// assert_eq!(config.max_texts, 64);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// The most padded tokens one forward pass runs (rows × longest row). Rows of all apps'
    /// requests fill a batch in arrival order up to this budget; a request larger than the
    /// budget (a long text's many windows) spreads over several passes.
    pub max_batch_tokens: usize,
    /// How long the batcher may wait for the queue to refill to the rows of its last batch
    /// before it runs the next (under steady load the clients it just answered send their
    /// next requests within moments). It does not wait when the queue holds that many rows
    /// or a full batch: a lone request, after a batch of one, runs at once.
    pub max_wait: Duration,
    /// The most requests waiting for the model. A request that finds the queue full is
    /// answered 503 with `Retry-After`.
    pub max_queue: usize,
    /// The most texts in one request (more: 413).
    pub max_texts: usize,
    /// The most characters in one text (more: 413). Longer texts than the model's maximum
    /// below this limit are windowed (`/ner`) or truncated (`/predict`, `/embed`).
    pub max_chars: usize,
    /// The most bytes in a request body (more: 413).
    pub max_body_bytes: usize,
    /// Tokens per row: the window of `/ner` and the truncation of `/predict` (at most the
    /// model's positions).
    pub max_length: usize,
    /// Tokens per text of `/embed` (longer texts are cut, as sentence-transformers cuts at its
    /// `max_seq_length`); `None`: the model's positions. The command line reads it from the
    /// backbone's `sentence_bert_config.json` when there is one.
    pub embed_max_length: Option<usize>,
    /// The bearer token the management routes (`/apps`) require; `None`: none, which is
    /// allowed only on a loopback address.
    pub token: Option<String>,
    /// Whether the management routes are served at all.
    pub management: bool,
    /// `Retry-After` seconds of a 503 for a full queue.
    pub retry_after_secs: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_batch_tokens: 4096,
            max_wait: Duration::from_millis(2),
            max_queue: 512,
            max_texts: 64,
            max_chars: 20_000,
            max_body_bytes: 2 * 1024 * 1024,
            max_length: 128,
            embed_max_length: None,
            token: None,
            management: true,
            retry_after_secs: 1,
        }
    }
}
