/* engine_txn.c — etcd's request checks (empty key, ignore_* combinations,
 * too many ops, the duplicate-key rule of v3rpc/key.go checkIntervals) and
 * Txn: compares on the pre-txn view, nested txns, one main revision for
 * all writes (etcdserver/apply.go).
 *
 * The walks over nested txns here (checks, duplicate keys, compares, apply,
 * the response) recurse once per nesting level. That is bounded: every
 * TxnRequest reaching the engine was wire-checked before protobuf-c built
 * it (common/pbcheck.h: a client's in api/api.c, a log entry's in
 * server/apply.c), so it nests at most MS_PB_MAX_DEPTH / 2 = 128 txns, and
 * 128 levels of these frames are a few tens of KiB of stack
 * (tests/unit/test_pbcheck.c checks and packs the deepest on a 1 MiB stack;
 * test_hostile_decode.sh applies it). */
#include "engine/engine_int.h"

#include <protobuf-c/protobuf-c.h>
#include <string.h>

int engine_check_range(const Etcdserverpb__RangeRequest *r, ms_err *err)
{
	if (r->key.len == 0)
		return ms_err_set(err, MS_EKEY_EMPTY, "etcdserver: key is not provided");
	return 0;
}

int engine_check_delete(const Etcdserverpb__DeleteRangeRequest *r, ms_err *err)
{
	if (r->key.len == 0)
		return ms_err_set(err, MS_EKEY_EMPTY, "etcdserver: key is not provided");
	return 0;
}

int engine_check_put(const Etcdserverpb__PutRequest *r, ms_err *err)
{
	if (r->key.len == 0)
		return ms_err_set(err, MS_EKEY_EMPTY, "etcdserver: key is not provided");
	if (r->ignore_value && r->value.len)
		return ms_err_set(err, MS_EVALUE_PROVIDED, "etcdserver: value is provided");
	if (r->ignore_lease && r->lease)
		return ms_err_set(err, MS_ELEASE_PROVIDED, "etcdserver: lease is provided");
	return 0;
}

static int check_txn_ops(const Etcdserverpb__TxnRequest *r, int max, ms_err *err);

static int check_op(const Etcdserverpb__RequestOp *op, int max, ms_err *err)
{
	if (!op)
		return ms_err_set(err, MS_EKEY_NOT_FOUND, "etcdserver: key not found");
	switch (op->request_case) {
	case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
		return op->request_range ? engine_check_range(op->request_range, err)
		                         : ms_err_set(err, MS_EKEY_EMPTY, "etcdserver: key is not provided");
	case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
		return op->request_put ? engine_check_put(op->request_put, err)
		                       : ms_err_set(err, MS_EKEY_EMPTY, "etcdserver: key is not provided");
	case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
		return op->request_delete_range ? engine_check_delete(op->request_delete_range, err)
		                                : ms_err_set(err, MS_EKEY_EMPTY, "etcdserver: key is not provided");
	case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
		if (!op->request_txn)
			return 0;
		return check_txn_ops(op->request_txn, max, err);
	default:
		/* an op with no oneof set: etcd answers "key not found" */
		return ms_err_set(err, MS_EKEY_NOT_FOUND, "etcdserver: key not found");
	}
}

static int check_txn_ops(const Etcdserverpb__TxnRequest *r, int max, ms_err *err)
{
	size_t opc = r->n_compare;
	if (opc < r->n_success)
		opc = r->n_success;
	if (opc < r->n_failure)
		opc = r->n_failure;
	if (opc > (size_t)(max < 0 ? 0 : max))
		return ms_err_set(err, MS_ETOO_MANY_OPS, "etcdserver: too many operations in txn request");
	for (size_t i = 0; i < r->n_compare; i++)
		if (r->compare[i]->key.len == 0)
			return ms_err_set(err, MS_EKEY_EMPTY, "etcdserver: key is not provided");
	int rc;
	/* etcd passes the remaining budget down to nested txns */
	for (size_t i = 0; i < r->n_success; i++)
		if ((rc = check_op(r->success[i], max - (int)opc, err)))
			return rc;
	for (size_t i = 0; i < r->n_failure; i++)
		if ((rc = check_op(r->failure[i], max - (int)opc, err)))
			return rc;
	return 0;
}

/* ---- duplicate keys (checkIntervals) ---- */
typedef struct bytesv {
	const ProtobufCBinaryData **v;
	size_t n, cap;
} bytesv;
typedef struct ivl {
	const uint8_t *b, *e; /* e NULL: the point b */
	size_t bl, el;
} ivl;
typedef struct ivlv {
	ivl *v;
	size_t n, cap;
} ivlv;

static int bytesv_push(bytesv *s, const ProtobufCBinaryData *k)
{
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 8;
		const ProtobufCBinaryData **nv = ms_realloc(s->v, nc * sizeof *nv);
		if (!nv)
			return MS_ENOMEM;
		s->v = nv;
		s->cap = nc;
	}
	s->v[s->n++] = k;
	return 0;
}

static bool bytesv_has(const bytesv *s, const ProtobufCBinaryData *k)
{
	for (size_t i = 0; i < s->n; i++)
		if (!eng_bytes_cmp(s->v[i]->data, s->v[i]->len, k->data, k->len))
			return true;
	return false;
}

static int ivlv_push(ivlv *s, ivl x)
{
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 8;
		ivl *nv = ms_realloc(s->v, nc * sizeof *nv);
		if (!nv)
			return MS_ENOMEM;
		s->v = nv;
		s->cap = nc;
	}
	s->v[s->n++] = x;
	return 0;
}

/* etcd's affine intervals: a delete with range_end "\0" is [key, "\0"),
 * which contains no key, so etcd 3.4 never flags a put against it. */
static bool ivlv_hits(const ivlv *s, const ProtobufCBinaryData *k)
{
	for (size_t i = 0; i < s->n; i++) {
		const ivl *x = &s->v[i];
		if (!x->e) {
			if (!eng_bytes_cmp(x->b, x->bl, k->data, k->len))
				return true;
		} else if (eng_bytes_cmp(x->b, x->bl, k->data, k->len) <= 0 &&
		           eng_bytes_cmp(k->data, k->len, x->e, x->el) < 0) {
			return true;
		}
	}
	return false;
}

static int check_intervals(Etcdserverpb__RequestOp **reqs, size_t n, bytesv *puts, ivlv *dels)
{
	int rc;
	for (size_t i = 0; i < n; i++) {
		const Etcdserverpb__RequestOp *op = reqs[i];
		if (!op || op->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE ||
		    !op->request_delete_range)
			continue;
		const Etcdserverpb__DeleteRangeRequest *d = op->request_delete_range;
		ivl x = {d->key.data, d->range_end.len ? d->range_end.data : NULL, d->key.len, d->range_end.len};
		if ((rc = ivlv_push(dels, x)))
			return rc;
	}
	for (size_t i = 0; i < n; i++) {
		const Etcdserverpb__RequestOp *op = reqs[i];
		if (!op || op->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN || !op->request_txn)
			continue;
		bytesv pt = {0}, pe = {0};
		ivlv dt = {0}, de = {0};
		const Etcdserverpb__TxnRequest *t = op->request_txn;
		rc = check_intervals(t->success, t->n_success, &pt, &dt);
		if (!rc)
			rc = check_intervals(t->failure, t->n_failure, &pe, &de);
		for (size_t j = 0; j < pt.n && !rc; j++) {
			if (bytesv_has(puts, pt.v[j]) || ivlv_hits(dels, pt.v[j]))
				rc = MS_EDUP_KEY;
			else
				rc = bytesv_push(puts, pt.v[j]);
		}
		for (size_t j = 0; j < pe.n && !rc; j++) {
			/* then/else branches exclude each other: a key put in both is fine */
			if ((bytesv_has(puts, pe.v[j]) && !bytesv_has(&pt, pe.v[j])) || ivlv_hits(dels, pe.v[j]))
				rc = MS_EDUP_KEY;
			else
				rc = bytesv_push(puts, pe.v[j]);
		}
		for (size_t j = 0; j < dt.n && !rc; j++)
			rc = ivlv_push(dels, dt.v[j]);
		for (size_t j = 0; j < de.n && !rc; j++)
			rc = ivlv_push(dels, de.v[j]);
		ms_free(pt.v);
		ms_free(pe.v);
		ms_free(dt.v);
		ms_free(de.v);
		if (rc)
			return rc;
	}
	for (size_t i = 0; i < n; i++) {
		const Etcdserverpb__RequestOp *op = reqs[i];
		if (!op || op->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT || !op->request_put)
			continue;
		const ProtobufCBinaryData *k = &op->request_put->key;
		if (bytesv_has(puts, k) || ivlv_hits(dels, k))
			return MS_EDUP_KEY;
		if ((rc = bytesv_push(puts, k)))
			return rc;
	}
	return 0;
}

static int check_branch(Etcdserverpb__RequestOp **reqs, size_t n, ms_err *err)
{
	bytesv p = {0};
	ivlv d = {0};
	int rc = check_intervals(reqs, n, &p, &d);
	ms_free(p.v);
	ms_free(d.v);
	if (rc == MS_EDUP_KEY)
		return ms_err_set(err, rc, "etcdserver: duplicate key given in txn request");
	if (rc)
		return ms_err_set(err, rc, "engine: out of memory");
	return 0;
}

int engine_check_txn(const Etcdserverpb__TxnRequest *r, int max_txn_ops, ms_err *err)
{
	if (max_txn_ops <= 0)
		max_txn_ops = 128;
	int rc = check_txn_ops(r, max_txn_ops, err);
	if (!rc)
		rc = check_branch(r->success, r->n_success, err);
	if (!rc)
		rc = check_branch(r->failure, r->n_failure, err);
	return rc;
}

/* ---- compares ---- */
typedef struct cmp_ctx {
	const Etcdserverpb__Compare *c;
	size_t seen;
	bool ok;
} cmp_ctx;

static int cmp_i64(int64_t a, int64_t b)
{
	return a < b ? -1 : a > b;
}

static bool compare_kv(const Etcdserverpb__Compare *c, const engine_kv *kv)
{
	int r = 0;
	int64_t want = 0;
	switch (c->target) {
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE: {
		bool set = c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
		r = eng_bytes_cmp(kv->value, kv->value_len, set ? c->value.data : NULL, set ? c->value.len : 0);
		break;
	}
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE:
		if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION)
			want = c->create_revision;
		r = cmp_i64(kv->create_rev, want);
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD:
		if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION)
			want = c->mod_revision;
		r = cmp_i64(kv->mod_rev, want);
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION:
		if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION)
			want = c->version;
		r = cmp_i64(kv->version, want);
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE:
		if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE)
			want = c->lease;
		r = cmp_i64(kv->lease, want);
		break;
	default:
		break;
	}
	switch (c->result) {
	case ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL:
		return r == 0;
	case ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL:
		return r != 0;
	case ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER:
		return r > 0;
	case ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS:
		return r < 0;
	default:
		return true;
	}
}

static int cmp_cb(void *arg, const engine_kv *kv)
{
	cmp_ctx *c = arg;
	c->seen++;
	if (!compare_kv(c->c, kv)) {
		c->ok = false;
		return 1;
	}
	return 0;
}

static int apply_compare(rocksdb_iterator_t *it, int64_t rev, const Etcdserverpb__Compare *c, bool *ok, ms_err *err)
{
	eng_bounds b;
	int rc = eng_bounds_init(&b, c->key.data, c->key.len, c->range_end.data, c->range_end.len);
	if (rc)
		return ms_err_set(err, rc, "engine: out of memory");
	cmp_ctx cc = {c, 0, true};
	rc = eng_scan(it, &b, rev, cmp_cb, &cc, err);
	eng_bounds_free(&b);
	if (rc)
		return rc;
	if (cc.seen == 0) {
		/* missing key: VALUE always fails, the rest compare against zero */
		engine_kv zero = {0};
		cc.ok = c->target != ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE && compare_kv(c, &zero);
	}
	*ok = cc.ok;
	return 0;
}

typedef struct pathv {
	bool *v;
	size_t n, cap;
} pathv;

/* etcd's compareToPath: every compare, nested ones included, is evaluated
 * on the view before the txn runs; the path lists the outcomes in preorder. */
static int compare_to_path(rocksdb_iterator_t *it, int64_t rev, const Etcdserverpb__TxnRequest *t, pathv *p,
                           ms_err *err)
{
	bool ok = true;
	for (size_t i = 0; i < t->n_compare && ok; i++) {
		int rc = apply_compare(it, rev, t->compare[i], &ok, err);
		if (rc)
			return rc;
	}
	if (p->n == p->cap) {
		size_t nc = p->cap ? p->cap * 2 : 8;
		bool *nv = ms_realloc(p->v, nc * sizeof *nv);
		if (!nv)
			return ms_err_set(err, MS_ENOMEM, "engine: out of memory");
		p->v = nv;
		p->cap = nc;
	}
	p->v[p->n++] = ok;
	Etcdserverpb__RequestOp **ops = ok ? t->success : t->failure;
	size_t n = ok ? t->n_success : t->n_failure;
	for (size_t i = 0; i < n; i++) {
		if (!ops[i] || ops[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN ||
		    !ops[i]->request_txn)
			continue;
		int rc = compare_to_path(it, rev, ops[i]->request_txn, p, err);
		if (rc)
			return rc;
	}
	return 0;
}

/* checkRequests: puts (ignore_* key present, lease present) when writing,
 * then range revisions, on the pre-txn view. */
static int check_reqs(engine_apply *a, const Etcdserverpb__TxnRequest *t, const pathv *p, size_t *pi, bool puts,
                      ms_err *err)
{
	bool ok = p->v[(*pi)++];
	Etcdserverpb__RequestOp **ops = ok ? t->success : t->failure;
	size_t n = ok ? t->n_success : t->n_failure;
	int rc;
	for (size_t i = 0; i < n; i++) {
		const Etcdserverpb__RequestOp *op = ops[i];
		if (!op)
			continue;
		if (op->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN && op->request_txn) {
			if ((rc = check_reqs(a, op->request_txn, p, pi, puts, err)))
				return rc;
		} else if (puts && op->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT &&
		           op->request_put) {
			if ((rc = eng_check_put_state(a, op->request_put, err)))
				return rc;
		} else if (!puts && op->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE &&
		           op->request_range) {
			int64_t rv = op->request_range->revision;
			if (rv > a->rev)
				return ms_err_set(err, MS_EFUTURE_REV, "mvcc: required revision is a future revision");
			if (rv > 0 && rv < a->compact)
				return ms_err_set(err, MS_ECOMPACTED, "mvcc: required revision has been compacted");
		}
	}
	return 0;
}

static Etcdserverpb__TxnResponse *txn_resp_new(int64_t rev)
{
	Etcdserverpb__TxnResponse *r = ms_malloc(sizeof *r);
	if (!r)
		return NULL;
	etcdserverpb__txn_response__init(r);
	if (!(r->header = eng_header(rev))) {
		ms_free(r);
		return NULL;
	}
	return r;
}

static int exec_txn(engine_apply *a, eng_wctx *w, const Etcdserverpb__TxnRequest *t, const pathv *p, size_t *pi,
                    Etcdserverpb__TxnResponse *resp, ms_err *err)
{
	bool ok = p->v[(*pi)++];
	resp->succeeded = ok;
	Etcdserverpb__RequestOp **ops = ok ? t->success : t->failure;
	size_t n = ok ? t->n_success : t->n_failure;
	if (n && !(resp->responses = ms_calloc(n, sizeof *resp->responses)))
		return ms_err_set(err, MS_ENOMEM, "engine: out of memory");
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		Etcdserverpb__ResponseOp *ro = ms_malloc(sizeof *ro);
		if (!ro)
			return ms_err_set(err, MS_ENOMEM, "engine: out of memory");
		etcdserverpb__response_op__init(ro);
		resp->responses[resp->n_responses++] = ro;
		const Etcdserverpb__RequestOp *op = ops[i];
		if (!op)
			continue;
		switch (op->request_case) {
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE: {
			/* the batch's shared kv iterator reads the batch live, so a
			 * range sees this txn's earlier writes, as etcd's does */
			rc = eng_range_on(eng_apply_kv_iter(a), op->request_range, w->sub ? w->main : a->rev,
			                  a->compact, &ro->response_range, err);
			if (!rc)
				ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE;
			break;
		}
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
			rc = eng_do_put(a, w, op->request_put, &ro->response_put, err);
			if (!rc)
				ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT;
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
			rc = eng_do_delete(a, w, op->request_delete_range, &ro->response_delete_range, err);
			if (!rc)
				ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE;
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
			if (!op->request_txn)
				break;
			/* nested txn responses carry an empty header, as in etcd */
			if (!(ro->response_txn = txn_resp_new(0)))
				return ms_err_set(err, MS_ENOMEM, "engine: out of memory");
			ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN;
			rc = exec_txn(a, w, op->request_txn, p, pi, ro->response_txn, err);
			break;
		default:
			break;
		}
	}
	return rc;
}

static bool txn_writes(const Etcdserverpb__TxnRequest *t, const pathv *p, size_t *pi)
{
	bool ok = p->v[(*pi)++], w = false;
	Etcdserverpb__RequestOp **ops = ok ? t->success : t->failure;
	size_t n = ok ? t->n_success : t->n_failure;
	for (size_t i = 0; i < n; i++) {
		const Etcdserverpb__RequestOp *op = ops[i];
		if (!op)
			continue;
		if (op->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN && op->request_txn)
			w |= txn_writes(op->request_txn, p, pi);
		else if (op->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT ||
		         op->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE)
			w = true;
	}
	return w;
}

int engine_apply_txn(engine_apply *a, const Etcdserverpb__TxnRequest *r, Etcdserverpb__TxnResponse **out, ms_err *err)
{
	*out = NULL;
	pathv p = {0};
	int rc = compare_to_path(eng_apply_kv_iter(a), a->rev, r, &p, err);
	size_t pi = 0;
	if (!rc && txn_writes(r, &p, &pi)) {
		pi = 0;
		rc = check_reqs(a, r, &p, &pi, true, err);
	}
	if (!rc) {
		pi = 0;
		rc = check_reqs(a, r, &p, &pi, false, err);
	}
	if (rc) {
		ms_free(p.v);
		return rc;
	}
	Etcdserverpb__TxnResponse *resp = txn_resp_new(0);
	if (!resp) {
		ms_free(p.v);
		return ms_err_set(err, MS_ENOMEM, "engine: out of memory");
	}
	eng_wctx w = {a->rev + 1, 0};
	pi = 0;
	rc = exec_txn(a, &w, r, &p, &pi, resp, err);
	ms_free(p.v);
	resp->header->revision = w.sub ? w.main : a->rev;
	if (w.sub)
		a->rev = w.main;
	if (rc) {
		if (w.sub)
			a->poisoned = true;
		protobuf_c_message_free_unpacked(&resp->base, &ms_pb_allocator);
		return rc;
	}
	*out = resp;
	return 0;
}
