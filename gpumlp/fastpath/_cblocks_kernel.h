/* One block of full-batch gradient-descent epochs for a one-hidden-layer
 * network, in one dtype, for one instruction set: the body of _cblocks.c.
 *
 * This file is included several times by _cblocks.c, each time with
 *   REAL    float or double
 *   UINT    the unsigned integer type of REAL's width
 *   NAME(x) a name with the dtype's and the instruction set's suffix
 * and under a `#pragma GCC target(...)` that picks the instruction set, so
 * that gcc vectorises the same loops for AVX-512, AVX2+FMA and baseline
 * x86-64. Every loop that is meant to vectorise runs over the hidden units
 * (padded to a whole number of 64-byte vectors) and has no reduction across
 * its iterations: the vectoriser needs no reassociation, so no -ffast-math,
 * and NaN and infinity propagate as IEEE arithmetic says.
 *
 * Conventions (gpumlp/kernels.py): X (n, f), y (n, k), W1 (f, h), b1 (h),
 * W2 (h, k), b2 (k); the loss is the mean of squared errors over the n k
 * entries plus (alpha / 2) (2 / (n k)) (|W1|^2 + |W2|^2); its gradient with
 * respect to the output is scale (y_pred - y), scale = 2 / (n k).
 */

/* exp(v) for v <= 0, vectorisable: v = j ln 2 + r with j an integer and
 * |r| <= ln(2) / 2, exp(r) by its Taylor polynomial (to r^13 in double, r^7
 * in float: the first term left out is below 2^-54, 2^-25, of the sum), 2^j
 * from the exponent bits. v is clamped at -EXP_CLAMP (where the result is
 * below 1e-30 and 2^j still a normal number); a NaN stays NaN. */
#undef EXP_CLAMP
#if REAL_IS_DOUBLE
#define EXP_CLAMP 700.0
#else
#define EXP_CLAMP 80.0f
#endif
static inline REAL NAME(exp_nonpositive)(REAL v)
{
#if REAL_IS_DOUBLE
    const REAL shifter = 0x1.8p52;                /* adds, rounding to an integer */
    const UINT bias = 1023, shift = 52;
#else
    const REAL shifter = 0x1.8p23f;
    const UINT bias = 127, shift = 23;
#endif
    const REAL log2e = (REAL)1.4426950408889634;
    /* ln 2 in two parts: the first has trailing zero bits, so j * ln2_hi is exact. */
    const REAL ln2_hi = (REAL)0.693145751953125, ln2_lo = (REAL)1.4286068203094173e-06;
    v = v < -EXP_CLAMP ? -EXP_CLAMP : v;          /* NaN compares false: stays NaN */
    REAL jf = v * log2e + shifter;                /* the integer nearest v / ln 2 */
    UINT bits;
    __builtin_memcpy(&bits, &jf, sizeof bits);
    jf -= shifter;
    REAL r = (v - jf * ln2_hi) - jf * ln2_lo;
    REAL p;
#if REAL_IS_DOUBLE
    p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
#else
    p = 1.0f / 5040.0f;
#endif
    p = p * r + (REAL)(1.0 / 720.0);
    p = p * r + (REAL)(1.0 / 120.0);
    p = p * r + (REAL)(1.0 / 24.0);
    p = p * r + (REAL)(1.0 / 6.0);
    p = p * r + (REAL)0.5;
    p = p * r + 1;
    p = p * r + 1;
    /* j is in the low bits of `bits` (two's complement), and j + bias >= 1. */
    UINT two_j_bits = (bits + bias) << shift;
    REAL two_j;
    __builtin_memcpy(&two_j, &two_j_bits, sizeof two_j);
    return p * two_j;
}

/* The logistic sigmoid 1 / (1 + exp(-z)), as exp(-|z|) = u: 1 / (1 + u) for
 * z >= 0, u / (1 + u) below: no cancellation anywhere, so the relative error
 * is a few units in the last place (the exponential's, the division's). */
static inline REAL NAME(sigmoid_one)(REAL z)
{
    REAL u = NAME(exp_nonpositive)(z < 0 ? z : -z);
    REAL q = 1 / (1 + u);
    return z >= 0 ? q : u * q;                    /* NaN: u * q, which is NaN */
}

/* tanh(x): an odd Taylor polynomial for |x| < 1/4, else (1 - u) / (1 + u)
 * with u = exp(-2|x|), the sign of x restored. |x| is clamped where tanh
 * rounds to 1; a NaN stays NaN. Relative error: a few units in the last
 * place (near 1/4 the subtraction 1 - u loses at most two bits). */
static inline REAL NAME(tanh_one)(REAL x)
{
#if REAL_IS_DOUBLE
    const REAL clamp = 19.5;                      /* 2 exp(-39) < 2^-53: rounds to 1 */
#else
    const REAL clamp = 9.5f;                      /* 2 exp(-19) < 2^-24 */
#endif
    REAL ax = x < 0 ? -x : x;
    ax = ax > clamp ? clamp : ax;                 /* NaN compares false: stays NaN */
    REAL x2 = ax * ax, small;
    /* tanh x = x - x^3/3 + 2x^5/15 - ...: the coefficients are
     * 2^(2m) (2^(2m) - 1) B_(2m) / (2m)! (B: Bernoulli numbers); at |x| = 1/4
     * the first term left out is below half a unit in the last place. */
#if REAL_IS_DOUBLE
    small = 9.691537956929451e-05;
    small = small * x2 - 2.3912911424355248e-04;
    small = small * x2 + 5.90027440945586e-04;
    small = small * x2 - 1.4558343870513183e-03;
    small = small * x2 + 3.592128036572481e-03;
    small = small * x2 - 8.863235529902197e-03;
    small = small * x2 + 2.1869488536155203e-02;
    small = small * x2 - 5.396825396825397e-02;
    small = small * x2 + 1.3333333333333333e-01;
    small = small * x2 - 3.333333333333333e-01;
#else
    small = 2.1869488536155203e-02f;
    small = small * x2 - 5.396825396825397e-02f;
    small = small * x2 + 1.3333333333333333e-01f;
    small = small * x2 - 3.333333333333333e-01f;
#endif
    small = ax + ax * (x2 * small);
    REAL u = NAME(exp_nonpositive)(-2 * ax);
    REAL large = (1 - u) / (1 + u);
    REAL t = ax < (REAL)0.25 ? small : large;     /* NaN: large, which is NaN */
    return x < 0 ? -t : t;
}

/* Activation codes (ACTIVATION_CODES in gpumlp/fastpath/cblocks.py): 0 sigmoid,
 * 1 tanh, 2 relu, 3 identity. The forward pass in place on `a`, and the
 * derivative from the output, as gpumlp/activations.py writes them. */

static void NAME(activate)(REAL *restrict a, Py_ssize_t count, int activation)
{
    switch (activation) {
    case 0:
        for (Py_ssize_t i = 0; i < count; i++)
            a[i] = NAME(sigmoid_one)(a[i]);
        break;
    case 1:
        for (Py_ssize_t i = 0; i < count; i++)
            a[i] = NAME(tanh_one)(a[i]);
        break;
    case 2:   /* z > 0 ? z : 0 (a NaN gives 0, as the generic xp.where does) */
        for (Py_ssize_t i = 0; i < count; i++)
            a[i] = a[i] > 0 ? a[i] : 0;
        break;
    default:
        break;
    }
}

/* delta = s * f'(z) in place of a, f' written from the output a; one loop
 * per activation, so that each vectorises. */
static void NAME(times_derivative)(REAL *restrict a, const REAL *restrict s, int count,
                                   int activation)
{
    switch (activation) {
    case 0:
        for (int c = 0; c < count; c++)
            a[c] = s[c] * (a[c] * (1 - a[c]));
        break;
    case 1:
        for (int c = 0; c < count; c++)
            a[c] = s[c] * (1 - a[c] * a[c]);
        break;
    case 2:
        for (int c = 0; c < count; c++)
            a[c] = a[c] > 0 ? s[c] : 0;
        break;
    default:
        for (int c = 0; c < count; c++)
            a[c] = s[c];
        break;
    }
}

/* Rows per block: the block's hidden activations (rows x hp) stay in L1. */
#ifndef ROWS_PER_BLOCK
#define ROWS_PER_BLOCK 64
#endif

/* One SIMD vector of REAL, VECBYTES wide (gcc's vector extension): 64 bytes
 * for AVX-512, 32 for AVX2, 16 for the baseline; VECLANES elements. Loads
 * and stores through it need only REAL's alignment. */
typedef REAL NAME(vec) __attribute__((vector_size(VECBYTES), aligned(sizeof(REAL))));
#define VEC NAME(vec)
#define AT(p) (*(VEC *)(p))
#define VL VECLANES

static inline REAL NAME(lane_sum)(VEC v)
{
    REAL s = 0;
    for (int l = 0; l < VL; l++)
        s += v[l];
    return s;
}

/* Sums over rows [first, last) of the squared error and of the gradient's
 * data terms, added into sse and the g_* arrays (which the caller zeroed).
 * Padded layouts: W1 (f x hp), b1 (hp), W2T (k x hp) with zeros beyond h.
 * Scratch: a (ROWS_PER_BLOCK x hp): a block's activations, then its deltas;
 * rr (ROWS_PER_BLOCK x k): its scaled residuals; back (hp): one row's r W2^T.
 *
 * Each product is a register tile whose operand is reused from a register
 * (four rows against one vector of W1; four columns of X against one vector
 * of deltas), and every sum over the rows of a block is kept in registers
 * and added to the totals once per block: the rounding error grows with
 * the rows per block plus the blocks, not with all the rows. */
static void NAME(rows)(const REAL *restrict X, const REAL *restrict y, Py_ssize_t first,
                       Py_ssize_t last, int f, int hp, int k, int activation, REAL scale,
                       const REAL *restrict W1, const REAL *restrict b1,
                       const REAL *restrict W2T, const REAL *restrict b2,
                       REAL *restrict a, REAL *restrict rr, REAL *restrict back,
                       double *sse, REAL *restrict g_W1, REAL *restrict g_b1,
                       REAL *restrict g_W2T, REAL *restrict g_b2)
{
    const int nv = hp / VL;
    for (Py_ssize_t r0 = first; r0 < last; r0 += ROWS_PER_BLOCK) {
        const int m = (int)(last - r0 < ROWS_PER_BLOCK ? last - r0 : ROWS_PER_BLOCK);
        const REAL *restrict Xb = X + r0 * f;
        const REAL *restrict yb = y + r0 * k;
        /* Forward: z = b1 + x W1, four rows at a time, two vectors of hidden
         * units (eight independent sums: enough to keep two FMA units busy
         * through their latency), then one. */
        int i = 0;
        for (; i + 4 <= m; i += 4) {
            const REAL *x0 = Xb + (Py_ssize_t)i * f, *x1 = x0 + f, *x2 = x1 + f,
                       *x3 = x2 + f;
            int v = 0;
            for (; v + 2 <= nv; v += 2) {
                VEC z0 = AT(b1 + v * VL), z1 = z0, z2 = z0, z3 = z0;
                VEC y0 = AT(b1 + (v + 1) * VL), y1 = y0, y2 = y0, y3 = y0;
                for (int j = 0; j < f; j++) {
                    const REAL *wj = W1 + (Py_ssize_t)j * hp + v * VL;
                    VEC w = AT(wj), u = AT(wj + VL);
                    z0 += x0[j] * w;
                    y0 += x0[j] * u;
                    z1 += x1[j] * w;
                    y1 += x1[j] * u;
                    z2 += x2[j] * w;
                    y2 += x2[j] * u;
                    z3 += x3[j] * w;
                    y3 += x3[j] * u;
                }
                REAL *out = a + (Py_ssize_t)i * hp + v * VL;
                AT(out) = z0;
                AT(out + VL) = y0;
                AT(out + hp) = z1;
                AT(out + hp + VL) = y1;
                AT(out + 2 * hp) = z2;
                AT(out + 2 * hp + VL) = y2;
                AT(out + 3 * hp) = z3;
                AT(out + 3 * hp + VL) = y3;
            }
            for (; v < nv; v++) {
                VEC z0 = AT(b1 + v * VL), z1 = z0, z2 = z0, z3 = z0;
                for (int j = 0; j < f; j++) {
                    VEC w = AT(W1 + (Py_ssize_t)j * hp + v * VL);
                    z0 += x0[j] * w;
                    z1 += x1[j] * w;
                    z2 += x2[j] * w;
                    z3 += x3[j] * w;
                }
                REAL *out = a + (Py_ssize_t)i * hp + v * VL;
                AT(out) = z0;
                AT(out + hp) = z1;
                AT(out + 2 * hp) = z2;
                AT(out + 3 * hp) = z3;
            }
        }
        for (; i < m; i++) {
            const REAL *x0 = Xb + (Py_ssize_t)i * f;
            for (int v = 0; v < nv; v++) {
                VEC z0 = AT(b1 + v * VL);
                for (int j = 0; j < f; j++)
                    z0 += x0[j] * AT(W1 + (Py_ssize_t)j * hp + v * VL);
                AT(a + (Py_ssize_t)i * hp + v * VL) = z0;
            }
        }
        NAME(activate)(a, (Py_ssize_t)m * hp, activation);
        /* Output, residual and squared error: y_pred = a W2 + b2. */
        double block_sse = 0;
        for (i = 0; i < m; i++) {
            const REAL *ai = a + (Py_ssize_t)i * hp;
            for (int o = 0; o < k; o++) {
                const REAL *w = W2T + (Py_ssize_t)o * hp;
                VEC acc = AT(ai) * AT(w);
                for (int v = 1; v < nv; v++)
                    acc += AT(ai + v * VL) * AT(w + v * VL);
                REAL e = (NAME(lane_sum)(acc) + b2[o]) - yb[(Py_ssize_t)i * k + o];
                block_sse += (double)e * (double)e;
                rr[i * k + o] = scale * e;
            }
        }
        *sse += block_sse;
        /* db2 = 1^T r and dW2 = a^T r (as W2T: r^T a), four partial sums over the rows. */
        for (int o = 0; o < k; o++) {
            REAL s = 0;
            for (i = 0; i < m; i++)
                s += rr[i * k + o];
            g_b2[o] += s;
            for (int v = 0; v < nv; v++) {
                VEC s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
                const REAL *av = a + v * VL;
                for (i = 0; i + 4 <= m; i += 4) {
                    s0 += rr[i * k + o] * AT(av + (Py_ssize_t)i * hp);
                    s1 += rr[(i + 1) * k + o] * AT(av + (Py_ssize_t)(i + 1) * hp);
                    s2 += rr[(i + 2) * k + o] * AT(av + (Py_ssize_t)(i + 2) * hp);
                    s3 += rr[(i + 3) * k + o] * AT(av + (Py_ssize_t)(i + 3) * hp);
                }
                for (; i < m; i++)
                    s0 += rr[i * k + o] * AT(av + (Py_ssize_t)i * hp);
                AT(g_W2T + (Py_ssize_t)o * hp + v * VL) += (s0 + s1) + (s2 + s3);
            }
        }
        /* delta = (r W2^T) * f'(z1), in place of a. */
        for (i = 0; i < m; i++) {
            const REAL *ri = rr + i * k;
            for (int v = 0; v < nv; v++) {
                VEC s = ri[0] * AT(W2T + v * VL);
                for (int o = 1; o < k; o++)
                    s += ri[o] * AT(W2T + (Py_ssize_t)o * hp + v * VL);
                AT(back + v * VL) = s;
            }
            NAME(times_derivative)(a + (Py_ssize_t)i * hp, back, hp, activation);
        }
        /* db1 = 1^T delta. */
        for (int v = 0; v < nv; v++) {
            VEC s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
            const REAL *dv = a + v * VL;
            for (i = 0; i + 4 <= m; i += 4) {
                s0 += AT(dv + (Py_ssize_t)i * hp);
                s1 += AT(dv + (Py_ssize_t)(i + 1) * hp);
                s2 += AT(dv + (Py_ssize_t)(i + 2) * hp);
                s3 += AT(dv + (Py_ssize_t)(i + 3) * hp);
            }
            for (; i < m; i++)
                s0 += AT(dv + (Py_ssize_t)i * hp);
            AT(g_b1 + v * VL) += (s0 + s1) + (s2 + s3);
        }
        /* dW1 = X^T delta, four columns of X at a time, two vectors of
         * deltas (eight sums), then one. */
        int j = 0;
        for (; j + 4 <= f; j += 4) {
            int v = 0;
            for (; v + 2 <= nv; v += 2) {
                VEC s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
                VEC t0 = {0}, t1 = {0}, t2 = {0}, t3 = {0};
                const REAL *dv = a + v * VL, *xi = Xb + j;
                for (i = 0; i < m; i++, xi += f) {
                    VEC d = AT(dv + (Py_ssize_t)i * hp), e = AT(dv + (Py_ssize_t)i * hp + VL);
                    s0 += xi[0] * d;
                    t0 += xi[0] * e;
                    s1 += xi[1] * d;
                    t1 += xi[1] * e;
                    s2 += xi[2] * d;
                    t2 += xi[2] * e;
                    s3 += xi[3] * d;
                    t3 += xi[3] * e;
                }
                REAL *g = g_W1 + (Py_ssize_t)j * hp + v * VL;
                AT(g) += s0;
                AT(g + VL) += t0;
                AT(g + hp) += s1;
                AT(g + hp + VL) += t1;
                AT(g + 2 * hp) += s2;
                AT(g + 2 * hp + VL) += t2;
                AT(g + 3 * hp) += s3;
                AT(g + 3 * hp + VL) += t3;
            }
            for (; v < nv; v++) {
                VEC s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
                const REAL *dv = a + v * VL, *xi = Xb + j;
                for (i = 0; i < m; i++, xi += f) {
                    VEC d = AT(dv + (Py_ssize_t)i * hp);
                    s0 += xi[0] * d;
                    s1 += xi[1] * d;
                    s2 += xi[2] * d;
                    s3 += xi[3] * d;
                }
                REAL *g = g_W1 + (Py_ssize_t)j * hp + v * VL;
                AT(g) += s0;
                AT(g + hp) += s1;
                AT(g + 2 * hp) += s2;
                AT(g + 3 * hp) += s3;
            }
        }
        for (; j < f; j++) {
            for (int v = 0; v < nv; v++) {
                VEC s0 = {0}, s1 = {0};
                const REAL *dv = a + v * VL, *xi = Xb + j;
                for (i = 0; i + 2 <= m; i += 2, xi += 2 * f) {
                    s0 += xi[0] * AT(dv + (Py_ssize_t)i * hp);
                    s1 += xi[f] * AT(dv + (Py_ssize_t)(i + 1) * hp);
                }
                if (i < m)
                    s0 += xi[0] * AT(dv + (Py_ssize_t)i * hp);
                AT(g_W1 + (Py_ssize_t)j * hp + v * VL) += s0 + s1;
            }
        }
    }
}
#undef VEC
#undef AT
#undef VL

/* p <- p - rate (g + l2 p) over the first `used` of each row of `width`
 * (the padding stays 0). */
static void NAME(descend)(REAL *restrict p, const REAL *restrict g, int rows, int width,
                          int used, REAL rate, REAL l2)
{
    for (int i = 0; i < rows; i++)
        for (int c = 0; c < used; c++) {
            Py_ssize_t at = (Py_ssize_t)i * width + c;
            p[at] = p[at] - rate * (g[at] + l2 * p[at]);
        }
}

/* One part of the rows, for one thread: its range, its scratch and its sums. */
typedef struct {
    const REAL *X, *y;
    Py_ssize_t first, last;
    int f, hp, k, activation;
    REAL scale;
    const REAL *W1, *b1, *W2T, *b2;
    REAL *a, *rr, *back, *g_W1, *g_b1, *g_W2T, *g_b2;
    size_t g_count;                 /* g_W1 .. g_b2 lie in one range of this many */
    double sse;
#if GPUMLP_THREADS
    pthread_barrier_t *barrier;
    int epochs;
#endif
} NAME(part);

static void NAME(part_sums)(NAME(part) *p)
{
    memset(p->g_W1, 0, p->g_count * sizeof(REAL));
    p->sse = 0;
    NAME(rows)(p->X, p->y, p->first, p->last, p->f, p->hp, p->k, p->activation, p->scale,
               p->W1, p->b1, p->W2T, p->b2, p->a, p->rr, p->back, &p->sse, p->g_W1,
               p->g_b1, p->g_W2T, p->g_b2);
}

#if GPUMLP_THREADS
/* The second thread: part 1 of every epoch, between two barriers (the
 * parameters are ready; its sums are ready). */
static void *NAME(helper)(void *arg)
{
    NAME(part) *p = arg;
    for (int e = 0; e < p->epochs; e++) {
        pthread_barrier_wait(p->barrier);
        NAME(part_sums)(p);
        pthread_barrier_wait(p->barrier);
    }
    return NULL;
}
#endif

/* `epochs` epochs of p <- p - rate_e (grad L(p)) from `start`; epoch e writes
 * its new parameters to slots[e] (the flat layout [W1, W2, b1, b2]), the
 * loss at its old parameters (penalty included) to losses[e], and 1 or 0 to
 * finite[e] (the sum of its new parameters is finite, as the trainer's
 * _all_finite). Returns 0, or -1 when memory ran out (nothing written then). */
static int NAME(run_block)(const REAL *X, const REAL *y, Py_ssize_t n, int f, int h, int k,
                           const REAL *start, REAL *slots, REAL *losses, REAL *finite,
                           const REAL *rates, int epochs, int activation, double l2_scale,
                           double penalty_scale, double scale, double entries)
{
    const int hp = (h + VLANES - 1) / VLANES * VLANES;
    const Py_ssize_t n_params = (Py_ssize_t)f * h + (Py_ssize_t)h * k + h + k;
    /* One allocation, every array starting on a 64-byte boundary. */
    const Py_ssize_t sizes[] = {
        (Py_ssize_t)f * hp, hp, (Py_ssize_t)k * hp, k,            /* W1, b1, W2T, b2 */
        /* per part: the gradient sums (W1, b1, W2T, b2), then a, r and r W2^T */
        (Py_ssize_t)f * hp, hp, (Py_ssize_t)k * hp, k,
        (Py_ssize_t)ROWS_PER_BLOCK * hp, (Py_ssize_t)ROWS_PER_BLOCK * k, hp,
        (Py_ssize_t)f * hp, hp, (Py_ssize_t)k * hp, k,
        (Py_ssize_t)ROWS_PER_BLOCK * hp, (Py_ssize_t)ROWS_PER_BLOCK * k, hp,
    };
    enum { N_ARRAYS = sizeof sizes / sizeof sizes[0] };
    const Py_ssize_t per_line = 64 / (Py_ssize_t)sizeof(REAL);
    Py_ssize_t total = 0;
    for (int i = 0; i < N_ARRAYS; i++)
        total += (sizes[i] + per_line - 1) / per_line * per_line;
    REAL *memory = aligned_alloc(64, (size_t)total * sizeof(REAL));
    if (memory == NULL)
        return -1;
    memset(memory, 0, (size_t)total * sizeof(REAL));
    REAL *arrays[N_ARRAYS];
    Py_ssize_t offset = 0;
    for (int i = 0; i < N_ARRAYS; i++) {
        arrays[i] = memory + offset;
        offset += (sizes[i] + per_line - 1) / per_line * per_line;
    }
    REAL *W1 = arrays[0], *b1 = arrays[1], *W2T = arrays[2], *b2 = arrays[3];
    /* The rows in PARTS contiguous parts (a whole number of row blocks each),
     * whose sums are added in order: the same numbers whether one thread
     * or two computes them. */
    const int n_parts = n >= PARTS_MIN_ROWS ? 2 : 1;
    Py_ssize_t middle = n_parts == 2 ? (n / 2) / ROWS_PER_BLOCK * ROWS_PER_BLOCK : n;
    NAME(part) parts[2];
    for (int q = 0; q < 2; q++) {
        REAL **mine = arrays + 4 + 7 * q;
        parts[q] = (NAME(part)){
            .X = X, .y = y, .first = q == 0 ? 0 : middle, .last = q == 0 ? middle : n,
            .f = f, .hp = hp, .k = k, .activation = activation, .scale = (REAL)scale,
            .W1 = W1, .b1 = b1, .W2T = W2T, .b2 = b2,
            .g_W1 = mine[0], .g_b1 = mine[1], .g_W2T = mine[2], .g_b2 = mine[3],
            .a = mine[4], .rr = mine[5], .back = mine[6],
            .g_count = (size_t)(mine[4] - mine[0]), .sse = 0,
        };
    }
    REAL *g_W1 = parts[0].g_W1, *g_b1 = parts[0].g_b1, *g_W2T = parts[0].g_W2T;
    REAL *g_b2 = parts[0].g_b2;
    int threaded = 0;
#if GPUMLP_THREADS
    pthread_barrier_t barrier;
    pthread_t thread;
    if (n_parts == 2 && sysconf(_SC_NPROCESSORS_ONLN) > 1
            && pthread_barrier_init(&barrier, NULL, 2) == 0) {
        parts[1].barrier = &barrier;
        parts[1].epochs = epochs;
        if (pthread_create(&thread, NULL, NAME(helper), &parts[1]) == 0)
            threaded = 1;
        else
            pthread_barrier_destroy(&barrier);
    }
#endif

    /* Unpack the flat parameters into the padded layouts. */
    const REAL *src_W2 = start + (Py_ssize_t)f * h;
    const REAL *src_b1 = src_W2 + (Py_ssize_t)h * k;
    const REAL *src_b2 = src_b1 + h;
    for (int j = 0; j < f; j++)
        for (int c = 0; c < h; c++)
            W1[(Py_ssize_t)j * hp + c] = start[(Py_ssize_t)j * h + c];
    for (int c = 0; c < h; c++) {
        b1[c] = src_b1[c];
        for (int o = 0; o < k; o++)
            W2T[(Py_ssize_t)o * hp + c] = src_W2[(Py_ssize_t)c * k + o];
    }
    for (int o = 0; o < k; o++)
        b2[o] = src_b2[o];

    const REAL l2 = (REAL)l2_scale, zero = 0;
    for (int e = 0; e < epochs; e++) {
#if GPUMLP_THREADS
        if (threaded)
            pthread_barrier_wait(&barrier);            /* the parameters are ready */
#endif
        NAME(part_sums)(&parts[0]);
        double sse = parts[0].sse;
        if (n_parts == 2) {
#if GPUMLP_THREADS
            if (threaded)
                pthread_barrier_wait(&barrier);        /* part 1's sums are ready */
            else
#endif
                NAME(part_sums)(&parts[1]);
            sse += parts[1].sse;
            for (size_t i = 0; i < parts[0].g_count; i++)
                g_W1[i] += parts[1].g_W1[i];
        }
        REAL loss = (REAL)(sse / entries);
        if (penalty_scale != 0) {
            double squares = 0;
            for (Py_ssize_t i = 0; i < (Py_ssize_t)f * hp; i++)
                squares += (double)W1[i] * (double)W1[i];
            for (Py_ssize_t i = 0; i < (Py_ssize_t)k * hp; i++)
                squares += (double)W2T[i] * (double)W2T[i];
            loss = loss + (REAL)(penalty_scale * squares);
        }
        losses[e] = loss;
        const REAL rate = rates[e];
        NAME(descend)(W1, g_W1, f, hp, h, rate, l2);
        NAME(descend)(W2T, g_W2T, k, hp, h, rate, l2);
        NAME(descend)(b1, g_b1, 1, hp, h, rate, zero);
        NAME(descend)(b2, g_b2, 1, k, k, rate, zero);
        /* Pack into this epoch's slot; the flag from the sum of what was written. */
        REAL *slot = slots + (Py_ssize_t)e * n_params;
        REAL *dst_W2 = slot + (Py_ssize_t)f * h, *dst_b1 = dst_W2 + (Py_ssize_t)h * k;
        REAL *dst_b2 = dst_b1 + h;
        for (int j = 0; j < f; j++)
            for (int c = 0; c < h; c++)
                slot[(Py_ssize_t)j * h + c] = W1[(Py_ssize_t)j * hp + c];
        for (int c = 0; c < h; c++) {
            dst_b1[c] = b1[c];
            for (int o = 0; o < k; o++)
                dst_W2[(Py_ssize_t)c * k + o] = W2T[(Py_ssize_t)o * hp + c];
        }
        for (int o = 0; o < k; o++)
            dst_b2[o] = b2[o];
        REAL sum = 0;
        for (Py_ssize_t i = 0; i < n_params; i++)
            sum += slot[i];
        finite[e] = __builtin_isfinite(sum) ? (REAL)1 : (REAL)0;
    }
#if GPUMLP_THREADS
    if (threaded) {
        pthread_join(thread, NULL);
        pthread_barrier_destroy(&barrier);
    }
#endif
    free(memory);
    return 0;
}
