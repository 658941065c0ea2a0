/* The walk of one (tenant, type) plan for an event, in C: index.py's `candidates_py` line for line, which
 * stays as its reference and fallback (tests/unit/test_native.py holds the two side by side). A decided
 * filter is evaluated here from the entry's `native`, its `decide` closure as data (every decided entry has
 * one, made by predicates.native_tree; tests hold the two equal); any other part (a nested path,
 * matches(), resolve, has_path, key) stays Python and is called from here.
 *
 * candidates(eq, has, scan, event, meta, matched, errors) -> list of entries left for the CEL engine:
 *   eq:   {path: (field | None, {value: {key: Entry}})}    anchors by value
 *   has:  {path: {key: Entry}}                              has() anchors
 *   scan: {key: Entry}                                      filters with no anchor
 * Entries found through an exact anchor, and decided filters that hold, are appended to `matched`; a
 * decided filter that errs adds (entry, message) to `errors`.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *ERROR_ = NULL, *resolve = NULL, *key_of = NULL, *has_path = NULL;
static PyObject *s_exact = NULL, *s_native = NULL, *overload = NULL;

/* predicates.native_tree's encoding */
enum { N_AND, N_OR, N_NOT, N_CONST, N_FIELD, N_PY };
enum { F_HAS, F_EQ_STR, F_EQ, F_IN, F_CMP, F_SIZE, F_STR };

static PyObject *bool_ref(int truth) {
    return Py_NewRef(truth ? Py_True : Py_False);
}

static PyObject *rich(PyObject *v, PyObject *arg, int op) {  /* v <op> arg as a bool, no identity shortcut */
    PyObject *r = PyObject_RichCompare(v, arg, op);
    if (r == NULL)
        return NULL;
    int truth = PyObject_IsTrue(r);
    Py_DECREF(r);
    return truth < 0 ? NULL : bool_ref(truth);
}

/* A predicate on a top-level field: _compile_pred's on_field with _value_test's test. */
static PyObject *field_test(PyObject *node, PyObject *event) {
    if (PyTuple_GET_SIZE(node) != 5) {
        PyErr_SetString(PyExc_TypeError, "a field node is (N_FIELD, field, test, op, arg)");
        return NULL;
    }
    PyObject *field = PyTuple_GET_ITEM(node, 1), *arg = PyTuple_GET_ITEM(node, 4);
    long test = PyLong_AsLong(PyTuple_GET_ITEM(node, 2)), op = PyLong_AsLong(PyTuple_GET_ITEM(node, 3));
    if ((test == -1 || op == -1) && PyErr_Occurred())
        return NULL;
    if (!PyDict_CheckExact(event))
        return Py_NewRef(ERROR_);
    if (test == F_HAS) {
        int in = PyDict_Contains(event, field);
        return in < 0 ? NULL : bool_ref(in);
    }
    PyObject *v = PyDict_GetItemWithError(event, field);  /* borrowed: the event is not changed below */
    if (v == NULL)
        return PyErr_Occurred() ? NULL : Py_NewRef(ERROR_);
    int number = PyLong_CheckExact(v) || PyFloat_CheckExact(v);
    switch (test) {
    case F_EQ_STR:
        if (!PyUnicode_CheckExact(v))
            return bool_ref(0);
        return rich(v, arg, Py_EQ);
    case F_EQ:  /* predicates.equal with a null, bool or number literal */
        if (arg == Py_None)
            return bool_ref(v == Py_None);
        if (PyBool_Check(arg))
            return bool_ref(PyBool_Check(v) && v == arg);
        if (!number)
            return bool_ref(0);
        return rich(v, arg, Py_EQ);
    case F_IN: {
        PyObject *k = PyUnicode_CheckExact(v) || number ? Py_NewRef(v) : PyObject_CallOneArg(key_of, v);
        if (k == NULL)
            return NULL;
        int in = PySet_Contains(arg, k);
        Py_DECREF(k);
        return in < 0 ? NULL : bool_ref(in);
    }
    case F_CMP:
        return number ? rich(v, arg, (int)op) : Py_NewRef(ERROR_);
    case F_SIZE: {
        Py_ssize_t n;
        if (PyUnicode_CheckExact(v))
            n = PyUnicode_GET_LENGTH(v);
        else if (PyList_CheckExact(v))
            n = PyList_GET_SIZE(v);
        else if (PyDict_CheckExact(v))
            n = PyDict_GET_SIZE(v);
        else
            return Py_NewRef(ERROR_);
        PyObject *size = PyLong_FromSsize_t(n);
        if (size == NULL)
            return NULL;
        PyObject *r = rich(size, arg, (int)op);
        Py_DECREF(size);
        return r;
    }
    case F_STR: {
        if (!PyUnicode_CheckExact(v))
            return Py_NewRef(ERROR_);
        Py_ssize_t r = op == 2 ? PyUnicode_Contains(v, arg)
                               : PyUnicode_Tailmatch(v, arg, 0, PY_SSIZE_T_MAX, op == 0 ? -1 : 1);
        return r < 0 ? NULL : bool_ref((int)r);
    }
    }
    PyErr_Format(PyExc_ValueError, "unknown field test %ld", test);
    return NULL;
}

/* compile_tree's function for the tree `node` encodes, on (event, meta): True, False or ERROR. */
static PyObject *evaluate(PyObject *node, PyObject *event, PyObject *meta) {
    if (!PyTuple_CheckExact(node) || PyTuple_GET_SIZE(node) < 2) {
        PyErr_SetString(PyExc_TypeError, "a node is a tuple made by predicates.native_tree");
        return NULL;
    }
    long kind = PyLong_AsLong(PyTuple_GET_ITEM(node, 0));
    if (kind == -1 && PyErr_Occurred())
        return NULL;
    PyObject *arg = PyTuple_GET_ITEM(node, 1);
    switch (kind) {
    case N_FIELD:
        return field_test(node, event);
    case N_PY:
        return PyObject_CallFunctionObjArgs(arg, event, meta, NULL);
    case N_CONST:
        return Py_NewRef(arg);
    case N_NOT: {
        PyObject *r = evaluate(arg, event, meta);
        if (r == NULL || r == ERROR_)
            return r;
        int truth = PyObject_Not(r);
        Py_DECREF(r);
        return truth < 0 ? NULL : bool_ref(truth);
    }
    case N_AND:
    case N_OR: {  /* conjunction / disjunction: the first False (True) decides; else an error errs */
        if (!PyTuple_CheckExact(arg)) {
            PyErr_SetString(PyExc_TypeError, "an and/or node holds a tuple of nodes");
            return NULL;
        }
        PyObject *decisive = kind == N_AND ? Py_False : Py_True;
        int error = 0;
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(arg); i++) {
            PyObject *r = evaluate(PyTuple_GET_ITEM(arg, i), event, meta);
            if (r == NULL)
                return NULL;
            int stop = r == decisive;
            error |= r == ERROR_;
            Py_DECREF(r);
            if (stop)
                return Py_NewRef(decisive);
        }
        return Py_NewRef(error ? ERROR_ : kind == N_AND ? Py_True : Py_False);
    }
    }
    PyErr_Format(PyExc_ValueError, "unknown node kind %ld", kind);
    return NULL;
}

static int file_hits(PyObject *hit, PyObject *exact, PyObject *check) {
    Py_ssize_t pos = 0;
    PyObject *k, *entry;
    while (PyDict_Next(hit, &pos, &k, &entry)) {
        PyObject *ex = PyObject_GetAttr(entry, s_exact);
        if (ex == NULL)
            return -1;
        int truth = PyObject_IsTrue(ex);
        Py_DECREF(ex);
        if (truth < 0 || PyDict_SetItem(truth ? exact : check, k, entry) < 0)
            return -1;
    }
    return 0;
}

static PyObject *candidates(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (ERROR_ == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "router.matching._plan is not configured");
        return NULL;
    }
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "candidates() takes eq, has, scan, event, meta, matched, errors");
        return NULL;
    }
    PyObject *eq = args[0], *has = args[1], *scan = args[2], *event = args[3], *meta = args[4];
    PyObject *matched = args[5], *errors = args[6];
    if (!PyDict_Check(eq) || !PyDict_Check(has) || !PyDict_Check(scan) || !PyList_Check(matched) ||
        !PyList_Check(errors)) {
        PyErr_SetString(PyExc_TypeError, "candidates() takes three dicts, event, meta and two lists");
        return NULL;
    }
    PyObject *exact = PyDict_New(), *check = PyDict_Copy(scan), *rest = PyList_New(0);
    if (exact == NULL || check == NULL || rest == NULL)
        goto fail;
    int is_dict = PyDict_CheckExact(event);
    Py_ssize_t pos = 0;
    PyObject *path, *slot;
    while (PyDict_Next(eq, &pos, &path, &slot)) {
        if (!PyTuple_Check(slot) || PyTuple_GET_SIZE(slot) != 2) {
            PyErr_SetString(PyExc_TypeError, "an eq slot is (field, table)");
            goto fail;
        }
        PyObject *field = PyTuple_GET_ITEM(slot, 0), *table = PyTuple_GET_ITEM(slot, 1), *v;
        if (field != Py_None && is_dict) {
            v = PyDict_GetItemWithError(event, field);
            if (v == NULL) {
                if (PyErr_Occurred())
                    goto fail;
                v = ERROR_;
            }
            Py_INCREF(v);
        } else {
            v = PyObject_CallFunctionObjArgs(resolve, path, event, meta, NULL);
            if (v == NULL)
                goto fail;
        }
        if (v == ERROR_) {
            Py_DECREF(v);
            continue;
        }
        PyTypeObject *t = Py_TYPE(v);
        PyObject *k;
        if (t == &PyUnicode_Type || t == &PyLong_Type || t == &PyFloat_Type) {
            k = v;
        } else {
            k = PyObject_CallOneArg(key_of, v);
            Py_DECREF(v);
            if (k == NULL)
                goto fail;
        }
        if (!PyDict_Check(table)) {
            Py_DECREF(k);
            PyErr_SetString(PyExc_TypeError, "an eq table is a dict");
            goto fail;
        }
        PyObject *hit = PyDict_GetItemWithError(table, k);
        Py_DECREF(k);
        if (hit == NULL) {
            if (PyErr_Occurred())
                goto fail;
            continue;
        }
        if (PyDict_Check(hit) && PyDict_GET_SIZE(hit) && file_hits(hit, exact, check) < 0)
            goto fail;
    }
    pos = 0;
    PyObject *entries;
    while (PyDict_Next(has, &pos, &path, &entries)) {
        PyObject *r = PyObject_CallFunctionObjArgs(has_path, path, event, NULL);
        if (r == NULL)
            goto fail;
        int yes = r == Py_True;
        Py_DECREF(r);
        if (yes && PyDict_Update(check, entries) < 0)
            goto fail;
    }
    pos = 0;
    PyObject *k, *entry;
    while (PyDict_Next(exact, &pos, &k, &entry)) /* exact entries are filed only under their anchors */
        if (PyList_Append(matched, entry) < 0)
            goto fail;
    pos = 0;
    while (PyDict_Next(check, &pos, &k, &entry)) {
        PyObject *native = PyObject_GetAttr(entry, s_native);  /* decide as data; None: no decide either */
        if (native == NULL)
            goto fail;
        if (native == Py_None) {  /* a filter for the CEL engine */
            Py_DECREF(native);
            if (PyList_Append(rest, entry) < 0)
                goto fail;
            continue;
        }
        PyObject *outcome = evaluate(native, event, meta);
        Py_DECREF(native);
        if (outcome == NULL)
            goto fail;
        int rc = 0;
        if (outcome == Py_True) {
            rc = PyList_Append(matched, entry);
        } else if (outcome == ERROR_) {
            PyObject *pair = PyTuple_Pack(2, entry, overload);
            rc = pair == NULL ? -1 : PyList_Append(errors, pair);
            Py_XDECREF(pair);
        }
        Py_DECREF(outcome);
        if (rc < 0)
            goto fail;
    }
    Py_DECREF(exact);
    Py_DECREF(check);
    return rest;
fail:
    Py_XDECREF(exact);
    Py_XDECREF(check);
    Py_XDECREF(rest);
    return NULL;
}

/* configure(ERROR, resolve, key, has_path, message): predicates.py's error value and helpers, and the
 * message of a decided filter's error. */
static PyObject *configure(PyObject *module, PyObject *args) {
    PyObject *err, *res, *key, *has, *msg;
    if (!PyArg_ParseTuple(args, "OOOOU", &err, &res, &key, &has, &msg))
        return NULL;
    if (!PyCallable_Check(res) || !PyCallable_Check(key) || !PyCallable_Check(has)) {
        PyErr_SetString(PyExc_TypeError, "resolve, key and has_path must be callable");
        return NULL;
    }
    Py_XSETREF(ERROR_, Py_NewRef(err));
    Py_XSETREF(resolve, Py_NewRef(res));
    Py_XSETREF(key_of, Py_NewRef(key));
    Py_XSETREF(has_path, Py_NewRef(has));
    Py_XSETREF(overload, Py_NewRef(msg));
    Py_RETURN_NONE;
}

/* decide(native, event, meta): the C evaluation of a filter encoded by predicates.native_tree (for tests). */
static PyObject *decide(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (ERROR_ == NULL || nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "decide(native, event, meta) after configure()");
        return NULL;
    }
    return evaluate(args[0], args[1], args[2]);
}

static PyMethodDef methods[] = {
    {"decide", (PyCFunction)(void (*)(void))decide, METH_FASTCALL, "decide(native, event, meta) -> True, False or ERROR."},
    {"candidates", (PyCFunction)(void (*)(void))candidates, METH_FASTCALL,
     "candidates(eq, has, scan, event, meta, matched, errors) -> entries left for CEL."},
    {"configure", configure, METH_VARARGS, "configure(ERROR, resolve, key, has_path, message)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_plan", NULL, -1, methods};

PyMODINIT_FUNC PyInit__plan(void) {
    s_exact = PyUnicode_InternFromString("exact");
    s_native = PyUnicode_InternFromString("native");
    if (s_exact == NULL || s_native == NULL)
        return NULL;
    return PyModule_Create(&module_def);
}
