#!/usr/bin/env bash
# The glb demo (docs/demo.md): the whole stack in network namespaces,
# against githubsim. `make demo` runs it after `make deps build`; any
# argument is passed to glb-demo (e.g. --xdp-mode generic, --check).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	echo "demo: the demo needs root (network namespaces, XDP, BPF): run sudo make demo" >&2
	exit 1
fi
# sudo's secure_path may leave Go's own directory out of PATH.
GO=${GO:-go}
if ! command -v "$GO" >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	GO=/usr/local/go/bin/go
fi
echo "demo: building bin/glb-demo"
"$GO" build -o bin/glb-demo ./test/integration/demo
exec ./bin/glb-demo --bin ./bin "$@"
