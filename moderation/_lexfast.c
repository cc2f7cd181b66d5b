/* The lexicon path's per-character loops in C: the normaliser, the pre-check gates, the pinyin windows.
 *
 * Optional: moderation/fastpath.py imports this module when it was built and otherwise the numpy path runs
 * (same results; tests/unit/test_moderation_compiled.py compares the two on every text it has). Every function
 * here is a loop-for-loop twin of a numpy function, named beside it, and reads only the lookup tables that
 * function reads, handed over as buffers:
 *
 *   normalize     moderation.normalize._normalize_vector (fold, flags, digit runs, deletions, repeats)
 *   gates         moderation.lexicon._Gate.candidates / sparse_candidates (+ _merge_runs when windows=1),
 *                 several gates in one pass over the text
 *   latin_windows moderation.normalize._latin_windows_np
 *   pinyin_view   the pieces of moderation.normalize.pinyin_view (text, bounds, src, latin)
 *   compact       the string moderation.lexicon._find_in_runs searches, and where its characters came from
 *
 * No state but the normaliser's tables (set once by set_norm_tables); no allocation that outlives a call but
 * the returned objects. Plain C against the stable CPython API: no numpy headers, no Cython, so a C compiler
 * is the only build requirement.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Character flags of the folded character; the values are moderation.normalize._F_*. */
#define F_CJK 1
#define F_SEP 2
#define F_HARD 4
#define F_CN 8
#define F_DIGIT 16
#define F_EXP 32
#define NCP 0x110000

static Py_buffer t_fold, t_flags, t_cn, t_runsep, t_dupok;
static int tables_set = 0;

static int get_table(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0) return -1;
    if (view->len != (Py_ssize_t)NCP * itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd bytes, got %zd", name, (Py_ssize_t)NCP * itemsize,
                     view->len);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static void release_tables(void) {
    if (!tables_set) return;
    PyBuffer_Release(&t_fold);
    PyBuffer_Release(&t_flags);
    PyBuffer_Release(&t_cn);
    PyBuffer_Release(&t_runsep);
    PyBuffer_Release(&t_dupok);
    tables_set = 0;
}

/* set_norm_tables(fold: uint32[NCP], flags: uint8[NCP], cn_to_ascii: uint32[NCP], run_sep: bool[NCP],
 *                 dup_ok: bool[NCP]) -> None.  The buffers are held (and so kept alive) until replaced. */
static PyObject *set_norm_tables(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer b[5];
    static const char *names[5] = {"fold", "flags", "cn_to_ascii", "run_sep", "dup_ok"};
    static const Py_ssize_t sizes[5] = {4, 1, 4, 1, 1};
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "set_norm_tables takes 5 buffers");
        return NULL;
    }
    for (int i = 0; i < 5; i++) {
        if (get_table(args[i], &b[i], sizes[i], names[i]) < 0) {
            while (i--) PyBuffer_Release(&b[i]);
            return NULL;
        }
    }
    release_tables();
    t_fold = b[0];
    t_flags = b[1];
    t_cn = b[2];
    t_runsep = b[3];
    t_dupok = b[4];
    tables_set = 1;
    Py_RETURN_NONE;
}

static inline int is_lower(uint32_t c) { return c >= 97 && c <= 122; }

/* normalize(text) -> None | (normalised text, code points as uint32 bytes, segments or None).
 *
 * None: the text holds an expanding character (the reference path handles it, as for _normalize_vector); a
 * lone surrogate folds like any other character (the fold table maps it to U+FFFD). segments: None for the
 * identity map, else (norm_start, orig_start, orig_end) as three int64 byte strings, one entry per maximal run
 * of kept characters (all linear). The text returned is the input object itself when nothing changed. */
static PyObject *normalize(PyObject *self, PyObject *text) {
    if (!tables_set) {
        PyErr_SetString(PyExc_RuntimeError, "set_norm_tables was not called");
        return NULL;
    }
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "normalize expects a str");
        return NULL;
    }
    const uint32_t *fold = (const uint32_t *)t_fold.buf, *cn_ascii = (const uint32_t *)t_cn.buf;
    const uint8_t *flags = (const uint8_t *)t_flags.buf, *run_sep = (const uint8_t *)t_runsep.buf;
    const uint8_t *dup_ok = (const uint8_t *)t_dupok.buf;
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    PyObject *result = NULL, *out_text = NULL, *cps_bytes = NULL, *segs = NULL;
    uint32_t *m = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(uint32_t));
    uint8_t *c = PyMem_Malloc((size_t)(n ? n : 1));
    uint8_t *del = PyMem_Calloc((size_t)(n ? n : 1), 1); /* deleted by step 3a */
    if (!m || !c || !del) {
        PyErr_NoMemory();
        goto done;
    }
    uint8_t present = 0;
    int changed = 0;
    /* Step 1: per-character fold and flags (_normalize_vector: m = fold[arr], c = flags[m]), one loop per
     * storage width of the str. Lone surrogates fold to U+FFFD, so the text built from m encodes as UTF-8. */
#define FOLD_LOOP(T)                                                                                               \
    do {                                                                                                         \
        const T *d = (const T *)data;                                                                            \
        for (Py_ssize_t i = 0; i < n; i++) {                                                                     \
            uint32_t cp = d[i], f = fold[cp];                                                                    \
            changed |= f != cp;                                                                                  \
            m[i] = f;                                                                                            \
            present |= c[i] = flags[f];                                                                          \
        }                                                                                                        \
    } while (0)
    if (kind == PyUnicode_1BYTE_KIND)
        FOLD_LOOP(Py_UCS1);
    else if (kind == PyUnicode_2BYTE_KIND)
        FOLD_LOOP(Py_UCS2);
    else
        FOLD_LOOP(Py_UCS4);
#undef FOLD_LOOP
    if (present & F_EXP) {
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }
    /* Step 2: Chinese numerals inside runs of >= 5 digit-like characters, consecutive or one run separator
     * apart. A run is flushed when the next digit does not link to it. */
    if (present & F_CN) {
        Py_ssize_t first = -1, last = -1, count = 0;
        int has_cn = 0;
        for (Py_ssize_t i = 0; i <= n; i++) {
            int is_digit = i < n && (c[i] & F_DIGIT);
            if (i < n && !is_digit) continue;
            int link = is_digit && count && (i - last == 1 || (i - last == 2 && run_sep[m[last + 1]]));
            if (!link && count) {
                if (count >= 5 && has_cn) {
                    for (Py_ssize_t j = first; j <= last; j++) {
                        if (c[j] & F_CN) {
                            m[j] = cn_ascii[m[j]];
                            c[j] = flags[m[j]];
                            changed = 1;
                        }
                    }
                }
                count = 0;
                has_cn = 0;
            }
            if (!is_digit) break; /* i == n */
            if (!count) first = i;
            last = i;
            count++;
            has_cn |= (c[i] & F_CN) != 0;
        }
    }
    Py_ssize_t ndel = 0;
    /* Step 3a: maximal separator runs; deleted when <= 3 long between two word characters one of which is an
     * ideograph, or between two isolated Latin letters with no '@' in the run; delete markers always. */
    if (present & F_SEP) {
        Py_ssize_t i = 0;
        while (i < n) {
            if (!(c[i] & F_SEP)) {
                i++;
                continue;
            }
            Py_ssize_t s = i, e = i;
            int at = 0;
            while (e < n && (c[e] & F_SEP)) {
                at |= m[e] == '@';
                e++;
            }
            int ok = s >= 1 && e < n && e - s <= 3;
            if (ok) {
                uint8_t cp = c[s - 1], cn = c[e];
                const uint8_t nonword = F_SEP | F_HARD;
                int between = !(cp & nonword) && !(cn & nonword) && ((cp | cn) & F_CJK);
                uint32_t mp = m[s - 1], mn = m[e];
                int isolated = is_lower(mp) && (s - 1 == 0 || !is_lower(m[s - 2])) && is_lower(mn) &&
                               (e + 1 >= n || !is_lower(m[e + 1])) && !at;
                ok = between || isolated;
            }
            for (Py_ssize_t j = s; j < e; j++) {
                if (ok || m[j] == 0) {
                    del[j] = 1;
                    ndel++;
                }
            }
            i = e;
        }
    }
    /* Step 3b, fused with the output: in the sequence of characters left by 3a, a maximal run of one repeated
     * ideograph keeps its first character only, except an ordinary doubled word (run of two, neighbours in the
     * text, _DUP_OK), whose second character is written when the run ends. Kept characters move down in m (a
     * write never passes the character being read), and a segment starts wherever the original index of a
     * written character does not follow the previous one's. */
    {
        int64_t *sn = PyMem_Malloc((size_t)(n + 1) * 3 * sizeof(int64_t));
        if (!sn) {
            PyErr_NoMemory();
            goto done;
        }
        int64_t *so = sn + (n + 1), *se = sn + 2 * (n + 1);
        Py_ssize_t nk = 0, nseg = 0, last = -2, first = -1, second = -1, count = 0;
        uint32_t run_char = 0;
#define EMIT(j, value)                                                                                             \
    do {                                                                                                         \
        if (last != (j) - 1) {                                                                                   \
            sn[nseg] = nk;                                                                                       \
            so[nseg++] = (j);                                                                                    \
        }                                                                                                        \
        se[nseg - 1] = (j) + 1;                                                                                  \
        m[nk++] = (value);                                                                                       \
        last = (j);                                                                                              \
    } while (0)
        for (Py_ssize_t i = 0; i <= n; i++) {
            if (i < n && del[i]) continue;
            if (i < n && count && m[i] == run_char && (c[i] & F_CJK)) {
                if (++count == 2) second = i;
                ndel++; /* a repeat: deleted, unless the run turns out an ordinary doubled word */
                continue;
            }
            if (count == 2 && second - first == 1 && dup_ok[run_char]) {
                EMIT(second, run_char);
                ndel--;
            }
            if (i == n) break;
            uint32_t value = m[i];
            EMIT(i, value);
            run_char = value;
            first = i;
            count = 1;
        }
#undef EMIT
        if (!ndel) {
            segs = Py_None;
            Py_INCREF(segs);
        } else {
            PyObject *b0 = PyBytes_FromStringAndSize((const char *)sn, nseg * 8);
            PyObject *b1 = PyBytes_FromStringAndSize((const char *)so, nseg * 8);
            PyObject *b2 = PyBytes_FromStringAndSize((const char *)se, nseg * 8);
            segs = b0 && b1 && b2 ? PyTuple_Pack(3, b0, b1, b2) : NULL;
            Py_XDECREF(b0);
            Py_XDECREF(b1);
            Py_XDECREF(b2);
        }
        PyMem_Free(sn);
        if (!segs) goto done;
        cps_bytes = PyBytes_FromStringAndSize((const char *)m, nk * (Py_ssize_t)sizeof(uint32_t));
        if (!cps_bytes) goto done;
        if (!ndel && !changed) {
            out_text = text;
            Py_INCREF(out_text);
        } else if (!(out_text = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, m, nk))) {
            goto done;
        }
    }
    result = PyTuple_Pack(3, out_text, cps_bytes, segs);
done:
    Py_XDECREF(out_text);
    Py_XDECREF(cps_bytes);
    Py_XDECREF(segs);
    PyMem_Free(m);
    PyMem_Free(c);
    PyMem_Free(del);
    return result;
}

/* A growable int64 output. */
typedef struct {
    int64_t *a;
    Py_ssize_t n, cap;
} vec64;

static int vpush(vec64 *v, int64_t x) {
    if (v->n == v->cap) {
        Py_ssize_t cap = v->cap ? v->cap * 2 : 256;
        int64_t *a = PyMem_Realloc(v->a, (size_t)cap * sizeof(int64_t));
        if (!a) {
            PyErr_NoMemory();
            return -1;
        }
        v->a = a;
        v->cap = cap;
    }
    v->a[v->n++] = x;
    return 0;
}

static PyObject *vbytes(vec64 *v) { return PyBytes_FromStringAndSize((const char *)v->a, v->n * 8); }

static int buf(PyObject *obj, Py_buffer *view) { return PyObject_GetBuffer(obj, view, PyBUF_SIMPLE); }

#define TRI_MUL 0x9E3779B97F4A7C15ULL
#define MAX_GATES 4

/* One pre-check (_Gate) and what to compute with it. */
typedef struct {
    unsigned long shift;
    unsigned long long k, bmask, tshift, qshift;
    int windows;
    Py_buffer vf, vb, vt, vq, vbits; /* first (absent: .obj NULL), bi, tri, quad, bi's any-flag bits */
    Py_ssize_t nfirst;
    vec64 oa, ob;
} gate_t;

static void gate_release(gate_t *g) {
    if (g->vf.obj) PyBuffer_Release(&g->vf);
    if (g->vb.obj) PyBuffer_Release(&g->vb);
    if (g->vt.obj) PyBuffer_Release(&g->vt);
    if (g->vq.obj) PyBuffer_Release(&g->vq);
    if (g->vbits.obj) PyBuffer_Release(&g->vbits);
    PyMem_Free(g->oa.a);
    PyMem_Free(g->ob.a);
}

/* spec = (shift, first | None, windows, k, bi, bmask, tribits, tshift, quad, qshift, bits): bits has bit j set
 * (little-endian bit order) where bi[j] != 0; tribits is the trigram table as two such bit planes, flag 1 then
 * flag 2, each 2**(64 - tshift) bits (tables of at most 2**40 entries: shifts from 24) */
static int gate_parse(PyObject *spec, gate_t *g) {
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 11) {
        PyErr_SetString(PyExc_TypeError, "gate spec: an 11-tuple");
        return -1;
    }
    PyObject *first = PyTuple_GET_ITEM(spec, 1);
    g->shift = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(spec, 0));
    g->windows = PyObject_IsTrue(PyTuple_GET_ITEM(spec, 2));
    g->k = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(spec, 3));
    g->bmask = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(spec, 5));
    g->tshift = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(spec, 7));
    g->qshift = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(spec, 9));
    if (PyErr_Occurred()) return -1;
    if ((first != Py_None && buf(first, &g->vf) < 0) || buf(PyTuple_GET_ITEM(spec, 4), &g->vb) < 0 ||
        buf(PyTuple_GET_ITEM(spec, 6), &g->vt) < 0 || buf(PyTuple_GET_ITEM(spec, 8), &g->vq) < 0 ||
        buf(PyTuple_GET_ITEM(spec, 10), &g->vbits) < 0)
        return -1;
    g->nfirst = g->vf.obj ? g->vf.len : 0;
    /* Every index the loop computes must fall inside its table: bi by the mask, tri/quad by the shift. */
    if (g->shift > 16 || g->k == 0 || g->k > 0x10000 || g->tshift < 24 || g->tshift >= 64 || g->qshift < 24 ||
        g->qshift >= 64 || g->vb.len <= (Py_ssize_t)g->bmask || g->vbits.len * 8 <= (Py_ssize_t)g->bmask ||
        g->vt.len * 8 != (Py_ssize_t)(2ULL << (64 - g->tshift)) || g->vq.len < (Py_ssize_t)(1ULL << (64 - g->qshift))) {
        PyErr_SetString(PyExc_ValueError, "gate spec: table sizes do not match");
        return -1;
    }
    return 0;
}

/* One gate over the looked-up codes (n of them, then four zeros): candidates or merged windows. The tables
 * and parameters are copied into locals so that the loop keeps them in registers. */
static int gate_run(gate_t *q, const uint32_t *codes, Py_ssize_t n) {
    const unsigned shift = (unsigned)q->shift;
    const uint32_t k = (uint32_t)q->k;
    const uint64_t k64 = q->k, bmask = q->bmask;
    const unsigned tshift = (unsigned)q->tshift, qshift = (unsigned)q->qshift;
    const uint8_t *first = q->vf.obj ? (const uint8_t *)q->vf.buf : NULL;
    const uint8_t *bi = (const uint8_t *)q->vb.buf, *tri1 = (const uint8_t *)q->vt.buf;
    const uint8_t *tri2 = tri1 + (q->vt.len / 2); /* the second bit plane */
    const uint8_t *quad = (const uint8_t *)q->vq.buf, *bits = (const uint8_t *)q->vbits.buf;
    const Py_ssize_t nfirst = q->nfirst;
    const int windows = q->windows;
    int64_t ws = -1, we = -1; /* the window being merged */
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t c0 = (codes[i] >> shift) & 0xFFFF;
        if (first && (c0 >= nfirst || !first[c0])) continue;
        uint32_t c1 = (codes[i + 1] >> shift) & 0xFFFF;
        uint32_t y = c0 * k + c1, slot = (uint32_t)(y & bmask);
        if (!((bits[slot >> 3] >> (slot & 7)) & 1)) continue;
        uint8_t f = bi[slot];
        int64_t longest = (f & 2) ? 2 : ((f & 4) ? 1 : 0);
        if (f & 1) {
            uint64_t p3 = (uint64_t)y * k64 + ((codes[i + 2] >> shift) & 0xFFFF);
            uint64_t h3 = (p3 * TRI_MUL) >> tshift;
            if ((tri1[h3 >> 3] >> (h3 & 7)) & 1) longest = 3;
            if ((tri2[h3 >> 3] >> (h3 & 7)) & 1) {
                uint64_t p4 = p3 * k64 + ((codes[i + 3] >> shift) & 0xFFFF);
                uint8_t l4 = quad[(p4 * TRI_MUL) >> qshift];
                if (l4 > longest) longest = l4;
            }
        }
        if (!longest) continue;
        if (!windows) {
            if (vpush(&q->oa, i) < 0 || vpush(&q->ob, longest) < 0) return -1;
            continue;
        }
        int64_t end = i + longest < n ? i + longest : n;
        if (ws >= 0 && i <= we) {
            if (end > we) we = end;
        } else {
            if (ws >= 0 && (vpush(&q->oa, ws) < 0 || vpush(&q->ob, we) < 0)) return -1;
            ws = i;
            we = end;
        }
    }
    if (windows && ws >= 0 && (vpush(&q->oa, ws) < 0 || vpush(&q->ob, we) < 0)) return -1;
    return 0;
}

/* gates(cps, lut, specs) -> [(a, b), ...], one pass over the text for every pre-check in specs.
 *
 * For each spec the characters are codes = (lut[cps] >> shift) & 0xFFFF (a barrier 0 past the end). With
 * first=None every position whose bigram flags are set is refined (_Gate.candidates); with first, only
 * positions whose code starts a pattern (_Gate.sparse_candidates). windows=0: (positions, longest pattern)
 * of the candidates; windows=1: the merged windows [start, end) (_merge_runs of [pos, min(pos + longest,
 * n))). Both int64 byte strings. */
static PyObject *gates(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyTuple_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "gates(cps, lut, specs: tuple)");
        return NULL;
    }
    Py_ssize_t ng = PyTuple_GET_SIZE(args[2]);
    if (ng < 1 || ng > MAX_GATES) {
        PyErr_SetString(PyExc_ValueError, "gates: 1 to 4 specs");
        return NULL;
    }
    gate_t g[MAX_GATES];
    memset(g, 0, sizeof(g));
    Py_buffer vc = {0}, vl = {0};
    PyObject *result = NULL;
    uint32_t *codes = NULL;
    for (Py_ssize_t j = 0; j < ng; j++)
        if (gate_parse(PyTuple_GET_ITEM(args[2], j), &g[j]) < 0) goto done;
    if (buf(args[0], &vc) < 0 || buf(args[1], &vl) < 0) goto done;
    if (vl.len != NCP * 4 || vc.len % 4) {
        PyErr_SetString(PyExc_ValueError, "gates: cps must be uint32, lut one uint32 per code point");
        goto done;
    }
    const uint32_t *cps = (const uint32_t *)vc.buf, *lut = (const uint32_t *)vl.buf;
    Py_ssize_t n = vc.len / 4;
    /* The lookup once for every gate, padded with four barriers so that i + 3 never needs a bounds check. */
    codes = PyMem_Malloc((size_t)(n + 4) * sizeof(uint32_t));
    if (!codes) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) codes[i] = cps[i] < NCP ? lut[cps[i]] : 0u;
    memset(codes + n, 0, 4 * sizeof(uint32_t));
    for (Py_ssize_t j = 0; j < ng; j++)
        if (gate_run(&g[j], codes, n) < 0) goto done;
    if (!(result = PyList_New(ng))) goto done;
    for (Py_ssize_t j = 0; j < ng; j++) {
        gate_t *q = &g[j];
        PyObject *a = vbytes(&q->oa), *b = a ? vbytes(&q->ob) : NULL, *pair = b ? PyTuple_Pack(2, a, b) : NULL;
        Py_XDECREF(a);
        Py_XDECREF(b);
        if (!pair) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, j, pair);
    }
done:
    PyMem_Free(codes);
    for (Py_ssize_t j = 0; j < ng; j++) gate_release(&g[j]);
    if (vc.obj) PyBuffer_Release(&vc);
    if (vl.obj) PyBuffer_Release(&vl);
    return result;
}

/* latin_windows(cps, flags, pad) -> (starts, ends): each run of a-z widened by up to pad ideographs either
 * side (flags & F_CJK), runs that touch none dropped, overlapping or touching windows merged. */
static PyObject *latin_windows(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "latin_windows takes 3 arguments");
        return NULL;
    }
    Py_buffer vc = {0}, vf = {0};
    PyObject *result = NULL;
    vec64 oa = {0}, ob = {0};
    Py_ssize_t pad = PyLong_AsSsize_t(args[2]);
    if (pad == -1 && PyErr_Occurred()) return NULL;
    if (buf(args[0], &vc) < 0 || buf(args[1], &vf) < 0) goto done;
    if (vf.len != NCP) {
        PyErr_SetString(PyExc_ValueError, "latin_windows: flags must have one byte per code point");
        goto done;
    }
    const uint32_t *cps = (const uint32_t *)vc.buf;
    const uint8_t *flags = (const uint8_t *)vf.buf;
    Py_ssize_t n = vc.len / 4, i = 0;
#define CJK_AT(j) (cps[j] < NCP && (flags[cps[j]] & F_CJK))
    int64_t ws = -1, we = -1;
    while (i < n) {
        if (!is_lower(cps[i])) {
            i++;
            continue;
        }
        Py_ssize_t s = i, e = i;
        while (e < n && is_lower(cps[e])) e++;
        i = e;
        Py_ssize_t a = s, b = e;
        while (a > 0 && s - a < pad && CJK_AT(a - 1)) a--;
        while (b < n && b - e < pad && CJK_AT(b)) b++;
        if (a == s && b == e) continue;
        if (ws >= 0 && a <= we) {
            if (b > we) we = b;
        } else {
            if (ws >= 0 && (vpush(&oa, ws) < 0 || vpush(&ob, we) < 0)) goto done;
            ws = a;
            we = b;
        }
    }
#undef CJK_AT
    if (ws >= 0 && (vpush(&oa, ws) < 0 || vpush(&ob, we) < 0)) goto done;
    {
        PyObject *a = vbytes(&oa), *b = a ? vbytes(&ob) : NULL;
        if (a && b) result = PyTuple_Pack(2, a, b);
        Py_XDECREF(a);
        Py_XDECREF(b);
    }
done:
    PyMem_Free(oa.a);
    PyMem_Free(ob.a);
    if (vc.obj) PyBuffer_Release(&vc);
    if (vf.obj) PyBuffer_Release(&vf);
    return result;
}

/* pinyin_view(cps, starts, ends, sound_lut, syllables, flags) -> (text, bounds, src, latin)
 *
 * The pieces of moderation.normalize.pinyin_view for the windows [starts[w], ends[w]): every character as
 * its piece (an ideograph, flags & F_CJK, as its toneless syllable, syllables[sound_lut[cp] - 0xF0000], or
 * nothing when it has no reading; anything else as itself), and one space after each window. bounds (int64): where each piece
 * starts in text; src (int64): the index in cps it came from, -1 for a window's space; latin (uint8): the
 * piece is a letter a-z typed as such. */
static PyObject *pinyin_view(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6 || !PyTuple_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "pinyin_view(cps, starts, ends, sound_lut, syllables: tuple, flags)");
        return NULL;
    }
    Py_buffer vc = {0}, va = {0}, vb = {0}, vl = {0}, vf = {0};
    PyObject *result = NULL, *text = NULL, *bb = NULL, *sb = NULL, *lb = NULL;
    uint32_t *out = NULL;
    PyObject *syl = args[4];
    Py_ssize_t nsyl = PyTuple_GET_SIZE(syl);
    if (buf(args[0], &vc) < 0 || buf(args[1], &va) < 0 || buf(args[2], &vb) < 0 || buf(args[3], &vl) < 0 ||
        buf(args[5], &vf) < 0)
        goto done;
    if (vl.len != NCP * 4 || vf.len != NCP || va.len != vb.len || va.len % 8 || vc.len % 4) {
        PyErr_SetString(PyExc_ValueError, "pinyin_view: buffer sizes do not match");
        goto done;
    }
    const uint32_t *cps = (const uint32_t *)vc.buf, *lut = (const uint32_t *)vl.buf;
    const uint8_t *flags = (const uint8_t *)vf.buf;
    const int64_t *ws = (const int64_t *)va.buf, *we = (const int64_t *)vb.buf;
    Py_ssize_t n = vc.len / 4, nw = va.len / 8, npieces = 0;
    for (Py_ssize_t w = 0; w < nw; w++) {
        if (ws[w] < 0 || we[w] > n || we[w] < ws[w]) {
            PyErr_SetString(PyExc_ValueError, "pinyin_view: window outside the text");
            goto done;
        }
        npieces += we[w] - ws[w] + 1;
    }
    bb = PyBytes_FromStringAndSize(NULL, npieces * 8);
    sb = PyBytes_FromStringAndSize(NULL, npieces * 8);
    lb = PyBytes_FromStringAndSize(NULL, npieces);
    if (!bb || !sb || !lb) goto done;
    int64_t *bounds = (int64_t *)PyBytes_AS_STRING(bb), *src = (int64_t *)PyBytes_AS_STRING(sb);
    uint8_t *latin = (uint8_t *)PyBytes_AS_STRING(lb);
    Py_ssize_t cap = npieces * 2 + 16, len = 0, k = 0;
    out = PyMem_Malloc((size_t)cap * sizeof(uint32_t));
    if (!out) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t w = 0; w < nw; w++) {
        for (Py_ssize_t i = ws[w]; i <= we[w]; i++, k++) {
            uint32_t cp = i < we[w] ? cps[i] : (uint32_t)' ';
            bounds[k] = len;
            src[k] = i < we[w] ? i : -1;
            latin[k] = i < we[w] && is_lower(cp);
            PyObject *piece = NULL;
            int empty = 0; /* an ideograph without a reading: no piece text */
            if (i < we[w] && cp < NCP && lut[cp] >= 0xF0000 && (Py_ssize_t)(lut[cp] - 0xF0000) < nsyl) {
                piece = PyTuple_GET_ITEM(syl, lut[cp] - 0xF0000);
                if (!PyUnicode_Check(piece)) {
                    PyErr_SetString(PyExc_TypeError, "pinyin_view: syllables must be str");
                    goto done;
                }
            } else if (i < we[w] && cp < NCP && lut[cp] != 0) {
                PyErr_SetString(PyExc_ValueError, "pinyin_view: sound code without a syllable");
                goto done;
            } else if (i < we[w] && cp < NCP && (flags[cp] & F_CJK)) {
                empty = 1;
            }
            Py_ssize_t plen = piece ? PyUnicode_GET_LENGTH(piece) : !empty;
            if (len + plen > cap) {
                cap = (len + plen) * 2;
                uint32_t *grown = PyMem_Realloc(out, (size_t)cap * sizeof(uint32_t));
                if (!grown) {
                    PyErr_NoMemory();
                    goto done;
                }
                out = grown;
            }
            if (piece) {
                int kind = PyUnicode_KIND(piece);
                const void *data = PyUnicode_DATA(piece);
                for (Py_ssize_t j = 0; j < plen; j++) out[len++] = PyUnicode_READ(kind, data, j);
            } else if (!empty) {
                out[len++] = cp;
            }
        }
    }
    if (!(text = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, out, len))) goto done;
    result = PyTuple_Pack(4, text, bb, sb, lb);
done:
    Py_XDECREF(text);
    Py_XDECREF(bb);
    Py_XDECREF(sb);
    Py_XDECREF(lb);
    PyMem_Free(out);
    if (vc.obj) PyBuffer_Release(&vc);
    if (va.obj) PyBuffer_Release(&va);
    if (vb.obj) PyBuffer_Release(&vb);
    if (vl.obj) PyBuffer_Release(&vl);
    if (vf.obj) PyBuffer_Release(&vf);
    return result;
}

/* compact(chars, starts, ends, lut | None, shift, base, barrier) -> (text, src)
 *
 * moderation.lexicon._find_in_runs's string: the runs [starts[r], ends[r]) of chars (uint32), each followed
 * by the barrier, every character read as ((lut[c] if lut else c) >> shift) + base; src (int64) the index in
 * chars each character came from (0 for a barrier). */
static PyObject *compact(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "compact takes 7 arguments");
        return NULL;
    }
    Py_buffer vc = {0}, va = {0}, vb = {0}, vl = {0};
    PyObject *result = NULL, *text = NULL, *sb = NULL;
    uint32_t *out = NULL;
    int have_lut = args[3] != Py_None;
    unsigned long shift = PyLong_AsUnsignedLong(args[4]), base = PyLong_AsUnsignedLong(args[5]);
    unsigned long barrier = PyLong_AsUnsignedLong(args[6]);
    if (PyErr_Occurred()) return NULL;
    if (buf(args[0], &vc) < 0 || buf(args[1], &va) < 0 || buf(args[2], &vb) < 0 || (have_lut && buf(args[3], &vl) < 0))
        goto done;
    if (vc.len % 4 || va.len % 8 || va.len != vb.len || (have_lut && vl.len != NCP * 4) || shift > 31 ||
        barrier >= NCP) {
        PyErr_SetString(PyExc_ValueError, "compact: buffer sizes do not match");
        goto done;
    }
    const uint32_t *chars = (const uint32_t *)vc.buf, *lut = have_lut ? (const uint32_t *)vl.buf : NULL;
    const int64_t *rs = (const int64_t *)va.buf, *re = (const int64_t *)vb.buf;
    Py_ssize_t n = vc.len / 4, nr = va.len / 8, len = 0;
    for (Py_ssize_t r = 0; r < nr; r++) {
        if (rs[r] < 0 || re[r] > n || re[r] < rs[r]) {
            PyErr_SetString(PyExc_ValueError, "compact: run outside the text");
            goto done;
        }
        len += re[r] - rs[r] + 1;
    }
    out = PyMem_Malloc((size_t)(len ? len : 1) * sizeof(uint32_t));
    if (!out || !(sb = PyBytes_FromStringAndSize(NULL, len * 8))) {
        if (!out) PyErr_NoMemory();
        goto done;
    }
    int64_t *src = (int64_t *)PyBytes_AS_STRING(sb);
    Py_ssize_t k = 0;
    for (Py_ssize_t r = 0; r < nr; r++) {
        for (Py_ssize_t i = rs[r]; i < re[r]; i++, k++) {
            uint32_t c = chars[i];
            if (lut) c = c < NCP ? lut[c] : 0u;
            c = (c >> shift) + (uint32_t)base;
            if (c >= NCP) {
                PyErr_SetString(PyExc_ValueError, "compact: a character outside Unicode");
                goto done;
            }
            out[k] = c;
            src[k] = i;
        }
        out[k] = (uint32_t)barrier;
        src[k++] = 0;
    }
    if (!(text = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, out, len))) goto done;
    result = PyTuple_Pack(2, text, sb);
done:
    Py_XDECREF(text);
    Py_XDECREF(sb);
    PyMem_Free(out);
    if (vc.obj) PyBuffer_Release(&vc);
    if (va.obj) PyBuffer_Release(&va);
    if (vb.obj) PyBuffer_Release(&vb);
    if (vl.obj) PyBuffer_Release(&vl);
    return result;
}

static PyMethodDef methods[] = {
    {"set_norm_tables", (PyCFunction)(void (*)(void))set_norm_tables, METH_FASTCALL,
     "Hand over the normaliser's lookup tables (fold, flags, cn_to_ascii, run_sep, dup_ok)."},
    {"normalize", normalize, METH_O, "The normaliser (_normalize_vector's twin)."},
    {"gates", (PyCFunction)(void (*)(void))gates, METH_FASTCALL, "Pre-checks' candidates or windows, one pass."},
    {"latin_windows", (PyCFunction)(void (*)(void))latin_windows, METH_FASTCALL,
     "Windows of Latin runs touching ideographs (_latin_windows_np's twin)."},
    {"pinyin_view", (PyCFunction)(void (*)(void))pinyin_view, METH_FASTCALL,
     "The pieces of the pinyin view over given windows (pinyin_view's twin)."},
    {"compact", (PyCFunction)(void (*)(void))compact, METH_FASTCALL,
     "Runs of a text joined by a barrier, with where each character came from (_find_in_runs's twin)."},
    {NULL, NULL, 0, NULL},
};

static void module_free(void *unused) { release_tables(); }

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_lexfast", "Compiled loops of the lexicon path (see moderation/fastpath.py).", -1,
    methods, NULL, NULL, NULL, module_free,
};

PyMODINIT_FUNC PyInit__lexfast(void) { return PyModule_Create(&moduledef); }
