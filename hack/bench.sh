#!/usr/bin/env bash
# The benchmarks: the pure core (criterion) and the operator against the local control
# plane (started here when it is not running, and stopped again at the end). Not part of
# `make test`: it takes minutes and measures, it does not check.
#   BENCH_SIZES=10000,100000 (default) sets how many Decisions the load runs create;
#   BENCH_PARTS=scale,latency,execution (default) which parts run.
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

hack/build-tools.sh all
log "core: policy evaluation and audit appends (criterion)"
cargo bench --bench core -- --noplot

use_local_cluster
refuse_live_operator

log "the operator against the local control plane"
cargo bench --features e2e --bench cluster
