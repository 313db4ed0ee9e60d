use crate::Service;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(
        "alert provider type {0:?} is not supported (expected one of slack, msteams, discord, rocket, gchat)"
    )]
    UnknownType(String),
    #[error("alert provider {service} has no address")]
    MissingAddress { service: Service },
    #[error("invalid {service} webhook address {address}: {reason}")]
    InvalidAddress {
        service: Service,
        /// Redacted: webhook URLs carry credentials.
        address: String,
        reason: String,
    },
    #[error(transparent)]
    Client(#[from] serin_http_client::ClientError),
    #[error("cannot send {service} alert to {address}: {reason}")]
    Send {
        service: Service,
        address: String,
        reason: String,
    },
    #[error("{service} alert to {address} answered {status}: {body}")]
    Status {
        service: Service,
        address: String,
        status: u16,
        body: String,
    },
    #[error("{service} alert to {address} timed out after {timeout:?}")]
    Timeout {
        service: Service,
        address: String,
        timeout: std::time::Duration,
    },
}

/// Why the AlertProvider of a canary alert could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("alert provider {namespace}/{name}: {message}")]
    Provider {
        namespace: String,
        name: String,
        message: String,
    },
    #[error("alert provider {namespace}/{name}: secret {secret}: {message}")]
    Secret {
        namespace: String,
        name: String,
        secret: String,
        message: String,
    },
    #[error("alert provider {namespace}/{name}: {source}")]
    Notifier {
        namespace: String,
        name: String,
        source: NotifyError,
    },
}
