/* An event's trigger records in one C call: the router's per-trigger work (router/envelope/triggers.py has
 * the same function in Python, `build_py`, its reference and its stand-in where this is not built).
 *
 * build(matched, wires, frame, body, stamp, source, key, extra, event_id, outbox, touched, start) → index
 *   For each Entry in matched[start:], its wire (wires[entry.key], whose `parts` are made once per
 *   subscription by triggers.parts()) gives the trigger topic, the encoded subscription, tenant and
 *   workflow, two header tuples and ":<name>" as bytes. Appends to `outbox` the record
 *     (topic, key, frame + body + prefix + stamp + avro_long(len(idem)) + idem + source,
 *      [tenant header, subscription header, ("evbus-idempotency-key", idem), *extra])
 *   with idem = event_id + ":<name>", and the wire to `touched` (the metrics count them at commit time).
 *   Returns len(matched), or the index of the first entry with no wire or a wire made for another Entry
 *   (the subscription changed): the caller makes it and calls again from there.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "../_avro.h"

static PyObject *str_key, *str_parts, *str_idem;

enum { P_ENTRY, P_TOPIC, P_PREFIX, P_TENANT, P_SUBSCRIPTION, P_SUFFIX, P_SIZE };

static int bytes_arg(PyObject *o, const char *what) {
    if (PyBytes_Check(o))
        return 0;
    PyErr_Format(PyExc_TypeError, "%s must be bytes, not %.100s", what, Py_TYPE(o)->tp_name);
    return -1;
}

/* The wire's parts for this entry and the wire, both new references; NULL with no error set when the
 * caller must make the wire first. (Lookups can run Python code: nothing borrowed is kept across them.) */
static PyObject *parts_for(PyObject *wires, PyObject *entry, PyObject **wire_out) {
    PyObject *key = PyObject_GetAttr(entry, str_key);
    if (key == NULL)
        return NULL;
    PyObject *wire = PyDict_GetItemWithError(wires, key);
    Py_XINCREF(wire);
    Py_DECREF(key);
    if (wire == NULL)
        return NULL;
    PyObject *parts = PyObject_GetAttr(wire, str_parts);
    if (parts == NULL)
        goto no;
    if (!PyTuple_CheckExact(parts) || PyTuple_GET_SIZE(parts) != P_SIZE) {
        PyErr_SetString(PyExc_TypeError, "a wire's parts must be the tuple triggers.parts() makes");
        goto no;
    }
    if (PyTuple_GET_ITEM(parts, P_ENTRY) != entry)
        goto no;
    if (bytes_arg(PyTuple_GET_ITEM(parts, P_PREFIX), "a wire's prefix") < 0 ||
        bytes_arg(PyTuple_GET_ITEM(parts, P_SUFFIX), "a wire's suffix") < 0)
        goto no;
    *wire_out = wire;
    return parts;
no:
    Py_XDECREF(parts);
    Py_DECREF(wire);
    return NULL;
}

static PyObject *one(PyObject *parts, PyObject *key, PyObject *extra, const char *frame, Py_ssize_t frame_n,
                     Py_buffer *body, const char *stamp, Py_ssize_t stamp_n, const char *source, Py_ssize_t source_n,
                     const char *id, Py_ssize_t id_n) {
    PyObject *prefix = PyTuple_GET_ITEM(parts, P_PREFIX), *suffix = PyTuple_GET_ITEM(parts, P_SUFFIX);
    Py_ssize_t prefix_n = PyBytes_GET_SIZE(prefix), suffix_n = PyBytes_GET_SIZE(suffix);
    PyObject *idem = PyBytes_FromStringAndSize(NULL, id_n + suffix_n);
    if (idem == NULL)
        return NULL;
    memcpy(PyBytes_AS_STRING(idem), id, id_n);
    memcpy(PyBytes_AS_STRING(idem) + id_n, PyBytes_AS_STRING(suffix), suffix_n);
    unsigned char len[10];
    int len_n = avro_zigzag(len, id_n + suffix_n);
    PyObject *value = PyBytes_FromStringAndSize(NULL, frame_n + body->len + prefix_n + stamp_n + len_n + id_n +
                                                          suffix_n + source_n);
    PyObject *header = NULL, *headers = NULL;
    if (value == NULL)
        goto fail;
    char *at = PyBytes_AS_STRING(value);
    memcpy(at, frame, frame_n), at += frame_n;
    memcpy(at, body->buf, body->len), at += body->len;
    memcpy(at, PyBytes_AS_STRING(prefix), prefix_n), at += prefix_n;
    memcpy(at, stamp, stamp_n), at += stamp_n;
    memcpy(at, len, len_n), at += len_n;
    memcpy(at, PyBytes_AS_STRING(idem), id_n + suffix_n), at += id_n + suffix_n;
    memcpy(at, source, source_n);
    Py_ssize_t n_extra = PyTuple_GET_SIZE(extra);
    if ((header = PyTuple_Pack(2, str_idem, idem)) == NULL || (headers = PyList_New(3 + n_extra)) == NULL)
        goto fail;
    PyList_SET_ITEM(headers, 0, Py_NewRef(PyTuple_GET_ITEM(parts, P_TENANT)));
    PyList_SET_ITEM(headers, 1, Py_NewRef(PyTuple_GET_ITEM(parts, P_SUBSCRIPTION)));
    PyList_SET_ITEM(headers, 2, header);
    header = NULL;
    for (Py_ssize_t h = 0; h < n_extra; h++)
        PyList_SET_ITEM(headers, 3 + h, Py_NewRef(PyTuple_GET_ITEM(extra, h)));
    PyObject *record = PyTuple_Pack(4, PyTuple_GET_ITEM(parts, P_TOPIC), key, value, headers);
    Py_DECREF(idem);
    Py_DECREF(value);
    Py_DECREF(headers);
    return record;
fail:
    Py_DECREF(idem);
    Py_XDECREF(value);
    Py_XDECREF(header);
    Py_XDECREF(headers);
    return NULL;
}

static PyObject *build(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 12) {
        PyErr_Format(PyExc_TypeError, "build() takes 12 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *matched = args[0], *wires = args[1], *frame = args[2], *stamp = args[4], *source = args[5];
    PyObject *key = args[6], *extra_list = args[7], *event_id = args[8], *outbox = args[9], *touched = args[10];
    Py_ssize_t start = PyLong_AsSsize_t(args[11]);
    if (start == -1 && PyErr_Occurred())
        return NULL;
    if (!PyList_CheckExact(matched) || !PyDict_CheckExact(wires) || !PyList_CheckExact(extra_list) ||
        !PyList_CheckExact(outbox) || !PyList_CheckExact(touched)) {
        PyErr_SetString(PyExc_TypeError, "matched, extra, outbox and touched must be lists; wires a dict");
        return NULL;
    }
    if (bytes_arg(frame, "frame") < 0 || bytes_arg(stamp, "stamp") < 0 || bytes_arg(source, "source") < 0 ||
        bytes_arg(event_id, "event_id") < 0 || (key != Py_None && bytes_arg(key, "key") < 0))
        return NULL;
    PyObject *extra = PyList_AsTuple(extra_list);  /* fixed while records are built */
    if (extra == NULL)
        return NULL;
    Py_buffer body;
    if (PyObject_GetBuffer(args[3], &body, PyBUF_SIMPLE) < 0) {
        Py_DECREF(extra);
        return NULL;
    }
    Py_ssize_t i;
    if (start > PyList_GET_SIZE(matched))  /* past the end: as build_py */
        start = PyList_GET_SIZE(matched);
    /* the length is read at every step: lookups can run Python code, which could shrink the list */
    for (i = start < 0 ? 0 : start; i < PyList_GET_SIZE(matched); i++) {
        PyObject *entry = PyList_GET_ITEM(matched, i), *wire = NULL;
        Py_INCREF(entry);
        PyObject *parts = parts_for(wires, entry, &wire);
        Py_DECREF(entry);
        if (parts == NULL) {
            if (PyErr_Occurred())
                goto fail;
            break;  /* no wire yet, or one of a replaced entry */
        }
        PyObject *record = one(parts, key, extra, PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame), &body,
                               PyBytes_AS_STRING(stamp), PyBytes_GET_SIZE(stamp), PyBytes_AS_STRING(source),
                               PyBytes_GET_SIZE(source), PyBytes_AS_STRING(event_id), PyBytes_GET_SIZE(event_id));
        Py_DECREF(parts);
        int failed = record == NULL || PyList_Append(outbox, record) < 0 || PyList_Append(touched, wire) < 0;
        Py_XDECREF(record);
        Py_DECREF(wire);
        if (failed)
            goto fail;
    }
    PyBuffer_Release(&body);
    Py_DECREF(extra);
    return PyLong_FromSsize_t(i);
fail:
    PyBuffer_Release(&body);
    Py_DECREF(extra);
    return NULL;
}

static PyMethodDef methods[] = {
    {"build", (PyCFunction)(void (*)(void))build, METH_FASTCALL,
     "build(matched, wires, frame, body, stamp, source, key, extra, event_id, outbox, touched, start) → index"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_triggers", NULL, -1, methods};

PyMODINIT_FUNC PyInit__triggers(void) {
    str_key = PyUnicode_InternFromString("key");
    str_parts = PyUnicode_InternFromString("parts");
    str_idem = PyUnicode_InternFromString("evbus-idempotency-key");
    if (str_key == NULL || str_parts == NULL || str_idem == NULL)
        return NULL;
    return PyModule_Create(&module_def);
}
