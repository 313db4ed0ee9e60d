//! serin's API: Flagger-compatible `flagger.app/v1beta1` Canary, MetricTemplate and
//! AlertProvider, typed Istio routing objects, defaults, loading of old documents,
//! validation and CRD generation.

pub mod alert_provider;
pub mod canary;
pub mod clock;
pub mod crd;
pub mod defaults;
pub mod duration;
pub mod gateway;
pub mod istio;
pub mod load;
pub mod manual;
pub mod metric_template;
pub mod schema;
pub mod stand_in;
pub mod validate;

pub use alert_provider::{AlertProvider, AlertProviderSpec};
pub use canary::{Canary, CanarySpec, CanaryStatus};
pub use metric_template::{MetricTemplate, MetricTemplateSpec};
