#!/usr/bin/env bash
# The plan diff of a pull request, as Markdown for a comment: for each stack file the branch changes (a promotion
# changes exactly one), `plinth diff --format markdown` of that stack's plan where the branch starts and at HEAD.
#
#   pr-diff.sh BASE_REF        e.g. origin/main
#
# Run at the root of the checkout of the pull request's branch. Offline: no cluster, no Pulumi state (that is
# `pulumi preview`'s part). Exit 0 with the Markdown on stdout; a stack that does not plan exits 2 (plinth's message).
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 BASE_REF" >&2
    exit 2
fi
start=$(git merge-base "$1" HEAD)
work=$(mktemp -d)
trap 'git worktree remove --force "$work/base" > /dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add --quiet --detach "$work/base" "$start"

found=0
while IFS= read -r file; do
    found=1
    stack=${file#stacks/Pulumi.}
    stack=${stack%.yaml}
    echo "### Stack \`$stack\`"
    echo
    if [ ! -f "$work/base/$file" ]; then
        echo "A new stack: nothing to compare with."
        echo
        continue
    fi
    (cd "$work/base" && plinth plan --stack "$stack" --out "$work/$stack" > /dev/null)
    plinth diff "$work/$stack/plan.json" "stack:$stack" --format markdown
    echo
done < <(git diff --name-only "$start" HEAD -- 'stacks/Pulumi.*.yaml')
if [ "$found" = 0 ]; then
    echo "No stack file changed."
fi
