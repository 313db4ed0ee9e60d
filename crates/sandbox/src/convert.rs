//! Conversion between the stored form of an object and a served version of it.

use serde_json::{Map, Value};

use crate::resources::{Conversion, ResourceType};

/// The object as the served version `rt` shows it.
pub fn from_storage(rt: &ResourceType, stored: &Value) -> Value {
    let mut out = match rt.conversion {
        Conversion::None => stored.clone(),
        Conversion::EventsV1 => core_event_to_v1(stored),
    };
    set_type_meta(rt, &mut out);
    out
}

/// The object as stored, from what a client sent to the served version `rt`.
pub fn to_storage(rt: &ResourceType, served: Value) -> Value {
    match rt.conversion {
        Conversion::None => {
            let mut v = served;
            set_type_meta(rt, &mut v);
            v
        }
        Conversion::EventsV1 => v1_event_to_core(&served),
    }
}

pub fn set_type_meta(rt: &ResourceType, obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        let api_version = rt.api_version();
        if m.get("apiVersion").and_then(Value::as_str) != Some(api_version.as_str()) {
            m.insert("apiVersion".into(), Value::String(api_version));
        }
        if m.get("kind").and_then(Value::as_str) != Some(rt.kind.as_str()) {
            m.insert("kind".into(), Value::String(rt.kind.clone()));
        }
    }
}

fn copy(src: &Value, from: &str, dst: &mut Map<String, Value>, to: &str) {
    if let Some(v) = src.get(from).filter(|v| !v.is_null()) {
        dst.insert(to.into(), v.clone());
    }
}

fn core_event_to_v1(core: &Value) -> Value {
    let mut m = Map::new();
    m.insert("kind".into(), "Event".into());
    m.insert("apiVersion".into(), "events.k8s.io/v1".into());
    copy(core, "metadata", &mut m, "metadata");
    copy(core, "eventTime", &mut m, "eventTime");
    copy(core, "series", &mut m, "series");
    copy(core, "reportingComponent", &mut m, "reportingController");
    if !m.contains_key("reportingController")
        && let Some(c) = core.pointer("/source/component")
    {
        m.insert("reportingController".into(), c.clone());
    }
    copy(core, "reportingInstance", &mut m, "reportingInstance");
    if !m.contains_key("reportingInstance")
        && let Some(h) = core.pointer("/source/host")
    {
        m.insert("reportingInstance".into(), h.clone());
    }
    copy(core, "action", &mut m, "action");
    copy(core, "reason", &mut m, "reason");
    copy(core, "involvedObject", &mut m, "regarding");
    copy(core, "related", &mut m, "related");
    copy(core, "message", &mut m, "note");
    copy(core, "type", &mut m, "type");
    copy(core, "source", &mut m, "deprecatedSource");
    copy(core, "firstTimestamp", &mut m, "deprecatedFirstTimestamp");
    copy(core, "lastTimestamp", &mut m, "deprecatedLastTimestamp");
    copy(core, "count", &mut m, "deprecatedCount");
    Value::Object(m)
}

fn v1_event_to_core(v1: &Value) -> Value {
    let mut m = Map::new();
    m.insert("kind".into(), "Event".into());
    m.insert("apiVersion".into(), "v1".into());
    copy(v1, "metadata", &mut m, "metadata");
    copy(v1, "regarding", &mut m, "involvedObject");
    copy(v1, "reason", &mut m, "reason");
    copy(v1, "note", &mut m, "message");
    copy(v1, "type", &mut m, "type");
    copy(v1, "action", &mut m, "action");
    copy(v1, "related", &mut m, "related");
    copy(v1, "eventTime", &mut m, "eventTime");
    copy(v1, "series", &mut m, "series");
    copy(v1, "reportingController", &mut m, "reportingComponent");
    copy(v1, "reportingInstance", &mut m, "reportingInstance");
    copy(v1, "deprecatedSource", &mut m, "source");
    if !m.contains_key("source") {
        let mut src = Map::new();
        copy(v1, "reportingController", &mut src, "component");
        copy(v1, "reportingInstance", &mut src, "host");
        m.insert("source".into(), Value::Object(src));
    }
    copy(v1, "deprecatedFirstTimestamp", &mut m, "firstTimestamp");
    copy(v1, "deprecatedLastTimestamp", &mut m, "lastTimestamp");
    copy(v1, "deprecatedCount", &mut m, "count");
    if !m.contains_key("count")
        && let Some(c) = v1.pointer("/series/count")
    {
        m.insert("count".into(), c.clone());
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;
    use serde_json::json;

    #[test]
    fn events_round_trip_between_apis() {
        let reg = Registry::builtin();
        let v1 = reg.find("events.k8s.io", "v1", "events").unwrap();
        let sent = json!({"metadata": {"name": "e", "namespace": "test"},
            "regarding": {"kind": "Canary", "name": "podinfo"}, "note": "Advance podinfo.test canary weight 10",
            "reason": "Synced", "type": "Normal", "reportingController": "serin", "reportingInstance": "serin-0",
            "action": "Progressing", "eventTime": "2026-01-01T00:00:00.000000Z"});
        let core = to_storage(&v1, sent.clone());
        assert_eq!(core["involvedObject"]["kind"], "Canary");
        assert_eq!(core["message"], "Advance podinfo.test canary weight 10");
        assert_eq!(core["source"]["component"], "serin");
        let back = from_storage(&v1, &core);
        for k in [
            "regarding",
            "note",
            "reason",
            "type",
            "reportingController",
            "action",
            "eventTime",
        ] {
            assert_eq!(back[k], sent[k], "{k}");
        }
    }
}
