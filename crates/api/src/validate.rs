//! Checks of Canary, MetricTemplate and AlertProvider documents: errors for values that
//! would make a rollout misbehave, warnings for what serin would ignore.

use serde_json::Value;

use crate::canary::{CanaryAnalysis, CanaryWebhook, HookType};
use crate::crd::schema_of;
use crate::defaults::{
    ALERT_PROVIDER_TYPES, BUILTIN_METRICS, MIN_ANALYSIS_INTERVAL, PROVIDERS, TARGET_KINDS,
};
use crate::duration::parse_duration;
use crate::istio::HTTPMatchRequest;
use crate::load::{Document, normalise};
use crate::metric_template::METRIC_PROVIDER_TYPES;
use crate::{AlertProvider, Canary, MetricTemplate};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// One thing found wrong with one field of one object.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub severity: Severity,
    /// `spec.analysis.stepWeight`, dotted, with `[i]` for list items.
    pub path: String,
    pub message: String,
}

impl Finding {
    fn error(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            path: path.into(),
            message: message.into(),
        }
    }

    fn warning(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            path: path.into(),
            message: message.into(),
        }
    }
}

/// The kinds `validate_document` checks.
pub const CHECKED_KINDS: [&str; 3] = ["Canary", "MetricTemplate", "AlertProvider"];

/// Checks one document. Documents of other kinds or groups give no findings, but
/// for a HorizontalPodAutoscaler of a version Kubernetes no longer serves, which
/// serin reads as `autoscaling/v2` (a warning for each change).
pub fn validate_document(doc: &Document) -> Vec<Finding> {
    if checked_kind(&doc.value).is_some() {
        validate_owned_document(doc.value.clone())
    } else {
        Vec::new()
    }
}

/// The kind of a document [`validate_document`] checks: a HorizontalPodAutoscaler, or
/// one of [`CHECKED_KINDS`] of the `flagger.app` group.
fn checked_kind(value: &Value) -> Option<&str> {
    let kind = value.get("kind").and_then(Value::as_str)?;
    let flagger = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .is_some_and(|v| v.starts_with("flagger.app/"));
    (kind == "HorizontalPodAutoscaler" || (flagger && CHECKED_KINDS.contains(&kind)))
        .then_some(kind)
}

/// [`validate_document`] of a document's value that the caller gives up (no copy).
pub fn validate_owned_document(mut value: Value) -> Vec<Finding> {
    let Some(kind) = checked_kind(&value).map(str::to_string) else {
        return Vec::new();
    };
    if kind == "HorizontalPodAutoscaler" {
        return normalise(&mut value)
            .into_iter()
            .map(|n| Finding::warning(n.path, format!("deprecated, {}", n.message)))
            .collect();
    }
    let mut findings: Vec<Finding> = normalise(&mut value)
        .into_iter()
        .map(|n| Finding::warning(n.path, format!("deprecated, {}", n.message)))
        .collect();
    if let Some(schema) = schema_of(kind.as_str()) {
        unknown_fields(&value, schema, &mut String::new(), &mut findings);
    }
    let typed = match kind.as_str() {
        "Canary" => typed::<Canary>(value).map(|c| validate_canary(&c, &mut findings)),
        "MetricTemplate" => {
            typed::<MetricTemplate>(value).map(|t| validate_metric_template(&t, &mut findings))
        }
        _ => typed::<AlertProvider>(value).map(|p| validate_alert_provider(&p, &mut findings)),
    };
    if let Err(e) = typed {
        let path = e.path().to_string();
        findings.push(Finding::error(
            if path == "." { String::new() } else { path },
            e.into_inner().to_string(),
        ));
    }
    findings
}

/// The typed object; for one that does not deserialize, the error with its field path
/// (tracking the path costs time, so only a failed document is read twice).
fn typed<T: serde::de::DeserializeOwned>(
    value: Value,
) -> Result<T, serde_path_to_error::Error<serde_json::Error>> {
    match T::deserialize(&value) {
        Ok(t) => Ok(t),
        Err(_) => serde_path_to_error::deserialize(value),
    }
}

/// Reports keys that the kind's schema does not have, with the closest known name.
/// `path` is the dotted path of `value`, extended and restored while descending (no
/// string is built for a key that has nothing to report).
fn unknown_fields(value: &Value, schema: &Value, path: &mut String, out: &mut Vec<Finding>) {
    if schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
        && schema.get("properties").is_none()
    {
        return;
    }
    let len = path.len();
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (key, child) in map {
                    match props.get(key) {
                        Some(child_schema) => {
                            push_key(path, key);
                            unknown_fields(child, child_schema, path, out);
                            path.truncate(len);
                        }
                        None if len == 0
                            && ["apiVersion", "kind", "metadata"].contains(&key.as_str()) => {}
                        None => {
                            let message = match closest(key, props.keys().map(String::as_str)) {
                                Some(known) => {
                                    format!("unknown field, did you mean {known}?")
                                }
                                None => "unknown field, ignored".to_string(),
                            };
                            push_key(path, key);
                            out.push(Finding::warning(path.clone(), message));
                            path.truncate(len);
                        }
                    }
                }
            } else if let Some(extra) = schema.get("additionalProperties")
                && extra.is_object()
            {
                for (key, child) in map {
                    push_key(path, key);
                    unknown_fields(child, extra, path, out);
                    path.truncate(len);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    use std::fmt::Write as _;
                    let _ = write!(path, "[{i}]");
                    unknown_fields(item, item_schema, path, out);
                    path.truncate(len);
                }
            }
        }
        _ => {}
    }
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

/// The known name a misspelt key most likely meant.
fn closest<'a>(key: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let lower = key.to_ascii_lowercase();
    known
        .map(|k| {
            let kl = k.to_ascii_lowercase();
            let mut score = strsim::jaro_winkler(&lower, &kl);
            if kl.starts_with(&lower) || lower.starts_with(&kl) {
                score = score.max(0.9);
            }
            (k, score)
        })
        .filter(|(_, score)| *score >= 0.8)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(k, _)| k)
}

/// Checks a Canary as the operator reads it from the API server: the same checks as
/// `serin validate` after parsing, so a spec the command rejects is never acted on.
pub fn validate_canary_object(c: &Canary) -> Vec<Finding> {
    let mut out = Vec::new();
    validate_canary(c, &mut out);
    out
}

/// The longest name a Service (a DNS-1035 label) or a label value may have.
pub const MAX_NAME_LENGTH: usize = 63;

fn validate_canary(c: &Canary, out: &mut Vec<Finding>) {
    let spec = &c.spec;
    check_generated_names(c, out);
    if spec.target_ref.name.is_empty() {
        out.push(Finding::error(
            "spec.targetRef.name",
            "required: the workload to run the canary for",
        ));
    }
    match spec.target_ref.kind.as_deref() {
        None | Some("") => out.push(Finding::error(
            "spec.targetRef.kind",
            "required: Deployment or DaemonSet",
        )),
        Some(k) if !TARGET_KINDS.contains(&k) => out.push(Finding::error(
            "spec.targetRef.kind",
            format!(
                "unsupported target kind {k:?}: serin runs canaries for Deployment and DaemonSet"
            ),
        )),
        _ => {}
    }
    if let Some(api) = spec.target_ref.api_version.as_deref()
        && !api.is_empty()
        && api != "apps/v1"
    {
        out.push(Finding::error(
            "spec.targetRef.apiVersion",
            format!("unsupported apiVersion {api:?}: expected apps/v1"),
        ));
    }
    if let Some(hpa) = &spec.autoscaler_ref {
        if hpa.name.is_empty() {
            out.push(Finding::error("spec.autoscalerRef.name", "required"));
        }
        if let Some(kind) = hpa.kind.as_deref()
            && kind != "HorizontalPodAutoscaler"
        {
            out.push(Finding::error(
                "spec.autoscalerRef.kind",
                format!("unsupported autoscaler kind {kind:?}: expected HorizontalPodAutoscaler"),
            ));
        }
    }
    let provider = c.provider();
    if !PROVIDERS.contains(&provider) {
        out.push(Finding::error(
            "spec.provider",
            format!(
                "unknown provider {provider:?}: serin supports {}",
                PROVIDERS.join(", ")
            ),
        ));
    }
    if provider.starts_with("gatewayapi:") {
        if spec.service.gateway_refs.is_empty() {
            out.push(Finding::error(
                "spec.service.gatewayRefs",
                format!(
                    "required with provider {provider}: the Gateways the HTTPRoute attaches to"
                ),
            ));
        }
        for (i, r) in spec.service.gateway_refs.iter().enumerate() {
            if r.get("name")
                .and_then(serde_json::Value::as_str)
                .is_none_or(str::is_empty)
            {
                out.push(Finding::error(
                    format!("spec.service.gatewayRefs[{i}].name"),
                    "required: the Gateway's name",
                ));
            }
        }
    }
    if !(1..=65535).contains(&spec.service.port) {
        out.push(Finding::error(
            "spec.service.port",
            if spec.service.port == 0 {
                "required: the port the service exposes".to_string()
            } else {
                format!("{} is not a port number (1-65535)", spec.service.port)
            },
        ));
    }
    if let Some(d) = spec.progress_deadline_seconds
        && d < 0
    {
        out.push(Finding::error(
            "spec.progressDeadlineSeconds",
            format!("{d} is negative"),
        ));
    }
    for (i, m) in spec.service.match_.iter().enumerate() {
        check_match(m, &format!("spec.service.match[{i}]"), out);
    }
    if let Some(t) = spec.service.timeout.as_deref() {
        check_duration(t, "spec.service.timeout", out);
    }
    if let Some(analysis) = c.analysis() {
        let base = if spec.analysis.is_some() {
            "spec.analysis"
        } else {
            "spec.canaryAnalysis"
        };
        validate_analysis(c, analysis, base, out);
    }
}

/// The names serin generates (`<service>-primary`, `<service>-canary`, the
/// `<target>-primary` workload and its `app` label) must fit the 63 characters a
/// Service name and a label value may have, or the API server refuses them mid-way.
fn check_generated_names(c: &Canary, out: &mut Vec<Finding>) {
    let (_, primary, canary) = c.service_names();
    let service_field = if c
        .spec
        .service
        .name
        .as_deref()
        .is_some_and(|n| !n.is_empty())
    {
        "spec.service.name"
    } else {
        "spec.targetRef.name"
    };
    for name in [&primary, &canary] {
        if name.len() > MAX_NAME_LENGTH {
            out.push(Finding::error(
                service_field,
                format!(
                    "the generated Service name {name:?} is {} characters, above the {MAX_NAME_LENGTH} a Service name may have",
                    name.len()
                ),
            ));
            return;
        }
    }
    let workload = format!("{}-primary", c.spec.target_ref.name);
    if workload.len() > MAX_NAME_LENGTH {
        out.push(Finding::error(
            "spec.targetRef.name",
            format!(
                "the generated primary {workload:?} is {} characters, above the {MAX_NAME_LENGTH} its selector label may have",
                workload.len()
            ),
        ));
    }
}

fn check_duration(value: &str, path: &str, out: &mut Vec<Finding>) -> Option<std::time::Duration> {
    match parse_duration(value) {
        Ok(d) if d.is_zero() => {
            out.push(Finding::error(path, "must be longer than zero"));
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            out.push(Finding::error(
                path,
                format!("{e} (write it like 30s, 1m or 1m30s)"),
            ));
            None
        }
    }
}

fn check_weight(value: Option<i32>, path: &str, out: &mut Vec<Finding>) {
    if let Some(w) = value
        && !(0..=100).contains(&w)
    {
        out.push(Finding::error(path, format!("{w} is outside 0-100")));
    }
}

fn check_match(m: &HTTPMatchRequest, path: &str, out: &mut Vec<Finding>) {
    for (field, sm) in m.string_matches() {
        if let Some(re) = sm.regex.as_deref()
            && let Err(e) = regex_compiles(re)
        {
            out.push(Finding::error(
                format!("{path}.{field}.regex"),
                format!("{re:?} does not compile: {e}"),
            ));
        }
    }
}

/// Whether a regex compiles, as `regex::Regex::new` would see it (its syntax and its
/// size limit), without building the DFAs a matcher needs: those were most of the
/// time `serin validate` spent on a Canary with a match. The error is the one line
/// that says what is wrong.
fn regex_compiles(re: &str) -> Result<(), String> {
    use regex_automata::meta::{Config, Regex};
    // regex's defaults: a 10 MiB compiled size limit, Unicode on.
    const SIZE_LIMIT: usize = 10 * (1 << 20);
    let config = Config::new()
        .nfa_size_limit(Some(SIZE_LIMIT))
        .dfa(false)
        .hybrid(false)
        .onepass(false)
        .backtrack(false);
    match Regex::builder().configure(config).build(re) {
        Ok(_) => Ok(()),
        Err(e) => Err(match (e.syntax_error(), e.size_limit()) {
            (Some(syntax), _) => syntax
                .to_string()
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .to_string(),
            (None, Some(limit)) => {
                format!("the compiled regex exceeds the size limit of {limit} bytes")
            }
            (None, None) => e.to_string(),
        }),
    }
}

fn validate_analysis(c: &Canary, a: &CanaryAnalysis, base: &str, out: &mut Vec<Finding>) {
    let p = |field: &str| format!("{base}.{field}");
    if let Some(i) = a.interval.as_deref()
        && let Some(d) = check_duration(i, &p("interval"), out)
        && d < MIN_ANALYSIS_INTERVAL
    {
        out.push(Finding::warning(
            p("interval"),
            format!("{i} is below the 10s minimum; serin runs every 10s"),
        ));
    }
    if let Some(t) = a.threshold
        && t < 1
    {
        out.push(Finding::error(
            p("threshold"),
            format!("{t} is below 1: the first failed check would roll back before any check ran"),
        ));
    }
    check_weight(a.max_weight, &p("maxWeight"), out);
    check_weight(a.step_weight, &p("stepWeight"), out);
    check_weight(a.mirror_weight, &p("mirrorWeight"), out);
    check_weight(a.step_weight_promotion, &p("stepWeightPromotion"), out);
    check_weight(a.primary_ready_threshold, &p("primaryReadyThreshold"), out);
    check_weight(a.canary_ready_threshold, &p("canaryReadyThreshold"), out);
    if let Some(max) = a.max_weight
        && max <= 0
        && a.step_weights.is_empty()
        && a.step_weight.unwrap_or(0) > 0
    {
        out.push(Finding::error(
            p("maxWeight"),
            format!("{max}: the canary would never receive traffic; set 1-100"),
        ));
    }
    if a.step_weight.is_some_and(|s| s == 0)
        && a.step_weights.is_empty()
        && a.iterations.unwrap_or(0) <= 0
        && !c.spec.skip_analysis
    {
        out.push(Finding::error(
            p("stepWeight"),
            "0: the canary weight would never advance; set 1-100",
        ));
    }
    if let (Some(step), Some(max)) = (a.step_weight, a.max_weight)
        && step > max
        && (0..=100).contains(&max)
    {
        out.push(Finding::error(
            p("stepWeight"),
            format!("{step} is above maxWeight {max}"),
        ));
    }
    for (i, w) in a.step_weights.iter().enumerate() {
        check_weight(Some(*w), &format!("{base}.stepWeights[{i}]"), out);
        if i > 0 && *w <= a.step_weights[i - 1] {
            out.push(Finding::error(
                format!("{base}.stepWeights[{i}]"),
                format!(
                    "{w} does not increase on {}: stepWeights must increase",
                    a.step_weights[i - 1]
                ),
            ));
        }
    }
    if let Some(it) = a.iterations
        && it < 0
    {
        out.push(Finding::error(p("iterations"), format!("{it} is negative")));
    }
    let has_weights = a.step_weight.unwrap_or(0) > 0 || !a.step_weights.is_empty();
    let has_iterations = a.iterations.unwrap_or(0) > 0;
    if !c.spec.skip_analysis && !has_weights && !has_iterations {
        out.push(Finding::error(
            base.to_string(),
            "neither stepWeight, stepWeights nor iterations is set: the analysis would never advance",
        ));
    }
    if (a.mirror || a.mirror_weight.is_some()) && c.provider() == "kubernetes" {
        out.push(Finding::error(
            p("mirror"),
            "traffic mirroring needs a mesh; the kubernetes provider cannot mirror",
        ));
    }
    if !a.match_.is_empty() && !has_iterations {
        out.push(Finding::warning(
            p("match"),
            "A/B testing needs iterations; without them the match conditions are not used",
        ));
    }
    for (i, m) in a.match_.iter().enumerate() {
        check_match(m, &format!("{base}.match[{i}]"), out);
    }
    if let Some(sa) = &a.session_affinity
        && sa.cookie_name.is_empty()
    {
        out.push(Finding::error(
            p("sessionAffinity.cookieName"),
            "required when sessionAffinity is set",
        ));
    }
    for (i, m) in a.metrics.iter().enumerate() {
        let mp = format!("{base}.metrics[{i}]");
        if m.name.is_empty() {
            out.push(Finding::error(format!("{mp}.name"), "required"));
        }
        let builtin = BUILTIN_METRICS.contains(&m.name.as_str());
        let has_query = m.query.as_deref().is_some_and(|q| !q.trim().is_empty());
        if !builtin && !has_query && m.template_ref.is_none() {
            out.push(Finding::error(
                mp.clone(),
                format!(
                    "{:?} is not a built-in metric ({}) and has neither query nor templateRef",
                    m.name,
                    BUILTIN_METRICS.join(", ")
                ),
            ));
        }
        if let Some(t) = &m.template_ref
            && t.name.is_empty()
        {
            out.push(Finding::error(format!("{mp}.templateRef.name"), "required"));
        }
        if let Some(i) = m.interval.as_deref() {
            check_duration(i, &format!("{mp}.interval"), out);
        }
        match &m.threshold_range {
            Some(r) => {
                if let (Some(min), Some(max)) = (r.min, r.max)
                    && min > max
                {
                    out.push(Finding::error(
                        format!("{mp}.thresholdRange"),
                        format!("min {min} is above max {max}"),
                    ));
                }
            }
            None if m.threshold.is_none() => out.push(Finding::warning(
                format!("{mp}.thresholdRange"),
                "neither thresholdRange nor threshold: as in Flagger the threshold is 0, so a success rate always passes and any other metric halts above 0",
            )),
            None => {}
        }
    }
    for (i, w) in a.webhooks.iter().enumerate() {
        validate_webhook(w, &format!("{base}.webhooks[{i}]"), out);
    }
    for (i, alert) in a.alerts.iter().enumerate() {
        let ap = format!("{base}.alerts[{i}]");
        if alert.severity().is_none() {
            out.push(Finding::error(
                format!("{ap}.severity"),
                format!(
                    "unknown severity {:?}: info, warn or error",
                    alert.severity.as_deref().unwrap_or_default()
                ),
            ));
        }
        if alert.provider_ref.name.is_empty() {
            out.push(Finding::error(format!("{ap}.providerRef.name"), "required"));
        }
    }
}

fn validate_webhook(w: &CanaryWebhook, path: &str, out: &mut Vec<Finding>) {
    if w.name.is_empty() {
        out.push(Finding::error(format!("{path}.name"), "required"));
    }
    if w.hook_type().is_none() {
        let names: Vec<&str> = HookType::ALL.iter().map(|t| t.as_str()).collect();
        out.push(Finding::error(
            format!("{path}.type"),
            format!(
                "unknown webhook type {:?}: one of {}",
                w.type_.as_deref().unwrap_or_default(),
                names.join(", ")
            ),
        ));
    }
    match url::Url::parse(&w.url) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
        Ok(u) => out.push(Finding::error(
            format!("{path}.url"),
            format!("{:?}: scheme {} is not http or https", w.url, u.scheme()),
        )),
        Err(e) => out.push(Finding::error(
            format!("{path}.url"),
            if w.url.is_empty() {
                "required".to_string()
            } else {
                format!("{:?} is not a URL: {e}", w.url)
            },
        )),
    }
    if let Some(t) = w.timeout.as_deref() {
        check_duration(t, &format!("{path}.timeout"), out);
    }
    if let Some(r) = w.retries
        && r < 0
    {
        out.push(Finding::error(
            format!("{path}.retries"),
            format!("{r} is negative"),
        ));
    }
}

fn validate_metric_template(t: &MetricTemplate, out: &mut Vec<Finding>) {
    let ty = t.spec.provider.type_.as_str();
    if ty.is_empty() {
        out.push(Finding::error("spec.provider.type", "required: prometheus"));
    } else if !METRIC_PROVIDER_TYPES.contains(&ty) {
        out.push(Finding::error(
            "spec.provider.type",
            format!(
                "metric provider {ty:?} is not supported yet: serin queries {}",
                METRIC_PROVIDER_TYPES.join(", ")
            ),
        ));
    }
    let has_address = t
        .spec
        .provider
        .address
        .as_deref()
        .is_some_and(|a| !a.trim().is_empty());
    match ty {
        "cloudwatch"
            if t.spec
                .provider
                .region
                .as_deref()
                .is_none_or(|r| r.trim().is_empty()) =>
        {
            out.push(Finding::error(
                "spec.provider.region",
                "required for cloudwatch: the AWS region (us-east-1)",
            ));
        }
        "dynatrace" | "splunk" | "graphite" | "influxdb" if !has_address => {
            out.push(Finding::error(
                "spec.provider.address",
                format!("required for {ty}: the provider's URL"),
            ));
        }
        "datadog" | "newrelic" | "dynatrace" | "splunk" if t.spec.provider.secret_ref.is_none() => {
            out.push(Finding::error(
                "spec.provider.secretRef",
                format!("required for {ty}: the Secret with the API credentials"),
            ));
        }
        _ => {}
    }
    if let Some(addr) = t.spec.provider.address.as_deref()
        && !addr.is_empty()
        && url::Url::parse(addr).is_err()
    {
        out.push(Finding::error(
            "spec.provider.address",
            format!("{addr:?} is not a URL"),
        ));
    }
    if t.spec.query.trim().is_empty() {
        out.push(Finding::error("spec.query", "required"));
    }
}

fn validate_alert_provider(p: &AlertProvider, out: &mut Vec<Finding>) {
    let ty = p.spec.type_.as_str();
    if !ALERT_PROVIDER_TYPES.contains(&ty) {
        out.push(Finding::error(
            "spec.type",
            format!(
                "unknown alert provider type {ty:?}: one of {}",
                ALERT_PROVIDER_TYPES.join(", ")
            ),
        ));
    }
    let address = p.spec.address.as_deref().filter(|a| !a.is_empty());
    if address.is_none() && p.spec.secret_ref.is_none() {
        out.push(Finding::error(
            "spec.address",
            "required: the webhook URL, or a secretRef to a Secret holding it under `address`",
        ));
    }
    for (field, v) in [("address", address), ("proxy", p.spec.proxy.as_deref())] {
        if let Some(v) = v.filter(|v| !v.is_empty())
            && url::Url::parse(v).is_err()
        {
            out.push(Finding::error(
                format!("spec.{field}"),
                format!("{v:?} is not a URL"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::parse_documents;

    #[test]
    fn a_match_regex_is_refused_exactly_when_regex_would_refuse_it() {
        for re in [
            ".*Firefox.*",
            "^(.*?;)?(type=insider)(;.*)?$",
            r"\d{3}-\w+",
            "(.*Firefox",
            "[z-a]",
            "a{2,1}",
            r"\pX",
            r"\w{1000}{1000}",
            "(?P<n>a)(?P<n>b)",
        ] {
            let ours = regex_compiles(re);
            let theirs = regex::Regex::new(re);
            assert_eq!(ours.is_ok(), theirs.is_ok(), "{re}: {ours:?} / {theirs:?}");
            if let Err(message) = ours {
                assert!(
                    !message.contains('\n') && !message.is_empty(),
                    "{re}: {message:?}"
                );
            }
        }
        assert_eq!(
            regex_compiles("(.*Firefox").unwrap_err(),
            "error: unclosed group"
        );
        assert!(
            regex_compiles(r"\w{1000}{1000}")
                .unwrap_err()
                .contains("size limit")
        );
    }

    fn findings(yaml: &str) -> Vec<Finding> {
        let docs = parse_documents("t.yaml", yaml).unwrap();
        docs.iter().flat_map(validate_document).collect()
    }

    const GOOD: &str = r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {port: 9898}
  analysis:
    interval: 1m
    threshold: 5
    maxWeight: 50
    stepWeight: 10
    metrics:
    - name: request-success-rate
      thresholdRange: {min: 99}
      interval: 1m
    webhooks:
    - name: load-test
      url: http://flagger-loadtester.test/
"#;

    fn with(replace: &str, by: &str) -> Vec<Finding> {
        assert!(GOOD.contains(replace), "{replace}");
        findings(&GOOD.replace(replace, by))
    }

    fn errors_at(f: &[Finding]) -> Vec<&str> {
        f.iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| f.path.as_str())
            .collect()
    }

    #[test]
    fn a_good_canary_has_no_findings() {
        assert_eq!(findings(GOOD), vec![]);
    }

    #[test]
    fn wrong_values_are_errors_naming_the_field() {
        let cases = [
            ("name: podinfo}", "}", "spec.targetRef.name"),
            (
                "kind: Deployment",
                "kind: StatefulSet",
                "spec.targetRef.kind",
            ),
            ("{port: 9898}", "{}", "spec.service.port"),
            (
                "stepWeight: 10",
                "stepWeight: 60",
                "spec.analysis.stepWeight",
            ),
            ("maxWeight: 50", "maxWeight: 150", "spec.analysis.maxWeight"),
            (
                "interval: 1m\n    threshold",
                "interval: 0s\n    threshold",
                "spec.analysis.interval",
            ),
            (
                "interval: 1m\n    threshold",
                "interval: often\n    threshold",
                "spec.analysis.interval",
            ),
            ("threshold: 5", "threshold: 0", "spec.analysis.threshold"),
            (
                "stepWeight: 10",
                "stepWeights: [10, 5]",
                "spec.analysis.stepWeights[1]",
            ),
            ("stepWeight: 10", "iterations: 0", "spec.analysis"),
            (
                "thresholdRange: {min: 99}",
                "thresholdRange: {min: 99, max: 1}",
                "spec.analysis.metrics[0].thresholdRange",
            ),
            (
                "name: request-success-rate",
                "name: error-rate",
                "spec.analysis.metrics[0]",
            ),
            (
                "url: http://flagger-loadtester.test/",
                "url: http://flagger-loadtester.test/\n      type: pre-rolout",
                "spec.analysis.webhooks[0].type",
            ),
            (
                "url: http://flagger-loadtester.test/",
                "url: \"::not a url\"",
                "spec.analysis.webhooks[0].url",
            ),
            (
                "    webhooks:",
                "    match:\n    - headers:\n        user-agent:\n          regex: \"(.*Firefox\"\n    iterations: 10\n    webhooks:",
                "spec.analysis.match[0].headers.user-agent.regex",
            ),
            (
                "    webhooks:",
                "    sessionAffinity:\n      maxAge: 10\n    webhooks:",
                "spec.analysis.sessionAffinity.cookieName",
            ),
            (
                "  service:",
                "  provider: linkerd-ish\n  service:",
                "spec.provider",
            ),
            (
                "maxWeight: 50\n    stepWeight: 10",
                "maxWeight: 1000\n    stepWeight: 300",
                "spec.analysis.maxWeight",
            ),
            (
                "maxWeight: 50\n    stepWeight: 10",
                "maxWeight: 1000\n    stepWeight: 300",
                "spec.analysis.stepWeight",
            ),
            (
                "stepWeight: 10",
                "stepWeight: 0",
                "spec.analysis.stepWeight",
            ),
            (
                "stepWeight: 10",
                "stepWeight: -10",
                "spec.analysis.stepWeight",
            ),
            ("maxWeight: 50", "maxWeight: 0", "spec.analysis.maxWeight"),
            (
                "stepWeight: 10",
                "stepWeights: [10, 200]",
                "spec.analysis.stepWeights[1]",
            ),
            (
                "interval: 1m\n    threshold",
                "interval: abc\n    threshold",
                "spec.analysis.interval",
            ),
            (
                "name: podinfo}",
                "name: a-deployment-name-that-is-long-enough-to-overflow-a-label-x}",
                "spec.targetRef.name",
            ),
            (
                "{port: 9898}",
                "{port: 9898, name: a-service-name-that-is-long-enough-to-overflow-a-label-xyz}",
                "spec.service.name",
            ),
        ];
        for (from, to, path) in cases {
            let f = with(from, to);
            assert!(
                errors_at(&f).contains(&path),
                "replacing {from:?} by {to:?}: expected an error at {path}, got {f:?}"
            );
        }
    }

    #[test]
    fn unknown_fields_are_warnings_with_a_suggestion() {
        let f = with("  service:", "  progressDeadlineSes: 60\n  service:");
        assert_eq!(
            f,
            vec![Finding::warning(
                "spec.progressDeadlineSes",
                "unknown field, did you mean progressDeadlineSeconds?"
            )]
        );
        let f = with("stepWeight: 10", "stepWeight: 10\n    stepWieght: 10");
        assert_eq!(f[0].path, "spec.analysis.stepWieght");
        assert!(f[0].message.contains("stepWeight"), "{f:?}");
    }

    #[test]
    fn old_documents_validate_with_deprecation_warnings_only() {
        let old = r#"
apiVersion: flagger.app/v1alpha3
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {port: 9898}
  canaryAnalysis:
    interval: 30s
    threshold: 10
    maxWeight: 50
    stepWeight: 5
    metrics:
    - name: istio_requests_total
      threshold: 99
      interval: 30s
"#;
        let f = findings(old);
        assert!(errors_at(&f).is_empty(), "{f:?}");
        assert!(f.iter().any(|f| f.path == "spec.canaryAnalysis"));
    }

    #[test]
    fn type_errors_name_the_path() {
        let f = with("{port: 9898}", "{port: nine}");
        assert_eq!(errors_at(&f), vec!["spec.service.port"], "{f:?}");
    }

    #[test]
    fn alert_providers_and_templates_are_checked() {
        let f = findings(
            "apiVersion: flagger.app/v1beta1\nkind: AlertProvider\nmetadata: {name: a}\nspec: {type: pager}\n---\napiVersion: flagger.app/v1beta1\nkind: MetricTemplate\nmetadata: {name: m}\nspec: {provider: {type: prometheus, address: 'http://prometheus:9090'}}\n",
        );
        assert_eq!(
            errors_at(&f),
            vec!["spec.type", "spec.address", "spec.query"]
        );
    }

    #[test]
    fn gateway_api_canaries_need_gateway_refs() {
        let f = with(
            "  service: {port: 9898}",
            "  provider: gatewayapi:v1\n  service: {port: 9898}",
        );
        assert_eq!(errors_at(&f), ["spec.service.gatewayRefs"]);
        let f = with(
            "  service: {port: 9898}",
            "  provider: gatewayapi:v1beta1\n  service: {port: 9898, gatewayRefs: [{namespace: gw}]}",
        );
        assert_eq!(errors_at(&f), ["spec.service.gatewayRefs[0].name"]);
        let f = with(
            "  service: {port: 9898}",
            "  provider: gatewayapi:v1\n  service: {port: 9898, gatewayRefs: [{name: public}]}",
        );
        assert_eq!(f, vec![]);
    }

    #[test]
    fn provider_settings_each_type_needs() {
        let template = |provider: &str| {
            findings(&format!(
                "apiVersion: flagger.app/v1beta1\nkind: MetricTemplate\nmetadata: {{name: t, namespace: test}}\nspec:\n  provider: {provider}\n  query: q\n"
            ))
        };
        assert_eq!(
            errors_at(&template("{type: cloudwatch}")),
            ["spec.provider.region"]
        );
        assert_eq!(template("{type: cloudwatch, region: eu-west-1}"), vec![]);
        assert_eq!(
            errors_at(&template("{type: datadog}")),
            ["spec.provider.secretRef"]
        );
        assert_eq!(template("{type: datadog, secretRef: {name: dd}}"), vec![]);
        assert_eq!(
            errors_at(&template("{type: graphite}")),
            ["spec.provider.address"]
        );
        assert_eq!(
            errors_at(&template("{type: wavefront}")),
            ["spec.provider.type"]
        );
    }
}
