#!/usr/bin/env bash
# TLS on both ports: a three-member cluster with https client and peer URLs
# and mutual TLS everywhere (etcdctl with --cacert --cert --key on every
# member), clients refused in the handshake (no certificate, a foreign CA, a
# certificate revoked by --client-crl-file), the peer port refusing a foreign
# certificate, failover over TLS (kill -9 of the leader, writes continue),
# auto-tls (etcdctl --insecure-skip-tls-verify), --cipher-suites, and clear
# start-up errors (missing file, key that does not match, https without
# certificates, unknown cipher suite), compared with etcd 3.4 where cheap.
source "$(dirname "$0")/lib.sh"
SPID=()

C=$TMP/certs
sh "$ROOT/tests/integration/tls_certs.sh" "$C" >"$TMP/certs.log" 2>&1 || {
	fail "making test certificates"; cat "$TMP/certs.log"; finish; exit 1
}
TLSCTL=(--cacert "$C/ca.crt" --cert "$C/client.crt" --key "$C/client.key")
sctl() { local ep=$1; shift; etcdctl --endpoints="$ep" --dial-timeout=3s --command-timeout=8s "${TLSCTL[@]}" "$@"; }
shealthy() { sctl "$1" endpoint health; }
SRV=(--cert-file "$C/server.crt" --key-file "$C/server.key" --trusted-ca-file "$C/ca.crt" --client-cert-auth
	--client-crl-file "$C/ca.crl"
	--peer-cert-file "$C/server.crt" --peer-key-file "$C/server.key" --peer-trusted-ca-file "$C/ca.crt"
	--peer-client-cert-auth)

# ---- an mTLS three-member cluster ----
CLUSTER=""
for i in 1 2 3; do
	CPORT[$i]=$(free_port); PPORT[$i]=$(free_port)
	CLUSTER="$CLUSTER${CLUSTER:+,}m$i=https://127.0.0.1:${PPORT[$i]}"
	CEP[$i]=https://127.0.0.1:${CPORT[$i]}
	CDIR[$i]=$TMP/m$i
done
ALL_EPS=$(IFS=,; echo "${CEP[*]}")
start_tls_member() {
	local i=$1; shift
	"$METASTORE" --name "m$i" --data-dir "${CDIR[$i]}" \
		--listen-client-urls "${CEP[$i]}" --advertise-client-urls "${CEP[$i]}" \
		--listen-peer-urls "https://127.0.0.1:${PPORT[$i]}" --initial-advertise-peer-urls "https://127.0.0.1:${PPORT[$i]}" \
		--initial-cluster "$CLUSTER" --heartbeat-interval 50 --election-timeout 500 "${SRV[@]}" "$@" >>"${CDIR[$i]}.log" 2>&1 &
	CPID[$i]=$!
	PIDS+=("${CPID[$i]}")
}
for i in 1 2 3; do start_tls_member "$i"; done
for i in 1 2 3; do
	wait_for "m$i healthy over TLS" 40 shealthy "${CEP[$i]}" || {
		fail "m$i did not become healthy"; tail -20 "${CDIR[$i]}.log"; finish; exit 1
	}
done
ok "three members healthy with https client and peer URLs"

for i in 1 2 3; do
	sctl "${CEP[$i]}" put "k$i" "v$i" >/dev/null || fail "put through m$i"
done
for i in 1 2 3; do
	got=$(sctl "${CEP[$i]}" get k --prefix --print-value-only | tr '\n' ' ')
	check "m$i reads every member's write over mTLS ($got)" [ "$got" == "v1 v2 v3 " ]
done
nmem=$(sctl "${CEP[2]}" member list | grep -c "started, m.*, https://127.0.0.1:.*, https://127.0.0.1:")
check "member list shows 3 members with https URLs ($nmem)" [ "$nmem" -eq 3 ]
check "/health over TLS with a client certificate" bash -c \
	"curl -sf --cacert $C/ca.crt --cert $C/client.crt --key $C/client.key ${CEP[1]}/health | grep -q '\"health\":\"true\"'"

# ---- refused clients: the handshake fails, nothing is served ----
refused() { # DESC etcdctl-flags...
	local d=$1; shift
	if out=$(etcdctl --endpoints="${CEP[1]}" --dial-timeout=2s --command-timeout=3s "$@" get k1 2>&1); then
		fail "$d: served ($out)"
	else
		ok "$d: refused"
	fi
}
refused "client without a certificate" --cacert "$C/ca.crt"
refused "client certificate from a foreign CA" --cacert "$C/ca.crt" --cert "$C/foreign.crt" --key "$C/foreign.key"
refused "client certificate revoked by --client-crl-file" --cacert "$C/ca.crt" --cert "$C/revoked.crt" --key "$C/revoked.key"
refused "plaintext client on the https port" --insecure-transport=true
check "curl without a client certificate is refused" bash -c "! curl -sf --cacert $C/ca.crt ${CEP[1]}/health"
check "a client that does not trust the server's CA refuses it" bash -c \
	"! etcdctl --endpoints=${CEP[1]} --dial-timeout=2s --command-timeout=3s --cacert $C/foreign-ca.crt --cert $C/client.crt --key $C/client.key get k1 >/dev/null 2>&1"

# ---- the peer port: a foreign certificate never gets past the handshake ----
check "peer port refuses a certificate from a foreign CA" bash -c \
	"! openssl s_client -connect 127.0.0.1:${PPORT[1]} -tls1_2 -CAfile $C/ca.crt -cert $C/foreign.crt -key $C/foreign.key </dev/null >$TMP/sc1.log 2>&1"
check "peer port refuses a client without a certificate" bash -c \
	"! openssl s_client -connect 127.0.0.1:${PPORT[1]} -tls1_2 -CAfile $C/ca.crt </dev/null >$TMP/sc2.log 2>&1"
check "peer port completes a handshake with a certificate of the peer CA" bash -c \
	"openssl s_client -connect 127.0.0.1:${PPORT[1]} -tls1_2 -CAfile $C/ca.crt -cert $C/client.crt -key $C/client.key -verify_return_error </dev/null >$TMP/sc3.log 2>&1"
check "the cluster is unaffected" bash -c "etcdctl --endpoints=${CEP[1]} ${TLSCTL[*]} endpoint health >/dev/null 2>&1"

# ---- failover over TLS ----
L=$(sctl "${CEP[1]}" endpoint status -w json | python3 -c 'import json,sys; s=json.load(sys.stdin)[0]["Status"]; print("%x" % s["leader"])')
li=0
for i in 1 2 3; do
	id=$(sctl "${CEP[$i]}" endpoint status -w json | python3 -c 'import json,sys; print("%x" % json.load(sys.stdin)[0]["Status"]["header"]["member_id"])')
	[ "$id" == "$L" ] && li=$i
done
check "one leader known ($L is m$li)" [ "$li" -ne 0 ]
writer() {
	local n=0
	while [ ! -e "$TMP/stop" ] && [ $n -lt 100000 ]; do
		n=$((n + 1))
		if etcdctl --endpoints="$ALL_EPS" --dial-timeout=2s --command-timeout=5s "${TLSCTL[@]}" put "w-$(printf %06d $n)" "v$n" >/dev/null 2>&1; then
			echo "w-$(printf %06d $n) v$n" >>"$TMP/acked"
		fi
	done
}
writer &
WPID=$!
wait_for "some writes acknowledged" 30 bash -c "[ \$(wc -l <$TMP/acked 2>/dev/null || echo 0) -ge 20 ]"
stop() { kill -9 "$1" 2>/dev/null; wait "$1" 2>/dev/null; } # no job-control noise
stop "${CPID[$li]}"
others=()
for i in 1 2 3; do [ "$i" -ne "$li" ] && others+=("$i"); done
n0=$(wc -l <"$TMP/acked")
if wait_for "writes continue after killing the leader" 40 bash -c "[ \$(wc -l <$TMP/acked) -ge $((n0 + 20)) ]"; then
	ok "writes continue over TLS after kill -9 of the leader m$li"
else
	fail "writes stalled after failover"
fi
touch "$TMP/stop"; wait "$WPID"
sort "$TMP/acked" >"$TMP/want"
sctl "${CEP[${others[0]}]}" get w- --prefix | paste - - -d' ' | sort >"$TMP/have"
missing=$(comm -23 "$TMP/want" "$TMP/have" | wc -l)
check "all $(wc -l <"$TMP/want") acknowledged writes present after failover ($missing missing)" [ "$missing" -eq 0 ]
start_tls_member "$li"
wait_for "m$li back and caught up" 40 bash -c "[ \"\$(etcdctl --endpoints=${CEP[$li]} --cacert $C/ca.crt --cert $C/client.crt --key $C/client.key get k1 --print-value-only --consistency=s 2>/dev/null)\" == v1 ]" &&
	ok "restarted m$li rejoins over TLS" || fail "m$li did not catch up after restart"
# ---- a fourth member joins over TLS (member add, then the join request
# and raft traffic on https peer URLs) ----
CPORT[4]=$(free_port); PPORT[4]=$(free_port)
CEP[4]=https://127.0.0.1:${CPORT[4]}; CDIR[4]=$TMP/m4
out=$(sctl "$ALL_EPS" member add m4 --peer-urls="https://127.0.0.1:${PPORT[4]}" 2>&1)
check "member add with an https peer URL" grep -q "^Member *[0-9a-f]* added to cluster" <<<"$out"
CLUSTER=$(sed -n 's/^ETCD_INITIAL_CLUSTER="\(.*\)"$/\1/p' <<<"$out")
start_tls_member 4 --initial-cluster-state existing
wait_for "m4 joined over TLS and caught up" 60 bash -c "[ \"\$(etcdctl --endpoints=${CEP[4]} ${TLSCTL[*]} get k1 --print-value-only --consistency=s 2>/dev/null)\" == v1 ]" &&
	ok "m4 joined through https peer URLs and has the data" || { fail "m4 did not join"; tail -5 "${CDIR[4]}.log"; }
for i in 1 2 3 4; do stop "${CPID[$i]}"; done

# ---- the dialing side verifies the peer's server certificate: a member
# whose peer certificate is for another host (127.0.0.2) is not dialed ----
P1=$(free_port); P2=$(free_port); Q1=$(free_port); Q2=$(free_port)
PC="p1=https://127.0.0.1:$Q1,p2=https://127.0.0.1:$Q2"
for i in 1 2; do
	pc=$C/server; [ $i = 2 ] && pc=$C/other
	cp=P$i; qp=Q$i
	"$METASTORE" --name p$i --data-dir "$TMP/p$i" --initial-cluster "$PC" \
		--listen-client-urls "https://127.0.0.1:${!cp}" --advertise-client-urls "https://127.0.0.1:${!cp}" \
		--listen-peer-urls "https://127.0.0.1:${!qp}" --initial-advertise-peer-urls "https://127.0.0.1:${!qp}" \
		--cert-file "$C/server.crt" --key-file "$C/server.key" \
		--peer-cert-file "$pc.crt" --peer-key-file "$pc.key" --peer-trusted-ca-file "$C/ca.crt" --peer-client-cert-auth \
		>>"$TMP/p$i.log" 2>&1 &
	PPID_[$i]=$!
	PIDS+=("$!")
done
check "p1 refuses p2's peer certificate for 127.0.0.2 when dialing 127.0.0.1" wait_for "p1 rejects p2" 30 \
	grep -q 'rejected TLS connection with 127.0.0.1 (certificate CN "other": IP address mismatch)' "$TMP/p1.log"
check "so the two members have no quorum" bash -c \
	"! etcdctl --endpoints=https://127.0.0.1:$P1 --cacert $C/ca.crt --dial-timeout=2s --command-timeout=3s put x y >/dev/null 2>&1"
stop "${PPID_[1]}"; stop "${PPID_[2]}"

# ---- auto-tls on both ports ----
AC=$(free_port); AP=$(free_port)
"$METASTORE" --name a1 --data-dir "$TMP/a1" --auto-tls --peer-auto-tls \
	--listen-client-urls "https://127.0.0.1:$AC" --advertise-client-urls "https://127.0.0.1:$AC" \
	--listen-peer-urls "https://127.0.0.1:$AP" --initial-advertise-peer-urls "https://127.0.0.1:$AP" \
	--initial-cluster "a1=https://127.0.0.1:$AP" >>"$TMP/a1.log" 2>&1 &
APID=$!
PIDS+=("$APID")
actl() { etcdctl --endpoints="https://127.0.0.1:$AC" --dial-timeout=2s --command-timeout=5s --insecure-transport=false --insecure-skip-tls-verify "$@"; }
wait_for "auto-tls member healthy" 30 actl endpoint health || tail -20 "$TMP/a1.log"
check "auto-tls: put with --insecure-skip-tls-verify" bash -c "etcdctl --endpoints=https://127.0.0.1:$AC --insecure-transport=false --insecure-skip-tls-verify put ak av >/dev/null"
check "auto-tls: get returns the value" [ "$(actl get ak --print-value-only)" == av ]
check "auto-tls: a verifying client refuses the self-signed certificate" bash -c \
	"! etcdctl --endpoints=https://127.0.0.1:$AC --dial-timeout=2s --command-timeout=3s --insecure-transport=false get ak >/dev/null 2>&1"
for f in client/cert.pem client/key.pem peer/cert.pem peer/key.pem; do
	check "auto-tls wrote fixtures/$f" [ -s "$TMP/a1/fixtures/$f" ]
done
check "auto-tls key is private (0600)" [ "$(stat -c %a "$TMP/a1/fixtures/client/key.pem")" == 600 ]
check "auto-tls certificate has the listen host as IP SAN" bash -c \
	"openssl x509 -in $TMP/a1/fixtures/client/cert.pem -noout -text | grep -q 'IP Address:127.0.0.1'"
stop "$APID"

# ---- --cipher-suites: Go names, mapped; the server offers only those.
# http:// and https:// client URLs on two ports: each served by its scheme ----
XC=$(free_port); XP=$(free_port); XH=$(free_port)
start_member ms x1 "$TMP/x1" "$XC" "$XP" --cert-file "$C/server.crt" --key-file "$C/server.key" \
	--listen-client-urls "https://127.0.0.1:$XC,http://127.0.0.1:$XH" --advertise-client-urls "https://127.0.0.1:$XC" \
	--cipher-suites TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
XPID=$LAST_PID
wait_for "x1 listening" 30 bash -c "etcdctl --endpoints=https://127.0.0.1:$XC --cacert $C/ca.crt --dial-timeout=2s endpoint health"
check "https port without client-cert-auth: a client without a certificate is served" bash -c \
	"etcdctl --endpoints=https://127.0.0.1:$XC --cacert $C/ca.crt --dial-timeout=2s put tk tv >/dev/null"
check "the http port of the same member serves plaintext" bash -c \
	"[ \"\$(etcdctl --endpoints=http://127.0.0.1:$XH --dial-timeout=2s get tk --print-value-only)\" == tv ]"
check "TLS 1.2 with the configured suite" bash -c \
	"openssl s_client -connect 127.0.0.1:$XC -tls1_2 -CAfile $C/ca.crt </dev/null 2>/dev/null | grep -q 'Cipher is ECDHE-ECDSA-AES256-GCM-SHA384'"
check "TLS 1.2 with another suite is refused" bash -c \
	"! openssl s_client -connect 127.0.0.1:$XC -tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256 -CAfile $C/ca.crt </dev/null >/dev/null 2>&1"
stop "$XPID"

# ---- side by side with etcd 3.4, same certificates and flags: the same
# answers for a good client and the same refusals ----
CLI_TLS=(--cert-file "$C/server.crt" --key-file "$C/server.key" --trusted-ca-file "$C/ca.crt" --client-cert-auth
	--client-crl-file "$C/ca.crl")
for kind in ms etcd; do
	cp=$(free_port); pp=$(free_port)
	start_member "$kind" "$kind-s" "$TMP/$kind-s" "$cp" "$pp" "${CLI_TLS[@]}" \
		--listen-client-urls "https://127.0.0.1:$cp" --advertise-client-urls "https://127.0.0.1:$cp"
	SPID[${#SPID[@]}]=$LAST_PID
	ep=https://127.0.0.1:$cp
	wait_for "$kind healthy over mTLS" 30 sctl "$ep" endpoint health || tail -5 "$TMP/$kind-s.log"
	{
		sctl "$ep" put sk sv
		sctl "$ep" get sk
		sctl "$ep" get sk --print-value-only
		for who in none foreign revoked; do
			case $who in
			none) f=() ;;
			foreign) f=(--cert "$C/foreign.crt" --key "$C/foreign.key") ;;
			revoked) f=(--cert "$C/revoked.crt" --key "$C/revoked.key") ;;
			esac
			etcdctl --endpoints="$ep" --dial-timeout=2s --command-timeout=3s --cacert "$C/ca.crt" "${f[@]}" get sk \
				>/dev/null 2>&1 && echo "$who: served" || echo "$who: refused"
		done
		curl -s -o /dev/null -w '%{http_code}\n' --cacert "$C/ca.crt" --cert "$C/client.crt" --key "$C/client.key" "$ep/health"
	} >"$TMP/side-$kind.txt" 2>&1
done
check "etcd 3.4 and MetaStore answer the same over mTLS ($(tr '\n' ' ' <"$TMP/side-ms.txt"))" \
	diff "$TMP/side-etcd.txt" "$TMP/side-ms.txt"
for p in "${SPID[@]}"; do stop "$p"; done

# ---- start-up errors: clear, naming the file, before serving ----
startup_err() { # DESC WANT flags...  (metastore must exit non-zero and print WANT)
	local d=$1 want=$2; shift 2
	local dir=$TMP/bad$RANDOM out rc
	out=$(timeout 20 "$METASTORE" --data-dir "$dir" --listen-client-urls "https://127.0.0.1:$(free_port)" \
		--advertise-client-urls https://127.0.0.1:2379 --listen-peer-urls "http://127.0.0.1:$(free_port)" "$@" 2>&1)
	rc=$?
	if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -qF -- "$want" <<<"$out"; then
		ok "$d (exit $rc: $(grep -F -- "$want" <<<"$out" | head -1))"
	else
		fail "$d: exit $rc, want \"$want\" in: $(tail -3 <<<"$out")"
	fi
}
startup_err "missing cert file" "--cert-file $C/nope.crt: open: No such file or directory" \
	--cert-file "$C/nope.crt" --key-file "$C/server.key"
startup_err "key that does not match" "--key-file $C/client.key: the private key does not match the certificate in $C/server.crt" \
	--cert-file "$C/server.crt" --key-file "$C/client.key"
startup_err "unreadable CA file" "--trusted-ca-file $C/nope-ca.crt: open: No such file or directory" \
	--cert-file "$C/server.crt" --key-file "$C/server.key" --client-cert-auth --trusted-ca-file "$C/nope-ca.crt"
startup_err "http and https on one address (etcd multiplexes; refused by name)" "serving http and https on the same address is not supported" \
	--cert-file "$C/server.crt" --key-file "$C/server.key" --listen-client-urls "https://127.0.0.1:$XH,http://127.0.0.1:$XH"
startup_err "unknown cipher suite" 'unexpected TLS cipher suite "TLS_BOGUS"' \
	--cert-file "$C/server.crt" --key-file "$C/server.key" --cipher-suites TLS_BOGUS
want_https="TLS key/cert (--cert-file, --key-file) must be provided for client url"
startup_err "https client URL without certificates" "$want_https"
# etcd 3.4 says the same for the same flags
EC=$(free_port)
eout=$(timeout 20 etcd --data-dir "$TMP/etcd-bad" --listen-client-urls "https://127.0.0.1:$EC" \
	--advertise-client-urls https://127.0.0.1:2379 --listen-peer-urls "http://127.0.0.1:$(free_port)" 2>&1)
check "etcd 3.4 gives the same https-without-certificates error" grep -qF -- "$want_https" <<<"$eout"

finish
