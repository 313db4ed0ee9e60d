//! The HTTP/1.1 server on loopback, and the kubeconfig that points kubectl at it.

use std::net::SocketAddr;

use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::Sandbox;

/// A running HTTP server; [`ServeHandle::shutdown`] stops it and closes its connections.
pub struct ServeHandle {
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ServeHandle {
    /// The bound address (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

pub(crate) async fn serve(sb: Sandbox, addr: SocketAddr) -> std::io::Result<ServeHandle> {
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("the sandbox only serves on loopback, not {addr}"),
        ));
    }
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                _ = stopped.changed() => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let sb = sb.clone();
                    let svc = hyper::service::service_fn(move |req| {
                        let mut sb = sb.clone();
                        async move { tower::Service::call(&mut sb, req).await }
                    });
                    conns.spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        conns.shutdown().await;
    });
    Ok(ServeHandle { addr, stop, task })
}

pub(crate) fn write_kubeconfig(path: &std::path::Path, addr: SocketAddr) -> std::io::Result<()> {
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: serin-sandbox
  cluster:
    server: http://{addr}
contexts:
- name: serin-sandbox
  context:
    cluster: serin-sandbox
    user: serin-sandbox
    namespace: default
current-context: serin-sandbox
users:
- name: serin-sandbox
  user: {{}}
"
    );
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)
}
