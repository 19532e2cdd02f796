#!/bin/bash
# The device tool carries every tracked file with each call, and a call carries at most 64 MB. The oracle fixtures
# (tooling/fixtures/data, ~52 MB) would leave no room for anything else, so for the GPU calls:
#   bash tooling/gpu/slim-tree.sh on    take them out of the index and ignore them (the files stay on disk)
#   bash tooling/gpu/slim-tree.sh off   put them back
# While "on", `git status` shows them deleted: do not commit then.
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
exclude=.git/info/exclude
case "${1:-}" in
  on)
    git rm -r -q --cached tooling/fixtures/data
    grep -qx '/tooling/fixtures/data/' "$exclude" 2>/dev/null || echo '/tooling/fixtures/data/' >> "$exclude"
    echo "tracked files now: $(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1) bytes; run 'slim-tree.sh off' after the device calls"
    ;;
  off)
    sed -i '\#^/tooling/fixtures/data/$#d' "$exclude"
    git reset -q -- tooling/fixtures/data
    git status --short -- tooling/fixtures/data
    echo "fixtures are tracked again"
    ;;
  *) echo "usage: slim-tree.sh on|off" >&2; exit 2 ;;
esac
