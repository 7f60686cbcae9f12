/* Allocation with fault injection for tests. */
#include "alloc.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static atomic_long alloc_count;
static atomic_long alloc_fail_at;
static atomic_size_t alloc_largest;

/* Count one allocation of `size` bytes; whether injection makes it fail. */
static int alloc_should_fail(size_t size)
{
    size_t largest = atomic_load(&alloc_largest);
    while (size > largest && !atomic_compare_exchange_weak(&alloc_largest, &largest, size))
        ;
    long n = atomic_fetch_add(&alloc_count, 1) + 1;
    long fail = atomic_load(&alloc_fail_at);
    return fail > 0 && n >= fail;
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
    return malloc(size ? size : 1);
}

void *mmi_calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    if (alloc_should_fail(n * size))
        return NULL;
    return calloc(n ? n : 1, size ? size : 1);
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
    return realloc(ptr, size ? size : 1);
}

void mmi_free(void *ptr)
{
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
