# Shared by kannel.sh and baresip.sh (sourced): free ports, bounded waits. Each script
# defines log() and die() before sourcing this, and may define on_timeout() to clean up
# before a wait gives up.

# Prints the first port of a block of N consecutive ports free on 127.0.0.1 for TCP and UDP
# (even, so that RTP's port pairs line up).
pick_ports() {
    python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
for _ in range(200):
    base = random.randrange(20000, 32000 - n) & ~1
    ok = True
    for p in range(base, base + n):
        for typ in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            s = socket.socket(socket.AF_INET, typ)
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                ok = False
            finally:
                s.close()
        if not ok:
            break
    if ok:
        print(base)
        sys.exit(0)
sys.exit("no free port block found")
PY
}

# wait_until SECONDS DESCRIPTION COMMAND...: runs COMMAND every 0.1 s until it succeeds, at
# most SECONDS; then on_timeout (if defined) and die.
wait_until() {
    local secs=$1 what=$2 i n
    shift 2
    n=$((secs * 10))
    for ((i = 0; i < n; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    if declare -F on_timeout >/dev/null; then on_timeout; fi
    die "timed out after ${secs}s waiting for: $what"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
