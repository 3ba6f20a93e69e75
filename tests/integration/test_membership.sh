#!/usr/bin/env bash
# Membership through raft: add a learner, start it with
# --initial-cluster-state existing, let it catch up, promote it, write
# through it, remove it (it stops); etcd's errors for bad requests.
source "$(dirname "$0")/lib.sh"

start_cluster 3
for i in 1 2 3; do
	wait_for "m$i healthy" 30 healthy "${CEP[$i]}" || { fail "m$i did not start"; finish; exit 1; }
done
for n in $(seq 1 50); do ctl "${CEP[1]}" put "k$n" "$n" >/dev/null; done

CPORT[4]=$(free_port); PPORT[4]=$(free_port); CEP[4]=127.0.0.1:${CPORT[4]}; CDIR[4]=$TMP/m4
out=$(ctl "$ALL_EPS" member add m4 --learner --peer-urls="http://127.0.0.1:${PPORT[4]}" 2>&1)
check "member add --learner: $(head -1 <<<"$out")" grep -q "^Member *[0-9a-f]* added to cluster *[0-9a-f]*" <<<"$out"
NEWID=$(sed -n 's/^Member *\([0-9a-f]*\) added.*/\1/p' <<<"$out")
check "the new member's ID is printed ($NEWID)" [ -n "$NEWID" ]
IC=$(sed -n 's/^ETCD_INITIAL_CLUSTER="\(.*\)"$/\1/p' <<<"$out")
check "member add prints ETCD_INITIAL_CLUSTER with m4 ($IC)" grep -q "m4=http://127.0.0.1:${PPORT[4]}" <<<"$IC"
check "member add prints ETCD_INITIAL_CLUSTER_STATE=existing" grep -q 'ETCD_INITIAL_CLUSTER_STATE="existing"' <<<"$out"
check "member list shows the unstarted learner" bash -c "etcdctl --endpoints=${CEP[1]} member list | grep -q '$NEWID, unstarted, , http://127.0.0.1:${PPORT[4]}, , true'"

out=$(ctl "$ALL_EPS" member add m5 --learner --peer-urls="http://127.0.0.1:$(free_port)" 2>&1)
check "a second learner: too many learners" grep -q "etcdserver: too many learner members in cluster" <<<"$out"
out=$(ctl "$ALL_EPS" member add dup --peer-urls="http://127.0.0.1:${PPORT[1]}" 2>&1)
check "an existing peer URL: Peer URLs already exists" grep -q "etcdserver: Peer URLs already exists" <<<"$out"
out=$(ctl "$ALL_EPS" member add bad --peer-urls="ftp://x" 2>&1)
check "a bad peer URL is refused ($(tail -1 <<<"$out"))" grep -q "URL scheme must be http\|given member URLs are invalid" <<<"$out"
out=$(ctl "$ALL_EPS" member remove 1234 2>&1)
check "remove unknown: member not found" grep -q "etcdserver: member not found" <<<"$out"
V=$(member_id_of "${CEP[2]}")
out=$(ctl "$ALL_EPS" member promote "$V" 2>&1)
check "promote a voter: can only promote a learner member" grep -q "etcdserver: can only promote a learner member" <<<"$out"

# the learner joins the running cluster and catches up
"$METASTORE" --name m4 --data-dir "${CDIR[4]}" \
	--listen-client-urls "http://${CEP[4]}" --advertise-client-urls "http://${CEP[4]}" \
	--listen-peer-urls "http://127.0.0.1:${PPORT[4]}" --initial-advertise-peer-urls "http://127.0.0.1:${PPORT[4]}" \
	--initial-cluster "$IC" --initial-cluster-state existing --heartbeat-interval 50 --election-timeout 500 \
	>>"${CDIR[4]}.log" 2>&1 &
CPID[4]=$!; PIDS+=("${CPID[4]}")
caught_up() { [ "$(etcdctl --endpoints="${CEP[4]}" get k --prefix --keys-only --consistency=s 2>/dev/null | grep -c .)" -eq 50 ]; }
check "the learner joined and caught up (50 keys)" wait_for "learner catch-up" 30 caught_up
check "the learner published itself (started, named m4)" wait_for "published" 10 bash -c "etcdctl --endpoints=${CEP[1]} member list | grep -q '$NEWID, started, m4'"
check "the learner keeps its ID across the join" [ "$(member_id_of "${CEP[4]}")" == "$NEWID" ]

out=$(etcdctl --endpoints="${CEP[4]}" --command-timeout=3s put learner-write x 2>&1)
check "a learner refuses writes: rpc not supported for learner" grep -q "etcdserver: rpc not supported for learner" <<<"$out"
out=$(etcdctl --endpoints="${CEP[4]}" --command-timeout=3s get k1 2>&1)
check "a learner refuses linearizable reads" grep -q "etcdserver: rpc not supported for learner" <<<"$out"
check "a learner serves serializable reads" [ "$(ctl "${CEP[4]}" get k1 --print-value-only --consistency=s)" == 1 ]
check "endpoint status on the learner says IS LEARNER true" bash -c "etcdctl --endpoints=${CEP[4]} endpoint status | grep -q ', true, '"

# promote it, write through it
out=$(ctl "$ALL_EPS" member promote "$NEWID" 2>&1)
check "member promote: $out" grep -q "Member *$NEWID promoted in cluster" <<<"$out"
check "member list: m4 is a voter" bash -c "etcdctl --endpoints=${CEP[1]} member list | grep -q '^$NEWID, started, m4, .*, false$'"
ctl "${CEP[4]}" put via-m4 yes >/dev/null
check "a write through the promoted member is visible on m1" [ "$(ctl "${CEP[1]}" get via-m4 --print-value-only)" == yes ]
check "four voters agree on HashKV" wait_for "hashes" 10 bash -c "[ \$(for e in ${CEP[1]} ${CEP[2]} ${CEP[3]} ${CEP[4]}; do etcdctl --endpoints=\$e endpoint hashkv -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0][\"HashKV\"][\"hash\"])'; done | sort -u | wc -l) -eq 1 ]"

# update m4's peer URL record, then remove it: it stops
out=$(ctl "$ALL_EPS" member update "$NEWID" --peer-urls="http://127.0.0.1:${PPORT[4]}" 2>&1)
check "member update: $out" grep -q "Member *$NEWID updated in cluster" <<<"$out"
out=$(ctl "$ALL_EPS" member remove "$NEWID" 2>&1)
check "member remove: $out" grep -q "Member *$NEWID removed from cluster" <<<"$out"
check "the removed member stops" wait_for "m4 exits" 20 bash -c "! kill -0 ${CPID[4]} 2>/dev/null"
check "member list back to 3" [ "$(ctl "${CEP[1]}" member list | grep -c started)" -eq 3 ]
ctl "${CEP[2]}" put after-remove 1 >/dev/null
check "the cluster still writes" [ "$(ctl "${CEP[3]}" get after-remove --print-value-only)" == 1 ]
finish
