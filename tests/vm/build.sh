#!/usr/bin/env bash
# Build a bootable kernel + initramfs for ringgate's kTLS VM tests.
#
# Usage: tests/vm/build.sh [options] -g GUEST_SCRIPT [EXTRA_EXECUTABLE...]
#
#   -g FILE        guest script, run by /init as /guest.sh (busybox sh) [required]
#   -c DIR         cache dir for the kernel .deb and extracted kernel
#                  (default: $VM_CACHE or <repo>/target/vm-cache)
#   -o DIR         output dir for vmlinuz, initrd.gz, kver (default: <cache>/out)
#   -x FILE        extra host executable (repeatable; positional args work too).
#                  Installed as /usr/local/bin/<basename> (on PATH in the guest)
#                  together with every shared library `ldd` reports and the
#                  dynamic loader, at the same absolute paths as on the host.
#   -f SRC[:DST]   extra plain file (repeatable), copied to DST (absolute guest
#                  path; default: /root/<basename of SRC>)
#   -m MODULE      extra kernel module to ship (repeatable), e.g. -m veth;
#                  its modules.dep closure is shipped too
#   -C CIPHERS     kTLS ciphers whose crypto modules to ship: a comma list of
#                  AES-GCM, AES-CCM, CHACHA20-POLY1305, or "none" (tls.ko
#                  only: every cipher then fails unless built in); default all
#   -R             resolve only: print the bed manifest (kernel, modules per
#                  cipher) on stdout and exit; no initramfs is built
#   -p MODULE      module to modprobe from /init before the guest script runs
#   -k PACKAGE     kernel package (default: $VM_KERNEL_PKG, else whatever
#                  linux-image-amd64 depends on according to apt-cache)
#   -s SUITE       take the kernel from this Debian suite instead of the host's
#                  apt sources (e.g. trixie-backports, for a kernel >= 6.14);
#                  uses a private apt list dir under the cache, the host's
#                  Debian archive keyring, and the newer packaging where the
#                  image is split into linux-binary-* and linux-modules-*
#   -F FLAVOUR     with -s: kernel flavour (default cloud-amd64: small, boots
#                  under qemu, has tls.ko)
#   -h             help
#
# Always shipped: busybox (static), tests/vm/probe/ktls_probe (built here with
# gcc -static, on PATH as ktls_probe), tls.ko and the crypto modules kTLS
# needs for AES-GCM-128/256, AES-CCM and ChaCha20-Poly1305, with busybox
# modprobe/depmod so the kernel's own request_module() autoloading works too.
# Which modules those are is read from the kernel's own data, not from a list
# of names: the crypto algorithm kTLS asks for (e.g. "rfc7539(chacha20,poly1305)")
# is looked up as `crypto-<alg>` in modules.alias and modules.builtin.modinfo
# (depmod, run here on the unpacked package), then its template and arguments,
# and every module found comes with its modules.dep closure. The result, with
# the kernel package and version, is the bed manifest (<out>/bed.txt, and
# /etc/vm/bed.txt in the guest, printed at the top of every report). A cipher
# with no provider at all, or a dependency file missing from the package, is
# an error naming it.
#
# Exit status: 0 ok, 77 when this host cannot build the VM (missing tool or no
# access to the Debian archive; message on stderr starts with "SKIP:"),
# anything else is a real error.

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/../.." && pwd)

log() { echo "vm-build: $*" >&2; }
die() { echo "vm-build: ERROR: $*" >&2; exit 1; }
skip() { echo "vm-build: SKIP: $*" >&2; exit 77; }
usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

CACHE_DIR=${VM_CACHE:-$REPO_DIR/target/vm-cache}
OUT_DIR=
GUEST_SCRIPT=
KERNEL_PKG=${VM_KERNEL_PKG:-}
SUITE=
FLAVOUR=cloud-amd64
EXTRA_BINS=()
EXTRA_FILES=()
PRELOAD=()
# kTLS itself; the crypto modules come from CIPHERS below.
MODULES=(tls)
# The algorithm each kTLS cipher allocates (net/tls/tls.h cipher descriptions:
# crypto_alloc_aead(cipher_desc->cipher_name)).
declare -A CIPHER_ALG=(
	[AES-GCM]="gcm(aes)"
	[AES-CCM]="ccm(aes)"
	[CHACHA20-POLY1305]="rfc7539(chacha20,poly1305)"
)
CIPHERS=(AES-GCM AES-CCM CHACHA20-POLY1305)
# What a template instantiates besides its arguments (crypto/gcm.c: ctr + ghash,
# crypto/ccm.c: ctr + cbcmac), shipped when this kernel provides them; newer kernels
# do some of it with built-in library code and have no such algorithm.
declare -A TEMPLATE_INNER=(
	[gcm]="ctr(@) ghash"
	[ccm]="ctr(@) cbcmac(@)"
)
RESOLVE_ONLY=0

while getopts ":g:c:o:x:f:m:p:k:s:F:C:Rh" opt; do
	case "$opt" in
	g) GUEST_SCRIPT=$OPTARG ;;
	c) CACHE_DIR=$OPTARG ;;
	o) OUT_DIR=$OPTARG ;;
	x) EXTRA_BINS+=("$OPTARG") ;;
	f) EXTRA_FILES+=("$OPTARG") ;;
	m) MODULES+=("$OPTARG") ;;
	p) PRELOAD+=("$OPTARG") MODULES+=("$OPTARG") ;;
	k) KERNEL_PKG=$OPTARG ;;
	s) SUITE=$OPTARG ;;
	F) FLAVOUR=$OPTARG ;;
	C) if [ "$OPTARG" = none ]; then CIPHERS=(); else IFS=, read -r -a CIPHERS <<<"$OPTARG"; fi ;;
	R) RESOLVE_ONLY=1 ;;
	h) usage; exit 0 ;;
	:) die "option -$OPTARG needs an argument" ;;
	*) usage >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
EXTRA_BINS+=("$@")

for c in "${CIPHERS[@]}"; do
	[ -n "${CIPHER_ALG[$c]:-}" ] || die "-C: unknown cipher '$c' (known: ${!CIPHER_ALG[*]}, none)"
done
if [ "$RESOLVE_ONLY" = 0 ]; then
	[ -n "$GUEST_SCRIPT" ] || { usage >&2; die "missing -g GUEST_SCRIPT"; }
	[ -f "$GUEST_SCRIPT" ] || die "guest script not found: $GUEST_SCRIPT"
fi
mkdir -p "$CACHE_DIR"
CACHE_DIR=$(cd "$CACHE_DIR" && pwd)
OUT_DIR=${OUT_DIR:-$CACHE_DIR/out}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)

t_start=$(date +%s.%N)
elapsed() { awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1fs", b - a }'; }

# ---------------------------------------------------------------- host tools
APT_UPDATED=0
apt_install() {
	# install Debian packages when we can (root + apt-get); 1 if we cannot
	[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 1
	log "installing Debian package(s): $*"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1; then
		[ "$APT_UPDATED" = 1 ] && return 1
		apt-get update -qq >/dev/null 2>&1 || return 1
		APT_UPDATED=1
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 || return 1
	fi
}

is_static() {
	local out
	out=$(LC_ALL=C ldd "$1" 2>&1 || true)
	case "$out" in *"not a dynamic executable"* | *"statically linked"*) return 0 ;; esac
	return 1
}

find_busybox() {
	local b
	for b in /bin/busybox /usr/bin/busybox "$(command -v busybox 2>/dev/null || true)"; do
		if [ -n "$b" ] && [ -x "$b" ] && is_static "$b"; then
			echo "$b"
			return 0
		fi
	done
	return 1
}

for tool in dpkg-deb gzip ldd; do
	command -v "$tool" >/dev/null || skip "'$tool' not found"
done
command -v cpio >/dev/null || apt_install cpio || skip "'cpio' not found (apt-get install cpio)"
BUSYBOX=$(find_busybox) || { apt_install busybox-static && BUSYBOX=$(find_busybox); } ||
	skip "no static busybox (apt-get install busybox-static)"
command -v gcc >/dev/null || skip "'gcc' not found (needed for the ktls probe)"
# depmod builds modules.dep / modules.alias for the unpacked kernel (Debian's packages
# leave that to the postinst); /sbin is not on every user's PATH.
DEPMOD=$(PATH=$PATH:/usr/sbin:/sbin command -v depmod || true)
[ -n "$DEPMOD" ] || { apt_install kmod && DEPMOD=$(PATH=$PATH:/usr/sbin:/sbin command -v depmod); } ||
	skip "'depmod' not found (apt-get install kmod): needed to read the kernel's module dependencies"

# -------------------------------------------------------------- kernel .deb
DEB_DIR=$CACHE_DIR/debs
mkdir -p "$DEB_DIR"
# serialize cache updates between concurrent builds
exec 9>"$CACHE_DIR/.lock"
flock 9

DEBS=()
if [ -n "$SUITE" ]; then
	# A kernel from another suite, through a private apt state (the host's sources and
	# lists stay untouched). Packages are verified against the host's Debian keyring.
	APTDIR=$CACHE_DIR/apt-$SUITE
	mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $SUITE main" >"$APTDIR/sources.list"
	APT_OPTS=(-o "Dir::Etc::SourceList=$APTDIR/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
		-o "Dir::State::Lists=$APTDIR/lists" -o "Dir::Cache=$APTDIR/cache" -o APT::Sandbox::User=root)
	stamp=$APTDIR/.updated
	if [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +1440 2>/dev/null)" ]; then
		log "apt-get update for $SUITE (private lists in $APTDIR)"
		if apt-get "${APT_OPTS[@]}" update -qq >&2; then touch "$stamp"; fi
	fi
	dep_of() { # dep_of PACKAGE PREFIX -> the first dependency starting with PREFIX
		apt-cache "${APT_OPTS[@]}" depends --no-recommends --no-suggests --no-conflicts \
			--no-breaks --no-replaces --no-enhances "$1" 2>/dev/null |
			awk -v p="$2" '$1 == "Depends:" && index($2, p) == 1 { print $2; exit }'
	}
	image=$(dep_of "linux-image-$FLAVOUR" "linux-image-" || true)
	case "$image" in linux-image-[0-9]*) ;; *) image= ;; esac
	if [ -z "$image" ]; then
		cached=$(find "$DEB_DIR" -maxdepth 1 -name "linux-modules-*-${FLAVOUR}_*.deb" 2>/dev/null | sort -V | tail -n 1)
		[ -n "$cached" ] || skip "cannot resolve linux-image-$FLAVOUR in $SUITE (no access to the Debian archive?)"
		kv=${cached##*/linux-modules-}
		kv=${kv%%_*}
		DEBS=("$(find "$DEB_DIR" -maxdepth 1 -name "linux-binary-${kv}_*.deb" | sort -V | tail -n 1)" "$cached")
		base=$(find "$DEB_DIR" -maxdepth 1 -name "linux-base-${kv}_*.deb" | sort -V | tail -n 1)
		[ -z "$base" ] || DEBS+=("$base")
		log "apt could not resolve the $SUITE kernel; using cached $kv"
	else
		kv=${image#linux-image-}
		# linux-base-*: config, modules.builtin(.modinfo): what is built into vmlinuz
		for pkg in "linux-binary-$kv" "linux-modules-$kv" "linux-base-$kv"; do
			ver=$(apt-cache "${APT_OPTS[@]}" policy "$pkg" 2>/dev/null | awk '$1 == "Candidate:" && $2 != "(none)" { print $2; exit }')
			[ -n "$ver" ] || skip "$pkg has no candidate version in $SUITE"
			deb=$DEB_DIR/${pkg}_${ver//:/%3a}_amd64.deb
			if [ -s "$deb" ] && dpkg-deb --info "$deb" >/dev/null 2>&1; then
				log "kernel package $pkg $ver: cached"
			else
				log "kernel package $pkg $ver: downloading from $SUITE"
				rm -f "$deb"
				(cd "$DEB_DIR" && apt-get "${APT_OPTS[@]}" download -q "$pkg=$ver" >&2) ||
					skip "apt-get download $pkg=$ver from $SUITE failed (no access to the Debian archive?)"
				[ -s "$deb" ] || die "apt-get download did not produce $deb"
			fi
			DEBS+=("$deb")
		done
	fi
	DEB=${DEBS[1]}
	KERNEL_PACKAGES="${DEBS[*]##*/}"
else
	resolve_kernel_pkg() {
		apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
			--no-replaces --no-enhances linux-image-amd64 2>/dev/null |
			awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
	}
	candidate_version() {
		apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" && $2 != "(none)" { print $2; exit }'
	}

	KPKG=$KERNEL_PKG
	[ -n "$KPKG" ] || KPKG=$(resolve_kernel_pkg || true)
	if [ -z "$KPKG" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		log "apt-cache knows no linux-image-amd64; running apt-get update"
		if apt-get update -qq >/dev/null 2>&1; then APT_UPDATED=1; fi
		KPKG=$(resolve_kernel_pkg || true)
	fi
	KVERSION=
	[ -z "$KPKG" ] || KVERSION=$(candidate_version "$KPKG" || true)

	DEB=
	if [ -n "$KPKG" ] && [ -n "$KVERSION" ]; then
		# apt writes the epoch colon as %3a in file names
		DEB=$DEB_DIR/${KPKG}_${KVERSION//:/%3a}_amd64.deb
		if [ -s "$DEB" ] && dpkg-deb --info "$DEB" >/dev/null 2>&1; then
			log "kernel package $KPKG $KVERSION: cached"
		else
			log "kernel package $KPKG $KVERSION: downloading"
			rm -f "$DEB"
			# -o APT::Sandbox::User=root: _apt may not be able to write to the cache dir
			(cd "$DEB_DIR" && apt-get download -q -o APT::Sandbox::User=root "$KPKG=$KVERSION" >&2) ||
				skip "apt-get download $KPKG=$KVERSION failed (no access to the Debian archive?)"
			[ -s "$DEB" ] || die "apt-get download did not produce $DEB"
		fi
	else
		# offline / no apt lists: fall back to the newest cached kernel package
		DEB=$(find "$DEB_DIR" -maxdepth 1 -name "${KPKG:-linux-image-*}_*_amd64.deb" 2>/dev/null | sort -V | tail -n 1)
		[ -n "$DEB" ] || skip "cannot resolve the Debian kernel package (${KPKG:-linux-image-amd64}) with apt-cache and none is cached in $DEB_DIR"
		log "apt-cache could not resolve the kernel package; using cached $(basename "$DEB")"
	fi
	DEBS=("$DEB")
	KERNEL_PACKAGES=$(basename "$DEB")
fi

# ------------------------------------------- vmlinuz + module closure (cached)
# Bumped when the resolution below changes, so cached module sets are rebuilt.
RESOLVER_VERSION=3
modset_key=$({
	echo "resolver $RESOLVER_VERSION"
	printf 'module %s\n' "${MODULES[@]}" | sort -u
	printf 'cipher %s\n' "${CIPHERS[@]}" | sort -u
} | md5sum | cut -c1-12)
KCACHE=$CACHE_DIR/kernel/$(basename "$DEB" .deb)/mods-$modset_key

# --- resolution over the kernel's own data ($srcmods: modules.dep, modules.alias from
# depmod; modules.builtin(.modinfo) from the package). Results go to $MANIFEST.
key_of() { local k=${1##*/}; k=${k%%.ko*}; echo "${k//-/_}"; }
# module name -> path relative to $srcmods, from modules.dep
mod_path() { awk -F: -v k="$1" '{ n = $1; sub(/.*\//, "", n); sub(/\.ko.*$/, "", n); gsub(/-/, "_", n); if (n == k) { print $1; exit } }' "$srcmods/modules.dep"; }
# modules.dep already lists the whole closure of a module
mod_deps() { awk -F: -v p="$1" '$1 == p { print $2; exit }' "$srcmods/modules.dep"; }
alias_mods() { awk -v a="crypto-$1" '$1 == "alias" && $2 == a { print $3 }' "$srcmods/modules.alias" | sort -u | tr '\n' ' '; }
builtin_mods() {
	[ -f "$srcmods/modules.builtin.modinfo" ] || return 0
	tr '\0' '\n' <"$srcmods/modules.builtin.modinfo" | awk -v a="crypto-$1" '
		{ i = index($0, ".alias="); if (i && substr($0, i + 7) == a) print substr($0, 1, i - 1) }' | sort -u | tr '\n' ' '
}
is_builtin_module() { grep -qE "/${1//_/[-_]}\.ko$" "$srcmods/modules.builtin" 2>/dev/null; }
# split "a,b(c,d),e" at top-level commas, one per line
split_args() { awk -v s="$1" 'BEGIN { d = 0; t = ""; for (i = 1; i <= length(s); i++) { c = substr(s, i, 1);
	if (c == "(") d++; if (c == ")") d--; if (c == "," && d == 0) { print t; t = "" } else t = t c } print t }'; }

declare -A WANT=() # module key -> 1 (to ship, with closure)
want_module() { # want_module KEY WHY
	local key=$1 rel
	[ -n "${WANT[$key]:-}" ] && return 0
	rel=$(mod_path "$key")
	if [ -z "$rel" ]; then
		is_builtin_module "$key" && return 0
		die "kernel $kver ($KERNEL_PACKAGES): module '$key' ($2) is neither in modules.dep nor in modules.builtin"
	fi
	WANT[$key]=1
}

# resolve_alg ALG CIPHER STRICT: providers of crypto algorithm ALG (built in, modules with
# the alias, or its template plus arguments). STRICT=1: having none is an error. An
# argument without a provider is only noted: newer kernels do some of a template's work
# with built-in library code (7.x rfc7539 uses lib poly1305, no "poly1305" algorithm);
# whether the cipher then works is what the guest probe shows, with this manifest above it.
resolve_alg() {
	local alg=$1 cipher=$2 strict=$3 builtin mods tmpl inner arg found=0 m
	builtin=$(builtin_mods "$alg")
	mods=$(alias_mods "$alg")
	# an algorithm met again (aes under ctr and gcm) was resolved already
	grep -q "^BED ALG $cipher $alg " "$MANIFEST" && return 0
	if [ -n "$builtin" ]; then
		echo "BED ALG $cipher $alg built-in: ${builtin% }" >>"$MANIFEST"
		return 0
	fi
	if [ -n "$mods" ]; then
		for m in $mods; do want_module "$(key_of "$m")" "provides crypto-$alg"; done
		echo "BED ALG $cipher $alg modules: ${mods% }" >>"$MANIFEST"
		found=1
	fi
	case "$alg" in
	*"("*")")
		# Also the template route: the kernel instantiates tmpl(args) when no driver
		# of the whole name registers (or, under TCG, when one cannot start).
		tmpl=${alg%%(*}
		inner=${alg#*(}
		inner=${inner%)}
		if [ -n "$(builtin_mods "$tmpl")$(alias_mods "$tmpl")" ]; then
			resolve_alg "$tmpl" "$cipher" 1
			while read -r arg; do
				resolve_alg "$arg" "$cipher" 0
			done < <(split_args "$inner")
			for arg in ${TEMPLATE_INNER[$tmpl]:-}; do
				resolve_alg "${arg//@/$inner}" "$cipher" 0
			done
			found=1
		fi
		;;
	esac
	if [ "$found" = 0 ]; then
		if [ "$strict" = 1 ]; then
			echo "BED MISSING $cipher $alg" >>"$MANIFEST"
			die "kernel $kver ($KERNEL_PACKAGES): no module or built-in provides crypto '$alg' for kTLS $cipher (no 'crypto-$alg' in modules.alias or modules.builtin.modinfo)"
		fi
		echo "BED ALG $cipher $alg none (not a separate algorithm on this kernel)" >>"$MANIFEST"
	fi
}

if [ ! -f "$KCACHE/.complete" ]; then
	log "extracting ${KERNEL_PACKAGES} (dpkg-deb -x)"
	rm -rf "$KCACHE"
	tmpx=$(mktemp -d "$CACHE_DIR/extract.XXXXXX")
	trap 'rm -rf "$tmpx"' EXIT
	for d in "${DEBS[@]}"; do
		dpkg-deb -x "$d" "$tmpx"
	done
	# /boot/vmlinuz-KVER (Debian 12), or /usr/lib/modules/KVER/vmlinuz (linux-binary-*)
	vmlinuz=$(find "$tmpx/boot" -maxdepth 1 -name 'vmlinuz-*' 2>/dev/null | head -n 1 || true)
	if [ -n "$vmlinuz" ]; then
		kver=${vmlinuz##*/vmlinuz-}
	else
		vmlinuz=$(find "$tmpx/usr/lib/modules" "$tmpx/lib/modules" -mindepth 2 -maxdepth 2 -name vmlinuz 2>/dev/null | head -n 1 || true)
		[ -n "$vmlinuz" ] || die "no vmlinuz in ${KERNEL_PACKAGES}"
		kver=$(basename "$(dirname "$vmlinuz")")
	fi
	# /lib/modules may live under /usr/lib on merged-/usr packages
	srcmods=
	for d in "$tmpx/lib/modules/$kver" "$tmpx/usr/lib/modules/$kver"; do
		[ -d "$d" ] && srcmods=$d && break
	done
	[ -n "$srcmods" ] || die "no modules dir for $kver in ${KERNEL_PACKAGES}"
	[ -f "$srcmods/modules.builtin" ] ||
		die "kernel $kver: no modules.builtin in ${KERNEL_PACKAGES} (cannot tell built-in crypto from missing)"
	# The package ships no modules.dep / modules.alias (its postinst runs depmod): make them.
	"$DEPMOD" -b "${srcmods%/lib/modules/$kver}" "$kver" ||
		die "depmod failed on $kver from ${KERNEL_PACKAGES}"

	stage=$(mktemp -d "$CACHE_DIR/stage.XXXXXX")
	MANIFEST=$stage/bed.txt
	{
		echo "BED KERNEL_RELEASE $kver"
		echo "BED KERNEL_PACKAGES $KERNEL_PACKAGES"
		echo "BED CIPHERS ${CIPHERS[*]:-none}"
	} >"$MANIFEST"
	mkdir -p "$stage/lib/modules/$kver"
	cp "$vmlinuz" "$stage/vmlinuz"
	echo "$kver" >"$stage/kver"
	cp "$tmpx/boot/config-$kver" "$stage/config" 2>/dev/null ||
		cp "$srcmods/config" "$stage/config" 2>/dev/null || true

	for m in "${MODULES[@]}"; do want_module "${m//-/_}" "asked for"; done
	for c in "${CIPHERS[@]}"; do
		resolve_alg "${CIPHER_ALG[$c]}" "$c" 1
		echo "BED CIPHER $c ${CIPHER_ALG[$c]} OK" >>"$MANIFEST"
	done

	# every wanted module with its modules.dep closure
	declare -A shipped_set=()
	shipped=()
	compressed=()
	for key in "${!WANT[@]}"; do
		rel=$(mod_path "$key")
		for r in "$rel" $(mod_deps "$rel"); do
			k=$(key_of "$r")
			[ -n "${shipped_set[$k]:-}" ] && continue
			[ -f "$srcmods/$r" ] || die "kernel $kver: $r (needed by $key per modules.dep) is not in ${KERNEL_PACKAGES}"
			shipped_set[$k]=1
			dst=$stage/lib/modules/$kver/$r
			mkdir -p "$(dirname "$dst")"
			case "$r" in
			*.ko.xz) xz -dc "$srcmods/$r" >"${dst%.xz}" || die "cannot decompress $r (xz-utils missing?)"; compressed+=("$r") ;;
			*.ko.zst) zstd -qdc "$srcmods/$r" >"${dst%.zst}" || die "cannot decompress $r (zstd missing?)"; compressed+=("$r") ;;
			*.ko.gz) gzip -dc "$srcmods/$r" >"${dst%.gz}"; compressed+=("$r") ;;
			*) cp "$srcmods/$r" "$dst" ;;
			esac
			shipped+=("$k")
		done
	done
	mapfile -t shipped < <(printf '%s\n' "${shipped[@]}" | sort)
	echo "BED MODULES ${shipped[*]}" >>"$MANIFEST"
	cp "$srcmods/modules.builtin" "$srcmods/modules.order" "$stage/lib/modules/$kver/" 2>/dev/null || true
	cp "$srcmods/modules.builtin.modinfo" "$stage/lib/modules/$kver/" 2>/dev/null || true
	printf '%s\n' "${shipped[@]}" >"$stage/modules.list"
	if [ "${#compressed[@]}" -gt 0 ]; then
		log "decompressed ${#compressed[@]} compressed module(s) for busybox insmod"
	fi
	mkdir -p "$(dirname "$KCACHE")"
	mv "$stage" "$KCACHE"
	touch "$KCACHE/.complete"
	rm -rf "$tmpx"
	trap - EXIT
fi
flock -u 9
KVER=$(cat "$KCACHE/kver")
log "kernel $KVER ($KERNEL_PACKAGES), modules: $(tr '\n' ' ' <"$KCACHE/modules.list")"
if [ "$RESOLVE_ONLY" = 1 ]; then
	cat "$KCACHE/bed.txt"
	echo "BED CACHE $KCACHE"
	exit 0
fi

# ----------------------------------------------------------------- initramfs
ROOT=$(mktemp -d "$OUT_DIR/root.XXXXXX")
trap 'rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,etc/vm,proc,sys,dev,tmp,run,root,lib,lib64,var/log}
chmod 1777 "$ROOT/tmp"

cp "$BUSYBOX" "$ROOT/bin/busybox"
# /init runs `busybox --install -s` first thing; it only needs /bin/sh
ln -s busybox "$ROOT/bin/sh"

cp -a "$KCACHE/lib/modules" "$ROOT/lib/"
cp "$KCACHE/bed.txt" "$ROOT/etc/vm/bed.txt"
cp "$KCACHE/bed.txt" "$OUT_DIR/bed.txt"
printf '%s\n' "${PRELOAD[@]}" | sed '/^$/d' >"$ROOT/etc/vm/preload-modules"

install -m 0755 "$SCRIPT_DIR/init.sh" "$ROOT/init"
install -m 0755 "$GUEST_SCRIPT" "$ROOT/guest.sh"

cat >"$ROOT/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$ROOT/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
cat >"$ROOT/etc/hosts" <<'EOF'
127.0.0.1	localhost ringgate-vm
::1	localhost ip6-localhost ip6-loopback
EOF
echo 'hosts: files' >"$ROOT/etc/nsswitch.conf"
: >"$ROOT/etc/resolv.conf"

# the kTLS probe
gcc -static -O2 -Wall -Wextra -o "$ROOT/usr/local/bin/ktls_probe" "$SCRIPT_DIR/probe/ktls_probe.c" ||
	die "building tests/vm/probe/ktls_probe.c failed (is libc6-dev installed?)"

copy_with_libs() {
	# copy_with_libs HOST_EXE GUEST_PATH
	local src=$1 dst=$2 lib
	install -D -m 0755 "$src" "$ROOT$dst"
	is_static "$src" && return 0
	if ldd "$src" | grep -q 'not found'; then
		die "$src: missing shared libraries: $(ldd "$src" | grep 'not found' | tr -s ' \t' ' ')"
	fi
	# "libx.so => /path (0x..)" and "/lib64/ld-linux-x86-64.so.2 (0x..)"
	while read -r lib; do
		[ -n "$lib" ] || continue
		[ -e "$ROOT$lib" ] && continue
		mkdir -p "$ROOT$(dirname "$lib")"
		cp -L "$lib" "$ROOT$lib"
	done < <(ldd "$src" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
}

for exe in "${EXTRA_BINS[@]}"; do
	if [ ! -f "$exe" ] || [ ! -x "$exe" ]; then
		die "extra executable not found or not executable: $exe"
	fi
	copy_with_libs "$exe" "/usr/local/bin/$(basename "$exe")"
done
for spec in "${EXTRA_FILES[@]}"; do
	src=${spec%%:*}
	dst=${spec#*:}
	[ "$dst" != "$spec" ] || dst=/root/$(basename "$src")
	[ -e "$src" ] || die "extra file not found: $src"
	mkdir -p "$ROOT$(dirname "$dst")"
	# -L: a symlink on the host (e.g. /etc/os-release) must arrive as content
	cp -RL "$src" "$ROOT$dst"
done

initrd_tmp=$OUT_DIR/.initrd.gz.$$
(cd "$ROOT" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
	cpio --null --create --format=newc --owner=0:0 --quiet) | gzip -1 >"$initrd_tmp"
mv "$initrd_tmp" "$OUT_DIR/initrd.gz"
cp "$KCACHE/vmlinuz" "$OUT_DIR/vmlinuz"
echo "$KVER" >"$OUT_DIR/kver"

log "built $OUT_DIR/{vmlinuz,initrd.gz} (initrd $(du -h "$OUT_DIR/initrd.gz" | cut -f1)) in $(elapsed)"
