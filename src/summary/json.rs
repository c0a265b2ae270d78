//! summary.json on disk: a run folder's file read back (the error names it), the pretty JSON written, and
//! the latency histograms inside it as base64 of their lossless HdrHistogram encoding.

use super::schema::{CaseSummary, Summary};
use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{
    DeserializeError, Deserializer, Serializer as _, V2DeflateSerializer,
};
use std::path::{Path, PathBuf};

/// Why a run folder's summary.json, or something asked of it, cannot be had. Each message names the file
/// or case and what is wrong with it.
///
/// The underlying error is kept in `error` for a caller that wants it, and written inside the sentence,
/// not exposed as `source()`: `{e:#}` prints a source chain after the message, which would say it twice.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    /// `dir` has no summary.json that can be read (it does not exist, or is not readable).
    #[error(
        "{} is not a run folder ({}: {error}); pass a folder `taskbench run` wrote",
        dir.display(),
        path.display()
    )]
    NotARunFolder {
        dir: PathBuf,
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file is there but is not a summary this version reads (not JSON, a key missing or mistyped).
    #[error(
        "{}: not a summary this taskbench ({}) can read: {error}",
        path.display(),
        env!("CARGO_PKG_VERSION")
    )]
    NotASummary {
        path: PathBuf,
        error: serde_json::Error,
    },
    /// No case of the run is called `name`.
    #[error("no case named {name:?} in the run of {scenario}; cases: {}", cases.join(", "))]
    NoSuchCase {
        name: String,
        scenario: String,
        /// The cases the run has.
        cases: Vec<String>,
    },
    /// A histogram of case `case` (its field `field`, as a message names it) does not decode.
    #[error("case {case:?}: {field} {error}")]
    BadHistogram {
        case: String,
        field: &'static str,
        error: HistogramError,
    },
}

/// Why base64 text is not a histogram.
#[derive(Debug, thiserror::Error)]
pub enum HistogramError {
    #[error("is not base64: {0}")]
    NotBase64(base64::DecodeError),
    #[error("does not decode: {0:?}")]
    DoesNotDecode(DeserializeError),
}

impl Summary {
    /// Reads the summary.json of the run folder `dir`; the error says which file and what is wrong.
    pub fn read(dir: &Path) -> Result<Summary, SummaryError> {
        let path = dir.join("summary.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) => {
                return Err(SummaryError::NotARunFolder {
                    dir: dir.to_path_buf(),
                    path,
                    error,
                });
            }
        };
        serde_json::from_str(&text).map_err(|error| SummaryError::NotASummary { path, error })
    }

    /// The case called `name`; the error lists the cases there are.
    pub fn case(&self, name: &str) -> Result<&CaseSummary, SummaryError> {
        self.cases
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| SummaryError::NoSuchCase {
                name: name.to_string(),
                scenario: self.scenario.clone(),
                cases: self.cases.iter().map(|c| c.name.clone()).collect(),
            })
    }

    /// As pretty JSON with a final newline, the way it is written to disk and stdout.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a summary serialises");
        text.push('\n');
        text
    }
}

impl CaseSummary {
    /// The latency histogram, decoded from `histogram`.
    pub fn decode_histogram(&self) -> Result<Histogram<u64>, SummaryError> {
        decode_histogram(&self.histogram).map_err(|error| SummaryError::BadHistogram {
            case: self.name.clone(),
            field: "`histogram`",
            error,
        })
    }
}

/// A histogram from base64 of its V2-deflate encoding; the error says which step failed.
pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, HistogramError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(HistogramError::NotBase64)?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(HistogramError::DoesNotDecode)
}

/// An HDR histogram as base64 of its V2-deflate encoding (lossless; merge runs by decoding and adding).
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .expect("serialising into memory cannot fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
