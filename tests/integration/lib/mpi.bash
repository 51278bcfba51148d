# tests/integration/lib/mpi.bash — mpirun for the integration tests (sourced after common.bash).
#
#   $MPI N CMD...              mpirun -np N CMD... (usable with it_run)
#   $MPI --mpmd "CMD0" "CMD1"  one rank per command line, for ranks that differ
#   rank_pid PATTERN R         pid of rank R of the updraft-worker whose arguments match PATTERN
if ! command -v mpirun >/dev/null; then
    echo "$IT_NAME: mpirun is missing (deploy/install-deps.sh installs openmpi-bin)"
    exit 1
fi
MPI=$IT_LIB/mpirun.sh
# Sanitizer builds: OpenMPI's own allocations that live until exit are not updraft's leaks
# (lsan-mpi.supp names only OpenMPI's libraries; full stacks so that they can be matched).
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$IT_LIB/lsan-mpi.supp:fast_unwind_on_malloc=0}
export OMPI_MCA_mca_base_component_disable_dlclose=1

rank_pid()
{
    local pat=$1 r=$2 p
    for p in $(pgrep -f "updraft-worker.*$pat" || true); do
        # grep reads it all (no -q): under pipefail, a grep that quit at the match could leave
        # tr killed by SIGPIPE on a large environment, and the rank would look absent.
        if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -x "OMPI_COMM_WORLD_RANK=$r" >/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}
