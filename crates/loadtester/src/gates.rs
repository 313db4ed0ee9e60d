//! Manual gates, kept in memory like Flagger's load tester: a gate that was never
//! opened is closed, so `/gate/check` holds a canary until someone calls `/gate/open`,
//! and `/rollback/check` only rolls back after `/rollback/open`.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GateKind {
    /// confirm-rollout / confirm-traffic-increase / confirm-promotion gates.
    Gate,
    /// The rollback webhook: open means "roll back now".
    Rollback,
}

#[derive(Debug, Default)]
pub struct Gates {
    state: Mutex<HashMap<(GateKind, String), bool>>,
}

impl Gates {
    pub fn set(&self, kind: GateKind, canary: &str, open: bool) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.insert((kind, canary.to_string()), open);
    }

    pub fn is_open(&self, kind: GateKind, canary: &str) -> bool {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .get(&(kind, canary.to_string()))
            .copied()
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_start_closed_and_are_independent() {
        let g = Gates::default();
        assert!(!g.is_open(GateKind::Gate, "podinfo.test"));
        g.set(GateKind::Gate, "podinfo.test", true);
        assert!(g.is_open(GateKind::Gate, "podinfo.test"));
        assert!(!g.is_open(GateKind::Rollback, "podinfo.test"));
        assert!(!g.is_open(GateKind::Gate, "podinfo.prod"));
        g.set(GateKind::Gate, "podinfo.test", false);
        assert!(!g.is_open(GateKind::Gate, "podinfo.test"));
    }
}
