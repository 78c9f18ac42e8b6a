#!/usr/bin/env bash
# Delegates a cgroup to USER, so a rootless `hybox serve` run by USER puts cgroup limits
# (memory, pids, CPU) on its containers instead of falling back to rlimits. Run as root, once
# per boot (cgroups do not survive a reboot): scripts/delegate-cgroups.sh USER
# The cgroup is `hybox-<uid>` (or $HYBOX_CGROUP_PARENT, which hybox reads too).
set -euo pipefail
user=${1:?usage: delegate-cgroups.sh USER}
uid=$(id -u "$user")
gid=$(id -g "$user")
name=${HYBOX_CGROUP_PARENT:-hybox-$uid}
base=/sys/fs/cgroup
if [ "$(stat -f -c %T "$base")" = cgroup2fs ]; then
  # cgroup v2: the controllers enabled down to the delegated cgroup, which the user owns. The
  # hybox process must itself run inside it (a systemd unit with Delegate=yes does that), since
  # v2 only lets a process move others between cgroups it can write to in common.
  for c in memory pids cpu; do
    grep -qw "$c" "$base/cgroup.subtree_control" || echo "+$c" > "$base/cgroup.subtree_control"
  done
  mkdir -p "$base/$name"
  echo "+memory +pids +cpu" > "$base/$name/cgroup.subtree_control"
  chown "$uid:$gid" "$base/$name" "$base/$name/cgroup.procs" \
    "$base/$name/cgroup.subtree_control" "$base/$name/cgroup.threads"
else
  # cgroup v1 (or hybrid): the same directory in every v1 hierarchy, owned by the user.
  for dir in "$base"/*/; do
    dir=${dir%/}
    [ "$(stat -f -c %T "$dir")" = cgroup2fs ] && continue   # hybrid's unified: runc uses v1
    mkdir -p "$dir/$name"
    if [ -e "$dir/$name/cpuset.cpus" ] && [ -z "$(cat "$dir/$name/cpuset.cpus")" ]; then
      cat "$dir/cpuset.cpus" > "$dir/$name/cpuset.cpus"
      cat "$dir/cpuset.mems" > "$dir/$name/cpuset.mems"
    fi
    chown -R "$uid:$gid" "$dir/$name"
  done
fi
echo "delegated cgroup $name to $user"
