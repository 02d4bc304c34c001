#!/usr/bin/env bash
# Checks that the documentation stands alone: every relative Markdown link in
# README.md and docs/*.md resolves to a file or folder inside the repository
# (and, with a #fragment, to a heading of that file), and no document points
# outside the repository (../ beyond its root, the team's shared folder).
#
#   bash scripts/check-doc-links.sh [repository root]
#
# Exit 0 when every link resolves, 1 otherwise (each problem printed).
set -euo pipefail

root=$(cd "${1:-$(dirname "$0")/..}" && pwd -P)
cd "$root"

problems=0
report() {
  echo "check-doc-links: $1" >&2
  problems=$((problems + 1))
}

# GitHub's anchor of a heading: lower case, punctuation dropped (except - and
# _), spaces to hyphens.
# Every anchor of a Markdown file, one per line (headings outside fenced
# blocks; GitHub's slugs), computed once per file.
declare -A anchor_cache
anchors() {
  if [ -z "${anchor_cache[$1]+x}" ]; then
    anchor_cache[$1]=$(awk '/^```/ { f = !f; next } !f && /^#+ /' "$1" \
      | sed -E 's/^#{1,6} +//; s/ +#*$//' | tr 'A-Z' 'a-z' \
      | sed -e 's/[^a-z0-9 _-]//g' -e 's/ /-/g')
  fi
  printf '%s\n' "${anchor_cache[$1]}"
}

docs=(README.md)
for f in docs/*.md; do
  [ -e "$f" ] && docs+=("$f")
done

checked=0
for doc in "${docs[@]}"; do
  dir=$(dirname "$doc")
  # References to the team's folder outside the repository.
  if grep -n -E '\.\./shared|/work/shared' "$doc" >/dev/null; then
    while IFS= read -r line; do
      report "$doc:${line%%:*}: points outside the repository: ${line#*:}"
    done < <(grep -n -E '\.\./shared|/work/shared' "$doc")
  fi
  # Inline links [text](target) outside code spans and fenced blocks.
  while IFS=$'\t' read -r lineno target; do
    [ -n "$target" ] || continue
    checked=$((checked + 1))
    case "$target" in
      http://* | https://* | mailto:*)
        report "$doc:$lineno: link leaves the repository: $target"
        continue
        ;;
    esac
    path=${target%%#*}
    fragment=""
    [[ "$target" == *"#"* ]] && fragment=${target#*#}
    if [ -z "$path" ]; then
      file=$doc
    else
      if [[ "$path" == /* ]]; then
        report "$doc:$lineno: absolute path: $target"
        continue
      fi
      file="$dir/$path"
      if [ ! -e "$file" ]; then
        report "$doc:$lineno: no such file or folder: $target"
        continue
      fi
      real=$(cd "$(dirname "$file")" && pwd -P)/$(basename "$file")
      case "$real" in
        "$root" | "$root"/*) ;;
        *)
          report "$doc:$lineno: resolves outside the repository: $target"
          continue
          ;;
      esac
    fi
    if [ -n "$fragment" ]; then
      if [ -d "$file" ] || [[ "$file" != *.md ]]; then
        report "$doc:$lineno: a #fragment on a file that is not Markdown: $target"
      elif ! grep -qx -- "$fragment" <<<"$(anchors "$file")"; then
        report "$doc:$lineno: no heading for #$fragment in $file"
      fi
    fi
  done < <(awk '
      /^```/ { fenced = !fenced; next }
      fenced { next }
      {
        line = $0
        gsub(/`[^`]*`/, "", line)   # code spans hold no links
        while (match(line, /\]\([^) ]+\)/)) {
          target = substr(line, RSTART + 2, RLENGTH - 3)
          printf "%d\t%s\n", NR, target
          line = substr(line, RSTART + RLENGTH)
        }
      }' "$doc")
done

if [ "$problems" -gt 0 ]; then
  echo "check-doc-links: $problems problem(s) in ${#docs[@]} document(s)" >&2
  exit 1
fi
echo "check-doc-links: $checked link(s) in ${#docs[@]} document(s) resolve inside the repository"
