#!/usr/bin/env bash
# A real Kannel (Debian packages `kannel` + `kannel-extras`) on loopback, for Sesame's SMS tests:
#
#   Sesame --GET /cgi-bin/sendsms--> smsbox --> bearerbox --> fake SMSC <--TCP-- fakesmsc ("the phone")
#                                      \--> dlr-url of each message (DLR 8 "acked", then 1 "delivered")
#
# Usage:  kannel.sh start|stop
#   start  install what is missing, start bearerbox, smsbox and fakesmsc in the background, wait
#          until they are ready, write $WORKDIR/ports.env and print it:
#            SENDSMS_URL  smsbox's sendsms URL
#            SMS_USER / SMS_PASS  its sendsms-user
#            PHONE_LOG    fakesmsc's output; each message as "DEBUG: Got message N: <from to text BODY>"
#            ADMIN_STATUS_URL  bearerbox's status page
#          No DLR listener is started: the sender asks for reports with its own dlr-url.
#   stop   stop what `start` started in $WORKDIR, by recorded PID (SIGTERM, at most 10 s, then SIGKILL).
#
# Environment: KANNEL_WORKDIR (default ${TMPDIR:-/tmp}/sesame-kannel); one stack per directory, so
# tests running at once use one directory each. `start` stops a stack already running there first.
# Installing needs root (or sudo) and the Debian mirror. Adapted from the telephony notes' sms_kannel.sh.
set -euo pipefail

WORKDIR=${KANNEL_WORKDIR:-${TMPDIR:-/tmp}/sesame-kannel}
ADMIN_PW=adminpw
STATUS_PW=statuspw
SMS_USER=sesame
SMS_PASS=sesamepw
FAKESMSC=/usr/lib/kannel/test/fakesmsc       # shipped in kannel-extras, not in kannel
PROCESSES=(fakesmsc smsbox bearerbox)        # in stopping order

# Progress goes to stderr; stdout carries only ports.env.
log() { printf '[kannel.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
on_timeout() { stop_all; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_packages() {
    local missing=()
    [ -x /usr/sbin/bearerbox ] && [ -x /usr/sbin/smsbox ] || missing+=(kannel)
    [ -x "$FAKESMSC" ] || missing+=(kannel-extras)
    command -v curl >/dev/null || missing+=(curl)
    command -v python3 >/dev/null || missing+=(python3)
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
    log "installing: ${missing[*]}"
    # The kannel package ships an init script; keep apt from starting the system-wide daemon
    # (it would listen on the default ports 13000/13013 on all interfaces).
    local made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
        made_policy=1
    fi
    local ok=1 aptlog
    aptlog=$(mktemp)
    if ! apt-cache show kannel >/dev/null 2>&1; then as_root apt-get update -qq >"$aptlog" 2>&1 || ok=0; fi
    # Wait for another apt run (a parallel test installing its own packages) instead of failing.
    [ $ok = 1 ] && { as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
        install -y -qq --no-install-recommends "${missing[@]}" >>"$aptlog" 2>&1 || ok=0; }
    [ $made_policy = 1 ] && as_root rm -f /usr/sbin/policy-rc.d
    if [ $ok = 0 ]; then cat "$aptlog" >&2; rm -f "$aptlog"; die "apt-get failed"; fi
    rm -f "$aptlog"
    log "installed ${missing[*]}"
}

bb_status() { curl -sf --max-time 2 "http://127.0.0.1:$ADMIN_PORT/status.txt?password=$STATUS_PW"; }
smsbox_connected() { bb_status | grep -q 'smsbox:.*on-line'; }
smsc_online() { bb_status | grep -q 'FAKE\[FAKE\].*(online'; }

# start_bg NAME CMD... : start in the background, output to $WORKDIR/NAME.out, PID to NAME.pid.
start_bg() {
    local name=$1; shift
    "$@" > "$WORKDIR/$name.out" 2>&1 < /dev/null &
    echo $! > "$WORKDIR/$name.pid"
}

stop_all() {
    [ -d "$WORKDIR" ] || return 0
    local name pid i
    for name in "${PROCESSES[@]}"; do
        [ -f "$WORKDIR/$name.pid" ] || continue
        pid=$(cat "$WORKDIR/$name.pid")
        # Only signal the process if it is still the one started here (its command line names
        # $WORKDIR): a PID recorded long ago may belong to someone else by now.
        if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$WORKDIR"; then
            kill -TERM "$pid" 2>/dev/null || true
            for ((i = 0; i < 100; i++)); do
                kill -0 "$pid" 2>/dev/null || break
                # A zombie is already gone (its parent, this script's caller, reaps it).
                grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && break
                sleep 0.1
            done
            if kill -0 "$pid" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
                log "$name ($pid) ignored SIGTERM for 10 s, sending SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
            fi
            log "stopped $name (pid $pid)"
        fi
        rm -f "$WORKDIR/$name.pid"
    done
}

write_config() {
    cat > "$WORKDIR/kannel.conf" <<EOF
# Kannel 1.4.5 for tests: everything on 127.0.0.1, fake SMSC, internal DLR storage.
# NOTE: a blank line ends a group in Kannel's config format; never put one inside a group.
group = core
admin-port = $ADMIN_PORT
admin-interface = 127.0.0.1
admin-password = $ADMIN_PW
status-password = $STATUS_PW
admin-allow-ip = 127.0.0.1
smsbox-port = $SMSBOX_PORT
smsbox-interface = 127.0.0.1
box-allow-ip = 127.0.0.1
log-file = "$WORKDIR/bearerbox.log"
log-level = 0
dlr-storage = internal

# The fake SMSC: bearerbox listens here and fakesmsc connects to it as a client. Every MT
# message is written to fakesmsc as "from to text <msg>", and bearerbox itself generates
# DLR 8 (SMSC ack) and DLR 1 (delivered). our-host keeps it off 0.0.0.0.
group = smsc
smsc = fake
smsc-id = FAKE
port = $FAKESMSC_PORT
our-host = 127.0.0.1
connect-allow-ip = 127.0.0.1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = $SMSBOX_PORT
sendsms-port = $SENDSMS_PORT
sendsms-interface = 127.0.0.1
log-file = "$WORKDIR/smsbox.log"
log-level = 0

group = sendsms-user
username = $SMS_USER
password = $SMS_PASS

group = sms-service
keyword = default
text = "Sesame: this number does not accept replies."
EOF
}

start_all() {
    ensure_packages
    stop_all
    mkdir -p "$WORKDIR"
    # Only the files this script writes: KANNEL_WORKDIR may be a directory that holds others.
    rm -f "$WORKDIR"/{kannel.conf,ports.env,bearerbox.log,smsbox.log} \
        "$WORKDIR"/{fakesmsc,smsbox,bearerbox}.{out,pid}
    local base; base=$(pick_ports 4)
    ADMIN_PORT=$base; SMSBOX_PORT=$((base + 1)); FAKESMSC_PORT=$((base + 2)); SENDSMS_PORT=$((base + 3))
    write_config
    start_bg bearerbox /usr/sbin/bearerbox -v 1 "$WORKDIR/kannel.conf"
    wait_until 15 "bearerbox admin page" bb_status
    wait_until 15 "bearerbox smsbox port" port_open "$SMSBOX_PORT"
    start_bg smsbox /usr/sbin/smsbox -v 1 "$WORKDIR/kannel.conf"
    wait_until 15 "smsbox sendsms port" port_open "$SENDSMS_PORT"
    wait_until 15 "smsbox connected to bearerbox" smsbox_connected
    # -m 0 plus a dummy message: send nothing, print every message received. (Without a message
    # argument fakesmsc reads stdin.) The dummy carries $WORKDIR so that stop_all knows the PID.
    start_bg fakesmsc "$FAKESMSC" -H 127.0.0.1 -r "$FAKESMSC_PORT" -m 0 "0 0 text $WORKDIR"
    wait_until 15 "fake SMSC online (fakesmsc connected)" smsc_online
    cat > "$WORKDIR/ports.env" <<EOF
SENDSMS_URL=http://127.0.0.1:$SENDSMS_PORT/cgi-bin/sendsms
SMS_USER=$SMS_USER
SMS_PASS=$SMS_PASS
PHONE_LOG=$WORKDIR/fakesmsc.out
ADMIN_STATUS_URL=http://127.0.0.1:$ADMIN_PORT/status.txt?password=$STATUS_PW
EOF
    log "ready: sendsms on 127.0.0.1:$SENDSMS_PORT, workdir $WORKDIR"
    cat "$WORKDIR/ports.env"
}

case "${1:-}" in
    start) start_all ;;
    stop) stop_all ;;
    *) echo "usage: $0 start|stop   (KANNEL_WORKDIR=$WORKDIR)" >&2; exit 2 ;;
esac
