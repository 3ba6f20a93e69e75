#!/usr/bin/env bash
# `make cluster`: a local three-member cluster in the foreground, like etcd's
# Procfile (clients on 2379, 22379, 32379; peers on 2380, 22380, 32380).
# Ctrl-C stops all three. Data under data/cluster/.
set -u
cd "$(dirname "$0")/.."
mkdir -p data/cluster
CL="infra1=http://127.0.0.1:2380,infra2=http://127.0.0.1:22380,infra3=http://127.0.0.1:32380"
pids=()
for i in 1 2 3; do
	c=$([ $i -eq 1 ] && echo 2379 || echo ${i}2379); p=$([ $i -eq 1 ] && echo 2380 || echo ${i}2380)
	bin/metastore --name infra$i --data-dir data/cluster/infra$i \
		--listen-client-urls http://127.0.0.1:$c --advertise-client-urls http://127.0.0.1:$c \
		--listen-peer-urls http://127.0.0.1:$p --initial-advertise-peer-urls http://127.0.0.1:$p \
		--initial-cluster-token etcd-cluster-1 --initial-cluster "$CL" --initial-cluster-state new \
		2>&1 | sed -u "s/^/infra$i | /" &
	pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null; pkill -P $$ 2>/dev/null; wait; exit 0' INT TERM
echo "cluster: etcdctl --endpoints=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379 member list"
wait
