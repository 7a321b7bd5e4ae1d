#!/usr/bin/env bash
# ringgate host tuning: compare a sysctl profile with the running kernel, optionally
# apply it (and optionally install it into /etc/sysctl.d). See tuning/README.md.
#
# Environment (for tests and unusual hosts):
#   SYSCTL        sysctl command to use (default: sysctl). Called as `$SYSCTL -n KEY`
#                 and `$SYSCTL -w KEY=VALUE`.
#   SYSCTL_D_DIR  where --install writes (default: /etc/sysctl.d).
# `--root DIR` reads and writes DIR/net/core/somaxconn etc. instead of calling sysctl
# (a fake /proc/sys for tests; no root needed).
set -euo pipefail

readonly PROG=${0##*/}
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR
SYSCTL=${SYSCTL:-sysctl}
sysctl_d_given=${SYSCTL_D_DIR:+yes}
SYSCTL_D_DIR=${SYSCTL_D_DIR:-/etc/sysctl.d}

# Exit codes.
readonly EX_OK=0          # dry run: everything matches; apply: every write succeeded
readonly EX_FAILED=1      # apply: some writes (or the install) failed
readonly EX_USAGE=2       # bad arguments or unreadable/malformed profile
readonly EX_DIFFERS=3     # dry run: at least one key differs
readonly EX_NOT_ROOT=4    # --apply without root

usage() {
    cat <<EOF
Usage: $PROG PROFILE [--dry-run | --check | --apply [--install]] [--exact] [--root DIR]
       $PROG --help

Compare a ringgate sysctl profile with the running kernel and optionally apply it.

PROFILE     edge-throughput | edge-latency (files next to this script), or a path
            to any .conf file of "key = value" lines (# comments allowed).

A profile raises minimums: it never lowers a running value that is already larger
(tcp_rmem max 33554432 stays when the profile says 16777216; tcp_tw_reuse 2 stays 2)
unless --exact. Numbers compare field by field. A few keys go the other way or are
choices: tcp_fin_timeout, tcp_slow_start_after_idle, tcp_notsent_lowat and
kernel.io_uring_disabled are caps (lowered, never raised); ip_local_port_range is only
widened; tcp_fastopen's bits are added; busy_poll, busy_read and names (bbr, fq) are
set exactly.

--dry-run   (default) Print key, running value, profile value and action for every
            key in the profile; change nothing. Action is one of:
              ok       running value equals the profile value (whitespace-insensitive)
              keep     running value already goes further than the profile (kept;
                       --exact would set the profile value)
              raise, lower, set
                       would be written ("-> VALUE" when that is not the profile value,
                       e.g. a field-wise raise)
              absent   this kernel has no such key (or it cannot be read); reported,
                       but it does not make the run fail
--check     Same as --dry-run.
--apply     As root only: write every value the table says to with \`sysctl -w\`. Keys
            that fail are reported and the run continues. Runtime only: lost at reboot.
--exact     Set every key to exactly the profile value, lowering larger ones.
--install   With --apply: also write $SYSCTL_D_DIR/90-ringgate-NAME.conf with the
            values the run leaves (kept ones included) so they persist across reboots.
--root DIR  Read and write DIR/KEY/WITH/SLASHES instead of calling sysctl (tests);
            --install then writes under DIR/etc/sysctl.d unless SYSCTL_D_DIR is set.
-h, --help  Show this help.

Exit status:
  0  dry run: nothing to write (absent keys allowed); apply: all writes succeeded
  1  apply: at least one write or the install failed
  2  usage error, or the profile cannot be read or parsed
  3  dry run: at least one key would be written
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
exact=0
root=""
args=("$@")
for ((ai = 0; ai < ${#args[@]}; ai++)); do
    arg=${args[ai]}
    case $arg in
        -h | --help)
            usage
            exit "$EX_OK"
            ;;
        --dry-run | --check) mode=dry-run ;;
        --apply) mode=apply ;;
        --install) install=1 ;;
        --exact) exact=1 ;;
        --root)
            ai=$((ai + 1))
            ((ai < ${#args[@]})) || die_usage "--root needs a directory"
            root=${args[ai]}
            [[ -d $root ]] || die_usage "--root: not a directory: $root"
            ;;
        -*) die_usage "unknown option: $arg" ;;
        *)
            [[ -z $profile_arg ]] || die_usage "more than one profile given: $profile_arg, $arg"
            profile_arg=$arg
            ;;
    esac
done
[[ -n $profile_arg ]] || die_usage "no profile given (edge-throughput or edge-latency)"
# A fake /proc/sys never installs into the host's /etc.
if [[ -n $root && -z $sysctl_d_given ]]; then
    SYSCTL_D_DIR=$root/etc/sysctl.d
fi
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

# --- reading, writing and comparing values --------------------------------------------

sysctl_get() {
    if [[ -n $root ]]; then
        cat -- "$root/${1//.//}" 2>/dev/null
    else
        "$SYSCTL" -n "$1" 2>/dev/null
    fi
}

# Prints the error on failure.
sysctl_set() {
    if [[ -n $root ]]; then
        [[ -e $root/${1//.//} ]] || {
            echo "no such key"
            return 1
        }
        printf '%s\n' "$2" 2>&1 >"$root/${1//.//}"
    else
        "$SYSCTL" -w "$1=$2" 2>&1 >/dev/null
    fi
}

# How the profile value of key $1 (value $2) relates to a running one:
#   min    numbers, field by field: raised, never lowered (the default for numbers)
#   max    a cap or an off switch: lowered, never raised
#   range  "LOW HIGH": only widened
#   bits   a bitmask: the profile's bits are added
#   exact  names (bbr, fq) and values that are a choice
# src/doctor.rs (`ringgate doctor --profile`) follows the same table.
key_mode() {
    case $1 in
        net.ipv4.tcp_fin_timeout | net.ipv4.tcp_slow_start_after_idle | \
            net.ipv4.tcp_notsent_lowat | kernel.io_uring_disabled) echo max ;;
        net.ipv4.ip_local_port_range) echo range ;;
        net.ipv4.tcp_fastopen) echo bits ;;
        net.core.busy_poll | net.core.busy_read) echo exact ;;
        *) if [[ $2 =~ ^[0-9]+( [0-9]+)*$ ]]; then echo min; else echo exact; fi ;;
    esac
}

# Whether decimal $1 < decimal $2, for any length (fs.file-max is 2^63-1; some keys
# are u64): by digit count, then as text.
num_lt() {
    local a=${1#"${1%%[!0]*}"} b=${2#"${2%%[!0]*}"}
    if ((${#a} != ${#b})); then
        ((${#a} < ${#b}))
    else
        [[ $a < $b ]]
    fi
}

# The value to leave for running $1, profile $2, mode $3 (without --exact).
target_value() {
    local cur=$1 want=$2 mode=$3
    if [[ $mode == exact || ! $cur =~ ^[0-9]+( [0-9]+)*$ ]]; then
        printf '%s' "$want"
        return
    fi
    local -a c w out
    read -r -a c <<<"$cur"
    read -r -a w <<<"$want"
    if ((${#c[@]} != ${#w[@]})); then
        printf '%s' "$want"
        return
    fi
    local i pick
    for i in "${!w[@]}"; do
        pick=${w[i]}
        case $mode in
            min) if num_lt "${w[i]}" "${c[i]}"; then pick=${c[i]}; fi ;;
            max) if num_lt "${c[i]}" "${w[i]}"; then pick=${c[i]}; fi ;;
            range)
                if ((i == 0)); then
                    if num_lt "${c[i]}" "${w[i]}"; then pick=${c[i]}; fi
                elif num_lt "${w[i]}" "${c[i]}"; then
                    pick=${c[i]}
                fi
                ;;
            bits) pick=$((c[i] | w[i])) ;;
        esac
        out+=("$pick")
    done
    printf '%s' "${out[*]}"
}

# --- compare -----------------------------------------------------------------------

if [[ $mode == apply && -z $root && $EUID -ne 0 ]]; then
    printf '%s: --apply needs root (sysctl -w); nothing changed\n' "$PROG" >&2
    exit "$EX_NOT_ROOT"
fi

running=()
status=()
targets=()
n_ok=0
n_kept=0
n_differs=0
n_absent=0
kw=3 rw=7 pw=7
for i in "${!keys[@]}"; do
    tgt=${values[i]}
    if raw=$(sysctl_get "${keys[i]}"); then
        cur=$(normalise "$raw")
        if [[ $cur == "${values[i]}" ]]; then
            st=ok
            n_ok=$((n_ok + 1))
        else
            ((exact)) || tgt=$(target_value "$cur" "${values[i]}" "$(key_mode "${keys[i]}" "${values[i]}")")
            if [[ $tgt == "$cur" ]]; then
                st=keep
                n_kept=$((n_kept + 1))
            else
                if [[ $cur =~ ^[0-9]+$ && $tgt =~ ^[0-9]+$ ]]; then
                    if num_lt "$cur" "$tgt"; then st=raise; else st=lower; fi
                else
                    st=set
                fi
                n_differs=$((n_differs + 1))
            fi
        fi
    else
        cur="-"
        st=absent
        n_absent=$((n_absent + 1))
    fi
    running+=("$cur")
    status+=("$st")
    targets+=("$tgt")
    if ((${#keys[i]} > kw)); then kw=${#keys[i]}; fi
    if ((${#cur} > rw)); then rw=${#cur}; fi
    if ((${#values[i]} > pw)); then pw=${#values[i]}; fi
done

printf 'profile: %s (%s)\n' "$profile_name" "$profile_file"
how=$mode
((exact)) && how="$how, exact"
((install)) && how="$how + install"
[[ -n $root ]] && how="$how, root $root"
printf 'mode:    %s\n\n' "$how"
printf "%-${kw}s  %-${rw}s  %-${pw}s  %s\n" KEY RUNNING PROFILE ACTION
for i in "${!keys[@]}"; do
    act=${status[i]}
    case $act in
        raise | lower | set) [[ ${targets[i]} == "${values[i]}" ]] || act="$act -> ${targets[i]}" ;;
    esac
    printf "%-${kw}s  %-${rw}s  %-${pw}s  %s\n" "${keys[i]}" "${running[i]}" "${values[i]}" "$act"
done
printf '\n%d keys: %d ok, %d kept (already beyond the profile), %d to write, %d absent\n' \
    "${#keys[@]}" "$n_ok" "$n_kept" "$n_differs" "$n_absent"
if ((n_kept)) && ! ((exact)); then
    printf 'note: kept values go further than the profile; --exact would set the profile values\n'
fi
if ((n_absent)); then
    printf 'note: absent keys do not exist on this kernel (%s) or cannot be read; they are skipped\n' \
        "$(uname -r)"
fi

if [[ $mode == dry-run ]]; then
    if ((n_differs)); then
        printf 'dry run: nothing changed; run with --apply (as root) to write them\n'
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
    case ${status[i]} in raise | lower | set) ;; *) continue ;; esac
    key=${keys[i]}
    want=${targets[i]}
    if err=$(sysctl_set "$key" "$want"); then
        # Read back: some keys accept a write but normalise or ignore it.
        if now=$(sysctl_get "$key") && [[ $(normalise "$now") == "$want" ]]; then
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
printf '\n%d written, %d failed, %d already ok, %d kept, %d absent (skipped)\n' \
    "$n_written" "$n_failed" "$n_ok" "$n_kept" "$n_absent"

if ((install)); then
    dest=$SYSCTL_D_DIR/90-ringgate-$profile_name.conf
    # The values this run leaves, so a boot does not undo what it kept (a plain copy of
    # the profile would lower the kept values again at every boot).
    installed=$(mktemp)
    {
        printf '# ringgate sysctl profile %s, as applied by %s on %s\n' "$profile_name" "$PROG" "$(date -u +%F)"
        printf '# (values already beyond the profile were kept; see %s)\n' "$profile_file"
        for i in "${!keys[@]}"; do
            [[ ${status[i]} == absent ]] && continue
            if [[ ${status[i]} == keep ]]; then
                printf '%s = %s\n' "${keys[i]}" "${running[i]}"
            else
                printf '%s = %s\n' "${keys[i]}" "${targets[i]}"
            fi
        done
    } >"$installed"
    if install -D -m 0644 -- "$installed" "$dest"; then
        printf 'installed %s\n' "$dest"
        for other in "$SYSCTL_D_DIR"/90-ringgate-*.conf; do
            [[ -e $other && $other != "$dest" ]] || continue
            printf 'warning: %s is also installed and conflicts; remove one of them\n' "$other"
        done
    else
        printf 'FAILED to install %s\n' "$dest" >&2
        n_failed=$((n_failed + 1))
    fi
    rm -f -- "$installed"
fi

if ((n_failed)); then
    exit "$EX_FAILED"
fi
exit "$EX_OK"
