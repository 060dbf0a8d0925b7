#!/usr/bin/env bash
# Installs what glb's build, tests and demo need, from Debian's archive only.
# Idempotent: packages already present are left alone, and apt-get runs only
# when something is missing.
set -euo pipefail

packages=(
	clang llvm libbpf-dev linux-libc-dev # make generate (BPF objects)
	bpftool                              # looking at the loaded programs and pinned maps
	iproute2 iputils-ping ethtool        # network namespaces, veth, routes
	redis-server redis-tools             # cache tests and the demo
	git curl openssl ca-certificates gh  # real clients in the tests
	python3-scapy                        # regenerating the golden GUE captures (proxy/redirect/testdata)
	wrk                                  # make bench: the end-to-end load generator
)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "deps: all ${#packages[@]} Debian packages present"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing packages: ${missing[*]}" >&2
	echo "deps: run as root (sudo make deps) to install them" >&2
	exit 1
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists first: a stale list points at files the mirror
# no longer has.
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "deps: done"
