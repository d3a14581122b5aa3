# Issue 20 item 6: the demo's agent (the default's recipe, another run) vs the shipped mbrl_p0, the v2 rules and
# the old default (v1-tuned marginal_gain) on every held-out set, 0 real steps (stop-only paths are in the memos).
# run from the repository root, after `make demo` (runs/demo/train/final.zip)
source .venv/bin/activate
export OMP_NUM_THREADS=1
run() {  # name instances split seeds memo policies
  govgym evaluate instances=$2 split=$3 seeds=$4 workers=2 memo=$5 knobs=configs/heuristics_v2.yaml \
    "policies=[$6]" --agent demo=runs/demo/train/final.zip --agent mbrl_p0=data/agents_v2/mbrl_p0 \
    --out runs/item6/$1 --no-progress > runs/item6/$1.log 2>&1
  echo "$1 done rc=$? $(date)"
}
L='fixed_budget,marginal_gain,memory_reactive,"marginal_gain:kappa=6.0,patience=1,use_ema=true"'
S='fixed_budget,marginal_gain,"marginal_gain:kappa=6.0,patience=1,use_ema=true"'
run a configs/instances_v2.yaml test-a 5 data/heldout_v2/a/memo "$L"
run b configs/instances_v2.yaml test-b 5 data/heldout_v2/b/memo "$L"
run c configs/instances_v2.yaml test-c 5 data/heldout_v2/c/memo "$L"
run b2 configs/instances_v2_b2.yaml test-b 2 data/heldout_v2/b2/memo "$S"
run f3a configs/instances_v2_f3.yaml test-a 2 data/heldout_v2/f3/a/memo "$L"
run f3b configs/instances_v2_f3.yaml test-b 2 data/heldout_v2/f3/b/memo "$L"
run f3c configs/instances_v2_f3.yaml test-c 2 data/heldout_v2/f3/c/memo "$L"
python benchmarks/pool_heldout.py runs/item6/a runs/item6/b runs/item6/c runs/item6/b2 runs/item6/f3a runs/item6/f3b runs/item6/f3c --reference marginal_gain --out runs/item6/pooled_vs_marginal_gain > runs/item6/pooled.txt 2>&1
python benchmarks/pool_heldout.py runs/item6/a runs/item6/b runs/item6/c runs/item6/f3a runs/item6/f3b runs/item6/f3c --reference memory_reactive --out runs/item6/pooled_vs_memory_reactive >> runs/item6/pooled.txt 2>&1
echo ALL DONE
