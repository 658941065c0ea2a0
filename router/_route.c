/* The router's common case in one C call per batch: Router._route (router.py) is its reference and the
 * path of everything else.
 *
 * route(ctx, msgs, start, outbox, limit) → (index, slow)
 *   Routes msgs[start:] as Router._route would, for as long as each record is the common case: no consumer
 *   error; headers Router._route does not read (every name ASCII and none of ctx's header names, compared
 *   without case: those that make a record a CloudEvent or a descendant); a v1 Avro event within max_bytes
 *   with a valid (type, tenant) pair and a JSON payload; and the router's SubscriptionIndex. A pair met the
 *   first time is checked by ctx's check_pair and a plan missing is made by index.plan(), as decode() and
 *   match() do; a wire missing is made by ctx's `wire`. Filters the plan's walk leaves to the CEL engine are
 *   evaluated by ctx's `evaluate` (index.evaluate), and filters that erred are reported by ctx's `report`
 *   (Router._report), as SubscriptionIndex.match and Router._route do.
 *   The triggers are built by ctx's `build` (triggers.build) into `outbox`.
 *   Returns (index of the record it stopped before, True) when that record needs Router._route, whose
 *   work it has not started (beyond the caches both fill: the checked pair, the plan); (index after the
 *   last record routed, False) when every record is routed or the outbox holds `limit` records or more
 *   (the caller then calls the checkpoint's sent()).
 *
 * ctx is the tuple Router._fast_context() makes, in the order of the enum below.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <time.h>

#include "_avro.h"

enum {
    C_VIEW, C_INDEX_TYPE, C_VALID, C_MAX_BYTES, C_FRAME, C_READ_EVENT, C_LOADS, C_CANDIDATES, C_SORT_KEY,
    C_MICROS, C_CONSUMED, C_LATENCY, C_WIRES, C_TOUCHED, C_WIRE, C_BUILD, C_EXTRA, C_HEADER_NAMES, C_NO_META,
    C_CHECK_PAIR, C_EVALUATE, C_REPORT, C_SIZE
};

static PyObject *s_error, *s_headers, *s_value, *s_topic, *s_key, *s_partition, *s_offset, *s_lock, *s_index,
    *s_plans, *s_acquire, *s_release, *s_type, *s_tenant, *s_data, *s_id, *s_time, *s_meta, *s_always,
    *s_needs_data, *s_meta_users, *s_plan, *s_eq, *s_has, *s_scan, *s_sort, *kw_key, *one_int;

static PyObject *call0(PyObject *obj, PyObject *name) {
    PyObject *args[1] = {obj};
    return PyObject_VectorcallMethod(name, args, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* An exception that Router._route meets again on the same record (and handles, or raises there): cleared,
 * and the record left to it. Anything else (KeyboardInterrupt, SystemExit) stays raised. */
static int deferrable(void) {
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return 0;
    PyErr_Clear();
    return 1;
}

enum { ERROR = -1, SLOW = 0, ROUTED = 1 };

/* Matching, under the view's lock: the entries that match, sorted by key, as SubscriptionIndex.match, and
 * in *erred a new list of (entry, message) when filters erred (else NULL); NULL with no error set when the
 * record is Router._route's (another index, a plan that could not be made). */
static PyObject *match(PyObject **c, PyObject *index, PyObject *event, PyObject *tenant, PyObject *type,
                       PyObject *payload, PyObject **erred) {
    PyObject *plans = NULL, *tenant_plans, *plan = NULL, *attr = NULL, *matched = NULL, *meta = NULL,
             *errors = NULL, *eq = NULL, *has = NULL, *scan = NULL, *rest = NULL, *result = NULL;
    if (Py_TYPE(index) != (PyTypeObject *)c[C_INDEX_TYPE])
        return NULL;  /* another index (the benchmarks' naive one): its own match() */
    if ((plans = PyObject_GetAttr(index, s_plans)) == NULL)
        goto error;
    if (!PyDict_CheckExact(plans))
        goto slow;
    tenant_plans = PyDict_GetItemWithError(plans, tenant);
    if (tenant_plans != NULL && !PyDict_CheckExact(tenant_plans))
        goto slow;
    plan = tenant_plans == NULL ? NULL : PyDict_GetItemWithError(tenant_plans, type);
    if (plan != NULL)
        Py_INCREF(plan);
    else if (PyErr_Occurred())
        goto error;
    else {  /* not made yet: SubscriptionIndex.plan() makes it, as match() does */
        PyObject *args[3] = {index, tenant, type};
        if ((plan = PyObject_VectorcallMethod(s_plan, args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL)) == NULL)
            goto deferred;
    }
    if ((attr = PyObject_GetAttr(plan, s_always)) == NULL)
        goto error;
    if (!PyDict_CheckExact(attr))
        goto slow;
    if ((matched = PyDict_Values(attr)) == NULL)
        goto error;
    Py_CLEAR(attr);
    if ((attr = PyObject_GetAttr(plan, s_needs_data)) == NULL)
        goto error;
    int needs = PyObject_IsTrue(attr);
    if (needs < 0)
        goto error;
    if (needs) {
        Py_CLEAR(attr);
        if ((attr = PyObject_GetAttr(plan, s_meta_users)) == NULL)
            goto error;
        int users = PyObject_IsTrue(attr);  /* filters that name `meta`: only then is it built */
        if (users < 0 || (meta = users ? call0(event, s_meta) : Py_NewRef(c[C_NO_META])) == NULL ||
            (errors = PyList_New(0)) == NULL ||
            (eq = PyObject_GetAttr(plan, s_eq)) == NULL || (has = PyObject_GetAttr(plan, s_has)) == NULL ||
            (scan = PyObject_GetAttr(plan, s_scan)) == NULL)
            goto error;
        PyObject *args[7] = {eq, has, scan, payload, meta, matched, errors};
        if ((rest = PyObject_Vectorcall(c[C_CANDIDATES], args, 7, NULL)) == NULL)
            goto deferred;
        if (!PyList_CheckExact(rest))
            goto slow;
        if (PyList_GET_SIZE(rest)) {  /* filters for the CEL engine: index.evaluate */
            PyObject *cel[5] = {rest, payload, meta, matched, errors};
            PyObject *n = PyObject_Vectorcall(c[C_EVALUATE], cel, 5, NULL);
            if (n == NULL)
                goto deferred;
            Py_DECREF(n);
        }
        if (PyList_GET_SIZE(errors))
            *erred = Py_NewRef(errors);
    }
    if (PyList_GET_SIZE(matched) > 1) {
        PyObject *args[2] = {matched, c[C_SORT_KEY]};
        PyObject *none = PyObject_VectorcallMethod(s_sort, args, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, kw_key);
        if (none == NULL)
            goto error;
        Py_DECREF(none);
    }
    result = Py_NewRef(matched);
    goto slow;  /* (the cleanup is the same) */
deferred:
    if (!deferrable())
        goto error;
    goto slow;
error:
slow:
    Py_XDECREF(plans);
    Py_XDECREF(plan);
    Py_XDECREF(attr);
    Py_XDECREF(matched);
    Py_XDECREF(meta);
    Py_XDECREF(errors);
    Py_XDECREF(eq);
    Py_XDECREF(has);
    Py_XDECREF(scan);
    Py_XDECREF(rest);
    if (result == NULL)
        Py_CLEAR(*erred);
    return result;
}

/* matched (and *erred) under the view's lock; NULL with no error set: Router._route's. */
static PyObject *locked_match(PyObject **c, PyObject *event, PyObject *tenant, PyObject *type, PyObject *payload,
                              PyObject **erred) {
    PyObject *lock = PyObject_GetAttr(c[C_VIEW], s_lock), *index = NULL, *matched = NULL;
    if (lock == NULL)
        return NULL;
    PyObject *got = call0(lock, s_acquire);
    if (got == NULL) {
        Py_DECREF(lock);
        return NULL;
    }
    Py_DECREF(got);
    index = PyObject_GetAttr(c[C_VIEW], s_index);
    if (index != NULL)
        matched = match(c, index, event, tenant, type, payload, erred);
    Py_XDECREF(index);
    PyObject *exc_type, *exc, *exc_tb;
    PyErr_Fetch(&exc_type, &exc, &exc_tb);  /* released whatever happened */
    PyObject *released = call0(lock, s_release);
    Py_DECREF(lock);
    if (released == NULL) {
        Py_XDECREF(exc_type);
        Py_XDECREF(exc);
        Py_XDECREF(exc_tb);
        Py_XDECREF(matched);
        Py_CLEAR(*erred);
        return NULL;
    }
    Py_DECREF(released);
    PyErr_Restore(exc_type, exc, exc_tb);
    return matched;
}

/* avro_string(topic) + avro_long(partition) + avro_long(offset): where the event was read. */
static PyObject *source_tail(PyObject *topic, PyObject *partition, PyObject *offset) {
    Py_ssize_t topic_n;
    const char *topic_s = PyUnicode_AsUTF8AndSize(topic, &topic_n);
    if (topic_s == NULL)
        return NULL;
    long long p = PyLong_AsLongLong(partition);
    if (p == -1 && PyErr_Occurred())
        return NULL;
    long long o = PyLong_AsLongLong(offset);
    if (o == -1 && PyErr_Occurred())
        return NULL;
    unsigned char head[10], tail[20];
    int head_n = avro_zigzag(head, topic_n), tail_n = avro_zigzag(tail, p);
    tail_n += avro_zigzag(tail + tail_n, o);
    PyObject *out = PyBytes_FromStringAndSize(NULL, head_n + topic_n + tail_n);
    if (out == NULL)
        return NULL;
    char *at = PyBytes_AS_STRING(out);
    memcpy(at, head, head_n);
    memcpy(at + head_n, topic_s, topic_n);
    memcpy(at + head_n + topic_n, tail, tail_n);
    return out;
}

/* The triggers of a matched event into the outbox (Router._triggers). */
static int triggers(PyObject **c, PyObject *msg, PyObject *topic, PyObject *event, PyObject *value,
                    PyObject *matched, long long now, PyObject *outbox) {
    int result = ERROR;
    PyObject *partition = NULL, *offset = NULL, *source = NULL, *stamp = NULL, *key = NULL, *id = NULL,
             *event_id = NULL, *body = NULL;
    unsigned char now_buf[10];
    int now_n = avro_zigzag(now_buf, now);
    Py_ssize_t frame_n = PyBytes_GET_SIZE(c[C_FRAME]), id_n;
    if ((partition = call0(msg, s_partition)) == NULL || (offset = call0(msg, s_offset)) == NULL ||
        (source = source_tail(topic, partition, offset)) == NULL ||
        (stamp = PyBytes_FromStringAndSize((const char *)now_buf, now_n)) == NULL ||
        (key = call0(msg, s_key)) == NULL || (id = PyObject_GetAttr(event, s_id)) == NULL)
        goto done;
    const char *id_s = PyUnicode_AsUTF8AndSize(id, &id_n);
    if (id_s == NULL || (event_id = PyBytes_FromStringAndSize(id_s, id_n)) == NULL ||
        (body = PyBytes_FromStringAndSize(PyBytes_AS_STRING(value) + frame_n, PyBytes_GET_SIZE(value) - frame_n)) == NULL)
        goto done;
    Py_ssize_t at = 0, wired = -1;
    for (;;) {
        PyObject *start = PyLong_FromSsize_t(at);
        if (start == NULL)
            goto done;
        PyObject *args[12] = {matched, c[C_WIRES], c[C_FRAME], body, stamp, source, key, c[C_EXTRA], event_id,
                              outbox, c[C_TOUCHED], start};
        PyObject *r = PyObject_Vectorcall(c[C_BUILD], args, 12, NULL);
        Py_DECREF(start);
        if (r == NULL)
            goto done;
        at = PyLong_AsSsize_t(r);
        Py_DECREF(r);
        if (at == -1 && PyErr_Occurred())
            goto done;
        if (at >= PyList_GET_SIZE(matched))
            break;
        if (at == wired) {  /* a wire just made for it was refused: a bug, not a record to skip */
            PyErr_SetString(PyExc_RuntimeError, "no trigger can be built for a subscription just wired");
            goto done;
        }
        PyObject *wire = PyObject_CallOneArg(c[C_WIRE], PyList_GET_ITEM(matched, at));
        if (wire == NULL)
            goto done;
        Py_DECREF(wire);
        wired = at;
    }
    result = ROUTED;
done:
    Py_XDECREF(partition);
    Py_XDECREF(offset);
    Py_XDECREF(source);
    Py_XDECREF(stamp);
    Py_XDECREF(key);
    Py_XDECREF(id);
    Py_XDECREF(event_id);
    Py_XDECREF(body);
    return result;
}

static int count_topic(PyObject *consumed, PyObject *topic) {
    PyObject *n = PyDict_GetItemWithError(consumed, topic);
    if (n == NULL && PyErr_Occurred())
        return -1;
    PyObject *next = n == NULL ? Py_NewRef(one_int) : PyNumber_Add(n, one_int);
    if (next == NULL)
        return -1;
    int r = PyDict_SetItem(consumed, topic, next);
    Py_DECREF(next);
    return r;
}

static int latency(PyObject **c, PyObject *event, long long now) {
    PyObject *t = PyObject_GetAttr(event, s_time), *us = NULL, *lag = NULL;
    int r = -1;
    if (t == NULL || (us = PyObject_CallOneArg(c[C_MICROS], t)) == NULL)
        goto done;
    long long then = PyLong_AsLongLong(us);
    if (then == -1 && PyErr_Occurred())
        goto done;
    if ((lag = PyLong_FromLongLong(now - then)) == NULL)
        goto done;
    r = PyList_Append(c[C_LATENCY], lag);
done:
    Py_XDECREF(t);
    Py_XDECREF(us);
    Py_XDECREF(lag);
    return r;
}

/* ASCII case-insensitive equality of n bytes (strncasecmp follows the C locale). */
static int ascii_caseeq(const char *a, const char *b, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z')
            x += 'a' - 'A';
        if (y >= 'A' && y <= 'Z')
            y += 'a' - 'A';
        if (x != y)
            return 0;
    }
    return 1;
}

/* 1 when Router._route would read these headers as none (no CloudEvent, a root lineage), 0 when it must
 * read them. */
static int plain_headers(PyObject **c, PyObject *headers) {
    if (headers == Py_None)
        return 1;
    if (!PyList_CheckExact(headers))
        return 0;
    PyObject *names = c[C_HEADER_NAMES];
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(headers); i++) {
        PyObject *header = PyList_GET_ITEM(headers, i);
        if (!PyTuple_CheckExact(header) || PyTuple_GET_SIZE(header) != 2)
            return 0;
        PyObject *name = PyTuple_GET_ITEM(header, 0);
        if (!PyUnicode_CheckExact(name) || !PyUnicode_IS_ASCII(name))
            return 0;
        const char *text = (const char *)PyUnicode_DATA(name);
        Py_ssize_t n = PyUnicode_GET_LENGTH(name);
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(names); k++) {
            PyObject *known = PyTuple_GET_ITEM(names, k);
            if (PyUnicode_GET_LENGTH(known) == n && PyUnicode_IS_ASCII(known) &&
                ascii_caseeq(text, (const char *)PyUnicode_DATA(known), n))
                return 0;
        }
    }
    return 1;
}

static int one(PyObject **c, PyObject *msg, PyObject *outbox) {
    int result = ERROR;
    PyObject *err = NULL, *headers = NULL, *value = NULL, *event = NULL, *type = NULL, *tenant = NULL,
             *pair = NULL, *data = NULL, *payload = NULL, *matched = NULL, *erred = NULL, *topic = NULL;
    if ((err = call0(msg, s_error)) == NULL)
        goto done;
    if (err != Py_None)
        goto slow;
    if ((headers = call0(msg, s_headers)) == NULL)
        goto deferred;  /* a header name that is not UTF-8: a dead letter */
    if (!plain_headers(c, headers))
        goto slow;  /* a CloudEvent, a descendant's lineage */
    if ((value = call0(msg, s_value)) == NULL)
        goto done;
    Py_ssize_t max_bytes = PyLong_AsSsize_t(c[C_MAX_BYTES]), frame_n = PyBytes_GET_SIZE(c[C_FRAME]);
    if (max_bytes == -1 && PyErr_Occurred())
        goto done;
    if (!PyBytes_CheckExact(value) || PyBytes_GET_SIZE(value) > max_bytes || PyBytes_GET_SIZE(value) < frame_n ||
        memcmp(PyBytes_AS_STRING(value), PyBytes_AS_STRING(c[C_FRAME]), frame_n) != 0)
        goto slow;  /* oversized, an older version, not Avro */
    if ((event = PyObject_CallOneArg(c[C_READ_EVENT], value)) == NULL)
        goto deferred;
    if ((type = PyObject_GetAttr(event, s_type)) == NULL || (tenant = PyObject_GetAttr(event, s_tenant)) == NULL ||
        (pair = PyTuple_Pack(2, type, tenant)) == NULL)
        goto done;
    int valid = PySet_Contains(c[C_VALID], pair);
    if (valid < 0)
        goto done;
    if (!valid) {  /* a pair not checked yet: checked here as decode() does, a DecodeError left to _route */
        PyObject *args[2] = {type, tenant};
        PyObject *none = PyObject_Vectorcall(c[C_CHECK_PAIR], args, 2, NULL);
        if (none == NULL)
            goto deferred;
        Py_DECREF(none);
    }
    if ((data = PyObject_GetAttr(event, s_data)) == NULL)
        goto done;
    if ((payload = PyObject_CallOneArg(c[C_LOADS], data)) == NULL)
        goto deferred;  /* not JSON: a dead letter */
    if (!PyUnicode_CheckExact(tenant) || !PyUnicode_CheckExact(type))
        goto slow;
    if ((matched = locked_match(c, event, tenant, type, payload, &erred)) == NULL) {
        if (PyErr_Occurred())
            goto done;
        goto slow;
    }
    if (erred != NULL) {  /* Router._report, outside the lock as there */
        PyObject *args[3] = {erred, event, msg};
        PyObject *none = PyObject_Vectorcall(c[C_REPORT], args, 3, NULL);
        if (none == NULL)
            goto done;
        Py_DECREF(none);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);  /* time.time_ns() // 1000 */
    long long now = (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    if ((topic = call0(msg, s_topic)) == NULL || !PyUnicode_Check(topic))
        goto done;
    if (PyList_GET_SIZE(matched) && triggers(c, msg, topic, event, value, matched, now, outbox) < 0)
        goto done;
    if (count_topic(c[C_CONSUMED], topic) < 0 || latency(c, event, now) < 0)
        goto done;
    result = ROUTED;
    goto done;
deferred:
    if (!deferrable())
        goto done;
slow:
    result = SLOW;
done:
    if (result == ERROR && topic != NULL && !PyErr_Occurred())
        PyErr_SetString(PyExc_TypeError, "a message's topic must be a str");
    Py_XDECREF(err);
    Py_XDECREF(headers);
    Py_XDECREF(value);
    Py_XDECREF(event);
    Py_XDECREF(type);
    Py_XDECREF(tenant);
    Py_XDECREF(pair);
    Py_XDECREF(data);
    Py_XDECREF(payload);
    Py_XDECREF(matched);
    Py_XDECREF(erred);
    Py_XDECREF(topic);
    return result;
}

static PyObject *route(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "route() takes 5 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *ctx = args[0], *msgs = args[1], *outbox = args[3];
    if (!PyTuple_CheckExact(ctx) || PyTuple_GET_SIZE(ctx) != C_SIZE) {
        PyErr_SetString(PyExc_TypeError, "ctx must be the tuple Router._fast_context() makes");
        return NULL;
    }
    PyObject **c = &PyTuple_GET_ITEM(ctx, 0);
    if (!PyBytes_CheckExact(c[C_FRAME]) || !PyDict_CheckExact(c[C_CONSUMED]) || !PyList_CheckExact(c[C_LATENCY]) ||
        !PyAnySet_Check(c[C_VALID]) || !PyType_Check(c[C_INDEX_TYPE]) || !PyTuple_CheckExact(c[C_HEADER_NAMES])) {
        PyErr_SetString(PyExc_TypeError, "ctx holds the wrong types");
        return NULL;
    }
    if (!PyList_CheckExact(msgs) && !PyTuple_CheckExact(msgs)) {
        PyErr_SetString(PyExc_TypeError, "msgs must be a list or a tuple");
        return NULL;
    }
    if (!PyList_CheckExact(outbox)) {
        PyErr_SetString(PyExc_TypeError, "outbox must be a list");
        return NULL;
    }
    Py_ssize_t i = PyLong_AsSsize_t(args[2]), limit = PyLong_AsSsize_t(args[4]);
    if ((i == -1 || limit == -1) && PyErr_Occurred())
        return NULL;
    if (i < 0)
        i = 0;
    if (i > PySequence_Fast_GET_SIZE(msgs))
        i = PySequence_Fast_GET_SIZE(msgs);
    int slow = 0;
    Py_INCREF(msgs);  /* its length is read at every step: routing runs Python code (filters, wires) */
    for (; i < PySequence_Fast_GET_SIZE(msgs); i++) {
        PyObject *msg = PySequence_Fast_GET_ITEM(msgs, i);
        Py_INCREF(msg);
        int r = one(c, msg, outbox);
        Py_DECREF(msg);
        if (r == ERROR) {
            Py_DECREF(msgs);
            return NULL;
        }
        if (r == SLOW) {
            slow = 1;
            break;
        }
        if (PyList_GET_SIZE(outbox) >= limit) {
            i++;
            break;
        }
    }
    Py_DECREF(msgs);
    return Py_BuildValue("(nO)", i, slow ? Py_True : Py_False);
}

static PyMethodDef methods[] = {
    {"route", (PyCFunction)(void (*)(void))route, METH_FASTCALL,
     "route(ctx, msgs, start, outbox, limit) → (index, slow): the common case of Router._route for msgs[start:]"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_route", NULL, -1, methods};

PyMODINIT_FUNC PyInit__route(void) {
    struct { PyObject **slot; const char *text; } names[] = {
        {&s_error, "error"}, {&s_headers, "headers"}, {&s_value, "value"}, {&s_topic, "topic"}, {&s_key, "key"},
        {&s_partition, "partition"}, {&s_offset, "offset"}, {&s_lock, "lock"}, {&s_index, "index"},
        {&s_plans, "_plans"}, {&s_acquire, "acquire"}, {&s_release, "release"}, {&s_type, "type"},
        {&s_tenant, "tenant"}, {&s_data, "data"}, {&s_id, "id"}, {&s_time, "time"}, {&s_meta, "meta"},
        {&s_always, "always"}, {&s_needs_data, "needs_data"}, {&s_meta_users, "meta_users"},
        {&s_plan, "plan"}, {&s_eq, "eq"}, {&s_has, "has"}, {&s_scan, "scan"},
        {&s_sort, "sort"}};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        if ((*names[k].slot = PyUnicode_InternFromString(names[k].text)) == NULL)
            return NULL;
    if ((kw_key = Py_BuildValue("(s)", "key")) == NULL || (one_int = PyLong_FromLong(1)) == NULL)
        return NULL;
    return PyModule_Create(&module_def);
}
