#!/usr/bin/env bash
# buf breaking over the API (protos/, rules in protos/buf.yaml: FILE): ember.v1 is published,
# so protos/ may only change in ways that keep every existing client working against the
# protos of AGAINST (default HEAD~1: on main, main's previous commit). Skipped, saying why,
# when that commit is not in this checkout (no git, a shallow clone, a tarball) or had no protos.
#   .ci/buf-breaking.sh [AGAINST]      e.g. .ci/buf-breaking.sh main   (a branch against main)
set -euo pipefail
cd "$(dirname "$0")/.."
against="${1:-HEAD~1}"
buf="$PWD/node_modules/.bin/buf"
[ -x "$buf" ] || { echo "buf breaking: $buf is missing: run npm ci in $PWD (make does)" >&2; exit 2; }

if ! command -v git >/dev/null || ! git rev-parse -q --verify "$against^{commit}" >/dev/null 2>&1; then
  echo "buf breaking: skipped: commit $against is not in this checkout (no git history, or a shallow clone)"
  exit 0
fi
if ! git cat-file -e "$against:protos/buf.yaml" 2>/dev/null; then
  echo "buf breaking: skipped: $against has no protos/buf.yaml (no published API to compare with)"
  exit 0
fi
previous="$(mktemp -d)"
trap 'rm -rf "$previous"' EXIT
git archive "$against" protos | tar -x -C "$previous"
(cd protos && "$buf" breaking --against "$previous/protos")
echo "buf breaking: protos/ is compatible with $against ($(git rev-parse --short "$against"))"
