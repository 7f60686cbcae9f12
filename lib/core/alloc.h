/* The one allocator every part of the library uses, so that tests can make the Nth
 * allocation fail (fault injection) and check that each failure is reported and leaks nothing. */
#ifndef MMI_ALLOC_H
#define MMI_ALLOC_H

#include <stddef.h>

/* malloc/calloc/realloc/free semantics. mmi_calloc and mmi_array check n*size for overflow.
 * A failure here does not set the error message; callers report MM_ERR_NOMEM with context. */
void *mmi_malloc(size_t size);
void *mmi_calloc(size_t n, size_t size);
void *mmi_realloc(void *ptr, size_t size);
void *mmi_array(size_t n, size_t size); /* uninitialised n*size bytes */
void mmi_free(void *ptr);
char *mmi_strdup(const char *s);

/* Carve count floats off a scratch block at *at; with s == NULL only count (to size the block
 * before allocating it). */
static inline float *mmi_carve(float *s, size_t *at, size_t count)
{
    float *p = s ? s + *at : NULL;
    *at += count;
    return p;
}

/* Test hook: blocks allocated and not yet freed, so a test can check that a failing call left
 * nothing behind. */
long mmi_alloc_live(void);

/* Test hook: the largest single allocation asked for since the last call, which resets it
 * (fuzz targets check that no input makes the library ask for a disproportionate block). */
size_t mmi_alloc_largest(void);

/* Test hook: make allocation number n (counting from 1 after this call) and all later ones
 * fail; n = 0 turns injection off. Returns how many allocations happened since the last call. */
long mmi_alloc_fail_at(long n);

#endif
