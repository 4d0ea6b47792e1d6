/*
 * jemalloc's settings for the rotor tool, read by jemalloc at start-up.
 *
 * tcache:false — jemalloc 5.3 dies with SIGSEGV when a thread's first
 * allocation cannot map its thread cache (an address-space limit, ulimit
 * -v, hits it in every command at 12 to 16 MiB), where the library's
 * allocator hook would have reported "out of memory" and the tool exited
 * with one line. The tool allocates little per query, so the cache is not
 * worth a crash.
 */
/* Visible: the build hides symbols by default, and jemalloc looks this one
 * up in the dynamic symbol table. */
__attribute__((visibility("default"))) const char *malloc_conf = "tcache:false";
