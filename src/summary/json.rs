//! summary.json on disk: a run folder's file read back (the error names it), the pretty JSON written, and
//! the latency histograms inside it as base64 of their lossless HdrHistogram encoding.

use super::schema::{CaseSummary, Summary};
use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use std::path::Path;

impl Summary {
    /// Reads the summary.json of the run folder `dir`; the error says which file and what is wrong.
    pub fn read(dir: &Path) -> Result<Summary, String> {
        let path = dir.join("summary.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "{} is not a run folder ({}: {e}); pass a folder `taskbench run` wrote",
                dir.display(),
                path.display()
            )
        })?;
        serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}: not a summary this taskbench ({}) can read: {e}",
                path.display(),
                env!("CARGO_PKG_VERSION")
            )
        })
    }

    /// The case called `name`; the error lists the cases there are.
    pub fn case(&self, name: &str) -> Result<&CaseSummary, String> {
        self.cases.iter().find(|c| c.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.cases.iter().map(|c| c.name.as_str()).collect();
            format!(
                "no case named {name:?} in the run of {}; cases: {}",
                self.scenario,
                names.join(", ")
            )
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
    pub fn decode_histogram(&self) -> Result<Histogram<u64>, String> {
        decode_histogram(&self.histogram)
            .map_err(|e| format!("case {:?}: `histogram` {e}", self.name))
    }
}

/// A histogram from base64 of its V2-deflate encoding; the error says which step failed.
pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("is not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("does not decode: {e:?}"))
}

/// An HDR histogram as base64 of its V2-deflate encoding (lossless; merge runs by decoding and adding).
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .expect("serialising into memory cannot fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
