/* GGUF files: a bounds-checked reader (mmap or read into memory) and a writer.
 *
 * The reader validates the whole header, metadata and tensor table at open time, so later
 * lookups cannot fail on malformed data; they fail only for a missing key, a wrong type or a
 * wrong shape, with a message naming the key or tensor and the file. */
#ifndef MMI_GGUF_H
#define MMI_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "half.h"
#include "mm.h"
#include "quant.h"

/* Metadata value types, numbered as in the GGUF specification. */
typedef enum {
    MMI_GGUF_UINT8 = 0, MMI_GGUF_INT8 = 1, MMI_GGUF_UINT16 = 2, MMI_GGUF_INT16 = 3,
    MMI_GGUF_UINT32 = 4, MMI_GGUF_INT32 = 5, MMI_GGUF_FLOAT32 = 6, MMI_GGUF_BOOL = 7,
    MMI_GGUF_STRING = 8, MMI_GGUF_ARRAY = 9, MMI_GGUF_UINT64 = 10, MMI_GGUF_INT64 = 11,
    MMI_GGUF_FLOAT64 = 12
} mmi_gguf_type;

#define MMI_GGUF_MAX_DIMS 4

typedef struct {
    const char *name;           /* NUL-terminated copy */
    mmi_tensor_type type;
    uint32_t n_dims;
    uint64_t ne[MMI_GGUF_MAX_DIMS]; /* ne[0] varies fastest; unused dims are 1 */
    uint64_t n_elements;
    const void *data;           /* inside the mapped/read file, checked to lie within it */
    size_t n_bytes;
} mmi_tensor;

/* An open file is read-only: any number of threads may use one at once. Tensor data and
 * strings stay valid until mmi_gguf_close(). */
typedef struct mmi_gguf mmi_gguf;

/* Open a file; use_mmap = 0 reads it into memory instead (also the fallback when mmap fails).
 * MM_ERR_IO if it cannot be read, MM_ERR_FORMAT (naming the key or tensor, the byte offset and
 * the file) if it is malformed, MM_ERR_UNSUPPORTED for GGUF v1, big-endian files and tensor
 * types libmm does not read (see quant.h). */
mm_status mmi_gguf_open(const char *path, int use_mmap, mmi_gguf **out);
/* Parse a buffer in memory; the buffer is copied (used by tests and fuzzers). */
mm_status mmi_gguf_open_memory(const void *data, size_t size, mmi_gguf **out);
void mmi_gguf_close(mmi_gguf *g);
const char *mmi_gguf_path(const mmi_gguf *g); /* file name used in messages ("<memory>") */
uint32_t mmi_gguf_version(const mmi_gguf *g);

/* Metadata. Every getter fails with MM_ERR_FORMAT and a message naming the key when the key is
 * missing (the _or variants return the default instead) or holds an incompatible type.
 * Integer getters accept any integer type whose value fits; float getters accept f32/f64. */
int mmi_gguf_has(const mmi_gguf *g, const char *key);
/* Keys in file order (i < n_kv; NULL otherwise), e.g. to list or copy every entry. */
uint64_t mmi_gguf_n_kv(const mmi_gguf *g);
const char *mmi_gguf_key(const mmi_gguf *g, uint64_t i);
mm_status mmi_gguf_get_int(const mmi_gguf *g, const char *key, int64_t *out);
mm_status mmi_gguf_get_int_or(const mmi_gguf *g, const char *key, int64_t def, int64_t *out);
mm_status mmi_gguf_get_float(const mmi_gguf *g, const char *key, double *out);
mm_status mmi_gguf_get_float_or(const mmi_gguf *g, const char *key, double def, double *out);
mm_status mmi_gguf_get_bool(const mmi_gguf *g, const char *key, int *out);
mm_status mmi_gguf_get_bool_or(const mmi_gguf *g, const char *key, int def, int *out);
/* String: NUL-terminated copy owned by g; *len excludes the NUL. len NULL means the caller reads
 * it as a C string (a name): a value holding a NUL byte is then MM_ERR_FORMAT. */
mm_status mmi_gguf_get_string(const mmi_gguf *g, const char *key, const char **out, size_t *len);

/* The value's bytes exactly as stored in the file (for an array: element type, count and
 * elements), checked at open time; owned by g. For values no typed getter covers (nested arrays). */
mm_status mmi_gguf_get_raw(const mmi_gguf *g, const char *key, mmi_gguf_type *type,
                           const void **data, size_t *size);

/* Value number i (i < n_kv) as text for people: a string as it is, an integer in decimal, a
 * float as %.9g, a bool as true/false, a numeric array of up to 16 items as "[1, 2]", longer
 * and string arrays as "[32000 strings]". Written into buf[0..cap) (NUL-terminated when
 * cap > 0, cut short when it does not fit; buf may be NULL when cap is 0); *len: the whole
 * text's length. Never fails, and leaves mm_last_error() alone. */
void mmi_gguf_value_text(const mmi_gguf *g, uint64_t i, char *buf, size_t cap, size_t *len);

/* Arrays. Count of elements, and the element type (MMI_GGUF_ARRAY for nested arrays). */
mm_status mmi_gguf_get_array_info(const mmi_gguf *g, const char *key, mmi_gguf_type *elem_type,
                                  uint64_t *count);
/* Copy a numeric array converted to the destination type; fails unless count == n. */
mm_status mmi_gguf_get_int_array(const mmi_gguf *g, const char *key, int64_t *dst, uint64_t n);
mm_status mmi_gguf_get_float_array(const mmi_gguf *g, const char *key, float *dst, uint64_t n);
/* Item i of a string array, NUL-terminated, owned by g. */
mm_status mmi_gguf_get_array_string(const mmi_gguf *g, const char *key, uint64_t i,
                                    const char **out, size_t *len);

/* Tensors. find returns NULL when absent (no error set). get fails with MM_ERR_FORMAT naming the
 * tensor when it is absent or, if n_dims > 0, its shape differs from ne[0..n_dims-1]. */
uint64_t mmi_gguf_n_tensors(const mmi_gguf *g);
const mmi_tensor *mmi_gguf_tensor(const mmi_gguf *g, uint64_t i);
const mmi_tensor *mmi_gguf_find_tensor(const mmi_gguf *g, const char *name);
mm_status mmi_gguf_get_tensor(const mmi_gguf *g, const char *name, uint32_t n_dims,
                              const uint64_t *ne, const mmi_tensor **out);

/* Element conversion for any supported tensor type: writes n_elements floats starting at
 * element `first` (which must be a multiple of the type's block size; n_elements need not be)
 * into dst. MM_ERR_ARG if the range leaves the tensor. */
mm_status mmi_tensor_to_f32(const mmi_tensor *t, uint64_t first, uint64_t n_elements, float *dst);

/* Writer: collect metadata and tensors, then write a GGUF v3 file (or buffer). Values and
 * tensor data are copied when added. */
typedef struct mmi_gguf_writer mmi_gguf_writer;
mm_status mmi_gguf_writer_create(mmi_gguf_writer **out);
void mmi_gguf_writer_free(mmi_gguf_writer *w);
mm_status mmi_gguf_writer_set_alignment(mmi_gguf_writer *w, uint32_t alignment);
mm_status mmi_gguf_writer_add_int(mmi_gguf_writer *w, const char *key, mmi_gguf_type type, int64_t v);
mm_status mmi_gguf_writer_add_float(mmi_gguf_writer *w, const char *key, mmi_gguf_type type, double v);
mm_status mmi_gguf_writer_add_bool(mmi_gguf_writer *w, const char *key, int v);
mm_status mmi_gguf_writer_add_string(mmi_gguf_writer *w, const char *key, const char *v);
/* Array of scalars of elem_type (not STRING/ARRAY), `count` elements packed as in the file. */
mm_status mmi_gguf_writer_add_array(mmi_gguf_writer *w, const char *key, mmi_gguf_type elem_type,
                                    const void *data, uint64_t count);
mm_status mmi_gguf_writer_add_string_array(mmi_gguf_writer *w, const char *key,
                                           const char *const *items, uint64_t count);
/* Tensor from f32 values, stored as `type` (any type with a quantizer in quant.c: F32, F16,
 * BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), shape ne[0..n_dims-1]. */
mm_status mmi_gguf_writer_add_tensor(mmi_gguf_writer *w, const char *name, mmi_tensor_type type,
                                     uint32_t n_dims, const uint64_t *ne, const float *values);
/* A value given as its bytes in the file format (as mmi_gguf_get_raw returns them), checked
 * with the reader's rules: the way to write nested arrays. */
mm_status mmi_gguf_writer_add_raw(mmi_gguf_writer *w, const char *key, mmi_gguf_type type,
                                  const void *data, size_t size);
/* Tensor data already encoded as `type` (any supported type, e.g. Q8_0 blocks); n_bytes must
 * match the shape. */
mm_status mmi_gguf_writer_add_tensor_raw(mmi_gguf_writer *w, const char *name,
                                         mmi_tensor_type type, uint32_t n_dims,
                                         const uint64_t *ne, const void *data, size_t n_bytes);
mm_status mmi_gguf_writer_write_file(const mmi_gguf_writer *w, const char *path);
/* Serialise into a buffer allocated with mmi_malloc; the caller frees it with mmi_free. */
mm_status mmi_gguf_writer_write_memory(const mmi_gguf_writer *w, void **data, size_t *size);

#endif
