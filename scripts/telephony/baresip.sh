#!/usr/bin/env bash
# Starts (or stops) real baresip 1.0 user agents on loopback for Sesame's "baresip" voice gateway
# and its tests (crates/sesame-telephony/tests/baresip.rs). Adapted from the proven recipe in
# shared/telephony/voice-baresip/voice_baresip.sh.
#
#   sesame (Rust) --ctrl_tcp--> N "server" agents --SIP INVITE / RTP PCMU--> 1 "phone" agent
#                               (answermode=manual,                          (answermode=auto,
#                                prompt WAV via aufile)                       120 s of silence as mic)
#
# Usage:  baresip.sh install   only install what is missing (see below).
#         baresip.sh start N   start N server agents (one per concurrent call) and one phone,
#                              wait until all are ready, write $WORKDIR/ports.env:
#                                SERVER_CTRL=127.0.0.1:P1,127.0.0.1:P2,...   (ctrl_tcp addresses)
#                                PHONE_URI=sip:phone@127.0.0.1:S
#                                PHONE_CTRL=127.0.0.1:C
#         baresip.sh stop      stop the agents this script started (by recorded PID only).
#
# Environment: BARESIP_WORKDIR (default ${TMPDIR:-/tmp}/sesame-baresip).
# Installs baresip-core, espeak-ng, sox (and python3, used to pick free ports) with apt-get
# when missing (needs root or sudo).
set -euo pipefail

WORKDIR=${BARESIP_WORKDIR:-${TMPDIR:-/tmp}/sesame-baresip}
MODDIR=/usr/lib/baresip/modules

log() { printf '[%(%H:%M:%S)T] baresip.sh: %s\n' -1 "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}'; }

ensure_packages() {
    local missing=() m have_core=1
    command -v baresip >/dev/null || have_core=0
    for m in ctrl_tcp aufile aubridge g711 menu account uuid; do
        [ -f "$MODDIR/$m.so" ] || have_core=0
    done
    [ $have_core = 1 ] || missing+=(baresip-core)
    command -v espeak-ng >/dev/null || missing+=(espeak-ng)
    command -v sox >/dev/null || missing+=(sox)
    command -v python3 >/dev/null || missing+=(python3)
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || die "missing ${missing[*]}; not root and no sudo to install them"
        sudo="sudo -n"
    fi
    log "installing: ${missing[*]}"
    local t0 aptlog
    t0=$(now)
    if ! apt-cache show baresip-core >/dev/null 2>&1; then $sudo apt-get update -qq; fi
    aptlog=$(mktemp)
    if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >"$aptlog" 2>&1; then
        cat "$aptlog" >&2
        rm -f "$aptlog"
        die "apt-get install ${missing[*]} failed"
    fi
    rm -f "$aptlog"
    log "installed in $(since "$t0")s"
}

alive() { kill -0 "$(cat "$WORKDIR/$1.pid")" 2>/dev/null; }

# write_ua NAME SIP_PORT CTRL_PORT RTP_LO AUDIO_SOURCE ACCOUNT_LINE MAX_CALLS
write_ua() {
    local d=$WORKDIR/$1
    mkdir -p "$d"
    # The recipe's proven config: loopback only, no sound card, no STUN/TURN/ICE, no stdio
    # module (it fails without a TTY). SIP listens on UDP+TCP X and TCP X+1 (TLS).
    cat > "$d/config" <<EOF
# baresip 1.0.0 config for UA "$1" (written by scripts/telephony/baresip.sh)
poll_method		epoll
sip_listen		127.0.0.1:$2
net_interface		127.0.0.1
dns_server		127.0.0.1:53
call_local_timeout	30
call_max_calls		$7
audio_path		/usr/share/baresip
# aubridge with a device name no source uses = a paced null sink; aufile = WAV as microphone
# (S16LE mono at the codec rate: 8000 Hz for PCMU). The server's source is replaced per call
# with the ctrl_tcp command "ausrc aufile,<prompt.wav>".
audio_player		aubridge,nullsink
audio_source		$5
audio_alert		aubridge,nullalert
audio_level		no
ausrc_format		s16
auplay_format		s16
auenc_format		s16
audec_format		s16
audio_buffer		20-160
rtp_ports		$4-$(($4 + 9))
rtcp_mux		no
jitter_buffer_delay	5-10
rtp_stats		no
module_path		$MODDIR
module			g711.so
module			aufile.so
module			aubridge.so
module_tmp		uuid.so
module_tmp		account.so
module_app		menu.so
module_app		ctrl_tcp.so
ctrl_tcp_listen		127.0.0.1:$3
snd_path		$d
EOF
    echo "$6" > "$d/accounts"
    : > "$d/contacts"
}

start_bg() {
    local name=$1
    shift
    # 9>&-: the agents must not inherit (and so hold) the start lock.
    "$@" > "$WORKDIR/$name.out" 2>&1 < /dev/null 9>&- &
    echo $! > "$WORKDIR/$name.pid"
}

# running PID TENTHS: waits up to TENTHS/10 s for PID to end; fails if it is still running.
running() {
    local i
    for ((i = 0; i < $2; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

stop_all() {
    [ -d "$WORKDIR" ] || return 0
    local f name pid
    for f in "$WORKDIR"/*.pid; do
        [ -f "$f" ] || continue
        name=$(basename "$f" .pid)
        pid=$(cat "$f")
        # Only a process that is still ours: its command line names our config dir.
        if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "-f $WORKDIR/$name "; then
            # baresip's first SIGTERM waits for open SIP transactions (up to 32 s after a 486);
            # a second SIGTERM makes it exit at once. SIGKILL only if that fails too.
            kill -TERM "$pid" 2>/dev/null || true
            running "$pid" 20 || { kill -TERM "$pid" 2>/dev/null || true; running "$pid" 30; } || {
                log "$name ($pid) ignored SIGTERM twice, sending SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
            }
            wait "$pid" 2>/dev/null || true
            log "stopped $name (pid $pid)"
        fi
        rm -f "$f"
    done
}

# Parallel starts (tests) would pick the same free ports or run apt-get twice: one at a time,
# from the package check until every agent listens. Released when the script exits.
lock() {
    if command -v flock >/dev/null; then
        exec 9>"${TMPDIR:-/tmp}/sesame-baresip.lock"
        flock -w 300 9 || die "could not lock ${TMPDIR:-/tmp}/sesame-baresip.lock within 300 s"
    fi
}

start_all() {
    local n=$1
    [[ "$n" =~ ^[1-9][0-9]?$ ]] || die "start N: N must be 1..99, got '$n'"
    lock
    ensure_packages
    stop_all
    # Only what an earlier start left: BARESIP_WORKDIR may be a directory with other files.
    mkdir -p "$WORKDIR"
    rm -rf "$WORKDIR"/agent[0-9]* "$WORKDIR"/phone "$WORKDIR"/*.out "$WORKDIR"/ports.env \
        "$WORKDIR"/placeholder.wav "$WORKDIR"/silence.wav
    # Placeholder source for the servers (replaced per call) and the phone's microphone: silence
    # that outlasts any test call (aufile's end of file hangs up).
    sox -n -r 8000 -c 1 -b 16 -e signed-integer "$WORKDIR/placeholder.wav" trim 0 1
    sox -n -r 8000 -c 1 -b 16 -e signed-integer "$WORKDIR/silence.wav" trim 0 120
    # 20 ports per agent: SIP +0 (UDP/TCP) and +1 (TLS), ctrl_tcp +2, RTP/RTCP +10..+19.
    local base i sip ctrl names=() ctrls=()
    base=$(pick_ports $((20 * (n + 1))))
    for ((i = 0; i <= n; i++)); do
        sip=$((base + 20 * i))
        ctrl=$((sip + 2))
        if [ "$i" -eq "$n" ]; then
            write_ua phone "$sip" "$ctrl" $((sip + 10)) "aufile,$WORKDIR/silence.wav" \
                "<sip:phone@127.0.0.1:$sip>;regint=0;answermode=auto;audio_codecs=PCMU" 4
            PHONE_URI="sip:phone@127.0.0.1:$sip"
            PHONE_CTRL="127.0.0.1:$ctrl"
            names+=(phone)
        else
            write_ua "agent$i" "$sip" "$ctrl" $((sip + 10)) "aufile,$WORKDIR/placeholder.wav" \
                "<sip:sesame@127.0.0.1:$sip>;regint=0;answermode=manual;audio_codecs=PCMU" 1
            ctrls+=("127.0.0.1:$ctrl")
            names+=("agent$i")
        fi
    done
    local t0 name
    t0=$(now)
    for name in "${names[@]}"; do
        start_bg "$name" baresip -4 -f "$WORKDIR/$name"
    done
    for name in "${names[@]}"; do
        ctrl=$(sed -n 's/^ctrl_tcp_listen[[:space:]]*127.0.0.1://p' "$WORKDIR/$name/config")
        wait_until 15 "$name ctrl_tcp 127.0.0.1:$ctrl" port_open "$ctrl"
        wait_until 15 "$name 'baresip is ready.'" grep -q 'baresip is ready' "$WORKDIR/$name.out"
        alive "$name" || die "$name exited (see $WORKDIR/$name.out)"
    done
    local joined
    joined=$(IFS=,; echo "${ctrls[*]}")
    cat > "$WORKDIR/ports.env.tmp" <<EOF
SERVER_CTRL=$joined
PHONE_URI=$PHONE_URI
PHONE_CTRL=$PHONE_CTRL
EOF
    mv "$WORKDIR/ports.env.tmp" "$WORKDIR/ports.env"
    log "$n server agent(s) + phone ready in $(since "$t0")s: servers $joined; phone $PHONE_URI ctrl $PHONE_CTRL"
}

case "${1:-}" in
    install) lock; ensure_packages ;;
    start) start_all "${2:-1}" ;;
    stop) stop_all ;;
    *) echo "usage: $0 install | start N | stop" >&2; exit 2 ;;
esac
