#!/bin/sh
# Regenerates what serin's Flagger-compatible revision hash is built and tested
# from, with Flagger v1.44.0's own code (go.mod pins it):
#   - the Go type table the Rust emulation walks;
#   - golden.json: canary.ComputeHash (and SyncStatus) of every fixture.
# cargo test does not need Go; run this after changing a fixture or go.mod.
set -eu
cd "$(dirname "$0")"
go run ./gen > ../../crates/operator/src/workload/flagger_hash/flagger_types.json
go run ./golden -dir ../../crates/operator/tests/data/flagger_hash
