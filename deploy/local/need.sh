#!/usr/bin/env bash
# need.sh PROGRAM PACKAGE: makes sure PROGRAM is on PATH, installing Debian's
# PACKAGE with apt-get when it is missing and root or passwordless sudo is at
# hand; otherwise says what to install and fails. Silent when PROGRAM is there.
set -euo pipefail
prog=$1 pkg=$2
command -v "$prog" >/dev/null 2>&1 && exit 0

if [[ -r /etc/debian_version ]] && command -v apt-get >/dev/null 2>&1; then
	sudo=()
	if [[ $EUID -ne 0 ]]; then
		if command -v sudo >/dev/null 2>&1 && { [[ -t 0 ]] || sudo -n true 2>/dev/null; }; then
			sudo=(sudo)
		else
			echo "need: $prog is missing; install it with: sudo apt-get install $pkg" >&2
			exit 1
		fi
	fi
	log=$(mktemp)
	trap 'rm -f "$log"' EXIT
	if ! apt-cache policy "$pkg" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
		echo "need: apt-get update"
		"${sudo[@]}" apt-get update -qq >"$log" 2>&1 || {
			cat "$log" >&2
			exit 1
		}
	fi
	echo "need: installing $pkg with apt-get (for $prog)"
	# policy-rc.d or no init system may refuse to start the package's service; that is fine.
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >"$log" 2>&1 || {
		tail -n 30 "$log" >&2
		exit 1
	}
	command -v "$prog" >/dev/null 2>&1 && exit 0
	echo "need: $pkg is installed but $prog is still not on PATH" >&2
	exit 1
fi
echo "need: $prog is missing; install the package that provides it ($pkg on Debian/Ubuntu)" >&2
exit 1
