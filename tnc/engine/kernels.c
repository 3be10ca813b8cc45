/* Hand-written kernels for the one product that dominates ALS on dense data:
 *
 *     Y[p, r, q] = sum_s X[p, s, q] * F[s, r]      X: P x S x Q,  F: S x R,  Y: P x R x Q
 *
 * a big tensor contracted over one run of its legs with a thin matrix (R columns).
 * BLAS runs this at a fraction of the machine's speed because R is small; these
 * kernels keep a tile of Y in vector registers and stream X once, without packing.
 *
 *   Q > 1  (summed legs lead or sit in the middle): vectors run along q, each
 *          F[s, r] is broadcast; tile QV vectors of q by SRB r.
 *   Q == 1 (summed legs trail): vectors run along s, the contiguous axis of a row
 *          of X, against F given transposed (R x S); tile MB rows by TRB r, then
 *          horizontal sums.
 *
 * One body (the TNC_BODY part at the end of this file, which includes itself) is
 * written with GCC/Clang vector types and instantiated per variant and dtype:
 *
 *   0 avx512    64-byte vectors, target avx512f+avx512vl+fma, 32 registers (x86-64)
 *   1 avx2      32-byte vectors, target avx2+fma, 16 registers (x86-64)
 *   2 portable  16-byte vectors, the compiler's baseline (SSE2 on x86-64, NEON on
 *               aarch64, scalar code where there is no vector unit)
 *
 * each in float64 and float32. Work is split over `threads` POSIX threads in chunks
 * taken from a shared counter (a thread slowed by another process's load takes fewer).
 * tnc/engine/kernels.py compiles this file on first use, self-tests every variant it uses
 * against numpy and falls back to BLAS when it cannot.
 */
#ifndef TNC_BODY

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#if !(defined(__GNUC__) || defined(__clang__))
#error "the tnc kernels need GCC or Clang vector extensions"
#endif

#define AI static inline __attribute__((always_inline))
#define MAX_THREADS 64
#define CHUNKS_PER_THREAD 8

#if defined(__x86_64__) || defined(__i386__)
#define TNC_X86 1
#else
#define TNC_X86 0
#endif

/* 1 when this CPU can run `variant` (0 avx512, 1 avx2, 2 portable), else 0 */
int tnc_variant_supported(int variant) {
#if TNC_X86
    __builtin_cpu_init();
    if (variant == 0)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
            && __builtin_cpu_supports("fma");
    if (variant == 1) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return variant == 2;
}

struct job;
typedef void (*range_fn)(const struct job *, ptrdiff_t, ptrdiff_t);

typedef struct job {
    range_fn range;          /* computes the part [start, stop) of the split range */
    const void *x, *f;
    void *y;
    ptrdiff_t P, S, Q, R, n, grain;
    atomic_ptrdiff_t next;   /* first item no thread has taken yet */
} job_t;

static void *worker(void *arg) {
    job_t *j = arg;
    for (;;) {
        ptrdiff_t start = atomic_fetch_add(&j->next, j->grain);
        if (start >= j->n) return NULL;
        j->range(j, start, start + j->grain < j->n ? start + j->grain : j->n);
    }
}

/* the range along p (or q when P == 1 and Q > 1) in chunks that are multiples of
 * `align`, taken by `threads` threads (this one included) from a shared counter */
static int run_jobs(range_fn range, const void *x, const void *f, void *y, ptrdiff_t P,
                    ptrdiff_t S, ptrdiff_t Q, ptrdiff_t R, int threads, ptrdiff_t align) {
    job_t job = {range, x, f, y, P, S, Q, R, (Q > 1 && P == 1) ? Q : P, 0, 0};
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads > job.n) threads = (int)job.n;
    ptrdiff_t pieces = threads > 1 ? (ptrdiff_t)threads * CHUNKS_PER_THREAD : 1;
    job.grain = (job.n + pieces - 1) / pieces;
    job.grain = (job.grain + align - 1) / align * align;
    atomic_init(&job.next, 0);
    pthread_t tid[MAX_THREADS];
    int spawned = 1;
    for (; spawned < threads; spawned++)
        if (pthread_create(&tid[spawned], NULL, worker, &job) != 0) break;  /* fewer threads */
    worker(&job);
    for (int t = 1; t < spawned; t++) pthread_join(tid[t], NULL);
    return 0;
}

typedef int (*product_fn)(const void *, const void *, void *, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                          ptrdiff_t, int);

/* each variant: its name, target, vector bytes and register tiles (QV, SRB, MB, TRB);
 * including this file with TNC_BODY 1 instantiates it in float64 and float32 */
#define TNC_BODY 1
#if TNC_X86
#define VARIANT avx512
#define TARGET __attribute__((target("avx512f,avx512vl,fma")))
#define WIDTH 64
#define QV 5
#define SRB 5
#define MB 2
#define TRB 6
#include __FILE__

#define VARIANT avx2
#define TARGET __attribute__((target("avx2,fma")))
#define WIDTH 32
#define QV 3
#define SRB 4
#define MB 2
#define TRB 5
#include __FILE__
#endif

#define VARIANT portable
#define TARGET
#define WIDTH 16
#define QV 3
#define SRB 4
#define MB 2
#define TRB 5
#include __FILE__

/* each variant's product and the q entries one register tile of its Q > 1 path covers
 * (a narrower Q is padded to it), in float64 ([0]) and float32 ([1]) */
typedef ptrdiff_t (*tile_fn)(void);
typedef struct { product_fn product; tile_fn q_tile; } kernel_t;
#define KERNELS(v) {{product_##v##_f64, q_tile_##v##_f64}, {product_##v##_f32, q_tile_##v##_f32}}
#if TNC_X86
static const kernel_t kernels[3][2] = {KERNELS(avx512), KERNELS(avx2), KERNELS(portable)};
#else
static const kernel_t kernels[3][2] = {
    {{NULL, NULL}, {NULL, NULL}}, {{NULL, NULL}, {NULL, NULL}}, KERNELS(portable)};
#endif
#undef KERNELS

/* the q entries one register tile of the Q > 1 path covers (a narrower Q is padded to
 * it), or -1 for an unknown variant */
ptrdiff_t tnc_q_tile(int variant, int single) {
    if (variant < 0 || variant > 2 || single < 0 || single > 1) return -1;
    if (kernels[variant][single].q_tile == NULL) return -1;
    return kernels[variant][single].q_tile();
}

/* Y = X x F on `variant` in float64 (single == 0) or float32 (single == 1). f is S x R
 * (row-major) when Q > 1 and R x S (F transposed) when Q == 1; all C-contiguous.
 * Returns 0, or -1 when the variant is unknown or this CPU cannot run it. */
int tnc_mode_product(int variant, int single, const void *x, const void *f, void *y, ptrdiff_t P,
                     ptrdiff_t S, ptrdiff_t Q, ptrdiff_t R, int threads) {
    if (variant < 0 || variant > 2 || single < 0 || single > 1) return -1;
    if (!tnc_variant_supported(variant) || kernels[variant][single].product == NULL) return -1;
    return kernels[variant][single].product(x, f, y, P, S, Q, R, threads);
}

#elif TNC_BODY == 1  /* one variant: both dtypes, then its macros dropped */

#undef TNC_BODY
#define TNC_BODY 2
#define REAL double
#define IREAL long long
#define RNAME f64
#define FOLDED_SUM 0
#include __FILE__
#undef REAL
#undef IREAL
#undef RNAME
#undef FOLDED_SUM
#define REAL float
#define IREAL int
#define RNAME f32
#define FOLDED_SUM 1
#include __FILE__
#undef REAL
#undef IREAL
#undef RNAME
#undef FOLDED_SUM
#undef TNC_BODY
#define TNC_BODY 1
#undef VARIANT
#undef TARGET
#undef WIDTH
#undef QV
#undef SRB
#undef MB
#undef TRB

#else  /* TNC_BODY 2: one variant in one dtype; names end in _<variant>_<dtype> */

#define CAT3_(a, b, c) a##_##b##_##c
#define CAT3(a, b, c) CAT3_(a, b, c)
#define N(name) CAT3(name, VARIANT, RNAME)
#define VEC N(vec)
#define LANES ((int)(WIDTH / sizeof(REAL)))

typedef REAL VEC __attribute__((vector_size(WIDTH)));
typedef IREAL N(ivec) __attribute__((vector_size(WIDTH)));   /* lane masks */

TARGET AI VEC N(load)(const REAL *p) { VEC v; memcpy(&v, p, sizeof v); return v; }

/* the first n (< LANES) entries at p, zeros after them */
TARGET AI VEC N(load_part)(const REAL *p, int n) {
    VEC v = {0};
    memcpy(&v, p, (size_t)n * sizeof(REAL));
    return v;
}

/* the sum of v's lanes. float32 (FOLDED_SUM): halves folded by vector adds down to 16
 * bytes, then the last 4 lanes in pairs, because a chain of 16 scalar adds cost as much
 * as the products of a row when Q == 1 and S = 200 (X 40000 x 200, rank 10: the float32
 * kernel went from 0.8x to 0.55x the float64 time); float64 keeps its lane-by-lane sum */
typedef REAL N(half32) __attribute__((vector_size(32)));
typedef REAL N(half16) __attribute__((vector_size(16)));

TARGET AI REAL N(sum)(VEC v) {
#if !FOLDED_SUM
    REAL each[LANES], total = 0;
    memcpy(each, &v, sizeof v);
    for (int i = 0; i < LANES; i++) total += each[i];
    return total;
#else
    N(half16) low;
#if WIDTH == 64
    N(half32) a, b;
    memcpy(&a, &v, 32);
    memcpy(&b, (const char *)&v + 32, 32);
    a += b;
    N(half16) c, d;
    memcpy(&c, &a, 16);
    memcpy(&d, (const char *)&a + 16, 16);
    low = c + d;
#elif WIDTH == 32
    N(half16) c, d;
    memcpy(&c, &v, 16);
    memcpy(&d, (const char *)&v + 16, 16);
    low = c + d;
#else
    memcpy(&low, &v, 16);
#endif
    REAL lanes[16 / sizeof(REAL)];
    memcpy(lanes, &low, 16);
    for (int width = (int)(16 / sizeof(REAL)) / 2; width >= 1; width /= 2)
        for (int i = 0; i < width; i++) lanes[i] += lanes[i + width];
    return lanes[0];
#endif
}

/* Q > 1: acc[r][v] holds Y[p, r0 + r, q0 + LANES v : q0 + LANES (v + 1)] */
TARGET AI void N(strided_tile)(const REAL *x, const REAL *f, REAL *y, ptrdiff_t S, ptrdiff_t Q,
                               ptrdiff_t R, ptrdiff_t r0, int rb, ptrdiff_t q0) {
    VEC acc[SRB][QV];
    for (int r = 0; r < SRB; r++)
        for (int v = 0; v < QV; v++) acc[r][v] = (VEC){0};
    for (ptrdiff_t s = 0; s < S; s++) {
        const REAL *xs = x + s * Q + q0, *fs = f + s * R + r0;
        VEC xv[QV];
        for (int v = 0; v < QV; v++) xv[v] = N(load)(xs + LANES * v);
        /* the same row two tiles on: rows lie Q apart, too far for the hardware's
         * prefetchers to follow (P == 1, X 200 x 40000: 1.7x faster with AVX2) */
        __builtin_prefetch(xs + 2 * LANES * QV, 0, 3);
        __builtin_prefetch(xs + 2 * LANES * QV + 8, 0, 3);
        for (int r = 0; r < SRB; r++)
            if (r < rb) {
                REAL fr = fs[r];
                for (int v = 0; v < QV; v++) acc[r][v] += xv[v] * fr;
            }
    }
    for (int r = 0; r < SRB; r++)
        if (r < rb)
            for (int v = 0; v < QV; v++)
                memcpy(y + (r0 + r) * Q + q0 + LANES * v, &acc[r][v], sizeof(VEC));
}

/* the R columns in nearly equal blocks of at most SRB (<= 6), each a register tile
 * specialised to its width */
#define STRIDED_CASE(K) case K: N(strided_tile)(x, f, y, S, Q, R, r0, K, q0); break;
TARGET static void N(strided_block)(const REAL *x, const REAL *f, REAL *y, ptrdiff_t S,
                                    ptrdiff_t Q, ptrdiff_t R, ptrdiff_t q0) {
    int nblocks = (int)((R + SRB - 1) / SRB), base = (int)(R / nblocks), extra = (int)(R % nblocks);
    ptrdiff_t r0 = 0;
    for (int b = 0; b < nblocks; b++) {
        int rb = base + (b < extra);
        switch (rb) {
#if SRB > 1
        STRIDED_CASE(1)
#endif
#if SRB > 2
        STRIDED_CASE(2)
#endif
#if SRB > 3
        STRIDED_CASE(3)
#endif
#if SRB > 4
        STRIDED_CASE(4)
#endif
#if SRB > 5
        STRIDED_CASE(5)
#endif
        default: N(strided_tile)(x, f, y, S, Q, R, r0, SRB, q0); break;  /* rb == SRB */
        }
        r0 += rb;
    }
}
#undef STRIDED_CASE

/* the ragged end q in [q0, q0 + rest), rest < one tile: copied into a zero-padded
 * tile-wide scratch, run as a full tile, the valid part copied out (scalar loops
 * when the scratch cannot be had) */
TARGET static void N(strided_edge)(const REAL *x, const REAL *f, REAL *y, ptrdiff_t S,
                                   ptrdiff_t Q, ptrdiff_t R, ptrdiff_t q0, ptrdiff_t rest) {
    const ptrdiff_t width = (ptrdiff_t)LANES * QV;
    REAL *xs = malloc((size_t)(S * width) * sizeof(REAL));
    REAL *ys = malloc((size_t)(R * width) * sizeof(REAL));
    if (xs != NULL && ys != NULL) {
        for (ptrdiff_t s = 0; s < S; s++) {
            memcpy(xs + s * width, x + s * Q + q0, (size_t)rest * sizeof(REAL));
            memset(xs + s * width + rest, 0, (size_t)(width - rest) * sizeof(REAL));
        }
        N(strided_block)(xs, f, ys, S, width, R, 0);
        for (ptrdiff_t r = 0; r < R; r++)
            memcpy(y + r * Q + q0, ys + r * width, (size_t)rest * sizeof(REAL));
    } else {
        for (ptrdiff_t r = 0; r < R; r++)
            for (ptrdiff_t q = q0; q < q0 + rest; q++) {
                REAL total = 0;
                for (ptrdiff_t s = 0; s < S; s++) total += x[s * Q + q] * f[s * R + r];
                y[r * Q + q] = total;
            }
    }
    free(xs);
    free(ys);
}

/* Y[:, q] for q in [qa, qb) of one slab X[s, q]: full tiles, then the ragged end. When
 * the range holds a full tile, the end is one more full tile ending at qb, overlapping
 * the last one: each lane of Y is the same sum along s wherever its tile starts, so the
 * overlap is written twice with the same values (float32, Q = 200: 40 of every 200 q
 * went through the copied edge, the float32 product 0.8x the float64 time) */
TARGET static void N(strided_slab)(const REAL *x, const REAL *f, REAL *y, ptrdiff_t S,
                                   ptrdiff_t Q, ptrdiff_t R, ptrdiff_t qa, ptrdiff_t qb) {
    const ptrdiff_t width = (ptrdiff_t)LANES * QV;
    ptrdiff_t q0 = qa;
    for (; q0 + width <= qb; q0 += width) N(strided_block)(x, f, y, S, Q, R, q0);
    if (q0 < qb && qb - qa >= width) N(strided_block)(x, f, y, S, Q, R, qb - width);
    else if (q0 < qb) N(strided_edge)(x, f, y, S, Q, R, q0, qb - q0);
}

/* Q == 1: acc[m][r] holds partial sums along s of X[p0 + m, :] . F[:, r0 + r] */
TARGET AI void N(rows_tile)(const REAL *x, const REAL *ft, REAL *y, ptrdiff_t S, ptrdiff_t R,
                            ptrdiff_t p0, int mb, ptrdiff_t r0, int rb) {
    VEC acc[MB][TRB];
    for (int m = 0; m < MB; m++)
        for (int r = 0; r < TRB; r++) acc[m][r] = (VEC){0};
    ptrdiff_t s = 0;
    for (; s + LANES <= S; s += LANES) {
        VEC xv[MB];
        for (int m = 0; m < MB; m++)
            if (m < mb) xv[m] = N(load)(x + (p0 + m) * S + s);
        for (int r = 0; r < TRB; r++)
            if (r < rb) {
                VEC fv = N(load)(ft + (r0 + r) * S + s);
                for (int m = 0; m < MB; m++)
                    if (m < mb) acc[m][r] += xv[m] * fv;
            }
    }
    if (s < S && S >= LANES) {
        /* the ragged end: the row's last LANES entries, the products of lanes the loop
         * above summed masked off (bitwise, so no 0 * inf), because partial loads cost
         * as much as the whole row (float32, S = 200: 8 of 200 entries) */
        const ptrdiff_t t = S - LANES;
        const int skip = LANES - (int)(S - s);
        N(ivec) keep;
        for (int l = 0; l < LANES; l++) keep[l] = l >= skip ? (IREAL)-1 : 0;
        VEC xv[MB];
        for (int m = 0; m < MB; m++)
            if (m < mb) xv[m] = N(load)(x + (p0 + m) * S + t);
        for (int r = 0; r < TRB; r++)
            if (r < rb) {
                VEC fv = N(load)(ft + (r0 + r) * S + t);
                for (int m = 0; m < MB; m++)
                    if (m < mb) acc[m][r] += (VEC)((N(ivec))(xv[m] * fv) & keep);
            }
    } else if (s < S) {
        int rest = (int)(S - s);
        VEC xv[MB];
        for (int m = 0; m < MB; m++)
            if (m < mb) xv[m] = N(load_part)(x + (p0 + m) * S + s, rest);
        for (int r = 0; r < TRB; r++)
            if (r < rb) {
                VEC fv = N(load_part)(ft + (r0 + r) * S + s, rest);
                for (int m = 0; m < MB; m++)
                    if (m < mb) acc[m][r] += xv[m] * fv;
            }
    }
    for (int m = 0; m < MB; m++)
        if (m < mb)
            for (int r = 0; r < TRB; r++)
                if (r < rb) y[(p0 + m) * R + r0 + r] = N(sum)(acc[m][r]);
}

#define ROWS_CASE(K) case K: N(rows_tile)(x, ft, y, S, R, p0, mb, r0, K); break;
TARGET static void N(rows_block)(const REAL *x, const REAL *ft, REAL *y, ptrdiff_t S,
                                 ptrdiff_t R, ptrdiff_t p0, int mb) {
    int nblocks = (int)((R + TRB - 1) / TRB), base = (int)(R / nblocks), extra = (int)(R % nblocks);
    ptrdiff_t r0 = 0;
    for (int b = 0; b < nblocks; b++) {
        int rb = base + (b < extra);
        switch (rb) {
#if TRB > 1
        ROWS_CASE(1)
#endif
#if TRB > 2
        ROWS_CASE(2)
#endif
#if TRB > 3
        ROWS_CASE(3)
#endif
#if TRB > 4
        ROWS_CASE(4)
#endif
#if TRB > 5
        ROWS_CASE(5)
#endif
        default: N(rows_tile)(x, ft, y, S, R, p0, mb, r0, TRB); break;  /* rb == TRB */
        }
        r0 += rb;
    }
}
#undef ROWS_CASE

TARGET static void N(rows_slab)(const REAL *x, const REAL *ft, REAL *y, ptrdiff_t S,
                                ptrdiff_t R, ptrdiff_t pa, ptrdiff_t pb) {
    ptrdiff_t p0 = pa;
    for (; p0 + MB <= pb; p0 += MB) N(rows_block)(x, ft, y, S, R, p0, MB);
    for (; p0 < pb; p0++) N(rows_block)(x, ft, y, S, R, p0, 1);
}

TARGET static void N(range)(const job_t *j, ptrdiff_t start, ptrdiff_t stop) {
    const REAL *x = j->x, *f = j->f;
    REAL *y = j->y;
    ptrdiff_t S = j->S, Q = j->Q, R = j->R;
    if (Q == 1)
        N(rows_slab)(x, f, y, S, R, start, stop);
    else if (j->P == 1)
        N(strided_slab)(x, f, y, S, Q, R, start, stop);
    else
        for (ptrdiff_t p = start; p < stop; p++)
            N(strided_slab)(x + p * S * Q, f, y + p * R * Q, S, Q, R, 0, Q);
}

static ptrdiff_t N(q_tile)(void) { return (ptrdiff_t)LANES * QV; }

static int N(product)(const void *x, const void *f, void *y, ptrdiff_t P, ptrdiff_t S,
                      ptrdiff_t Q, ptrdiff_t R, int threads) {
    ptrdiff_t align = (Q > 1 && P == 1) ? (ptrdiff_t)LANES * QV : 1;  /* full tiles per chunk */
    return run_jobs(N(range), x, f, y, P, S, Q, R, threads, align);
}

#undef N
#undef VEC
#undef LANES
#undef CAT3
#undef CAT3_

#endif  /* TNC_BODY 2 */
