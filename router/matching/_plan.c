/* The walk of one (tenant, type) plan for an event, in C: index.py's `candidates_py` line for line, which
 * stays as its reference and fallback (tests/unit/test_native.py holds the two side by side). The
 * predicates themselves (decide closures, resolve, has_path, key) stay Python and are called from here;
 * what moves to C is the loop around them, the largest part of matching in py-spy.
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
static PyObject *s_exact = NULL, *s_decide = NULL, *overload = NULL;

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
        PyObject *decide = PyObject_GetAttr(entry, s_decide);
        if (decide == NULL)
            goto fail;
        if (decide == Py_None) {
            Py_DECREF(decide);
            if (PyList_Append(rest, entry) < 0)
                goto fail;
            continue;
        }
        PyObject *outcome = PyObject_CallFunctionObjArgs(decide, event, meta, NULL);
        Py_DECREF(decide);
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

static PyMethodDef methods[] = {
    {"candidates", (PyCFunction)(void (*)(void))candidates, METH_FASTCALL,
     "candidates(eq, has, scan, event, meta, matched, errors) -> entries left for CEL."},
    {"configure", configure, METH_VARARGS, "configure(ERROR, resolve, key, has_path, message)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_plan", NULL, -1, methods};

PyMODINIT_FUNC PyInit__plan(void) {
    s_exact = PyUnicode_InternFromString("exact");
    s_decide = PyUnicode_InternFromString("decide");
    if (s_exact == NULL || s_decide == NULL)
        return NULL;
    return PyModule_Create(&module_def);
}
