#!/usr/bin/env bash
# lib/mpirun.sh — mpirun as the integration tests use it: allowed as root, oversubscribed (more
# ranks than cores), shared memory and loopback only, quiet about missing fabrics.
#   mpirun.sh N CMD...                     mpirun -np N CMD...
#   mpirun.sh --mpmd "CMD0" "CMD1" ...     one rank per command line (ranks that differ)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_base_warn_component_unused=0
if [ "$1" = --mpmd ]; then
    shift
    args=()
    for c in "$@"; do
        [ ${#args[@]} -gt 0 ] && args+=(:)
        # shellcheck disable=SC2206 # the command lines are split on purpose
        args+=(-np 1 $c)
    done
    exec mpirun --oversubscribe "${args[@]}"
fi
n=$1
shift
exec mpirun --oversubscribe -np "$n" "$@"
