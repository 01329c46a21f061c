#!/usr/bin/env bash
# submit -> work -> status | jq, on the bundled guidelines, with the offline engine.
# Usage: examples/quickstart.sh [FILE...]   (needs avo on PATH and jq)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export AVO_DB=${AVO_DB:-$(mktemp -d)/avo.db}   # a scratch queue unless you chose one
files=("$@")
[ ${#files[@]} -gt 0 ] || files=("$here"/guidelines/*.md)

mapfile -t ids < <(avo submit "${files[@]}")
avo work --engine local
for id in "${ids[@]}"; do
  avo status "$id" | jq '{status, title: .result.summary.title,
    items: .result.checklist.total_items, required: .result.checklist.required_items}'
done
