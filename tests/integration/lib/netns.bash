# tests/integration/lib/netns.bash — "hosts" for the integration tests and benchmarks: network
# namespaces joined by veth pairs to a bridge, each host with its own loopback, address and
# host name (a UTS namespace per command run in it), so that mpirun with a hostfile, a
# coordinator and its workers talk TCP as on separate machines. Needs root. Sourced after
# common.bash (or on its own by tests/bench/*.sh).
#
#   netns_up PREFIX NET N   makes hosts PREFIXh0 .. PREFIXh(N-1) and the switch PREFIXsw:
#                           host i has the interface ud0 with NET.(i+1)/24 (NET: three octets
#                           of your own, e.g. 10.231.7), the switch a bridge joining them.
#                           Removes leftovers of the same PREFIX first (a killed run), and
#                           registers netns_down with the EXIT trap (before the one the
#                           script had). Sets NETNS_HOSTS (names), NETNS_ADDRS (addresses),
#                           NETNS_MAP ("ADDR=NS ..." for the agent) and NETNS_NET.
#   netns_down              kills what runs in the namespaces and deletes them (idempotent)
#   netns_addr I            the address of host I
#   netns_exec I CMD...     runs CMD in host I: its network namespace and a UTS namespace
#                           whose host name is the namespace's name (what the worker prints).
#                           As a command (for timeout, it_run): $NETNS_LAUNCH --exec NAME CMD...
#   netns_pids I [COMM]     pids of the processes in host I (only those named COMM)
#   netns_link I up|down    sets host I's link to the switch up or down (a cut cable);
#                           TCP in the hosts gives up after ~3 s of retransmissions
#                           (net.ipv4.tcp_retries2=3 in each namespace)
#   netns_mpi_env           exports the OMPI_MCA_* settings for mpirun across the hosts:
#                           the launch agent netns-launch instead of ssh, TCP restricted to
#                           NET.0/24 and to fixed ports (the daemons $NETNS_OOB_PORT, the
#                           ranks $NETNS_BTL_PORT + 0..99), and running as root allowed. Run
#                           every mpirun in a host then (the root namespace has no NET)
#   netns_hostfile FILE SLOTS  writes an OpenMPI hostfile naming every host by address
NETNS_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NETNS_LAUNCH=$NETNS_LIB/netns-launch
NETNS_PREFIX=""
NETNS_HOSTS=()
NETNS_ADDRS=()
NETNS_MAP=""
NETNS_NET=""
NETNS_OOB_PORT=50000 # mpirun's and the orteds' port (netns_mpi_env)
NETNS_BTL_PORT=50100 # the ranks' ports: 50100 to 50199

netns_down()
{
    [ -n "$NETNS_PREFIX" ] || return 0
    local ns p
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$NETNS_PREFIX" || true); do
        for p in $(ip netns pids "$ns" 2>/dev/null || true); do
            kill -KILL "$p" 2>/dev/null || true
        done
        ip netns del "$ns" 2>/dev/null || true
    done
}

netns_up()
{
    local prefix=$1 net=$2 n=$3 i ns
    if [ "$(id -u)" -ne 0 ]; then
        echo "netns_up: network namespaces need root" >&2
        return 1
    fi
    NETNS_PREFIX=$prefix
    NETNS_NET=$net
    netns_down
    # netns_down first, then whatever EXIT trap the script had (coord.bash's)
    local prev
    prev=$(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT\$/\1/")
    if [ "${prev#netns_down}" = "$prev" ]; then
        # shellcheck disable=SC2064 # the previous trap's text, expanded now on purpose
        trap "netns_down${prev:+; $prev}" EXIT
    fi
    NETNS_HOSTS=()
    NETNS_ADDRS=()
    NETNS_MAP=""
    local sw=${prefix}sw err
    if ! err=$(ip netns add "$sw" 2>&1); then
        echo "netns_up: cannot make a network namespace here (root with CAP_SYS_ADMIN and" \
            "CAP_NET_ADMIN is needed, e.g. not in an unprivileged container): $err" >&2
        return 1
    fi
    ip -n "$sw" link set lo up
    ip -n "$sw" link add br0 type bridge
    ip -n "$sw" link set br0 up
    for ((i = 0; i < n; i++)); do
        ns=${prefix}h$i
        ip netns add "$ns"
        # IPv4 only; and a connection whose packets go unanswered (a cut link) fails after
        # about 3 s of retransmissions instead of the default 15 minutes, so that mpirun gives
        # up on a host it can no longer reach (these settings are per namespace).
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv4.tcp_retries2=3
        ip -n "$ns" link set lo up
        # host end ud0 in the host, switch end p$i on the bridge
        ip link add ud0 netns "$ns" type veth peer name "p$i" netns "$sw"
        ip -n "$sw" link set "p$i" master br0
        ip -n "$sw" link set "p$i" up
        ip -n "$ns" addr add "$net.$((i + 1))/24" dev ud0
        ip -n "$ns" link set ud0 up
        NETNS_HOSTS+=("$ns")
        NETNS_ADDRS+=("$net.$((i + 1))")
        NETNS_MAP+="${NETNS_MAP:+ }$net.$((i + 1))=$ns"
    done
    export NETNS_MAP
    # The bridge forwards once its ports leave the listening state: wait until host 0 reaches
    # the last host (at most 5 s).
    local last=$((n - 1))
    for ((i = 0; i < 50; i++)); do
        if ip netns exec "${prefix}h0" python3 - "$net.$((last + 1))" <<'PY' 2>/dev/null; then
import socket, sys
s = socket.socket(); s.settimeout(0.2)
try:
    s.connect((sys.argv[1], 9))
except ConnectionRefusedError:
    sys.exit(0)  # an RST came back: the address answers
except OSError:
    sys.exit(1)
PY
            return 0
        fi
        sleep 0.1
    done
    echo "netns_up: ${prefix}h0 cannot reach $net.$n after 5 s" >&2
    return 1
}

netns_addr() { echo "${NETNS_ADDRS[$1]}"; }

netns_exec()
{
    local ns=${NETNS_HOSTS[$1]}
    shift
    "$NETNS_LAUNCH" --exec "$ns" "$@"
}

netns_pids()
{
    local p
    for p in $(ip netns pids "${NETNS_HOSTS[$1]}" 2>/dev/null || true); do
        if [ -z "${2:-}" ] || [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ]; then
            echo "$p"
        fi
    done
}

netns_link() { ip -n "${NETNS_HOSTS[$1]}" link set ud0 "$2"; }

netns_mpi_env()
{
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    export OMPI_MCA_plm_rsh_agent=$NETNS_LIB/netns-launch
    export OMPI_MCA_plm_rsh_no_tree_spawn=1
    export OMPI_MCA_btl=self,tcp OMPI_MCA_btl_base_warn_component_unused=0
    export OMPI_MCA_btl_tcp_if_include=$NETNS_NET.0/24
    export OMPI_MCA_oob_tcp_if_include=$NETNS_NET.0/24
    # Fixed ports, as a firewall between real hosts wants them (docs/deploy.md, section 3)
    export OMPI_MCA_oob_tcp_static_ipv4_ports=$NETNS_OOB_PORT
    export OMPI_MCA_btl_tcp_port_min_v4=$NETNS_BTL_PORT OMPI_MCA_btl_tcp_port_range_v4=100
}

netns_hostfile()
{
    local a
    : >"$1"
    for a in "${NETNS_ADDRS[@]}"; do
        echo "$a slots=$2" >>"$1"
    done
}
