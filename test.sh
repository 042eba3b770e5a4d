#!/usr/bin/env bash
# test.sh: the project's test command (README's second command; .ci/run calls it).
# From a clean clone it installs what the tests need (Debian packages, the
# guest kit kernel, cached outside the repo), then runs vet, the unit and
# engine tests, the race detector on the concurrent packages, and each fuzz
# target briefly.
#
#   VSH_TEST_SKIP_LINUX=1 ./test.sh   skip building the guest kernel and the
#                                      Linux boot test (quick local runs only;
#                                      CI never sets it)
#   VSH_FUZZTIME=20000x ./test.sh      fuzz longer (default 3000 inputs per target;
#                                      a count, not a duration: with a short
#                                      duration Go's fuzzer can report a
#                                      "context deadline exceeded" failure when
#                                      the deadline lands inside a slow input)
set -euo pipefail
cd "$(dirname "$0")"

packages=(libvirt-clients libvirt0 libxml2-utils qemu-utils qemu-system-x86
	dnsmasq-base nftables iproute2 busybox-static udhcpc cpio
	linux-source-6.1 flex bison bc libelf-dev libssl-dev lz4 acpica-tools e2fsprogs util-linux)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ]; then
		echo "test.sh: installing ${missing[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	else
		echo "test.sh: not root; tests that need ${missing[*]} will skip"
	fi
fi

if [ "${VSH_TEST_SKIP_LINUX:-}" != 1 ] && [ -x guest/build.sh ]; then
	guest/build.sh
fi

go vet ./...
# The binaries the tests build are the ones users run: pure Go, no cgo.
# The race detector needs cgo, so only the race pass keeps it.
CGO_ENABLED=0 go test -count=1 -timeout 40m ./...
go test -count=1 -race -timeout 20m ./hypervisor/... ./shell/...

fuzztime=${VSH_FUZZTIME:-3000x}
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		echo "fuzz $pkg $target ($fuzztime)"
		go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" "$pkg" >/tmp/vsh-fuzz.log 2>&1 || {
			cat /tmp/vsh-fuzz.log
			exit 1
		}
	done
done
echo "test.sh: all tests passed"
