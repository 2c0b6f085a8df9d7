#!/usr/bin/env bash
# After a promotion's pull request is merged and `pulumi up` has applied it: a registry-backed model's MLflow
# aliases follow (challenger for a canary, champion for stable), so the registry never runs ahead of the cluster.
#
#   after-merge.sh BEFORE AFTER     the commits before and after the push (GitHub: github.event.before, .after)
#
# Run at the root of a checkout of AFTER. For each commit of BEFORE..AFTER with a trailer
# `Plinth-Promote: MODEL FROM TO VERSION [WEIGHT]` (promote-pr.sh writes it; a squash merge keeps it):
#  1. AFTER's stacks must still say what the promotion made them say (FROM's stable is VERSION, TO serves it as
#     promoted); a later commit that moved on is named and nothing moves (exit 1: set the aliases by hand);
#  2. the promotion is replayed on the commit's parent, the spec the registry agrees with until now, in a
#     throwaway worktree: `plinth promote` checks the registry against that spec, writes the same edit (compared
#     with the commit's own) and moves the aliases.
# Environment: MLFLOW_URL (default: the URL the target stack exports), PYTHON (default: python3).
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 BEFORE AFTER" >&2
    exit 2
fi
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'git worktree remove --force "$work/replay" > /dev/null 2>&1 || true; rm -rf "$work"' EXIT
failed=0
while read -r commit model from to version weight; do
    [ -n "$model" ] || continue
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
    git worktree add --quiet --detach "$work/replay" "$commit^"
    (cd "$work/replay" && plinth "${args[@]}" > /dev/null)
    if ! git show "$commit:stacks/Pulumi.$to.yaml" | cmp -s - "$work/replay/stacks/Pulumi.$to.yaml"; then
        echo "$0: replayed on the parent of $commit, plinth promote did not make that commit's edit of" \
             "stacks/Pulumi.$to.yaml: check the registry's aliases of $model by hand" >&2
        failed=1
    fi
    git worktree remove --force "$work/replay"
done < <(git log --format='%H %(trailers:key=Plinth-Promote,valueonly,separator=%x20)' "$1..$2" \
         | awk 'NF > 1')
exit "$failed"
