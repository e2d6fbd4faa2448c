#!/usr/bin/env bash
# Compare post-training paradigms on ONE base model: queue the base model's eval (step 0), one
# training job per recipe, the evals of every checkpoint, and a report that waits for all of them.
#
#   slurm/compare.sh --root DIR --base MODEL [options] RECIPE [RECIPE ...]
#   slurm/compare.sh --status DIR [--wait]
#
# RECIPE: a recipe YAML, or sft:PATH / grpo:PATH where its keys do not tell the trainer. Each runs
# as paradigm <file name> in DIR/<file name>/, from DIR/<name>/recipe.yaml (the recipe plus the
# --set values, output_dir and model_name_or_path set to MODEL).
#
# Options (environment variable, default):
#   --partition P         (SUSTAIN_PARTITION, cluster default)
#   --account A           (SUSTAIN_ACCOUNT, none)
#   --qos Q               (SUSTAIN_QOS, none)
#   --nodes N             nodes per training job (SUSTAIN_NODES, 1)
#   --gpus-per-node G     GPUs per training node (SUSTAIN_GPUS_PER_NODE, 0: CPU)
#   --cpus-per-task C     CPUs per node for training, per task for evals (SUSTAIN_CPUS_PER_TASK, 1)
#   --mem M               memory per node, e.g. 200G (SUSTAIN_MEM, cluster default)
#   --time T              training time limit (SUSTAIN_TIME, 24:00:00)
#   --eval-time T         time limit of each eval job (SUSTAIN_EVAL_TIME, 4:00:00)
#   --eval-gpus G         GPUs per eval job (SUSTAIN_EVAL_GPUS, 1 with GPUs, else 0)
#   --accelerate-config F accelerate/DeepSpeed launcher config, needed for more than one GPU or node
#                         (ACCELERATE_CONFIG, none: one plain python process)
#   --eval array|inline   array: evaluate the checkpoints after training, one array task each;
#                         inline: inside the training job, at every save (SUSTAIN_EVAL, array)
#   --set [NAME:]KEY=VALUE override a recipe key in every recipe, or only in paradigm NAME
#                         (repeatable), e.g. --set max_steps=100 --set grpo:num_generations=8;
#                         eval.KEY sets a key of the eval block, e.g. --set eval.limit=100
#   --partial-report      build the report when every job has ended, even if some failed
#                         (default: only when all succeeded)
#   --wandb offline|online also log the report to W&B
#   --sbatch-args "..."   extra flags for every sbatch call (SUSTAIN_SBATCH_ARGS)
#   --dry-run             validate the recipes and print the sbatch commands (as a script that
#                         keeps each job id in a variable for the dependencies); queue nothing
# Status: `--status DIR` prints every job's state and whether its outputs exist; exit 0 when all
# finished and their outputs are there, 1 when a job failed (or ended without its outputs), 3 while
# jobs are queued or running. `--wait` waits for every job to end first.
# Layout of DIR: base/eval/checkpoint-0/, <paradigm>/{recipe.yaml,run_info.json,checkpoint-N/,
# eval/checkpoint-N/}, logs/, jobs.tsv (role, paradigm, job id), report/report.md.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0; }
die() { echo "error: $*" >&2; exit 2; }
need_value() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value (fix: see slurm/compare.sh --help)"; }

# ------------------------------------------------------------------ status

# Job states Slurm can still change; a dependency that can never be met counts as ended.
ACTIVE='^(PENDING|RUNNING|REQUEUED|REQUEUE_HOLD|REQUEUE_FED|CONFIGURING|COMPLETING|SUSPENDED|RESIZING|SIGNALING|STAGE_OUT|STOPPED|RESV_DEL_HOLD)$'

# The distinct states of a job's tasks (one line each); a dependency that can never be met
# (Reason=DependencyNeverSatisfied) is NEVER_RUNS, though Slurm calls it PENDING.
job_states() {
  local lines
  lines=$(scontrol -o show job "$1" 2>/dev/null || true)
  if [ -n "$lines" ]; then
    awk '{ s = ""; r = ""
           for (i = 1; i <= NF; i++) { if ($i ~ /^JobState=/) s = substr($i, 10); if ($i ~ /^Reason=/) r = substr($i, 8) }
           if (s == "PENDING" && r == "DependencyNeverSatisfied") s = "NEVER_RUNS"
           print s }' <<< "$lines" | sort -u
  else  # the controller forgot it: ask the accounting database, if the cluster has one
    sacct -n -X -P -j "$1" -o State 2>/dev/null | awk '{print $1}' | sort -u || true
  fi
}

# One word for a job: a failure if any task failed, else active if any task is, else COMPLETED.
worst_state() {
  local states=$1 s
  s=$(grep -Ex 'FAILED|TIMEOUT|OUT_OF_MEMORY|NODE_FAIL|BOOT_FAIL|DEADLINE|PREEMPTED|NEVER_RUNS|CANCELLED' <<< "$states" | head -n 1 || true)
  [ -z "$s" ] && s=$(grep -E "$ACTIVE" <<< "$states" | head -n 1 || true)
  [ -z "$s" ] && [ "$states" = COMPLETED ] && s=COMPLETED
  echo "${s:-UNKNOWN}"
}

count() { find "$@" 2>/dev/null | wc -l; }

# What a finished job must have left behind; prints a description, returns 1 if it is missing.
outputs() {
  local root=$1 role=$2 name=$3 dir=$1/$3 n k
  case $role in
    base) [ -f "$root/base/eval/checkpoint-0/summary.json" ] && echo "base eval done" && return 0
          echo "no base eval summary"; return 1 ;;
    train) n=$(count "$dir" -maxdepth 1 -name 'checkpoint-[0-9]*' -type d)
           if [ -f "$dir/config.json" ] || [ -f "$dir/adapter_config.json" ]; then echo "final model saved, $n checkpoint(s)"; return 0; fi
           echo "no final model, $n checkpoint(s)"; return 1 ;;
    eval) n=$(count "$dir" -maxdepth 1 -name 'checkpoint-[0-9]*' -type d)
          k=$(count "$dir/eval" -mindepth 2 -maxdepth 2 -path '*/checkpoint-*/summary.json')
          echo "$k/$n checkpoint evals"; [ "$n" -gt 0 ] && [ "$k" -ge "$n" ] ;;
    report) [ -f "$root/report/report.md" ] && echo "$root/report/report.md" && return 0
            echo "no report.md"; return 1 ;;
  esac
}

status() {
  local root=$1 wait=$2 role name id state
  [ -f "$root/jobs.tsv" ] || die "no $root/jobs.tsv (fix: pass the --root of a comparison started by slurm/compare.sh)"
  command -v scontrol >/dev/null || die "scontrol not found (fix: run on a Slurm login node)"
  if [ "$wait" = 1 ]; then
    while :; do
      local active=0
      while IFS=$'\t' read -r role name id; do
        grep -qE "$ACTIVE" <<< "$(job_states "$id")" && { active=1; break; }
      done < "$root/jobs.tsv"
      [ $active = 0 ] && break
      sleep "${SUSTAIN_POLL_S:-5}"
    done
  fi
  local failed=0 running=0 out
  printf '%-7s %-24s %-12s %-11s %s\n' ROLE PARADIGM JOB STATE OUTPUTS
  while IFS=$'\t' read -r role name id; do
    state=$(worst_state "$(job_states "$id")")
    out=$(outputs "$root" "$role" "$name") && ok=1 || ok=0
    if [[ $state =~ $ACTIVE ]]; then running=1
    elif [ "$state" = COMPLETED ] && [ $ok = 0 ]; then failed=1; state="COMPLETED-BUT-MISSING-OUTPUTS"
    elif [ "$state" = UNKNOWN ] && [ $ok = 1 ]; then state="DONE"
    elif [ "$state" != COMPLETED ]; then failed=1
    fi
    printf '%-7s %-24s %-12s %-11s %s\n' "$role" "$name" "$id" "$state" "$out"
  done < "$root/jobs.tsv"
  if [ $failed = 1 ]; then echo "comparison FAILED: see $root/logs/"; return 1; fi
  if [ $running = 1 ]; then echo "comparison RUNNING"; return 3; fi
  echo "comparison COMPLETED: $root/report/report.md"
}

# ------------------------------------------------------------------ options

root="" base="" status_root="" wait=0 dry_run=0 partial=0 wandb=""
partition=${SUSTAIN_PARTITION:-} account=${SUSTAIN_ACCOUNT:-} qos=${SUSTAIN_QOS:-}
nodes=${SUSTAIN_NODES:-1} gpus=${SUSTAIN_GPUS_PER_NODE:-0} cpus=${SUSTAIN_CPUS_PER_TASK:-1} mem=${SUSTAIN_MEM:-}
train_time=${SUSTAIN_TIME:-24:00:00} eval_time=${SUSTAIN_EVAL_TIME:-4:00:00} eval_gpus=${SUSTAIN_EVAL_GPUS:-}
accelerate_config=${ACCELERATE_CONFIG:-} eval_mode=${SUSTAIN_EVAL:-array} extra=${SUSTAIN_SBATCH_ARGS:-}
sets=() recipes=()
while [ $# -gt 0 ]; do
  case $1 in
    -h|--help) usage ;;
    --status) need_value "$@"; status_root=$2; shift 2 ;;
    --wait) wait=1; shift ;;
    --root) need_value "$@"; root=$2; shift 2 ;;
    --base) need_value "$@"; base=$2; shift 2 ;;
    --partition) need_value "$@"; partition=$2; shift 2 ;;
    --account) need_value "$@"; account=$2; shift 2 ;;
    --qos) need_value "$@"; qos=$2; shift 2 ;;
    --nodes) need_value "$@"; nodes=$2; shift 2 ;;
    --gpus-per-node) need_value "$@"; gpus=$2; shift 2 ;;
    --cpus-per-task) need_value "$@"; cpus=$2; shift 2 ;;
    --mem) need_value "$@"; mem=$2; shift 2 ;;
    --time) need_value "$@"; train_time=$2; shift 2 ;;
    --eval-time) need_value "$@"; eval_time=$2; shift 2 ;;
    --eval-gpus) need_value "$@"; eval_gpus=$2; shift 2 ;;
    --accelerate-config) need_value "$@"; accelerate_config=$2; shift 2 ;;
    --eval) need_value "$@"; eval_mode=$2; shift 2 ;;
    --set) need_value "$@"; sets+=("$2"); shift 2 ;;
    --partial-report) partial=1; shift ;;
    --wandb) need_value "$@"; wandb=$2; shift 2 ;;
    --sbatch-args) need_value "$@"; extra=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -*) die "unknown option $1 (fix: see slurm/compare.sh --help)" ;;
    *) recipes+=("$1"); shift ;;
  esac
done

if [ -n "$status_root" ]; then status "$status_root" "$wait"; exit $?; fi

[ -n "$root" ] || die "no --root given (fix: --root runs/compare, the folder for every run and the report)"
[ -n "$base" ] || die "no --base given (fix: --base PATH_OR_HUB_NAME of the model every paradigm starts from)"
[ ${#recipes[@]} -ge 1 ] || die "no recipes given (fix: list one recipe per paradigm, e.g. recipes/demo/sft.yaml)"
[[ $eval_mode =~ ^(array|inline)$ ]] || die "--eval must be array or inline, got '$eval_mode'"
[[ $wandb =~ ^(|offline|online)$ ]] || die "--wandb must be offline or online, got '$wandb'"
[[ $nodes =~ ^[1-9][0-9]*$ && $gpus =~ ^[0-9]+$ && $cpus =~ ^[1-9][0-9]*$ ]] \
  || die "--nodes, --gpus-per-node and --cpus-per-task take whole numbers"
if [ "$nodes" -gt 1 ] || [ "$gpus" -gt 1 ]; then
  [ -n "$accelerate_config" ] || die "$nodes node(s) x $gpus GPU(s) need a launcher (fix: --accelerate-config recipes/accelerate/ddp.yaml or zero2.yaml)"
fi
if [ -n "$accelerate_config" ]; then  # relative to here, or to the repository (the jobs run there)
  if [ -f "$accelerate_config" ]; then accelerate_config=$(realpath "$accelerate_config")
  elif [ -f "$REPO/$accelerate_config" ]; then accelerate_config=$REPO/$accelerate_config
  else die "accelerate config $accelerate_config not found (fix: pass e.g. recipes/accelerate/zero2.yaml)"
  fi
fi
eval_gpus=${eval_gpus:-$([ "$gpus" -gt 0 ] && echo 1 || echo 0)}
for pair in "${sets[@]}"; do
  key=${pair%%=*}; key=${key##*:}
  case $key in
    output_dir|model_name_or_path|eval_mode) die "--set $key is set by compare.sh (fix: use --root, --base or --eval)" ;;
  esac
done
[ -e "$base" ] && base=$(realpath "$base")  # a local model; anything else is a hub name
root=$(realpath -m "$root")
PY=${SUSTAIN_PYTHON:-$([ -x "$REPO/.venv/bin/python" ] && echo "$REPO/.venv/bin/python" || echo python3)}
[ $dry_run = 1 ] || command -v sbatch >/dev/null || die "sbatch not found (fix: run on a Slurm login node, or --dry-run)"

# ------------------------------------------------------------------ recipes

declare -A seen=()
names=() paths=() write_args=()
# A dry run validates into a scratch folder, so nothing under --root changes.
work=$root; [ $dry_run = 0 ] || work=$(mktemp -d)
for spec in "${recipes[@]}"; do
  path=${spec#sft:}; path=${path#grpo:}
  [ -f "$path" ] || die "recipe not found: $path"
  name=$(basename "$path"); name=${name%.yaml}; name=${name%.yml}
  [ "$name" != base ] && [ "$name" != report ] && [ "$name" != logs ] || die "a recipe cannot be named $name.yaml (fix: rename it)"
  [ -z "${seen[$name]:-}" ] || die "two recipes are named $name (fix: copy one under another file name: the name is the paradigm)"
  seen[$name]=1; names+=("$name"); paths+=("$(realpath "$path")")
  write_args+=("$spec" "$work/$name")
done
eval_setting=none; [ "$eval_mode" = inline ] && eval_setting=inline
set_args=()
for pair in "${sets[@]}" "model_name_or_path=$base" "eval_mode=$eval_setting"; do set_args+=(--set "$pair"); done
mapfile -t plans < <("$PY" -m sustain recipe-value write "${set_args[@]}" "${write_args[@]}"; echo "rc=$?")
[ "${plans[*]: -1}" = rc=0 ] || exit 2  # the parser has printed the problem
unset 'plans[-1]'

if [ $dry_run = 0 ]; then
  mkdir -p "$root/logs"
  for i in "${!names[@]}"; do
    "$PY" -c 'import json, sys; json.dump(dict(zip(("paradigm", "recipe", "trainer", "base_model"), sys.argv[1:])), open(sys.argv[5], "w"), indent=1)' \
      "${names[$i]}" "${paths[$i]}" "${plans[$i]%% *}" "$base" "$root/${names[$i]}/run_info.json"
  done
fi

# ------------------------------------------------------------------ jobs

exports="ALL,SUSTAIN_HOME=$REPO,SUSTAIN_PYTHON=$PY"
[ -n "$accelerate_config" ] && exports+=",ACCELERATE_CONFIG=$accelerate_config,SUSTAIN_GPUS_PER_NODE=$gpus"
common=(--parsable --chdir="$REPO" --export="$exports")
[ -n "$partition" ] && common+=(--partition="$partition")
[ -n "$account" ] && common+=(--account="$account")
[ -n "$qos" ] && common+=(--qos="$qos")
[ -n "$mem" ] && common+=(--mem="$mem")
read -r -a extra_args <<< "$extra"
common+=("${extra_args[@]}")
eval_res=(--cpus-per-task="$cpus" --time="$eval_time")
[ "$eval_gpus" -gt 0 ] && eval_res+=(--gpus="$eval_gpus")
train_res=(--nodes="$nodes" --cpus-per-task="$cpus" --time="$train_time")
[ "$gpus" -gt 0 ] && train_res+=(--gpus-per-node="$gpus")

jobs_file=$root/jobs.tsv
[ $dry_run = 1 ] || : > "$jobs_file"
# submit ROLE NAME sbatch-args...: queue (or print) one job, remember its id in jobs.tsv.
submit() {
  local role=$1 name=$2; shift 2
  if [ $dry_run = 1 ]; then  # a shell script: each job id lands in a variable the later jobs use
    local var arg line
    var=$role; [ "$name" = "$role" ] || var+=_$name
    var=$(tr '[:lower:]' '[:upper:]' <<< "$var" | tr -c 'A-Z0-9_\n' _)
    line="$var=\$(sbatch"
    for arg in "${common[@]}" "$@"; do
      if [[ $arg =~ ^[][A-Za-z0-9_=,:./%@+-]+$ ]]; then line+=" $arg"
      elif [[ $arg == *'${'* ]]; then line+=" \"$arg\""  # holds job id variables
      else line+=" $(printf '%q' "$arg")"
      fi
    done
    echo "$line)"
    job_id="\${$var}"
    return
  fi
  job_id=$(sbatch "${common[@]}" "$@") || die "sbatch refused the $role job of $name"
  job_id=${job_id%%;*}
  printf '%s\t%s\t%s\n' "$role" "$name" "$job_id" >> "$jobs_file"
  echo "$role $name: job $job_id"
}

all=()
submit base base --job-name=sustain-eval-base "${eval_res[@]}" --output="$root/logs/eval-base-%j.out" \
  "$REPO/slurm/eval.slurm" "$base" "$root/base/eval/checkpoint-0" "$root/${names[0]}/recipe.yaml"
all+=("$job_id")
for i in "${!names[@]}"; do
  name=${names[$i]} kind=${plans[$i]%% *} saves=${plans[$i]##* }
  recipe=$kind:$root/$name/recipe.yaml
  submit train "$name" --job-name="sustain-train-$name" "${train_res[@]}" --output="$root/logs/train-$name-%j.out" \
    "$REPO/slurm/train.slurm" "$recipe"
  train_id=$job_id; all+=("$job_id")
  [ "$eval_mode" = array ] || continue
  # One array task per checkpoint the run will leave; when that depends on the data, one job does all.
  array=(); [ "$saves" -gt 0 ] && array=(--array="0-$((saves - 1))")
  submit eval "$name" --job-name="sustain-eval-$name" "${eval_res[@]}" "${array[@]}" \
    --dependency="afterok:$train_id" --output="$root/logs/eval-$name-%A_%a.out" \
    "$REPO/slurm/eval.slurm" --run "$root/$name" --recipe "$root/$name/recipe.yaml"
  all+=("$job_id")
done
after=afterok; [ $partial = 1 ] && after=afterany
wandb_args=(); [ -n "$wandb" ] && wandb_args=(--wandb "$wandb")
submit report report --job-name=sustain-report --cpus-per-task=1 --time=1:00:00 \
  --dependency="$after:$(IFS=:; echo "${all[*]}")" --output="$root/logs/report-%j.out" \
  "$REPO/slurm/report.slurm" "$root" "${wandb_args[@]}"

if [ $dry_run = 1 ]; then rm -rf "$work"; echo "dry run: nothing queued"; exit 0; fi
echo "report (when every job is done): $root/report/report.md"
echo "progress: slurm/compare.sh --status $root [--wait]; logs: $root/logs/"
