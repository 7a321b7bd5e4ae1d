#!/usr/bin/env bash
# ringgate host tuning: compare a sysctl profile with the running kernel, optionally
# apply it (and optionally install it into /etc/sysctl.d). See tuning/README.md.
#
# Environment (for tests and unusual hosts):
#   SYSCTL        sysctl command to use (default: sysctl). Called as `$SYSCTL -n KEY`
#                 and `$SYSCTL -w KEY=VALUE`.
#   SYSCTL_D_DIR  where --install writes (default: /etc/sysctl.d).
set -euo pipefail

readonly PROG=${0##*/}
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR
SYSCTL=${SYSCTL:-sysctl}
SYSCTL_D_DIR=${SYSCTL_D_DIR:-/etc/sysctl.d}

# Exit codes.
readonly EX_OK=0          # dry run: everything matches; apply: every write succeeded
readonly EX_FAILED=1      # apply: some writes (or the install) failed
readonly EX_USAGE=2       # bad arguments or unreadable/malformed profile
readonly EX_DIFFERS=3     # dry run: at least one key differs
readonly EX_NOT_ROOT=4    # --apply without root

usage() {
    cat <<EOF
Usage: $PROG PROFILE [--dry-run | --check | --apply [--install]]
       $PROG --help

Compare a ringgate sysctl profile with the running kernel and optionally apply it.

PROFILE     edge-throughput | edge-latency (files next to this script), or a path
            to any .conf file of "key = value" lines (# comments allowed).

--dry-run   (default) Print key, running value, profile value and status for every
            key in the profile; change nothing. Status is one of:
              ok       running value equals the profile value (whitespace-insensitive)
              differs  running value is different
              absent   this kernel has no such key (or it cannot be read); reported,
                       but it does not make the run fail
--check     Same as --dry-run.
--apply     As root only: write every differing value with \`sysctl -w\`. Keys that
            fail are reported and the run continues. Runtime only: lost at reboot.
--install   With --apply: also copy the profile to
            $SYSCTL_D_DIR/90-ringgate-NAME.conf so it persists across reboots.
-h, --help  Show this help.

Exit status:
  0  dry run: everything matches (absent keys allowed); apply: all writes succeeded
  1  apply: at least one write or the install failed
  2  usage error, or the profile cannot be read or parsed
  3  dry run: at least one key differs
  4  --apply without root

Environment: SYSCTL (default "sysctl"), SYSCTL_D_DIR (default "/etc/sysctl.d").

Examples:
  $PROG edge-throughput                        # what would change?
  $PROG edge-latency --apply                   # change the running kernel
  $PROG edge-latency --apply --install         # ... and persist it
  SYSCTL=/tmp/fake-sysctl $PROG ./my.conf --apply   # test against a stub
EOF
}

die_usage() {
    printf '%s: %s\n' "$PROG" "$1" >&2
    printf "Try '%s --help'.\n" "$PROG" >&2
    exit "$EX_USAGE"
}

# Collapse runs of whitespace (tabs from /proc, spaces in the profile) to one space and
# trim both ends, so "4096\t131072\t6291456" equals "4096 131072 6291456".
normalise() {
    local s=$1
    s=${s//$'\t'/ }
    s=${s//$'\r'/ }
    s=${s//$'\n'/ }
    while [[ $s == *'  '* ]]; do
        s=${s//  / }
    done
    s=${s# }
    s=${s% }
    printf '%s' "$s"
}

# --- arguments ---------------------------------------------------------------------

profile_arg=""
mode=dry-run
install=0
for arg in "$@"; do
    case $arg in
        -h | --help)
            usage
            exit "$EX_OK"
            ;;
        --dry-run | --check) mode=dry-run ;;
        --apply) mode=apply ;;
        --install) install=1 ;;
        -*) die_usage "unknown option: $arg" ;;
        *)
            [[ -z $profile_arg ]] || die_usage "more than one profile given: $profile_arg, $arg"
            profile_arg=$arg
            ;;
    esac
done
[[ -n $profile_arg ]] || die_usage "no profile given (edge-throughput or edge-latency)"
if ((install)) && [[ $mode != apply ]]; then
    die_usage "--install needs --apply"
fi

# A bare name means a profile shipped next to this script; anything with a slash or a
# .conf suffix is a path.
if [[ $profile_arg == */* || $profile_arg == *.conf ]]; then
    profile_file=$profile_arg
else
    profile_file=$SCRIPT_DIR/$profile_arg.conf
fi
[[ -f $profile_file && -r $profile_file ]] || die_usage "cannot read profile: $profile_file"
profile_name=$(basename -- "$profile_file" .conf)
[[ $profile_name =~ ^[A-Za-z0-9._-]+$ ]] || die_usage "unsuitable profile name: $profile_name"

# --- parse the profile ---------------------------------------------------------------

keys=()
values=()
lineno=0
while IFS= read -r line || [[ -n $line ]]; do
    lineno=$((lineno + 1))
    line=$(normalise "$line")
    # sysctl.d: lines starting with # or ; are comments.
    [[ -z $line || $line == '#'* || $line == ';'* ]] && continue
    [[ $line == *=* ]] || die_usage "$profile_file:$lineno: expected 'key = value', got: $line"
    key=$(normalise "${line%%=*}")
    value=$(normalise "${line#*=}")
    # sysctl.d allows a leading "-" (ignore failures) and "/" as separator.
    key=${key#-}
    key=${key//\//.}
    [[ $key =~ ^[A-Za-z0-9_.-]+$ ]] || die_usage "$profile_file:$lineno: bad key: $key"
    [[ -n $value ]] || die_usage "$profile_file:$lineno: empty value for $key"
    keys+=("$key")
    values+=("$value")
done <"$profile_file"
((${#keys[@]} > 0)) || die_usage "no settings in $profile_file"

# --- compare -----------------------------------------------------------------------

if [[ $mode == apply && $EUID -ne 0 ]]; then
    printf '%s: --apply needs root (sysctl -w); nothing changed\n' "$PROG" >&2
    exit "$EX_NOT_ROOT"
fi

running=()
status=()
n_ok=0
n_differs=0
n_absent=0
kw=3 rw=7 pw=7
for i in "${!keys[@]}"; do
    if raw=$("$SYSCTL" -n "${keys[i]}" 2>/dev/null); then
        cur=$(normalise "$raw")
        if [[ $cur == "${values[i]}" ]]; then
            st=ok
            n_ok=$((n_ok + 1))
        else
            st=differs
            n_differs=$((n_differs + 1))
        fi
    else
        cur="-"
        st=absent
        n_absent=$((n_absent + 1))
    fi
    running+=("$cur")
    status+=("$st")
    if ((${#keys[i]} > kw)); then kw=${#keys[i]}; fi
    if ((${#cur} > rw)); then rw=${#cur}; fi
    if ((${#values[i]} > pw)); then pw=${#values[i]}; fi
done

printf 'profile: %s (%s)\n' "$profile_name" "$profile_file"
if ((install)); then
    printf 'mode:    %s + install\n\n' "$mode"
else
    printf 'mode:    %s\n\n' "$mode"
fi
printf "%-${kw}s  %-${rw}s  %-${pw}s  %s\n" KEY RUNNING PROFILE STATUS
for i in "${!keys[@]}"; do
    printf "%-${kw}s  %-${rw}s  %-${pw}s  %s\n" "${keys[i]}" "${running[i]}" "${values[i]}" "${status[i]}"
done
printf '\n%d keys: %d ok, %d differ, %d absent\n' "${#keys[@]}" "$n_ok" "$n_differs" "$n_absent"
if ((n_absent)); then
    printf 'note: absent keys do not exist on this kernel (%s) or cannot be read; they are skipped\n' \
        "$(uname -r)"
fi

if [[ $mode == dry-run ]]; then
    if ((n_differs)); then
        printf 'dry run: nothing changed; run with --apply (as root) to write the differing values\n'
        exit "$EX_DIFFERS"
    fi
    exit "$EX_OK"
fi

# --- apply -------------------------------------------------------------------------

n_failed=0
n_written=0
if ((n_differs)); then
    printf '\napplying:\n'
fi
for i in "${!keys[@]}"; do
    [[ ${status[i]} == differs ]] || continue
    key=${keys[i]}
    want=${values[i]}
    if err=$("$SYSCTL" -w "$key=$want" 2>&1 >/dev/null); then
        # Read back: some keys accept a write but normalise or ignore it.
        if now=$("$SYSCTL" -n "$key" 2>/dev/null) && [[ $(normalise "$now") == "$want" ]]; then
            printf '  set     %s = %s\n' "$key" "$want"
            n_written=$((n_written + 1))
        else
            printf '  FAILED  %s = %s (write accepted, reads back: %s)\n' "$key" "$want" \
                "$(normalise "${now:-?}")"
            n_failed=$((n_failed + 1))
        fi
    else
        printf '  FAILED  %s = %s: %s\n' "$key" "$want" "$(normalise "${err:-sysctl -w failed}")"
        n_failed=$((n_failed + 1))
        if [[ $key == net.ipv4.tcp_congestion_control ]]; then
            printf '          hint: modprobe tcp_%s; check net.ipv4.tcp_available_congestion_control\n' "$want"
        fi
    fi
    if [[ $key == net.core.default_qdisc ]]; then
        printf '          note: existing interfaces keep their qdisc; re-create it (tc qdisc replace dev IFACE root %s) or reboot with the profile installed\n' "$want"
    fi
done
printf '\n%d written, %d failed, %d already ok, %d absent (skipped)\n' \
    "$n_written" "$n_failed" "$n_ok" "$n_absent"

if ((install)); then
    dest=$SYSCTL_D_DIR/90-ringgate-$profile_name.conf
    if install -D -m 0644 -- "$profile_file" "$dest"; then
        printf 'installed %s\n' "$dest"
        for other in "$SYSCTL_D_DIR"/90-ringgate-*.conf; do
            [[ -e $other && $other != "$dest" ]] || continue
            printf 'warning: %s is also installed and conflicts; remove one of them\n' "$other"
        done
    else
        printf 'FAILED to install %s\n' "$dest" >&2
        n_failed=$((n_failed + 1))
    fi
fi

if ((n_failed)); then
    exit "$EX_FAILED"
fi
exit "$EX_OK"
