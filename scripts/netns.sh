#!/usr/bin/env bash
# Two network namespaces joined by a veth pair: two "hosts" on one machine, with a real link between
# them that can be shaped (tc tbf), delayed (tc netem) and cut. Used by NetnsCluster
# (src/bench/netns-cluster.ts) and by hand; see docs/multi-host.md.
set -euo pipefail

readonly PROG=netns.sh
# 10 ms of traffic: tbf needs at least rate/HZ bytes of burst or it cannot reach its rate (HZ >= 100).
readonly BURST_MS=10
# veth hands tbf GSO packets of up to 64 KiB; a smaller bucket would make tbf split or drop them.
readonly MIN_BURST_BYTES=65536
# Queue beyond the bucket, in time at the rate: enough for TCP to keep the link busy.
readonly TBF_LATENCY=20ms

usage() {
  cat <<EOF
usage: $PROG up NAME [--rate RATE] [--delay DELAY] [--subnet X]
       $PROG down NAME
       $PROG link NAME down|up
       $PROG exec NAME a|b COMMAND [ARG...]
       $PROG addr NAME a|b

  up     namespaces NAME-a and NAME-b, veth NAMEa <-> NAMEb, addresses 10.X.0.1/24 (a) and
         10.X.0.2/24 (b); X is derived from NAME unless --subnet gives it (1-254).
         --rate shapes both directions with tbf (e.g. 1gbit, 10gbit, 500mbit);
         --delay adds netem delay in both directions (e.g. 1ms, 250us).
  down   kills every process left in both namespaces and removes them; fine if already gone.
  link   takes both ends of the veth down or up (cuts or restores the network between a and b).
  exec   runs COMMAND inside NAME-a or NAME-b.
  addr   prints the address of side a or b.
NAME: 1-14 characters of a-z 0-9 -, starting with a letter or digit (interface names stop at 15).
Needs root and iproute2 (ip, tc).
EOF
}

die() {
  echo "$PROG: $*" >&2
  exit 1
}

usage_error() {
  echo "$PROG: $*" >&2
  echo "run '$PROG --help' for usage" >&2
  exit 2
}

check_name() {
  [[ $1 =~ ^[a-z0-9][a-z0-9-]{0,13}$ ]] ||
    usage_error "bad NAME '$1': 1-14 characters of a-z 0-9 -, starting with a letter or digit"
}

check_side() {
  [[ $1 == a || $1 == b ]] || usage_error "bad side '$1': expected a or b"
}

ns_exists() {
  local list
  list=$(ip netns list)
  grep -qxF "$1" <<<"$(cut -d' ' -f1 <<<"$list")"
}

require_setup() {
  ns_exists "$1-a" && ns_exists "$1-b" || die "no setup named '$1' (run: $PROG up $1)"
}

# Prints bytes per second for a tc rate in bits: 500mbit, 1gbit, 10gbit, ...
rate_bytes_per_second() {
  [[ ${1,,} =~ ^([0-9]{1,6})(bit|kbit|mbit|gbit|tbit)$ ]] ||
    usage_error "bad --rate '$1': expected a number and one of bit kbit mbit gbit tbit, e.g. 1gbit"
  local -A scale=([bit]=1 [kbit]=1000 [mbit]=1000000 [gbit]=1000000000 [tbit]=1000000000000)
  local bytes=$((10#${BASH_REMATCH[1]} * scale[${BASH_REMATCH[2]}] / 8))
  ((bytes > 0)) || usage_error "bad --rate '$1': must be at least 8bit"
  echo "$bytes"
}

# tc prints "Specified qdisc kind is unknown" when the kernel lacks the module: say which one.
run_tc() {
  local option=$1 kind=$2 out
  shift 2
  if ! out=$(tc "$@" 2>&1); then
    if [[ $out == *"qdisc kind is unknown"* ]]; then
      die "this kernel has no $kind qdisc (module sch_$kind), which $option needs"
    fi
    die "tc $*: $out"
  fi
}

shape() {
  local ns=$1 dev=$2 rate=$3 burst=$4 delay=$5
  if [[ -n $rate ]]; then
    run_tc --rate tbf -n "$ns" qdisc add dev "$dev" root handle 1: \
      tbf rate "$rate" burst "$burst" latency "$TBF_LATENCY"
    [[ -z $delay ]] || run_tc --delay netem -n "$ns" qdisc add dev "$dev" parent 1:1 handle 10: netem delay "$delay"
  elif [[ -n $delay ]]; then
    run_tc --delay netem -n "$ns" qdisc add dev "$dev" root netem delay "$delay"
  fi
}

cmd_up() {
  (($# >= 1)) || usage_error "up needs a NAME"
  local name=$1 rate='' delay='' subnet=''
  check_name "$name"
  shift
  while (($#)); do
    (($# >= 2)) || usage_error "$1 needs a value"
    case $1 in
      --rate) rate=$2 ;;
      --delay) delay=$2 ;;
      --subnet) subnet=$2 ;;
      *) usage_error "unknown option '$1' for up" ;;
    esac
    shift 2
  done

  local burst=''
  if [[ -n $rate ]]; then
    burst=$(rate_bytes_per_second "$rate")
    burst=$((burst * BURST_MS / 1000))
    ((burst >= MIN_BURST_BYTES)) || burst=$MIN_BURST_BYTES
  fi
  [[ -z $delay || $delay =~ ^[0-9]+(\.[0-9]+)?(us|ms|s)$ ]] ||
    usage_error "bad --delay '$delay': expected e.g. 1ms, 250us"
  if [[ -n $subnet ]]; then
    [[ $subnet =~ ^[1-9][0-9]{0,2}$ ]] && ((subnet <= 254)) ||
      usage_error "bad --subnet '$subnet': expected 1-254"
  else
    # The namespaces are isolated, so setups never clash even on one subnet; distinct subnets only
    # keep logs and captures of concurrent setups apart.
    subnet=$(($(cksum <<<"$name" | cut -d' ' -f1) % 254 + 1))
  fi
  if [[ -n $rate || -n $delay ]]; then
    command -v tc >/dev/null || die "tc not found (install iproute2)"
  fi

  local a="$name-a" b="$name-b"
  if ns_exists "$a" || ns_exists "$b"; then
    die "namespace $a or $b already exists (remove it with: $PROG down $name)"
  fi
  # From here on, a failure removes whatever this call created.
  trap "cmd_down $name >/dev/null 2>&1 || true" EXIT
  ip netns add "$a"
  ip netns add "$b"
  # Created straight inside the namespaces: the pair never exists in the caller's namespace, so no
  # interface there can clash with it or be touched.
  ip link add "${name}a" netns "$a" type veth peer name "${name}b" netns "$b"
  ip -n "$a" addr add "10.$subnet.0.1/24" dev "${name}a"
  ip -n "$b" addr add "10.$subnet.0.2/24" dev "${name}b"
  local ns
  for ns in "$a" "$b"; do ip -n "$ns" link set lo up; done
  shape "$a" "${name}a" "$rate" "$burst" "$delay"
  shape "$b" "${name}b" "$rate" "$burst" "$delay"
  ip -n "$a" link set "${name}a" up
  ip -n "$b" link set "${name}b" up
  trap - EXIT

  echo "$a: 10.$subnet.0.1 on ${name}a"
  echo "$b: 10.$subnet.0.2 on ${name}b"
  [[ -z $rate ]] || echo "shaped: tbf rate $rate burst ${burst}b latency $TBF_LATENCY, both directions"
  [[ -z $delay ]] || echo "delayed: netem delay $delay, both directions"
}

# SIGTERM first so that host daemons stop their enclaves; SIGKILL whatever is left after 3 s.
kill_all_in() {
  local ns=$1 signal pids
  for signal in TERM KILL; do
    pids=$(ip netns pids "$ns")
    [[ -n $pids ]] || return 0
    # shellcheck disable=SC2086 # one pid per word
    kill -s "$signal" $pids 2>/dev/null || true
    local tries
    for ((tries = 0; tries < 30; tries++)); do
      [[ -n $(ip netns pids "$ns") ]] || return 0
      sleep 0.1
    done
  done
}

cmd_down() {
  (($# == 1)) || usage_error "down takes exactly a NAME"
  local name=$1 ns
  check_name "$name"
  for ns in "$name-a" "$name-b"; do
    ns_exists "$ns" || continue
    # A process still inside would keep the namespace, and the veth end in it, alive unnamed.
    kill_all_in "$ns"
    ip netns del "$ns"
  done
}

cmd_link() {
  (($# == 2)) || usage_error "link takes a NAME and down or up"
  local name=$1 state=$2
  check_name "$name"
  [[ $state == down || $state == up ]] || usage_error "bad link state '$state': expected down or up"
  require_setup "$name"
  ip -n "$name-a" link set "${name}a" "$state"
  ip -n "$name-b" link set "${name}b" "$state"
}

cmd_exec() {
  (($# >= 3)) || usage_error "exec needs a NAME, a or b, and a COMMAND"
  local name=$1 side=$2
  check_name "$name"
  check_side "$side"
  shift 2
  ns_exists "$name-$side" || die "no namespace $name-$side (run: $PROG up $name)"
  exec ip netns exec "$name-$side" "$@"
}

cmd_addr() {
  (($# == 2)) || usage_error "addr takes a NAME and a or b"
  local name=$1 side=$2 out
  check_name "$name"
  check_side "$side"
  ns_exists "$name-$side" || die "no namespace $name-$side (run: $PROG up $name)"
  out=$(ip -n "$name-$side" -4 -o addr show dev "$name$side")
  [[ $out =~ inet\ ([0-9.]+)/ ]] || die "no IPv4 address on $name$side in $name-$side"
  echo "${BASH_REMATCH[1]}"
}

main() {
  (($# >= 1)) || usage_error "missing command"
  case $1 in
    -h | --help | help)
      usage
      return
      ;;
  esac
  command -v ip >/dev/null || die "ip not found (install iproute2)"
  ((EUID == 0)) || die "network namespaces need root (running as uid $EUID)"
  local command=$1
  shift
  case $command in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    link) cmd_link "$@" ;;
    exec) cmd_exec "$@" ;;
    addr) cmd_addr "$@" ;;
    *) usage_error "unknown command '$command'" ;;
  esac
}

main "$@"
