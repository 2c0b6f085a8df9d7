#!/usr/bin/env bash
# After a promotion's pull request is merged and `pulumi up` has applied it: a registry-backed model's MLflow
# aliases follow (challenger for a canary, champion for stable), so the registry never runs ahead of the spec.
#
#   after-merge.sh BEFORE AFTER     the commits before and after the push (GitHub: github.event.before, .after)
#
# For each `Plinth-Promote: MODEL FROM TO VERSION [WEIGHT]` trailer of the commits BEFORE..AFTER (promote-pr.sh
# writes it), in a checkout of AFTER: when the stacks still say what the promotion made them say (FROM's stable is
# VERSION, TO serves it as the promotion left it), `plinth promote` again, which writes nothing ("already so") and
# moves the aliases; otherwise it says what moved on and moves nothing (exit 1: set the aliases by hand).
# Environment: MLFLOW_URL (default: the URL the target stack exports), PYTHON (default: python3).
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 BEFORE AFTER" >&2
    exit 2
fi
python=${PYTHON:-python3}
failed=0
while read -r model from to version weight; do
    [ -n "$model" ] || continue
    # Does the checkout still serve exactly what the promotion made? (A later commit may have moved on.)
    if ! "$python" - "$model" "$from" "$to" "$version" "$weight" <<'PY'
import sys
from pathlib import Path

from plinth.canary import find_model
from plinth.spec.load import load_stack_spec

model, source, target, version, weight = sys.argv[1:6]
now = find_model(load_stack_spec(Path("."), source), model).stable.version
served = find_model(load_stack_spec(Path("."), target), model)
if weight:
    as_promoted = served.canary is not None and (served.canary.version, str(served.canary.weight)) == (version, weight)
else:
    as_promoted = served.stable.version == version and not (served.canary and served.canary.version == version)
if now != version or not as_promoted:
    sys.exit(f"{model}: {source} serves {now} as stable, {target} serves stable {served.stable.version}"
             f"{f', canary {served.canary.version} at {served.canary.weight}%' if served.canary else ''}: not as "
             f"the promotion of {version} left them; the aliases are not moved")
PY
    then
        failed=1
        continue
    fi
    args=(promote "$model" --from "$from" --to "$to")
    if [ -n "$weight" ]; then args+=(--canary "$weight"); fi
    if [ -n "${MLFLOW_URL:-}" ]; then args+=(--url "$MLFLOW_URL"); fi
    plinth "${args[@]}" > /dev/null
    if [ -n "$(git status --porcelain -- "stacks/Pulumi.$to.yaml")" ]; then
        echo "$0: plinth promote changed stacks/Pulumi.$to.yaml: the merged spec was not as promoted" >&2
        exit 1
    fi
done < <(git log --format='%(trailers:key=Plinth-Promote,valueonly)' "$1..$2")
exit "$failed"
