# tests/integration/lib/slurm.bash — a single-node Slurm for integration tests, sourced after
# common.bash (and coord.bash, whose free_port it uses). No systemd: munged runs as user munge,
# slurmctld and slurmd as root, each from a slurm.conf in the test's scratch directory
# (SLURM_CONF), on free ports; nothing is written to /etc/slurm. The daemons talk over
# 127.0.0.1 whatever the host name resolves to (SlurmctldHost=NAME(127.0.0.1), NodeAddr).
# (docs/slurm.md; the recipe is the one in the project's notes on Slurm without systemd.)
#
#   slurm_available     0 when this machine can run it (root, slurmctld, slurmd, munged, sbatch)
#   slurm_up            stops daemons that an earlier, killed run of the same scratch directory
#                       left (found by their SLURM_CONF); starts munged (unless one answers
#                       already), slurmctld -i and slurmd; waits until sinfo says the node is
#                       idle; returns 1 (saying why) if not
#   slurm_down          cancels the jobs, stops slurmd, slurmctld, and munged when slurm_up
#                       started it; the caller's EXIT trap runs it
# Liveness is checked with `munge -n` and the pid files, never pgrep: PID 1 reaps orphans
# slowly here, and pgrep matches the <defunct> entries daemonizing leaves behind.
SLURM_DIR=$UD_TEST_SCRATCH/slurm
SLURM_HOST=$(hostname -s)
SLURM_OWN_MUNGED=0
export SLURM_CONF=$SLURM_DIR/slurm.conf

slurm_available()
{
    [ "$(id -u)" -eq 0 ] || return 1
    local b
    for b in slurmctld slurmd munged munge sbatch squeue scancel sinfo; do
        command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || return 1
    done
    return 0
}

# The node line from slurmd -C, with RealMemory at most what the machine has (a larger value
# drains the node) and no UpTime.
slurm_node_line()
{
    slurmd -C 2>/dev/null | awk '/^NodeName=/ {
        for (i = 1; i <= NF; i++) if ($i ~ /^RealMemory=/) { split($i, m, "="); $i = "RealMemory=" int(m[2] * 0.9) }
        print; exit }'
}

slurm_write_conf()
{
    local node ctld_port slurmd_port
    node=$(slurm_node_line)
    [ -n "$node" ] || node="NodeName=$SLURM_HOST CPUs=$(nproc) RealMemory=1000"
    ctld_port=$(free_port)
    slurmd_port=$(free_port)
    mkdir -p "$SLURM_DIR/state" "$SLURM_DIR/log" "$SLURM_DIR/spool/slurmd-$SLURM_HOST"
    cat >"$SLURM_CONF" <<EOF
ClusterName=updraft-test
SlurmctldHost=$SLURM_HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$SLURM_DIR/spool/slurmd-%n
SlurmctldPidFile=$SLURM_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/slurmd-%n.pid
SlurmctldLogFile=$SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_DIR/log/slurmd-%n.log
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
ReturnToService=2
MailProg=/bin/true
KillWait=5
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$SLURM_HOST Default=YES MaxTime=INFINITE State=UP
EOF
}

# Daemons an earlier run of this test left behind (killed by ctest's timeout before its trap
# ran): the processes whose environment holds this very SLURM_CONF.
slurm_kill_leftovers()
{
    local p comm
    for p in /proc/[0-9]*; do
        comm=$(cat "$p/comm" 2>/dev/null) || continue
        case $comm in slurmctld | slurmd | slurmstepd | munged) ;; *) continue ;; esac
        if { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -qxF "SLURM_CONF=$SLURM_CONF"; then
            echo "slurm_up: stopping $comm (pid ${p#/proc/}) left by an earlier run"
            kill -KILL "${p#/proc/}" 2>/dev/null || true
        fi
    done
}

slurm_up()
{
    local i
    slurm_kill_leftovers
    slurm_write_conf
    mkdir -p /run/munge && chown munge:munge /run/munge
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey --create >/dev/null 2>&1 || true
        chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    fi
    if ! munge -n >/dev/null 2>&1; then
        runuser -u munge -- /usr/sbin/munged || { echo "slurm_up: munged does not start"; return 1; }
        SLURM_OWN_MUNGED=1
    fi
    for ((i = 0; i < 25; i++)); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.2
    done
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || { echo "slurm_up: munge does not answer"; return 1; }
    slurmctld -i || { echo "slurm_up: slurmctld does not start"; return 1; }
    slurmd || { echo "slurm_up: slurmd does not start"; return 1; }
    for ((i = 0; i < 100; i++)); do
        sinfo -h -o %T 2>/dev/null | grep -qx idle && return 0
        sleep 0.2
    done
    echo "slurm_up: the node is not idle after 20 s: $(sinfo -h -o '%T %E' 2>&1 | head -1)"
    tail -5 "$SLURM_DIR/log/slurmctld.log" 2>/dev/null | sed 's/^/    /'
    return 1
}

# Kills the process in pid file $1 (if it is one) and waits up to 5 s for it to go.
slurm_kill_pidfile()
{
    local pid i
    [ -s "$1" ] || return 0
    pid=$(cat "$1")
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        # a zombie counts as gone: it is only waiting for PID 1
        [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

slurm_down()
{
    # Jobs first (their steps are children of slurmstepd, which slurmd does not take along).
    local i
    scancel --quiet --user=root 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
        sleep 0.1
    done
    slurm_kill_pidfile "$SLURM_DIR/slurmd-$SLURM_HOST.pid"
    slurm_kill_pidfile "$SLURM_DIR/slurmctld.pid"
    if [ "$SLURM_OWN_MUNGED" = 1 ]; then
        slurm_kill_pidfile /run/munge/munged.pid
        SLURM_OWN_MUNGED=0
    fi
}
