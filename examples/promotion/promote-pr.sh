#!/usr/bin/env bash
# A promotion as a pull request: `plinth promote` edits the target stack's overrides on a new branch, the edit is
# committed (only that file) and pushed, and a pull request is opened with the file's diff and the plan diff.
#
#   promote-pr.sh MODEL FROM TO [CANARY_WEIGHT]
#
# Run at the root of a clean checkout of the Plinth project. Environment (all optional):
#   BASE_BRANCH  the branch the pull request goes to. Default: main.
#   GIT_REMOTE   the remote the base is fetched from and the branch pushed to. Default: origin.
#   MLFLOW_URL   a registry-backed model's aliases are checked and moved now (`plinth promote --url`). Default:
#                unset, they follow the merge (after-merge.sh), so the registry never runs ahead of the spec.
#   OPEN_PR      the command that opens the pull request; it gets --base BASE --head BRANCH --title TITLE
#                --body-file FILE. Default: gh pr create.
#   PYTHON       the Python that has plinth installed. Default: python3.
# Exit: 0 a pull request was opened, or nothing to promote; 2 a bad request (plinth's message); else git's or
# the pull-request command's failure.
set -euo pipefail

if [ $# -lt 3 ] || [ $# -gt 4 ]; then
    echo "usage: $0 MODEL FROM TO [CANARY_WEIGHT]" >&2
    exit 2
fi
model=$1 from=$2 to=$3 weight=${4:-}
base=${BASE_BRANCH:-main} remote=${GIT_REMOTE:-origin} python=${PYTHON:-python3}
read -ra open_pr <<< "${OPEN_PR:-gh pr create}"
stack_file="stacks/Pulumi.$to.yaml"

if [ -n "$(git status --porcelain)" ]; then
    echo "$0: the checkout has uncommitted changes: run it in a clean checkout" >&2
    exit 2
fi
git fetch --quiet "$remote" "$base"
git switch --quiet --detach FETCH_HEAD

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
args=(promote "$model" --from "$from" --to "$to")
if [ -n "$weight" ]; then args+=(--canary "$weight"); fi
made="plinth ${args[*]}"
if [ -n "${MLFLOW_URL:-}" ]; then args+=(--url "$MLFLOW_URL"); fi
# The plan diff on stdout, what was written (and the aliases moved) on stderr; a refusal writes nothing.
status=0
plinth "${args[@]}" > "$out/plan-diff" 2> "$out/said" || status=$?
cat "$out/said" >&2
if [ "$status" != 0 ]; then
    exit "$status"
fi
if git diff --quiet -- "$stack_file"; then
    echo "$0: $stack_file already serves it: no pull request" >&2
    exit 0
fi

# The version promoted: the source stack's stable (plinth promote has just accepted it).
version=$("$python" - "$from" "$model" <<'PY'
import sys
from pathlib import Path

from plinth.canary import find_model
from plinth.spec.load import load_stack_spec

print(find_model(load_stack_spec(Path("."), sys.argv[1]), sys.argv[2]).stable.version)
PY
)
if [ -n "$weight" ]; then
    title="Promote $model $version from $from to $to as canary ($weight%)"
    role="as its canary at $weight% of the traffic"
    track="canary-$weight"
else
    title="Promote $model $version from $from to $to"
    role="as its stable"
    track=stable
fi
# One open request per promotion: the name has no date, so the same request again is refused while it exists.
branch="promote/$to/${model//\//-}-${version%%@*}-$track"
if git ls-remote --exit-code --heads "$remote" "$branch" > /dev/null; then
    git checkout --quiet -- "$stack_file"
    echo "$0: branch $branch already exists on $remote: that promotion is requested already" >&2
    exit 2
fi
git switch --quiet -c "$branch"
git add -- "$stack_file"
git commit --quiet -m "$title" -m "Made by: $made" -m "Plinth-Promote: $model $from $to $version${weight:+ $weight}"
git push --quiet "$remote" "$branch"

{
    echo "\`$made\` makes stack **$to** serve **$model** **$version** (the stable of **$from**) $role."
    echo
    echo "\`$stack_file\`:"
    echo
    echo '```diff'
    git diff HEAD~1 HEAD -- "$stack_file"
    echo '```'
    echo
    echo "The plan diff (\`plinth diff\` of the stack before and after):"
    echo
    echo '```'
    cat "$out/plan-diff"
    echo '```'
    echo
    if [ -n "${MLFLOW_URL:-}" ]; then
        echo "The registry's aliases moved with it:"
        echo
        sed 's/^/    /' "$out/said"
    else
        echo "A registry-backed model's aliases move after the merge and \`pulumi up\` (after-merge.sh)."
    fi
} > "$out/body.md"
"${open_pr[@]}" --base "$base" --head "$branch" --title "$title" --body-file "$out/body.md"
