/* fp32 FMA-throughput probe for bench/peak.py.
 *
 * Each thread runs 12 independent FMA dependency chains (acc_i = acc_i * a + b) on
 * full-width vectors; with 12 >= latency x ports (4 x 2 = 8 on current x86 cores)
 * the FMA units never wait on a result, so the rate is the machine's fp32 peak.
 * FLOPs = 2 (mul + add) x lanes x 12 x iterations x threads.
 * Two rates are printed: over wall time (what a program gets now, lowered when other
 * processes share the cores) and over each thread's own CPU time (the hardware rate while
 * the thread was on a core; summed over threads), which is the peak on a shared machine.
 * usage: fma_probe ITERATIONS   (threads from OMP_NUM_THREADS)
 * prints: ISA THREADS WALL_GFLOPS CPU_GFLOPS SECONDS CHECKSUM
 * Built with -shared -fPIC -DFMA_PROBE_LIB instead, it exports fma_probe_run for
 * in-process use (bench_matmul times it in the same rounds as the GEMMs).
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__AVX512F__)
typedef __m512 vec;
#define LANES 16
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define ADD _mm512_add_ps
#define STORE _mm512_storeu_ps
#define ISA "avx512"
#else
typedef __m256 vec;
#define LANES 8
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define ADD _mm256_add_ps
#define STORE _mm256_storeu_ps
#define ISA "avx2"
#endif

static volatile float seed_a = 0.999999f, seed_b = 1e-7f;

static float chains(long iters) {
    vec a = SET1(seed_a), b = SET1(seed_b);
    /* 12 named accumulators (not an array) so they stay in registers at -O2 */
    vec c0 = SET1(0.f), c1 = SET1(1.f), c2 = SET1(2.f), c3 = SET1(3.f), c4 = SET1(4.f);
    vec c5 = SET1(5.f), c6 = SET1(6.f), c7 = SET1(7.f), c8 = SET1(8.f), c9 = SET1(9.f);
    vec c10 = SET1(10.f), c11 = SET1(11.f);
    for (long it = 0; it < iters; ++it) {
        c0 = FMA(c0, a, b); c1 = FMA(c1, a, b); c2 = FMA(c2, a, b); c3 = FMA(c3, a, b);
        c4 = FMA(c4, a, b); c5 = FMA(c5, a, b); c6 = FMA(c6, a, b); c7 = FMA(c7, a, b);
        c8 = FMA(c8, a, b); c9 = FMA(c9, a, b); c10 = FMA(c10, a, b); c11 = FMA(c11, a, b);
    }
    vec s = ADD(ADD(ADD(c0, c1), ADD(c2, c3)), ADD(ADD(c4, c5), ADD(c6, c7)));
    s = ADD(s, ADD(ADD(c8, c9), ADD(c10, c11)));
    float out[LANES];
    STORE(out, s);
    return out[0]; /* returned so the chains are not dead code */
}

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Runs `iters` steps of the chains on every thread of an OpenMP team (the caller's thread
 * count); returns the FLOPs done. */
double fma_probe_run(long iters) {
    int nthreads = 1;
    float sink = 0.f;
#pragma omp parallel reduction(+ : sink)
    {
#pragma omp single
        nthreads = omp_get_num_threads();
        sink += chains(iters);
    }
    seed_b = 1e-7f + 0.f * sink; /* the chains' result is used: they are not dead code */
    return 2.0 * LANES * 12 * (double)iters * nthreads;
}

#ifndef FMA_PROBE_LIB
int main(int argc, char** argv) {
    long iters = argc > 1 ? atol(argv[1]) : 20000000L;
    int nthreads = 1;
    float sink = 0.f;
    double cpu_rate = 0.0; /* sum over threads of flops / thread CPU seconds */
#pragma omp parallel
    {
#pragma omp single
        nthreads = omp_get_num_threads();
    }
    double t0 = clock_s(CLOCK_MONOTONIC);
#pragma omp parallel reduction(+ : sink, cpu_rate)
    {
        sink += chains(iters / 20 + 1); /* warm-up: wake the core and its wide units */
        double c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
        sink += chains(iters);
        double c1 = clock_s(CLOCK_THREAD_CPUTIME_ID);
        cpu_rate += 2.0 * LANES * 12 * (double)iters / (c1 - c0);
    }
    double dt = clock_s(CLOCK_MONOTONIC) - t0;
    double flops = 2.0 * LANES * 12 * (double)iters * nthreads * 1.05;
    printf("%s %d %.3f %.3f %.6f %g\n", ISA, nthreads, flops / dt * 1e-9, cpu_rate * 1e-9, dt,
           (double)sink);
    return 0;
}
#endif
