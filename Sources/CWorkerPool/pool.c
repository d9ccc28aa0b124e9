// Worker threads that spin between jobs before they sleep.
//
// Why not libdispatch: in a VM, waking a sleeping dispatch worker (futex + IPI to a halted vCPU) takes
// longer than most element-wise kernels of a training step, so a two-thread element-wise op measured
// slower than one thread. A training step issues its ops back to back, so a worker that spins for a
// couple of milliseconds after each job starts the next one within a microsecond; after that it sleeps
// on a condition variable and costs nothing.
#include "CWorkerPool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define RELAX() _mm_pause()
#elif defined(__aarch64__)
#define RELAX() __asm__ __volatile__("yield")
#else
#define RELAX() ((void)0)
#endif

#define MAX_WORKERS 63
#define SPIN_NS 2000000L
// After this many pause hints a waiting thread also yields its core at each check, so that oversubscribed
// cores (more threads than cores, or other processes) still make progress.
#define PAUSES_BEFORE_YIELD 256

/// One step of a wait loop: a pause hint, then also sched_yield once the wait has lasted a while.
static inline void backoff(int n) {
    RELAX();
    if (n > PAUSES_BEFORE_YIELD) sched_yield();
}

typedef struct {
    _Atomic long ticket;   // bumped by the caller for each job this worker takes part in
    int index;
} worker_t;

static worker_t workers[MAX_WORKERS];
static int started;                                  // guarded by start_lock
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static _Atomic int sleepers;
static _Atomic int busy;                             // a job is in flight
static _Atomic int remaining;                        // worker tasks of the job not finished
static void (*job_fn)(void *, int);                  // written before the tickets are bumped
static void *job_ctx;

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

/// Waits until the worker's ticket moves past `seen`: spins for SPIN_NS, then sleeps.
static long wait_ticket(worker_t *w, long seen) {
    long start = now_ns(), t;
    for (int n = 1;; n++) {
        t = atomic_load_explicit(&w->ticket, memory_order_acquire);
        if (t != seen) return t;
        backoff(n);
        if ((n & 1023) == 0 && now_ns() - start > SPIN_NS) break;
    }
    // Dekker-style handshake with mile_pool_run: the sleeper count is raised before the ticket is read
    // again under the lock, and the caller bumps tickets before it reads the count (both seq_cst).
    pthread_mutex_lock(&sleep_lock);
    atomic_fetch_add(&sleepers, 1);
    while ((t = atomic_load(&w->ticket)) == seen) pthread_cond_wait(&wake, &sleep_lock);
    atomic_fetch_sub(&sleepers, 1);
    pthread_mutex_unlock(&sleep_lock);
    return t;
}

static void *worker_main(void *arg) {
    worker_t *w = arg;
    long seen = 0;
    for (;;) {
        seen = wait_ticket(w, seen);
        job_fn(job_ctx, w->index + 1);
        atomic_fetch_sub_explicit(&remaining, 1, memory_order_release);
    }
    return NULL;
}

/// Starts workers until `n` exist; returns how many there are (fewer if thread creation fails).
static int ensure_workers(int n) {
    pthread_mutex_lock(&start_lock);
    while (started < n) {
        worker_t *w = &workers[started];
        w->index = started;
        atomic_store(&w->ticket, 0);
        pthread_t thread;
        if (pthread_create(&thread, NULL, worker_main, w) != 0) break;
        pthread_detach(thread);
        started++;
    }
    int have = started;
    pthread_mutex_unlock(&start_lock);
    return have;
}

int mile_pool_max_tasks(void) { return MAX_WORKERS + 1; }

void mile_pool_run(int tasks, void (*fn)(void *ctx, int task), void *ctx) {
    if (tasks > MAX_WORKERS + 1) tasks = MAX_WORKERS + 1;
    int expected = 0;
    if (tasks <= 1 || !atomic_compare_exchange_strong(&busy, &expected, 1)) {
        for (int i = 0; i < tasks; i++) fn(ctx, i);
        return;
    }
    int helpers = ensure_workers(tasks - 1);
    if (helpers > tasks - 1) helpers = tasks - 1;
    job_fn = fn;
    job_ctx = ctx;
    atomic_store(&remaining, helpers);
    for (int i = 0; i < helpers; i++) atomic_fetch_add(&workers[i].ticket, 1);
    if (atomic_load(&sleepers) > 0) {
        pthread_mutex_lock(&sleep_lock);
        pthread_cond_broadcast(&wake);
        pthread_mutex_unlock(&sleep_lock);
    }
    fn(ctx, 0);
    for (int i = helpers + 1; i < tasks; i++) fn(ctx, i);   // only if some workers could not be started
    for (int n = 1; atomic_load_explicit(&remaining, memory_order_acquire) > 0; n++) backoff(n);
    atomic_store(&busy, 0);
}
