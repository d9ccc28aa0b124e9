#ifndef MILE_CHEAP_H
#define MILE_CHEAP_H

/// Sets glibc malloc to serve every block from its heap (no separate mappings for large blocks) and
/// never to trim the heap. Returns 1 when both settings were accepted.
int mile_heap_configure(void);

#endif
