#include "CHeap.h"
#include <malloc.h>

int mile_heap_configure(void) {
    int mmap_ok = mallopt(M_MMAP_MAX, 0);
    int trim_ok = mallopt(M_TRIM_THRESHOLD, 0x7fffffff);
    return mmap_ok == 1 && trim_ok == 1;
}
