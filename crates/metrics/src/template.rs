//! MetricTemplate queries, rendered as Flagger renders them: with Go's
//! `text/template` (the `gotmpl` crate), the model's fields as functions
//! (`{{ namespace }}`, `{{ target }}`, `{{ interval }}`, `{{ service }}`,
//! `{{ ingress }}`, `{{ name }}`, `{{ route }}`, `{{ variables.NAME }}`) and a
//! missing key an error. Conditionals, pipes, `printf`, `index`, template
//! variables and every other built-in of Go's templates work as in Flagger.
//! The same names are also fields of the data (`{{ .namespace }}`), which
//! earlier serin accepted.

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
        "the query uses {{{{ variables.{variable} }}}} but templateVariables has no {variable:?}{}",
        known_variables(.known)
    )]
    MissingVariable {
        variable: String,
        known: Vec<String>,
    },
    #[error("template parsing failed: {message} (the model's names: {})", PLACEHOLDERS.join(", "))]
    Parse { message: String },
    #[error("template execution failed: {message}")]
    Execute { message: String },
}

fn known_variables(known: &[String]) -> String {
    if known.is_empty() {
        " (no templateVariables are set)".into()
    } else {
        format!(" (set: {})", known.join(", "))
    }
}

/// The most `range` iterations one rendering may take: a query template is small.
const MAX_RANGE_ITERATIONS: u64 = 10_000;

fn text(value: &str) -> gotmpl::Value {
    gotmpl::Value::String(value.into())
}

/// Renders `query` with Go's template semantics against `model`.
pub fn render_query(query: &str, model: &QueryModel) -> Result<String, TemplateError> {
    let variables = gotmpl::Value::Map(std::sync::Arc::new(
        model
            .variables
            .iter()
            .map(|(k, v)| (std::sync::Arc::<str>::from(k.as_str()), text(v)))
            .collect(),
    ));
    let fields: [(&str, &str); 7] = [
        ("name", &model.name),
        ("namespace", &model.namespace),
        ("target", &model.target),
        ("service", &model.service),
        ("ingress", &model.ingress),
        ("route", &model.route),
        ("interval", &model.interval),
    ];
    let mut template = gotmpl::Template::new("tmpl")
        .missing_key(gotmpl::MissingKey::Error)
        .max_range_iters(MAX_RANGE_ITERATIONS);
    let mut data = std::collections::BTreeMap::new();
    for (key, value) in fields {
        let v = text(value);
        data.insert(std::sync::Arc::<str>::from(key), v.clone());
        template = template.func(key, move |_| Ok(v.clone()));
    }
    data.insert(std::sync::Arc::<str>::from("variables"), variables.clone());
    let template = template
        .func("variables", move |_| Ok(variables.clone()))
        .parse(query)
        .map_err(|e| TemplateError::Parse {
            message: e.to_string(),
        })?;
    template
        .execute_to_string(&gotmpl::Value::Map(std::sync::Arc::new(data)))
        .map_err(|e| match e {
            gotmpl::TemplateError::MissingKey { key } if !model.variables.contains_key(&key) => {
                TemplateError::MissingVariable {
                    variable: key,
                    known: model.variables.keys().cloned().collect(),
                }
            }
            gotmpl::TemplateError::UndefinedFunction(f) => TemplateError::Execute {
                message: format!(
                    "function {f:?} not defined (the model's names: {})",
                    PLACEHOLDERS.join(", ")
                ),
            },
            other => TemplateError::Execute {
                message: other.to_string(),
            },
        })
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
            variables: [
                ("direction".to_string(), "inbound".to_string()),
                ("codes".to_string(), "5..".to_string()),
            ]
            .into(),
        }
    }

    fn render(q: &str) -> String {
        render_query(q, &model()).unwrap()
    }

    #[test]
    fn renders_every_placeholder_with_free_spacing() {
        let q = "a{{namespace}} {{ target }} {{   interval}} {{service  }} {{ ingress }} {{ variables.direction }} {{ .name }} {{ route }}";
        assert_eq!(
            render(q),
            "atest podinfo 30s podinfo-svc podinfo-ing inbound podinfo podinfo"
        );
    }

    #[test]
    fn go_trim_markers_remove_whitespace() {
        assert_eq!(render("x   {{- namespace -}}   y"), "xtesty");
    }

    /// What Flagger's users write: conditionals on variables, pipes, printf,
    /// index, template variables, comparisons and `with`.
    #[test]
    fn go_template_constructs_render_as_in_go() {
        assert_eq!(
            render(
                r#"{{ if eq (index variables "direction") "inbound" }}in{{ else }}out{{ end }}"#
            ),
            "in"
        );
        assert_eq!(
            render(r#"{{ printf "%s-%s" namespace target }}"#),
            "test-podinfo"
        );
        assert_eq!(render(r#"{{ target | printf "%q" }}"#), r#""podinfo""#);
        assert_eq!(
            render(r#"{{ $ns := namespace }}{{ $ns }}/{{ $ns | len }}"#),
            "test/4"
        );
        assert_eq!(
            render(r#"{{ with variables.codes }}code=~"{{ . }}"{{ end }}"#),
            r#"code=~"5..""#
        );
        assert_eq!(
            render(r#"{{ range $k, $v := variables }}{{ $k }}={{ $v }};{{ end }}"#),
            "codes=5..;direction=inbound;"
        );
        assert_eq!(
            render(r#"{{ if and (ne interval "") (not (eq name "x")) }}ok{{ end }}"#),
            "ok"
        );
        assert_eq!(render(r#"{{/* a comment */}}q"#), "q");
    }

    #[test]
    fn unknown_function_is_an_error_naming_it() {
        let err = render_query("sum(x{ns=\"{{ nmespace }}\"})", &model()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("nmespace"), "{text}");
        assert!(
            text.contains("namespace"),
            "the known names are listed: {text}"
        );
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
        assert!(matches!(err, TemplateError::Parse { .. }), "{err:?}");
    }

    #[test]
    fn text_without_placeholders_is_unchanged() {
        let q = "sum(rate(x{a=~\"5.*\"}[1m])) by (le)";
        assert_eq!(render(q), q);
    }
}
