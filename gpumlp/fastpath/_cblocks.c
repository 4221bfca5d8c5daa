/* gpumlp.fastpath._cblocks: blocks of full-batch gradient-descent epochs for a
 * one-hidden-layer network on the CPU, in C (issue 23).
 *
 * The Python side is gpumlp/fastpath/cblocks.py, which documents the
 * contract; this module only checks the buffers it is given and runs the
 * loop with the GIL released. The kernel (_cblocks_kernel.h) is compiled
 * once per dtype and instruction set: AVX-512, AVX2+FMA and baseline x86-64
 * with gcc on x86-64 (picked at run time by what the CPU supports, or by
 * the caller), the baseline alone elsewhere.
 *
 * Buffers come through the buffer protocol (NumPy arrays, C-contiguous), so
 * the module needs no NumPy headers to build.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Two threads split the rows of an epoch where there are at least
 * PARTS_MIN_ROWS of them and two cores (POSIX threads; elsewhere one thread
 * computes both parts, with the same result). */
#if defined(_WIN32)
#define GPUMLP_THREADS 0
#else
#define GPUMLP_THREADS 1
#include <pthread.h>
#include <unistd.h>
#endif
#define PARTS_MIN_ROWS 4096

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define GPUMLP_X86_VARIANTS 1
#else
#define GPUMLP_X86_VARIANTS 0
#endif

/* The kernel, once per dtype and instruction set. VLANES: elements per 64
 * bytes, the padding of the hidden units (a cache line; the same for every
 * instruction set, so that all lay the parameters out alike); VECBYTES and
 * VECLANES: the instruction set's vector, in bytes and elements. */
#define REAL float
#define UINT uint32_t
#define REAL_IS_DOUBLE 0
#define VLANES 16
#define NAME(x) x##_f32_baseline
#define VECBYTES 16
#define VECLANES 4
#include "_cblocks_kernel.h"
#undef VECBYTES
#undef VECLANES
#undef NAME
#undef REAL
#undef UINT
#undef REAL_IS_DOUBLE
#undef VLANES

#define REAL double
#define UINT uint64_t
#define REAL_IS_DOUBLE 1
#define VLANES 8
#define NAME(x) x##_f64_baseline
#define VECBYTES 16
#define VECLANES 2
#include "_cblocks_kernel.h"
#undef VECBYTES
#undef VECLANES
#undef NAME
#undef REAL
#undef UINT
#undef REAL_IS_DOUBLE
#undef VLANES

#if GPUMLP_X86_VARIANTS
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define REAL float
#define UINT uint32_t
#define REAL_IS_DOUBLE 0
#define VLANES 16
#define NAME(x) x##_f32_avx2
#define VECBYTES 32
#define VECLANES 8
#include "_cblocks_kernel.h"
#undef VECBYTES
#undef VECLANES
#undef NAME
#undef REAL
#undef UINT
#undef REAL_IS_DOUBLE
#undef VLANES
#define REAL double
#define UINT uint64_t
#define REAL_IS_DOUBLE 1
#define VLANES 8
#define NAME(x) x##_f64_avx2
#define VECBYTES 32
#define VECLANES 4
#include "_cblocks_kernel.h"
#undef VECBYTES
#undef VECLANES
#undef NAME
#undef REAL
#undef UINT
#undef REAL_IS_DOUBLE
#undef VLANES
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma,prefer-vector-width=512")
#define REAL float
#define UINT uint32_t
#define REAL_IS_DOUBLE 0
#define VLANES 16
#define NAME(x) x##_f32_avx512
#define VECBYTES 64
#define VECLANES 16
#include "_cblocks_kernel.h"
#undef VECBYTES
#undef VECLANES
#undef NAME
#undef REAL
#undef UINT
#undef REAL_IS_DOUBLE
#undef VLANES
#define REAL double
#define UINT uint64_t
#define REAL_IS_DOUBLE 1
#define VLANES 8
#define NAME(x) x##_f64_avx512
#define VECBYTES 64
#define VECLANES 8
#include "_cblocks_kernel.h"
#undef VECBYTES
#undef VECLANES
#undef NAME
#undef REAL
#undef UINT
#undef REAL_IS_DOUBLE
#undef VLANES
#pragma GCC pop_options
#endif

typedef int (*block_f32)(const float *, const float *, Py_ssize_t, int, int, int,
                         const float *, float *, float *, float *, const float *, int, int,
                         double, double, double, double);
typedef int (*block_f64)(const double *, const double *, Py_ssize_t, int, int, int,
                         const double *, double *, double *, double *, const double *, int,
                         int, double, double, double, double);

/* The instruction sets, widest first. */
static const struct {
    const char *name;
    block_f32 f32;
    block_f64 f64;
} ISAS[] = {
#if GPUMLP_X86_VARIANTS
    {"avx512", run_block_f32_avx512, run_block_f64_avx512},
    {"avx2", run_block_f32_avx2, run_block_f64_avx2},
#endif
    {"baseline", run_block_f32_baseline, run_block_f64_baseline},
};
enum { N_ISAS = sizeof ISAS / sizeof ISAS[0] };

static int supported(const char *name)
{
#if GPUMLP_X86_VARIANTS
    __builtin_cpu_init();
    if (strcmp(name, "avx512") == 0)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
            && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw")
            && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (strcmp(name, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return strcmp(name, "baseline") == 0;
}

static PyObject *isas(PyObject *self, PyObject *unused)
{
    PyObject *names = PyList_New(0);
    if (names == NULL)
        return NULL;
    for (int i = 0; i < N_ISAS; i++) {
        if (!supported(ISAS[i].name))
            continue;
        PyObject *name = PyUnicode_FromString(ISAS[i].name);
        if (name == NULL || PyList_Append(names, name) < 0) {
            Py_XDECREF(name);
            Py_DECREF(names);
            return NULL;
        }
        Py_DECREF(name);
    }
    PyObject *result = PyList_AsTuple(names);
    Py_DECREF(names);
    return result;
}

/* Take a C-contiguous buffer of `count` items of the format `format`. */
static int take(PyObject *obj, Py_buffer *view, int writable, char format, Py_ssize_t count,
                const char *what)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    const char *got = view->format == NULL ? "B" : view->format;
    if (got[0] == '<' || got[0] == '=' || got[0] == '@')
        got++;
    if (got[0] != format || got[1] != '\0' || view->len != count * view->itemsize) {
        PyErr_Format(PyExc_ValueError,
                     "_cblocks.run_block: %s must hold %zd items of format '%c', got %zd "
                     "bytes of format '%s'", what, count, format, view->len, view->format);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *run_block(PyObject *self, PyObject *args)
{
    const char *isa;
    PyObject *objects[6];
    Py_ssize_t n;
    int f, h, k, epochs, activation;
    double l2_scale, penalty_scale, scale, entries;
    if (!PyArg_ParseTuple(args, "sOOOOOOniiiiidddd:run_block", &isa, &objects[0],
                          &objects[1], &objects[2], &objects[3], &objects[4], &objects[5],
                          &n, &f, &h, &k, &epochs, &activation, &l2_scale, &penalty_scale,
                          &scale, &entries))
        return NULL;
    int which = -1;
    for (int i = 0; i < N_ISAS; i++)
        if (strcmp(isa, ISAS[i].name) == 0)
            which = i;
    if (which < 0 || !supported(isa))
        return PyErr_Format(PyExc_ValueError,
                            "_cblocks.run_block: instruction set '%s' is not available "
                            "on this CPU", isa);
    if (n < 1 || f < 1 || h < 1 || k < 1 || epochs < 1 || activation < 0 || activation > 3)
        return PyErr_Format(PyExc_ValueError, "_cblocks.run_block: bad sizes or activation");
    Py_buffer views[6];
    Py_ssize_t n_params = (Py_ssize_t)f * h + (Py_ssize_t)h * k + h + k;
    /* X, y, start, slots, scalars (loss and flag per epoch), rates */
    const Py_ssize_t counts[6] = {n * f, n * k, n_params, epochs * n_params, 2 * epochs,
                                  epochs};
    const int writable[6] = {0, 0, 0, 1, 1, 0};
    const char *names[6] = {"X", "y", "start", "slots", "scalars", "rates"};
    char format = 0;
    int taken = 0, failed = 0;
    for (int i = 0; i < 6 && !failed; i++) {
        if (i == 0) {
            if (PyObject_GetBuffer(objects[0], &views[0], PyBUF_FORMAT) < 0)
                return NULL;
            format = views[0].format == NULL ? 'B' : views[0].format[0];
            if (format == '<' || format == '=' || format == '@')
                format = views[0].format[1];
            PyBuffer_Release(&views[0]);
            if (format != 'f' && format != 'd')
                return PyErr_Format(PyExc_ValueError,
                                    "_cblocks.run_block: X must be float32 or float64");
        }
        if (take(objects[i], &views[i], writable[i], format, counts[i], names[i]) < 0)
            failed = 1;
        else
            taken++;
    }
    int status = 0;
    if (!failed) {
        Py_BEGIN_ALLOW_THREADS
        if (format == 'f') {
            float *scalars = views[4].buf;
            status = ISAS[which].f32(views[0].buf, views[1].buf, n, f, h, k, views[2].buf,
                                     views[3].buf, scalars, scalars + epochs, views[5].buf,
                                     epochs, activation, l2_scale, penalty_scale, scale,
                                     entries);
        } else {
            double *scalars = views[4].buf;
            status = ISAS[which].f64(views[0].buf, views[1].buf, n, f, h, k, views[2].buf,
                                     views[3].buf, scalars, scalars + epochs, views[5].buf,
                                     epochs, activation, l2_scale, penalty_scale, scale,
                                     entries);
        }
        Py_END_ALLOW_THREADS
    }
    for (int i = 0; i < taken; i++)
        PyBuffer_Release(&views[i]);
    if (failed)
        return NULL;
    if (status < 0)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"isas", isas, METH_NOARGS,
     "isas() -> tuple of str: the instruction sets this CPU runs, widest first."},
    {"run_block", run_block, METH_VARARGS,
     "run_block(isa, X, y, start, slots, scalars, rates, n, f, h, k, epochs, activation, "
     "l2_scale, penalty_scale, scale, entries) -> None; see gpumlp/fastpath/cblocks.py."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cblocks",
    "Blocks of full-batch gradient-descent epochs in C; see gpumlp.fastpath.cblocks.", -1,
    methods,
};

PyMODINIT_FUNC PyInit__cblocks(void)
{
    return PyModule_Create(&module);
}
