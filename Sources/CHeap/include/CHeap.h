#ifndef MILE_CHEAP_H
#define MILE_CHEAP_H

/// Sets glibc malloc to serve blocks up to 32 MB from its heap (a fixed mmap threshold, so no longer
/// adaptive) and never to trim the heap. Returns 1 when both settings were accepted.
int mile_heap_configure(void);

#endif
