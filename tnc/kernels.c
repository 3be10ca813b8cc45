/* Hand-written kernels for the one product that dominates ALS on dense data:
 *
 *     Y[p, r, q] = sum_s X[p, s, q] * F[s, r]      X: P x S x Q,  F: S x R,  Y: P x R x Q
 *
 * a big tensor contracted over one run of its legs with a thin matrix (R columns).
 * BLAS runs this at a fraction of the machine's speed because R is small; these
 * kernels keep a tile of Y in AVX-512 registers and stream X once, without packing.
 *
 *   Q > 1  (summed legs lead or sit in the middle): vectors run along q, each
 *          F[s, r] is broadcast; tile QV*8 q by SRB r.
 *   Q == 1 (summed legs trail): vectors run along s, the contiguous axis of a row
 *          of X, against F given transposed (R x S); tile MB rows by TRB r, then
 *          horizontal sums.
 *
 * Work is split over `threads` POSIX threads along p (or q when P == 1).
 * tnc/kernels.py compiles this file on first use and falls back to BLAS when it
 * cannot (no compiler, no AVX-512, not x86-64).
 */
#include <stddef.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#include <pthread.h>

#define AI static inline __attribute__((always_inline))
#define T512 __attribute__((target("avx512f,avx512vl,fma")))
#define QV 5   /* vectors of 8 q per register tile (Q > 1) */
#define SRB 5  /* r per register tile (Q > 1) */
#define MB 2   /* rows of X per register tile (Q == 1) */
#define TRB 6  /* r per register tile (Q == 1) */

int tnc_kernels_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("fma");
}

/* Q > 1: acc[r][v] holds Y[p, r0 + r, q0 + 8v : q0 + 8v + 8]; the last of nv vectors is masked */
T512 AI void strided_tile(const double *x, const double *f, double *y, ptrdiff_t S, ptrdiff_t Q,
                          ptrdiff_t R, ptrdiff_t r0, int rb, ptrdiff_t q0, int nv, __mmask8 last) {
    __m512d acc[SRB][QV];
    for (int r = 0; r < SRB; r++)
        for (int v = 0; v < QV; v++) acc[r][v] = _mm512_setzero_pd();
    for (ptrdiff_t s = 0; s < S; s++) {
        const double *xs = x + s * Q + q0, *fs = f + s * R + r0;
        __m512d xv[QV];
        for (int v = 0; v < QV; v++)
            if (v < nv)
                xv[v] = v < nv - 1 ? _mm512_loadu_pd(xs + 8 * v) : _mm512_maskz_loadu_pd(last, xs + 8 * v);
        for (int r = 0; r < SRB; r++)
            if (r < rb) {
                __m512d fb = _mm512_set1_pd(fs[r]);
                for (int v = 0; v < QV; v++)
                    if (v < nv) acc[r][v] = _mm512_fmadd_pd(xv[v], fb, acc[r][v]);
            }
    }
    for (int r = 0; r < SRB; r++)
        if (r < rb)
            for (int v = 0; v < QV; v++)
                if (v < nv) {
                    double *out = y + (r0 + r) * Q + q0 + 8 * v;
                    if (v < nv - 1) _mm512_storeu_pd(out, acc[r][v]);
                    else _mm512_mask_storeu_pd(out, last, acc[r][v]);
                }
}

/* the R columns in nearly equal blocks of at most SRB, each a register tile */
#define STRIDED_CASE(K) case K: strided_tile(x, f, y, S, Q, R, r0, K, q0, nv, last); break;
T512 static void strided_block(const double *x, const double *f, double *y, ptrdiff_t S, ptrdiff_t Q,
                               ptrdiff_t R, ptrdiff_t q0, int nv, __mmask8 last) {
    int nblocks = (int)((R + SRB - 1) / SRB), base = (int)(R / nblocks), extra = (int)(R % nblocks);
    ptrdiff_t r0 = 0;
    for (int b = 0; b < nblocks; b++) {
        int rb = base + (b < extra);
        switch (rb) {
        STRIDED_CASE(1) STRIDED_CASE(2) STRIDED_CASE(3) STRIDED_CASE(4)
        default: strided_tile(x, f, y, S, Q, R, r0, SRB, q0, nv, last); break;
        }
        r0 += rb;
    }
}

/* Y[:, q] for q in [qa, qb) of one slab X[s, q]; the ragged end runs with masks */
T512 static void strided_slab(const double *x, const double *f, double *y, ptrdiff_t S, ptrdiff_t Q,
                              ptrdiff_t R, ptrdiff_t qa, ptrdiff_t qb) {
    const ptrdiff_t width = 8 * QV;
    ptrdiff_t q0 = qa;
    for (; q0 + width <= qb; q0 += width) strided_block(x, f, y, S, Q, R, q0, QV, 0xFF);
    if (q0 < qb) {
        ptrdiff_t rest = qb - q0;
        int nv = (int)((rest + 7) / 8);
        __mmask8 last = (__mmask8)((1u << (rest - 8 * (nv - 1))) - 1);
        strided_block(x, f, y, S, Q, R, q0, nv, last);
    }
}

/* Q == 1: acc[m][r] holds partial sums along s of X[p0 + m, :] . F[:, r0 + r].
 * The ragged end is a masked copy of the main loop: masked loads on full vectors,
 * or one step function for both, measured 1.5x slower here (GCC 12, Zen). */
T512 AI void rows_tile(const double *x, const double *ft, double *y, ptrdiff_t S, ptrdiff_t R,
                       ptrdiff_t p0, int mb, ptrdiff_t r0, int rb) {
    __m512d acc[MB][TRB];
    for (int m = 0; m < MB; m++)
        for (int r = 0; r < TRB; r++) acc[m][r] = _mm512_setzero_pd();
    ptrdiff_t s = 0;
    for (; s + 8 <= S; s += 8) {
        __m512d xv[MB];
        for (int m = 0; m < MB; m++)
            if (m < mb) xv[m] = _mm512_loadu_pd(x + (p0 + m) * S + s);
        for (int r = 0; r < TRB; r++)
            if (r < rb) {
                __m512d fv = _mm512_loadu_pd(ft + (r0 + r) * S + s);
                for (int m = 0; m < MB; m++)
                    if (m < mb) acc[m][r] = _mm512_fmadd_pd(xv[m], fv, acc[m][r]);
            }
    }
    if (s < S) {
        __mmask8 k = (__mmask8)((1u << (S - s)) - 1);
        __m512d xv[MB];
        for (int m = 0; m < MB; m++)
            if (m < mb) xv[m] = _mm512_maskz_loadu_pd(k, x + (p0 + m) * S + s);
        for (int r = 0; r < TRB; r++)
            if (r < rb) {
                __m512d fv = _mm512_maskz_loadu_pd(k, ft + (r0 + r) * S + s);
                for (int m = 0; m < MB; m++)
                    if (m < mb) acc[m][r] = _mm512_fmadd_pd(xv[m], fv, acc[m][r]);
            }
    }
    for (int m = 0; m < MB; m++)
        if (m < mb)
            for (int r = 0; r < TRB; r++)
                if (r < rb) y[(p0 + m) * R + r0 + r] = _mm512_reduce_add_pd(acc[m][r]);
}

#define ROWS_CASE(K) case K: rows_tile(x, ft, y, S, R, p0, mb, r0, K); break;
T512 static void rows_block(const double *x, const double *ft, double *y, ptrdiff_t S, ptrdiff_t R,
                            ptrdiff_t p0, int mb) {
    int nblocks = (int)((R + TRB - 1) / TRB), base = (int)(R / nblocks), extra = (int)(R % nblocks);
    ptrdiff_t r0 = 0;
    for (int b = 0; b < nblocks; b++) {
        int rb = base + (b < extra);
        switch (rb) {
        ROWS_CASE(1) ROWS_CASE(2) ROWS_CASE(3) ROWS_CASE(4) ROWS_CASE(5)
        default: rows_tile(x, ft, y, S, R, p0, mb, r0, TRB); break;
        }
        r0 += rb;
    }
}

T512 static void rows_slab(const double *x, const double *ft, double *y, ptrdiff_t S, ptrdiff_t R,
                           ptrdiff_t pa, ptrdiff_t pb) {
    ptrdiff_t p0 = pa;
    for (; p0 + MB <= pb; p0 += MB) rows_block(x, ft, y, S, R, p0, MB);
    for (; p0 < pb; p0++) rows_block(x, ft, y, S, R, p0, 1);
}

typedef struct {
    const double *x, *f;
    double *y;
    ptrdiff_t P, S, Q, R, start, stop;
} job_t;

static void *run_job(void *arg) {
    const job_t *j = arg;
    if (j->Q == 1)
        rows_slab(j->x, j->f, j->y, j->S, j->R, j->start, j->stop);
    else if (j->P == 1)
        strided_slab(j->x, j->f, j->y, j->S, j->Q, j->R, j->start, j->stop);
    else
        for (ptrdiff_t p = j->start; p < j->stop; p++)
            strided_slab(j->x + p * j->S * j->Q, j->f, j->y + p * j->R * j->Q, j->S, j->Q, j->R, 0, j->Q);
    return NULL;
}

#define MAX_THREADS 64

/* f is S x R (row-major) when Q > 1 and R x S (F transposed) when Q == 1; all C-contiguous.
 * Returns 0, or -1 when this CPU lacks AVX-512. */
int tnc_mode_product(const double *x, const double *f, double *y, ptrdiff_t P, ptrdiff_t S,
                     ptrdiff_t Q, ptrdiff_t R, int threads) {
    if (!tnc_kernels_supported()) return -1;
    ptrdiff_t n = (Q > 1 && P == 1) ? Q : P;           /* the range split over threads */
    ptrdiff_t align = (Q > 1 && P == 1) ? 8 * QV : 1;   /* keep full tiles on each thread */
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    job_t jobs[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    ptrdiff_t chunk = (n + threads - 1) / threads;
    chunk = (chunk + align - 1) / align * align;
    int used = 0;
    for (int t = 0; t < threads; t++) {
        ptrdiff_t start = t * chunk, stop = start + chunk < n ? start + chunk : n;
        if (start >= stop) break;
        jobs[t] = (job_t){x, f, y, P, S, Q, R, start, stop};
        used++;
    }
    int spawned = 1;
    for (; spawned < used; spawned++)
        if (pthread_create(&tid[spawned], NULL, run_job, &jobs[spawned]) != 0) break;
    for (int t = spawned; t < used; t++) run_job(&jobs[t]);  /* could not spawn: run here */
    if (used) run_job(&jobs[0]);
    for (int t = 1; t < spawned; t++) pthread_join(tid[t], NULL);
    return 0;
}

#else  /* not x86-64 with GCC or Clang: no kernels, tnc uses BLAS */

int tnc_kernels_supported(void) { return 0; }

int tnc_mode_product(const double *x, const double *f, double *y, ptrdiff_t P, ptrdiff_t S,
                     ptrdiff_t Q, ptrdiff_t R, int threads) {
    (void)x; (void)f; (void)y; (void)P; (void)S; (void)Q; (void)R; (void)threads;
    return -1;
}

#endif
