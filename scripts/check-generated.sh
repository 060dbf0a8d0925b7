#!/usr/bin/env bash
# Fails when the committed BPF objects (bpf/*_bpfel.{go,o}) are not what
# `make generate` builds from the C sources: someone edited a .c or .h file
# and forgot to regenerate. The objects are left as they were.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp bpf/*_bpfel.go bpf/*_bpfel.o "$tmp"/
"$GO" generate ./bpf/...
stale=()
for f in "$tmp"/*; do
	if ! cmp -s "$f" "bpf/$(basename "$f")"; then
		stale+=("bpf/$(basename "$f")")
	fi
done
cp "$tmp"/* bpf/
if [ ${#stale[@]} -gt 0 ]; then
	echo "check-generated: ${stale[*]} differ from what the C sources build." >&2
	echo "check-generated: run 'make generate' and commit the result." >&2
	exit 1
fi
echo "check-generated: BPF objects match their sources"
