#!/usr/bin/env bash
# A long run of the generated limits test: LIMITS_COUNT Decisions and plans (default 200)
# generated from LIMITS_SEED (default: a new one, printed), each refused at admission with
# a message naming its field or run to the end, against the local control plane.
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

hack/build-tools.sh cluster
use_local_cluster
refuse_live_operator
seed=${LIMITS_SEED:-$(( (RANDOM << 15) | RANDOM ))}
count=${LIMITS_COUNT:-200}
log "limits: $count objects from seed $seed (LIMITS_SEED=$seed repeats this run)"
DECISION_GATE_LIMITS_SEED=$seed DECISION_GATE_LIMITS_COUNT=$count \
  cargo test --features e2e --test e2e -- limits:: --test-threads 1
