/* The router's hand-over of a transaction's records to librdkafka, in one C call.
 *
 * confluent-kafka's Producer.produce() gives every record a per-message state (even with no callback), so
 * every delivery report, success or not, takes the GIL on the thread that flushes: the commit thread took
 * it from the routing thread once per trigger (Producer.c: dr_msg_cb, CallState_get). Records produced here
 * carry no per-message state, so confluent-kafka's report callback returns at once without the GIL. What
 * is lost is the per-record error: a record that fails makes the transaction fail (librdkafka sets an
 * abortable error), and the router routes that batch again with confluent-kafka's produce and its
 * callbacks, which name the record (transaction.py).
 *
 * librdkafka is the copy confluent-kafka loaded (its wheel bundles it): `configure(path)` is given
 * confluent-kafka's own extension, opens it with RTLD_NOLOAD and looks the functions up through it, so
 * they come from the library it was linked with, whatever other copy the process holds. The producer's rd_kafka_t is the first field after the object
 * header of confluent-kafka's Handle (confluent_kafka.h); `configure` is given the Producer type, and
 * produce_all refuses any other object. The few librdkafka declarations needed are written out below,
 * checked against rdkafka.h (librdkafka 2.x): the vtype enum and RD_KAFKA_MSG_F_COPY.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>

typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_headers_s rd_kafka_headers_t;
typedef struct rd_kafka_topic_s rd_kafka_topic_t;

enum { VT_END = 0, VT_TOPIC = 1, VT_RKT = 2, VT_VALUE = 4, VT_KEY = 5, VT_MSGFLAGS = 7, VT_HEADERS = 10 };
#define MSG_F_COPY 0x2
#define ERR_QUEUE_FULL (-184)

typedef struct {
    PyObject_HEAD
    rd_kafka_t *rk;
} Handle;

static int (*producev)(rd_kafka_t *, ...) = NULL;
static rd_kafka_headers_t *(*headers_new)(size_t) = NULL;
static int (*header_add)(rd_kafka_headers_t *, const char *, Py_ssize_t, const void *, Py_ssize_t) = NULL;
static void (*headers_destroy)(rd_kafka_headers_t *) = NULL;
static rd_kafka_topic_t *(*topic_new)(rd_kafka_t *, const char *, void *) = NULL;
static void (*topic_destroy)(rd_kafka_topic_t *) = NULL;
static PyTypeObject *producer_type = NULL;

static PyObject *configure(PyObject *self, PyObject *args) {
    const char *path;
    PyObject *type;
    if (!PyArg_ParseTuple(args, "sO!", &path, &PyType_Type, &type))
        return NULL;
    void *lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (lib == NULL)
        return PyErr_Format(PyExc_ImportError, "%s is not loaded: %s", path, dlerror());
    producev = dlsym(lib, "rd_kafka_producev");
    headers_new = dlsym(lib, "rd_kafka_headers_new");
    header_add = dlsym(lib, "rd_kafka_header_add");
    headers_destroy = dlsym(lib, "rd_kafka_headers_destroy");
    topic_new = dlsym(lib, "rd_kafka_topic_new");
    topic_destroy = dlsym(lib, "rd_kafka_topic_destroy");
    if (!producev || !headers_new || !header_add || !headers_destroy || !topic_new || !topic_destroy) {
        producev = NULL;
        return PyErr_Format(PyExc_ImportError, "no librdkafka produce functions through %s", path);
    }
    Py_XINCREF(type);
    Py_XSETREF(producer_type, (PyTypeObject *)type);
    Py_RETURN_NONE;
}

/* bytes or None → pointer and size (NULL, 0 for None) */
static int as_buffer(PyObject *o, const char **ptr, Py_ssize_t *size, const char *what, Py_ssize_t i) {
    if (o == Py_None) {
        *ptr = NULL;
        *size = 0;
        return 0;
    }
    if (!PyBytes_Check(o)) {
        PyErr_Format(PyExc_TypeError, "record %zd: %s must be bytes or None, not %.100s", i, what,
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    *ptr = PyBytes_AS_STRING(o);
    *size = PyBytes_GET_SIZE(o);
    return 0;
}

static rd_kafka_headers_t *make_headers(PyObject *seq, Py_ssize_t i) {
    if (!PyList_Check(seq) && !PyTuple_Check(seq)) {  /* no Python code runs while records are borrowed */
        PyErr_Format(PyExc_TypeError, "record %zd: headers must be a list or tuple", i);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);  /* a list or a tuple: no conversion needed */
    rd_kafka_headers_t *hdrs = headers_new((size_t)n);
    for (Py_ssize_t h = 0; h < n; h++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(seq, h);
        Py_ssize_t name_size, value_size;
        const char *name, *value;
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 || !PyUnicode_Check(PyTuple_GET_ITEM(pair, 0))) {
            PyErr_Format(PyExc_TypeError, "record %zd: a header must be a (str, bytes) tuple", i);
            goto fail;
        }
        name = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(pair, 0), &name_size);
        if (name == NULL || as_buffer(PyTuple_GET_ITEM(pair, 1), &value, &value_size, "a header value", i) < 0)
            goto fail;
        header_add(hdrs, name, name_size, value, value == NULL ? -1 : value_size);
    }
    return hdrs;
fail:
    headers_destroy(hdrs);
    return NULL;
}

/* Topic handles for one call, by topic name (the router's wires of one workflow share one str, so the
 * pointer usually decides; an equal str elsewhere finds the same handle). librdkafka finds a topic given by
 * name with a linear search over all its topics under its handle's write lock, for every record; here that
 * happens once per topic and call. The table grows with the topics a call touches (a transaction may reach
 * every workflow's); a name it cannot hold (no memory, an unhashable str) is given to librdkafka by name. */
typedef struct {
    PyObject **name;
    Py_hash_t *hash;
    rd_kafka_topic_t **rkt;
    Py_ssize_t cap, used;
} Handles;

static int handles_alloc(Handles *h, Py_ssize_t cap) {
    h->name = PyMem_Calloc(cap, sizeof(PyObject *));
    h->hash = PyMem_Calloc(cap, sizeof(Py_hash_t));
    h->rkt = PyMem_Calloc(cap, sizeof(rd_kafka_topic_t *));
    if (h->name == NULL || h->hash == NULL || h->rkt == NULL) {
        PyMem_Free(h->name);
        PyMem_Free(h->hash);
        PyMem_Free(h->rkt);
        h->name = NULL;
        return -1;
    }
    h->cap = cap;
    return 0;
}

static void handles_put(Handles *h, PyObject *name, Py_hash_t hash, rd_kafka_topic_t *rkt) {
    size_t i = (size_t)hash & (size_t)(h->cap - 1);
    while (h->name[i] != NULL)
        i = (i + 1) & (size_t)(h->cap - 1);
    h->name[i] = name;
    h->hash[i] = hash;
    h->rkt[i] = rkt;
    h->used++;
}

static int handles_grow(Handles *h) {  /* twice the room, the entries moved over; -1: left as it was */
    Handles bigger = {0};
    if (handles_alloc(&bigger, h->cap * 2) < 0)
        return -1;
    for (Py_ssize_t i = 0; i < h->cap; i++)
        if (h->name[i] != NULL)
            handles_put(&bigger, h->name[i], h->hash[i], h->rkt[i]);
    PyMem_Free(h->name);
    PyMem_Free(h->hash);
    PyMem_Free(h->rkt);
    *h = bigger;
    return 0;
}

static rd_kafka_topic_t *handle_for(Handles *h, rd_kafka_t *rk, PyObject *name, const char *topic) {
    Py_hash_t hash = PyObject_Hash(name);  /* cached in the str after its first use */
    if (hash == -1) {
        PyErr_Clear();
        return NULL;
    }
    size_t i = (size_t)hash & (size_t)(h->cap - 1);
    for (; h->name[i] != NULL; i = (i + 1) & (size_t)(h->cap - 1)) {
        if (h->name[i] == name)
            return h->rkt[i];
        if (h->hash[i] == hash) {
            int eq = PyUnicode_Compare(h->name[i], name);  /* both str: no error */
            if (eq == 0)
                return h->rkt[i];
            if (eq == -1 && PyErr_Occurred()) {
                PyErr_Clear();
                return NULL;
            }
        }
    }
    if (2 * (h->used + 1) > h->cap && handles_grow(h) < 0)
        return NULL;
    rd_kafka_topic_t *rkt = topic_new(rk, topic, NULL);  /* NULL for a name librdkafka refuses */
    if (rkt == NULL)
        return NULL;
    Py_INCREF(name);  /* kept alive for the call */
    handles_put(h, name, hash, rkt);
    return rkt;
}

static void handles_release(Handles *h) {
    for (Py_ssize_t i = 0; i < h->cap; i++)
        if (h->name[i] != NULL) {
            topic_destroy(h->rkt[i]);
            Py_DECREF(h->name[i]);
        }
    PyMem_Free(h->name);
    PyMem_Free(h->hash);
    PyMem_Free(h->rkt);
}

/* produce_all(producer, records, start) → (index, error): records[start:] are (topic, key, value, headers)
 * tuples; each is handed to librdkafka (copied) until one is refused. Returns (len(records), 0) when all
 * were taken, else the index of the refused one and librdkafka's error code (-184: the queue is full). */
static PyObject *produce_all(PyObject *self, PyObject *args) {
    PyObject *producer, *records, *out = NULL;
    Py_ssize_t start;
    if (!PyArg_ParseTuple(args, "OO!n", &producer, &PyList_Type, &records, &start))
        return NULL;
    if (producev == NULL || producer_type == NULL)
        return PyErr_Format(PyExc_RuntimeError, "configure() first");
    if (!PyObject_TypeCheck(producer, producer_type))
        return PyErr_Format(PyExc_TypeError, "a %s is needed, not %.100s", producer_type->tp_name,
                            Py_TYPE(producer)->tp_name);
    rd_kafka_t *rk = ((Handle *)producer)->rk;
    if (rk == NULL)
        return PyErr_Format(PyExc_RuntimeError, "the producer is closed");
    Handles table = {0}, *h = &table;
    if (handles_alloc(h, 256) < 0)
        return PyErr_NoMemory();
    Py_ssize_t n = PyList_GET_SIZE(records), i;
    for (i = start < 0 ? 0 : start; i < n; i++) {
        PyObject *rec = PyList_GET_ITEM(records, i);
        if (!PyTuple_Check(rec) || PyTuple_GET_SIZE(rec) != 4 || !PyUnicode_Check(PyTuple_GET_ITEM(rec, 0))) {
            PyErr_Format(PyExc_TypeError, "record %zd: a (topic, key, value, headers) tuple is needed", i);
            goto done;
        }
        PyObject *name = PyTuple_GET_ITEM(rec, 0);
        const char *topic = PyUnicode_AsUTF8(name);
        const char *key, *value;
        Py_ssize_t key_size, value_size;
        if (topic == NULL || as_buffer(PyTuple_GET_ITEM(rec, 1), &key, &key_size, "the key", i) < 0 ||
            as_buffer(PyTuple_GET_ITEM(rec, 2), &value, &value_size, "the value", i) < 0)
            goto done;
        PyObject *hseq = PyTuple_GET_ITEM(rec, 3);
        rd_kafka_headers_t *hdrs = NULL;
        if (hseq != Py_None && (hdrs = make_headers(hseq, i)) == NULL)
            goto done;
        rd_kafka_topic_t *rkt = handle_for(h, rk, name, topic);
        int err;
        if (rkt != NULL)
            err = producev(rk, VT_RKT, rkt, VT_KEY, (void *)key, (size_t)key_size, VT_VALUE, (void *)value,
                           (size_t)value_size, VT_MSGFLAGS, MSG_F_COPY, VT_HEADERS, hdrs, VT_END);
        else
            err = producev(rk, VT_TOPIC, topic, VT_KEY, (void *)key, (size_t)key_size, VT_VALUE, (void *)value,
                           (size_t)value_size, VT_MSGFLAGS, MSG_F_COPY, VT_HEADERS, hdrs, VT_END);
        if (err) {
            if (hdrs != NULL)
                headers_destroy(hdrs);  /* the message owns them only once it is taken */
            out = Py_BuildValue("(ni)", i, err);
            goto done;
        }
    }
    out = Py_BuildValue("(ni)", n, 0);
done:
    handles_release(h);
    return out;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS, "configure(path, Producer): bind to the librdkafka that the loaded library at path uses"},
    {"produce_all", produce_all, METH_VARARGS,
     "produce_all(producer, records, start) -> (index, error): hand records to librdkafka"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_produce", NULL, -1, methods};

PyMODINIT_FUNC PyInit__produce(void) { return PyModule_Create(&module); }
