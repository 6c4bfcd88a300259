#!/bin/bash
# The issue-13 loop measurement on the current world: ceiling, then 7 methods x 2 seeds (one core).
cd /work/run
export PYTHONPATH=/work/run OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1
B=/work/main/.venv/bin/mtf-bench
L=runs/loop
timed() { local name=$1; shift; local t0=$(date +%s.%N); "$@" >> $L/chain_logs.txt 2>&1; local rc=$?; local t1=$(date +%s.%N);
  echo "$name rc=$rc wall $(echo "$t1 - $t0" | bc) s load $(cut -d' ' -f1-3 /proc/loadavg) end $(date -u +%H:%M:%S)" >> $L/wall_times.txt; }
timed ceiling $B ceiling --out $L/ceiling
NETS="actor_hidden=64,64 critic_hidden=64,64 vae_hidden=128,128"
for step in "0 bo" "1 bo" "0 es" "1 es" "0 batchrl-mtf" "1 batchrl-mtf" "0 td3" "1 td3" "0 iql" "1 iql" \
            "0 batchrl-mtf-re" "1 batchrl-mtf-re" "0 cql-sac" "1 cql-sac"; do
  set -- $step; s=$1; m=$2
  C="--rounds 8 --users 4000 --seed $s --ceiling $L/ceiling --steps 3000 --threads 1 --no-progress"
  case $m in
    bo|es) timed s$s/$m $B loop $C --algo $m --out $L/s$s/$m ;;
    batchrl-mtf) timed s$s/$m $B loop $C --algo batchrl-mtf --bo-dir $L/s$s/bo --set $NETS --out $L/s$s/$m ;;
    batchrl-mtf-re) timed s$s/$m $B loop $C --algo batchrl-mtf --exploration random --bo-dir $L/s$s/bo --set $NETS --out $L/s$s/$m ;;
    *) timed s$s/$m $B loop $C --algo $m --bo-dir $L/s$s/bo --set hidden=64,64 --out $L/s$s/$m ;;
  esac
done
echo done >> $L/wall_times.txt
