/* Allocation with fault injection for tests. The counters are relaxed atomics: they order
 * nothing, so they do not hide races between threads from ThreadSanitizer. */
#include "alloc.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static atomic_long alloc_count;
static atomic_long alloc_fail_at;
static atomic_size_t alloc_largest;
static atomic_long alloc_live;

/* Count one allocation of `size` bytes; whether it is to fail: by injection, or because no
 * object may be larger than PTRDIFF_MAX (asking malloc anyway trips sanitizers and valgrind). */
static int alloc_should_fail(size_t size)
{
    size_t largest = atomic_load_explicit(&alloc_largest, memory_order_relaxed);
    while (size > largest &&
           !atomic_compare_exchange_weak_explicit(&alloc_largest, &largest, size,
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
    long n = atomic_fetch_add_explicit(&alloc_count, 1, memory_order_relaxed) + 1;
    long fail = atomic_load_explicit(&alloc_fail_at, memory_order_relaxed);
    return (fail > 0 && n >= fail) || size > PTRDIFF_MAX;
}

/* Count a block the C library handed out. */
static void *alloc_counted(void *p)
{
    if (p)
        atomic_fetch_add_explicit(&alloc_live, 1, memory_order_relaxed);
    return p;
}

long mmi_alloc_live(void)
{
    return atomic_load_explicit(&alloc_live, memory_order_relaxed);
}

size_t mmi_alloc_largest(void)
{
    return atomic_exchange(&alloc_largest, 0);
}

long mmi_alloc_fail_at(long n)
{
    atomic_store(&alloc_fail_at, n);
    return atomic_exchange(&alloc_count, 0);
}

void *mmi_malloc(size_t size)
{
    if (alloc_should_fail(size))
        return NULL;
    return alloc_counted(malloc(size ? size : 1));
}

void *mmi_calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    if (alloc_should_fail(n * size))
        return NULL;
    return alloc_counted(calloc(n ? n : 1, size ? size : 1));
}

void *mmi_array(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    return mmi_malloc(n * size);
}

void *mmi_realloc(void *ptr, size_t size)
{
    if (alloc_should_fail(size))
        return NULL;
    void *p = realloc(ptr, size ? size : 1);
    return ptr ? p : alloc_counted(p);
}

void mmi_free(void *ptr)
{
    if (ptr)
        atomic_fetch_sub_explicit(&alloc_live, 1, memory_order_relaxed);
    free(ptr);
}

char *mmi_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *copy = mmi_malloc(n);
    if (copy)
        memcpy(copy, s, n);
    return copy;
}
