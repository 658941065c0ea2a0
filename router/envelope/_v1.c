/* The router's reader of a v1 event (schemas/event.v1.avsc) in C: the hot path's largest single cost in
 * Python (docs/benchmarks.md). It reads the Avro body after the 5-byte frame and builds the Event itself,
 * writing its slots directly (Event is a frozen dataclass with slots: its __init__ goes through
 * object.__setattr__ once per field). codec.read_event_v1 calls it when it is built; the Python reader in
 * codec.py is the reference, and tests/unit/test_native.py holds the two side by side on any bytes.
 * Two small encoders the router calls per event join it: avro_long and micros (codec.py has both in Python).
 *
 * Errors are the Python reader's: IndexError past the end of a varint, ValueError for a bad union branch,
 * an over-long varint, a string past the end, invalid UTF-8 (UnicodeDecodeError) and trailing bytes, and
 * OverflowError for a time outside datetime's range. codec turns each into DecodeError("bad-avro").
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "../_avro.h"
#include <datetime.h>
#include <structmember.h>

#define FIELDS 11
#define FRAME 5

/* The v1 event's fields in wire order, with their kind: 1 string, 3 long (timestamp-micros),
 * 2 union [null, string], 0 bytes. */
static const char *wire_names[FIELDS] = {"id", "source", "specversion", "type", "time", "subject",
                                         "datacontenttype", "tenant", "correlationid", "causationid", "data"};
static const int wire_kinds[FIELDS] = {1, 1, 1, 1, 3, 2, 1, 1, 2, 2, 0};

static PyTypeObject *event_type = NULL;
static Py_ssize_t slot_offset[FIELDS];
static PyObject *epoch = NULL;

/* An Avro long at *pos: zig-zag over a base-128 varint of at most 10 bytes. Sets *wide when bits past
 * the 64th were set (the Python reader's unbounded int is then out of every range it is checked against). */
static int read_long(const unsigned char *p, Py_ssize_t size, Py_ssize_t *pos, long long *out, int *wide) {
    unsigned long long z = 0;
    int shift = 0;
    *wide = 0;
    for (;;) {
        if (*pos >= size) {
            PyErr_SetString(PyExc_IndexError, "index out of range");
            return -1;
        }
        unsigned char b = p[(*pos)++];
        unsigned long long bits = (unsigned long long)(b & 0x7F);
        if (shift == 63 && bits > 1)
            *wide = 1;
        if (shift < 64)
            z |= bits << shift;
        if (!(b & 0x80))
            break;
        shift += 7;
        if (shift > 63) {
            PyErr_SetString(PyExc_ValueError, "varint longer than 10 bytes");
            return -1;
        }
    }
    *out = (long long)(z >> 1) ^ -(long long)(z & 1);
    return 0;
}

static PyObject *time_from_micros(long long micros, int wide) {
    if (wide) {
        PyErr_SetString(PyExc_OverflowError, "date value out of range");
        return NULL;
    }
    long long days = micros / 86400000000LL, rem = micros % 86400000000LL;
    if (rem < 0) {
        rem += 86400000000LL;
        days -= 1;
    }
    PyObject *delta = PyDelta_FromDSU((int)days, (int)(rem / 1000000), (int)(rem % 1000000));
    if (delta == NULL)
        return NULL;
    PyObject *t = PyNumber_Add(epoch, delta);
    Py_DECREF(delta);
    return t;
}

static PyObject *read_event(PyObject *module, PyObject *value) {
    if (event_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "router.envelope._v1 is not configured");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(value, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *p = (const unsigned char *)view.buf;
    Py_ssize_t size = view.len, pos = FRAME;
    PyObject *fields[FIELDS] = {NULL};
    long long micros = 0;
    int i, time_at = 0, time_wide = 0;
    for (i = 0; i < FIELDS; i++) {
        int kind = wire_kinds[i], wide;
        long long n;
        if (kind == 2) {
            if (pos >= size) {
                PyErr_SetString(PyExc_IndexError, "index out of range");
                goto fail;
            }
            unsigned char branch = p[pos++];
            if (branch == 0) {
                fields[i] = Py_NewRef(Py_None);
                continue;
            }
            if (branch != 2) {
                PyErr_Format(PyExc_ValueError, "union branch byte %d of [null, string]", (int)branch);
                goto fail;
            }
        }
        if (read_long(p, size, &pos, &n, &wide) < 0)
            goto fail;
        if (kind == 3) { /* made a datetime after the last field, as the Python reader does */
            micros = n, time_wide = wide, time_at = i;
            continue;
        }
        if (wide || n < 0 || n > size - pos) {
            PyErr_SetString(PyExc_ValueError, "string or bytes past the end");
            goto fail;
        }
        fields[i] = kind ? PyUnicode_DecodeUTF8((const char *)p + pos, (Py_ssize_t)n, NULL)
                         : PyBytes_FromStringAndSize((const char *)p + pos, (Py_ssize_t)n);
        if (fields[i] == NULL)
            goto fail;
        pos += (Py_ssize_t)n;
    }
    if ((fields[time_at] = time_from_micros(micros, time_wide)) == NULL)
        goto fail;
    if (pos != size) {
        PyErr_Format(PyExc_ValueError, "%zd trailing bytes after the record", size - pos);
        goto fail;
    }
    PyBuffer_Release(&view);
    PyObject *event = event_type->tp_alloc(event_type, 0);
    if (event == NULL) {
        for (i = 0; i < FIELDS; i++)
            Py_XDECREF(fields[i]);
        return NULL;
    }
    for (i = 0; i < FIELDS; i++) /* the slots are empty: each takes its field's reference */
        *(PyObject **)((char *)event + slot_offset[i]) = fields[i];
    return event;
fail:
    PyBuffer_Release(&view);
    for (i = 0; i < FIELDS; i++)
        Py_XDECREF(fields[i]);
    return NULL;
}

/* avro_long(n): an Avro long (zig-zag, base-128 varint); OverflowError outside 64 bits. */
static PyObject *avro_long(PyObject *module, PyObject *arg) {
    long long n = PyLong_AsLongLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    unsigned char buf[10];
    int len = avro_zigzag(buf, n);
    return PyBytes_FromStringAndSize((const char *)buf, len);
}

/* micros(dt): an aware datetime as µs since the epoch (Avro timestamp-micros). */
static PyObject *micros(PyObject *module, PyObject *dt) {
    if (epoch == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "router.envelope._v1 is not configured");
        return NULL;
    }
    PyObject *delta = PyNumber_Subtract(dt, epoch);
    if (delta == NULL)
        return NULL;
    if (!PyDelta_Check(delta)) {
        Py_DECREF(delta);
        PyErr_SetString(PyExc_TypeError, "micros() takes a datetime");
        return NULL;
    }
    long long us = ((long long)PyDateTime_DELTA_GET_DAYS(delta) * 86400 + PyDateTime_DELTA_GET_SECONDS(delta)) *
                       1000000LL + PyDateTime_DELTA_GET_MICROSECONDS(delta);
    Py_DECREF(delta);
    return PyLong_FromLongLong(us);
}

/* configure(Event, epoch): where each field's slot is, checked to be every slot an Event has. */
static PyObject *configure(PyObject *module, PyObject *args) {
    PyObject *type, *ep;
    if (!PyArg_ParseTuple(args, "O!O", &PyType_Type, &type, &ep))
        return NULL;
    if (!PyDateTime_Check(ep)) {
        PyErr_SetString(PyExc_TypeError, "epoch must be a datetime");
        return NULL;
    }
    PyObject *slots = PyObject_GetAttrString(type, "__slots__");
    if (slots == NULL)
        return NULL;
    Py_ssize_t nslots = PyObject_Length(slots);
    Py_DECREF(slots);
    if (nslots != FIELDS) {
        PyErr_Format(PyExc_TypeError, "Event has %zd slots; this reader fills %d", nslots, FIELDS);
        return NULL;
    }
    for (int i = 0; i < FIELDS; i++) {
        PyObject *d = PyObject_GetAttrString(type, wire_names[i]);
        if (d == NULL)
            return NULL;
        if (!Py_IS_TYPE(d, &PyMemberDescr_Type) || ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX) {
            Py_DECREF(d);
            PyErr_Format(PyExc_TypeError, "Event.%s is not an object slot", wire_names[i]);
            return NULL;
        }
        slot_offset[i] = ((PyMemberDescrObject *)d)->d_member->offset;
        Py_DECREF(d);
    }
    Py_XSETREF(event_type, (PyTypeObject *)Py_NewRef(type));
    Py_XSETREF(epoch, Py_NewRef(ep));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"read_event", read_event, METH_O, "A v1 event (frame included) → Event; errors as codec's Python reader."},
    {"avro_long", avro_long, METH_O, "An Avro long: zig-zag, then base-128 varint."},
    {"micros", micros, METH_O, "An aware datetime as Avro timestamp-micros."},
    {"configure", configure, METH_VARARGS, "configure(Event, epoch): the type to build and the epoch datetime."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_v1", NULL, -1, methods};

PyMODINIT_FUNC PyInit__v1(void) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return NULL;
    return PyModule_Create(&module_def);
}
