# run from the repository root
source .venv/bin/activate
export OMP_NUM_THREADS=1
s=$(date +%s)
govgym outside seeds=5 objective=price lam=0.05 budget_epochs=3 task.max_len=64 interval=20 patience=3 threshold=0.005 "governors=[default]" --out runs/item6/outside_price --no-progress > runs/item6/outside_price.log 2>&1
echo "price rc=$? $(( $(date +%s)-s )) s"
s=$(date +%s)
govgym outside seeds=5 objective=equal_quality tolerance=0.005 lam=0.05 budget_epochs=3 task.max_len=64 interval=20 patience=3 threshold=0.005 "governors=[default]" --out runs/item6/outside_eq --no-progress > runs/item6/outside_eq.log 2>&1
echo "eq rc=$? $(( $(date +%s)-s )) s"
