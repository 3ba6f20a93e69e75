#!/usr/bin/env bash
# `make cluster`: a local three-member cluster in the foreground, like etcd's
# Procfile (clients on 2379, 22379, 32379; peers on 2380, 22380, 32380).
# Ctrl-C stops all three. Data under data/cluster/.
# TLS=1: https on both ports with mutual TLS; test certificates (a CA, a
# server certificate for 127.0.0.1, a client certificate) are made once with
# the openssl command under data/cluster/certs (valid 2 days; delete the
# directory to make new ones).
set -u
cd "$(dirname "$0")/.."
mkdir -p data/cluster
S=http
TLS_FLAGS=()
CTL_FLAGS=""
if [ "${TLS:-0}" = 1 ]; then
	S=https
	C=data/cluster/certs
	if [ ! -s "$C/ca.crt" ] || ! openssl x509 -checkend 3600 -noout -in "$C/server.crt" >/dev/null 2>&1; then
		rm -rf "$C"
		sh tests/integration/tls_certs.sh "$C" >/dev/null || { echo "cluster: making certificates failed"; exit 1; }
	fi
	C=$(cd "$C" && pwd)
	TLS_FLAGS=(--cert-file "$C/server.crt" --key-file "$C/server.key" --trusted-ca-file "$C/ca.crt" --client-cert-auth
		--peer-cert-file "$C/server.crt" --peer-key-file "$C/server.key" --peer-trusted-ca-file "$C/ca.crt"
		--peer-client-cert-auth)
	CTL_FLAGS=" --cacert $C/ca.crt --cert $C/client.crt --key $C/client.key"
fi
CL="infra1=$S://127.0.0.1:2380,infra2=$S://127.0.0.1:22380,infra3=$S://127.0.0.1:32380"
pids=()
for i in 1 2 3; do
	c=$([ $i -eq 1 ] && echo 2379 || echo ${i}2379); p=$([ $i -eq 1 ] && echo 2380 || echo ${i}2380)
	bin/metastore --name infra$i --data-dir data/cluster/infra$i \
		--listen-client-urls $S://127.0.0.1:$c --advertise-client-urls $S://127.0.0.1:$c \
		--listen-peer-urls $S://127.0.0.1:$p --initial-advertise-peer-urls $S://127.0.0.1:$p \
		--initial-cluster-token etcd-cluster-1 --initial-cluster "$CL" --initial-cluster-state new \
		"${TLS_FLAGS[@]}" 2>&1 | sed -u "s/^/infra$i | /" &
	pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null; pkill -P $$ 2>/dev/null; wait; exit 0' INT TERM
echo "cluster: etcdctl --endpoints=$S://127.0.0.1:2379,$S://127.0.0.1:22379,$S://127.0.0.1:32379$CTL_FLAGS member list"
wait
