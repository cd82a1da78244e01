# Shared by the experiment scripts (source it): run one simxir command as run folder runs/NAME.
# timed_run NAME CMD...: removes runs/NAME, runs CMD with stdout -> runs/NAME.json and stderr ->
# runs/NAME.err, writes runs/NAME.wall.json ({"run", "rc", "wall_s"}), prints "NAME rc=RC wall=Ns"
# and returns CMD's exit code (batch scripts add `|| true` so one failed run does not stop the rest).
timed_run() {
  local name=$1 start rc=0 wall
  shift
  rm -rf "runs/$name"
  start=$(date +%s)
  "$@" > "runs/$name.json" 2> "runs/$name.err" || rc=$?
  wall=$(( $(date +%s) - start ))
  echo "{\"run\": \"$name\", \"rc\": $rc, \"wall_s\": $wall}" > "runs/$name.wall.json"
  echo "$name rc=$rc wall=${wall}s"
  return "$rc"
}
export -f timed_run
