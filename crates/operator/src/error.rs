//! Errors of the adapters. Every one names the object it concerns, so it can become a
//! status condition, an event and a log line as it is.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed (network, conflict, server error...).
    #[error("{context}: {source}")]
    Kube {
        context: String,
        #[source]
        source: kube::Error,
    },
    /// An object the canary needs does not exist (yet).
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        kind: String,
        namespace: String,
        name: String,
    },
    /// The canary or an object it refers to is not usable as it is.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub fn kube(context: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
