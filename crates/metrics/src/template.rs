//! MetricTemplate queries: `{{ namespace }}`, `{{ target }}`, `{{ interval }}`,
//! `{{ service }}`, `{{ ingress }}`, `{{ variables.NAME }}` (and Flagger's `name`
//! and `route`), with any spacing inside the braces.

use std::collections::BTreeMap;

use serin_api::Canary;
use serin_api::canary::CanaryMetric;

/// The names a query can use, in the order messages list them.
pub const PLACEHOLDERS: [&str; 8] = [
    "name",
    "namespace",
    "target",
    "service",
    "ingress",
    "route",
    "interval",
    "variables.NAME",
];

/// The values a query is rendered with, for one metric of one Canary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryModel {
    /// The Canary's name.
    pub name: String,
    pub namespace: String,
    /// `targetRef.name`.
    pub target: String,
    /// `service.name`, else the target's name.
    pub service: String,
    /// `ingressRef.name`, else the target's name.
    pub ingress: String,
    /// `routeRef.name`, else the target's name.
    pub route: String,
    /// The metric's `interval` (`1m` when unset).
    pub interval: String,
    /// The metric's `templateVariables`.
    pub variables: BTreeMap<String, String>,
}

impl QueryModel {
    /// The model Flagger builds for a metric of a Canary.
    pub fn for_metric(canary: &Canary, metric: &CanaryMetric) -> Self {
        let spec = &canary.spec;
        let target = spec.target_ref.name.clone();
        let or_target = |name: Option<&str>| {
            name.filter(|n| !n.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| target.clone())
        };
        Self {
            name: canary.metadata.name.clone().unwrap_or_default(),
            namespace: canary.metadata.namespace.clone().unwrap_or_default(),
            service: or_target(spec.service.name.as_deref()),
            ingress: or_target(spec.ingress_ref.as_ref().map(|r| r.name.as_str())),
            route: or_target(spec.route_ref.as_ref().map(|r| r.name.as_str())),
            interval: metric.interval_or_default().to_string(),
            variables: metric.template_variables.clone(),
            target,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "unknown placeholder {{{{ {placeholder} }}}} at byte {offset} of the query (known: {})",
        PLACEHOLDERS.join(", ")
    )]
    UnknownPlaceholder { placeholder: String, offset: usize },
    #[error(
        "the query uses {{{{ variables.{variable} }}}} but templateVariables has no {variable:?}{}",
        known_variables(.known)
    )]
    MissingVariable {
        variable: String,
        known: Vec<String>,
    },
    #[error("unclosed {{{{ at byte {offset} of the query")]
    Unclosed { offset: usize },
}

fn known_variables(known: &[String]) -> String {
    if known.is_empty() {
        " (no templateVariables are set)".into()
    } else {
        format!(" (set: {})", known.join(", "))
    }
}

/// Replaces every `{{ ... }}` in `query` with its value from `model`.
pub fn render_query(query: &str, model: &QueryModel) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    let mut consumed = 0;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after_open = &rest[start + 2..];
        let Some(len) = after_open.find("}}") else {
            return Err(TemplateError::Unclosed {
                offset: consumed + start,
            });
        };
        let inner = &after_open[..len];
        // Go templates trim surrounding whitespace with `{{-` and `-}}`.
        let (inner, trim_before) = match inner.strip_prefix('-') {
            Some(i) if i.starts_with(char::is_whitespace) => (i, true),
            _ => (inner, false),
        };
        let (inner, trim_after) = match inner.strip_suffix('-') {
            Some(i) if i.ends_with(char::is_whitespace) => (i, true),
            _ => (inner, false),
        };
        if trim_before {
            let kept = out.trim_end().len();
            out.truncate(kept);
        }
        let placeholder = inner.trim();
        out.push_str(&value_of(placeholder, model, consumed + start)?);
        let next = start + 2 + len + 2;
        consumed += next;
        rest = &rest[next..];
        if trim_after {
            let trimmed = rest.trim_start();
            consumed += rest.len() - trimmed.len();
            rest = trimmed;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn value_of(placeholder: &str, model: &QueryModel, offset: usize) -> Result<String, TemplateError> {
    // Flagger's docs write `{{ namespace }}`; Go template users also write `{{ .namespace }}`.
    let name = placeholder.strip_prefix('.').unwrap_or(placeholder);
    let value = match name {
        "name" => &model.name,
        "namespace" => &model.namespace,
        "target" => &model.target,
        "service" => &model.service,
        "ingress" => &model.ingress,
        "route" => &model.route,
        "interval" => &model.interval,
        _ => {
            let variable = name
                .strip_prefix("variables.")
                .map(str::trim)
                .filter(|v| !v.is_empty() && !v.contains(char::is_whitespace));
            let Some(variable) = variable else {
                return Err(TemplateError::UnknownPlaceholder {
                    placeholder: placeholder.to_string(),
                    offset,
                });
            };
            return model.variables.get(variable).cloned().ok_or_else(|| {
                TemplateError::MissingVariable {
                    variable: variable.to_string(),
                    known: model.variables.keys().cloned().collect(),
                }
            });
        }
    };
    Ok(value.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> QueryModel {
        QueryModel {
            name: "podinfo".into(),
            namespace: "test".into(),
            target: "podinfo".into(),
            service: "podinfo-svc".into(),
            ingress: "podinfo-ing".into(),
            route: "podinfo".into(),
            interval: "30s".into(),
            variables: [("direction".to_string(), "inbound".to_string())].into(),
        }
    }

    #[test]
    fn renders_every_placeholder_with_free_spacing() {
        let q = "a{{namespace}} {{ target }} {{   interval}} {{service  }} {{ ingress }} {{ variables.direction }} {{ .name }}";
        assert_eq!(
            render_query(q, &model()).unwrap(),
            "atest podinfo 30s podinfo-svc podinfo-ing inbound podinfo"
        );
    }

    #[test]
    fn go_trim_markers_remove_whitespace() {
        assert_eq!(
            render_query("x   {{- namespace -}}   y", &model()).unwrap(),
            "xtesty"
        );
    }

    #[test]
    fn unknown_placeholder_is_named() {
        let err = render_query("sum(x{ns=\"{{ nmespace }}\"})", &model()).unwrap_err();
        assert_eq!(
            err,
            TemplateError::UnknownPlaceholder {
                placeholder: "nmespace".into(),
                offset: 10
            }
        );
        assert!(err.to_string().contains("{{ nmespace }}"), "{err}");
    }

    #[test]
    fn missing_variable_is_named() {
        let err = render_query("{{ variables.region }}", &model()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("variables.region"), "{text}");
        assert!(text.contains("direction"), "{text}");
    }

    #[test]
    fn unclosed_braces_are_an_error() {
        let err = render_query("rate(x[{{ interval ]", &model()).unwrap_err();
        assert_eq!(err, TemplateError::Unclosed { offset: 7 });
    }

    #[test]
    fn text_without_placeholders_is_unchanged() {
        let q = "sum(rate(x{a=~\"5.*\"}[1m])) by (le)";
        assert_eq!(render_query(q, &model()).unwrap(), q);
    }
}
