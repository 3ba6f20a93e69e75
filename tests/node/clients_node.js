// clients_node.js — the npm etcd3 client (grpc-js) against etcd 3.4 and
// MetaStore side by side: the same scenario runs on both fresh members and
// every observable result is compared; results that must hold on their own
// are checked on both. Usage: node clients_node.js ETCD_EP MS_EP [-v]
// Prints "ok: ..." / "FAIL: ..." lines and a count; exit 0 = no failure.
'use strict';
const { Etcd3 } = require('etcd3');

let passed = 0;
let failed = 0;
function check(desc, cond, detail) {
  if (cond) {
    passed++;
    console.log('  ok: node: ' + desc);
  } else {
    failed++;
    console.log('  FAIL: node: ' + desc + ' ' + (detail || ''));
  }
}
const sleep = ms => new Promise(r => setTimeout(r, ms));
// a promise that must settle within ms
function within(ms, p, what) {
  let t;
  return Promise.race([
    p,
    new Promise((_, rej) => {
      t = setTimeout(() => rej(new Error('timeout: ' + what)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

async function scenario(c, rec) {
  const rev = async () => Number((await c.kv.range({ key: Buffer.from('nosuchkey') })).header.revision);
  const rev0 = await rev();
  rec('start revision', rev0);
  // ---- KV ----
  await c.put('k1').value('v1');
  await c.put('k2').value('v2');
  await c.put('k3').value('v3');
  rec('get k1', await c.get('k1').string());
  rec('get missing', await c.get('nope').string());
  rec('getAll prefix', await c.getAll().prefix('k').strings());
  rec('count prefix', await c.getAll().prefix('k').count());
  const pk = await c.put('k1').value('v1b').getPrevious();
  rec('put prev kv', pk && pk.value.toString());
  rec('delete existing', (await c.delete().key('k3')).deleted);
  rec('delete missing', (await c.delete().key('k3')).deleted);
  rec('sort descend', await c.getAll().prefix('k').sort('Key', 'Descend').keys());
  // ---- txn ----
  const t1 = await c.if('k1', 'Value', '==', 'v1b').then(c.put('t1').value('yes')).else(c.put('t1').value('no')).commit();
  rec('txn success', [t1.succeeded, await c.get('t1').string()]);
  const t2 = await c.if('k2', 'Version', '>', 5).then(c.put('t2').value('yes')).else(c.put('t2').value('no'), c.delete().key('k2')).commit();
  rec('txn failure branch', [t2.succeeded, await c.get('t2').string(), await c.get('k2').string()]);
  // ---- watch: history, live, cancel ----
  const base = await rev();
  for (let i = 0; i < 3; i++) await c.put('w/' + i).value('h' + i);
  await c.delete().key('w/1');
  const hist = [];
  const wh = await c.watch().prefix('w/').startRevision(String(base + 1)).create();
  await within(5000, new Promise(res => {
    const on = kind => (kv) => {
      hist.push([kind, kv.key.toString(), kv.value.toString(), Number(kv.mod_revision) - rev0]);
      if (hist.length === 4) res();
    };
    wh.on('put', on('put'));
    wh.on('delete', on('delete'));
  }), 'history watch');
  await wh.cancel();
  rec('watch history', hist);
  const live = [];
  const wl = await c.watch().key('live').create();
  const gotTwo = new Promise(res => wl.on('put', kv => {
    live.push([kv.value.toString(), Number(kv.mod_revision) - rev0]);
    if (live.length === 2) res();
  }));
  await c.put('live').value('a');
  await c.put('live').value('b');
  await within(5000, gotTwo, 'live watch');
  await wl.cancel();
  await c.put('live').value('after-cancel');
  await sleep(300); // a canceled watcher must not see this put: give it the chance
  rec('live watch then cancel', live);
  // ---- leases ----
  const lease = c.lease(30, { autoKeepAlive: false });
  const id = await lease.grant();
  await lease.put('lk').value('lv');
  const once = await within(3000, lease.keepaliveOnce(), 'keepaliveOnce');
  rec('keepaliveOnce', [Number(once.TTL) > 0, once.ID === id]);
  const ttlOf = async lid => Number((await c.leaseClient.leaseTimeToLive({ ID: lid })).TTL);
  const ttl = await ttlOf(id);
  rec('lease ttl sane', ttl > 0 && ttl <= 30);
  // a keep-alive stream: three requests, three replies; the client
  // half-closes and the stream must end with status OK (etcd's handler
  // returns on io.EOF)
  const stream = await c.leaseClient.leaseKeepAlive();
  const replies = [];
  const ended = new Promise((res) => {
    stream.on('data', r => replies.push([r.ID === id, Number(r.TTL) > 0]));
    stream.on('status', s => res(s.code));
    stream.on('error', () => {});
  });
  for (let i = 0; i < 3; i++) {
    stream.write({ ID: id });
    await sleep(100);
  }
  stream.end();
  let code;
  try {
    code = await within(3000, ended, 'keep-alive stream end');
  } catch (e) {
    code = e.message;
  }
  rec('keep-alive stream ends with OK after half-close', [replies, code]);
  // a lease kept alive by the client library's own stream
  const kept = c.lease(2);
  await kept.grant();
  await kept.put('kept').value('v');
  await sleep(3500);
  rec('auto keep-alive keeps the key past its TTL', await c.get('kept').string());
  await kept.revoke();
  rec('revoke removes the key', await c.get('kept').string());
  await lease.revoke();
  rec('revoked lease ttl', await ttlOf(id));
  const short = c.lease(2, { autoKeepAlive: false });
  await short.grant();
  await short.put('ex').value('v');
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline && (await c.get('ex').string()) !== null) await sleep(100);
  rec('expiry deletes the key', await c.get('ex').string());
  // ---- lock (the library's recipe: lease + txn + watch) ----
  const l1 = c.lock('mylock').ttl(10);
  await l1.acquire();
  rec('lock held', await c.getAll().prefix('mylock').count());
  // this library's lock does not wait: a held lock fails at once
  const l2 = c.lock('mylock').ttl(10);
  rec('second locker is refused while held', await l2.acquire().then(() => 'acquired', e => e.constructor.name));
  await l1.release();
  rec('second locker gets it after release', await l2.acquire().then(() => 'acquired', e => e.constructor.name));
  await l2.release();
  // ---- status ----
  const st = await c.maintenance.status();
  rec('status', [st.version, st.leader !== '0', Number(st.raftTerm) >= 1]);
  // ---- compaction ----
  const cur = await rev();
  await c.kv.compact({ revision: String(cur - 2), physical: true });
  const at = async r => {
    try {
      const res = await c.kv.range({ key: Buffer.from('k1'), revision: String(r) });
      return res.kvs.map(kv => kv.value.toString());
    } catch (e) {
      return [e.constructor.name, e.message];
    }
  };
  rec('get a compacted revision', await at(cur - 4));
  rec('get at the compact revision', await at(cur - 2));
  const wc = c.watch().key('k1').startRevision(String(cur - 4)).watcher();
  const compactErr = await within(5000, new Promise(res => {
    wc.on('error', e => res(e.constructor.name));
  }), 'compacted watch').catch(e => e.message);
  rec('watch from a compacted revision', compactErr);
  await within(2000, wc.cancel(), 'cancel').catch(() => {});
}

let finished = false;
// Node exits with 0 when nothing is left to wait for, even in the middle of
// an await whose promise can no longer settle: that is a failure here
process.on('exit', () => {
  if (!finished) {
    console.log('  FAIL: node: the scenario stopped before its end (a promise that never settled)');
    process.exitCode = 1;
  }
});

async function main() {
  const eps = process.argv.slice(2, 4);
  const verbose = process.argv.includes('-v');
  const results = {};
  for (const [name, ep] of [['etcd', eps[0]], ['metastore', eps[1]]]) {
    const c = new Etcd3({ hosts: 'http://' + ep, defaultCallOptions: { timeout: 8000 } });
    results[name] = new Map();
    try {
      await scenario(c, (n, v) => { if (process.env.NODE_TRACE) console.log('trace', name, n); results[name].set(n, JSON.stringify(v)); });
    } catch (e) {
      check(name + ': scenario finished', false, String(e && e.stack));
    }
    c.close();
  }
  const e = results.etcd;
  const m = results.metastore;
  const mustHold = {
    'keep-alive stream ends with OK after half-close': v => JSON.parse(v)[1] === 0,
    'auto keep-alive keeps the key past its TTL': v => v === '"v"',
  };
  for (const n of (e.size ? e : m).keys()) {
    if (verbose) console.log('    ' + n + ': ' + m.get(n));
    check(n + ': same as etcd', e.has(n) && m.has(n) && e.get(n) === m.get(n), 'etcd=' + e.get(n) + ' metastore=' + m.get(n));
    if (mustHold[n]) {
      check(n + ': etcd', e.has(n) && mustHold[n](e.get(n)), e.get(n));
      check(n + ': metastore', m.has(n) && mustHold[n](m.get(n)), m.get(n));
    }
  }
  const line = 'node (etcd3 ' + require('etcd3/package.json').version + ', @grpc/grpc-js ' +
    require('@grpc/grpc-js/package.json').version + ', node ' + process.version + '): ' + passed + ' passed, ' + failed + ' failed\n';
  finished = true;
  // exit only once stdout is flushed (a pipe is asynchronous in Node)
  process.stdout.write(line, () => process.exit(failed ? 1 : 0));
}
main();
