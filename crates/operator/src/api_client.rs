//! The Kubernetes client's middleware: every failed API request names the server and
//! the request, so a log line or an event says which call to which server failed
//! (`GET https://10.0.0.1:6443/apis/flagger.app/v1beta1/canaries?watch: ...`), not
//! only `client error (Connect)`.
//!
//! - A transport error (refused, reset, timed out, TLS), whether sending the request
//!   or reading its body (a watch stream cut mid-way), becomes an [`ApiRequestError`]
//!   naming the verb, the server and the path.
//! - An answer with a server error (5xx), 401, 403 or 429 is logged at warn level with
//!   the same names: kube turns its body into an error that has only the server's
//!   message.
//! - A watch request answered 2xx tells [`Health`] the watches on that path work.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use tower::{BoxError, Layer, Service};

use crate::health::Health;

/// A request that failed before the API server answered it.
#[derive(Debug, thiserror::Error)]
#[error("{method} {server}{path}: {cause}")]
pub struct ApiRequestError {
    pub method: String,
    pub server: String,
    /// The path, with `?watch` for a watch.
    pub path: String,
    /// The innermost causes, in words.
    pub cause: String,
    #[source]
    pub source: BoxError,
}

/// The error and all its sources in one line (`client error (Connect): tcp connect
/// error: Connection refused (os error 111)`), without repeats.
pub fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = c.source();
    }
    parts.join(": ")
}

/// Names the server and the request in errors; reports watch answers to [`Health`].
#[derive(Clone)]
pub struct ApiRequestLayer {
    server: String,
    health: Option<Health>,
}

impl ApiRequestLayer {
    /// `server` is the cluster URL (`https://10.0.0.1:6443`).
    pub fn new(server: &str, health: Option<Health>) -> Self {
        Self {
            server: server.trim_end_matches('/').to_string(),
            health,
        }
    }
}

impl<S> Layer<S> for ApiRequestLayer {
    type Service = ApiRequestService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiRequestService {
            inner,
            server: self.server.clone(),
            health: self.health.clone(),
        }
    }
}

pub struct ApiRequestService<S> {
    inner: S,
    server: String,
    health: Option<Health>,
}

fn is_watch(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|p| p == "watch=true" || p == "watch=1" || p == "watch")
    })
}

impl<S, B, R> Service<Request<B>> for ApiRequestService<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    R: hyper::body::Body<Data = Bytes> + Send + 'static,
    R::Error: Into<BoxError>,
{
    type Response = Response<UnsyncBoxBody<Bytes, BoxError>>;
    type Error = BoxError;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let method = request.method().to_string();
        let watch = is_watch(request.uri().query());
        let path = request.uri().path().to_string();
        let shown = if watch {
            format!("{path}?watch")
        } else {
            path.clone()
        };
        let server = self.server.clone();
        let health = self.health.clone();
        let sent = self.inner.call(request);
        Box::pin(async move {
            let tag = {
                let (method, server, shown) = (method.clone(), server.clone(), shown.clone());
                move |e: BoxError| -> BoxError {
                    Box::new(ApiRequestError {
                        cause: causes(&*e),
                        method: method.clone(),
                        server: server.clone(),
                        path: shown.clone(),
                        source: e,
                    })
                }
            };
            let response = sent.await.map_err(|e| tag(e.into()))?;
            let status = response.status();
            if status.is_server_error() || matches!(status.as_u16(), 401 | 403 | 429) {
                tracing::warn!(
                    msg = format!("API server {server} answered {method} {shown}: {status}")
                );
            }
            if watch
                && status.is_success()
                && let Some(h) = &health
            {
                h.watch_request_answered(&path);
            }
            Ok(response.map(|body| body.map_err(move |e| tag(e.into())).boxed_unsync()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_are_told_from_their_query() {
        assert!(is_watch(Some("watch=true&resourceVersion=5")));
        assert!(is_watch(Some("labelSelector=a&watch=1")));
        assert!(!is_watch(Some("limit=500")));
        assert!(!is_watch(None));
    }
}
