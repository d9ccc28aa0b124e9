#ifndef CWORKERPOOL_H
#define CWORKERPOOL_H

/// Runs fn(ctx, 0) ... fn(ctx, tasks - 1): task 0 on the calling thread, task i on worker thread i - 1,
/// and returns when all are done. Runs them one after another on the calling thread when tasks <= 1 or
/// when the pool is already running a job (a nested call from inside a task, or a second caller thread).
void mile_pool_run(int tasks, void (*fn)(void *ctx, int task), void *ctx);

/// Largest number of tasks one job can run in parallel (workers + the calling thread).
int mile_pool_max_tasks(void);

#endif
