//! The operator: the only place that talks to the Kubernetes API. The adapters
//! (`workload`, `router`) act on the cluster behind small traits; the controller
//! drives them with the decisions of `serin-engine`.

pub mod api_client;
pub mod configs;
pub mod error;
pub mod hpa;
pub mod labels;
pub mod render;
pub mod router;
pub mod service;
pub mod workload;

pub mod controller;
pub mod events;
pub mod health;
pub mod leader;
pub mod observer;
pub mod scheduler;
pub mod telemetry;
pub mod webhook;
