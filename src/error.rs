//! Why a publish failed: the error every publisher, the engine and the reports share.

/// Why a publish failed, as a stable kind (the key in `errors`) and a message for people.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishError {
    pub kind: &'static str,
    pub message: String,
}

impl PublishError {
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        PublishError {
            kind,
            message: message.into(),
        }
    }
}
