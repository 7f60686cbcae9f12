/* Point clouds: PLY files (ASCII, binary little and big endian) or caller arrays, held as float
 * xyz with optional colours (in [0, 1]) and normals. Debian packages no PLY library, so the
 * reader is ours: the header is parsed in full and every count and size is checked against
 * the bytes present before memory is allocated. */
#ifndef MMI_POINTS_H
#define MMI_POINTS_H

#include <stddef.h>

#include "mm.h"

struct mm_points {
    size_t n_points;
    float *xyz;     /* n_points * 3 */
    float *rgb;     /* n_points * 3 in [0, 1], or NULL */
    float *normals; /* n_points * 3, or NULL */
};

/* Parse a PLY file held in memory. `name` labels messages. At most MM_OPT_POINTS_MAX_COUNT
 * points (MM_ERR_LIMIT from the header, before allocation); malformed, truncated or
 * non-finite data gives MM_ERR_FORMAT naming the problem. */
mm_status mmi_points_parse_ply(const void *data, size_t size, const char *name,
                               const mm_options *options, mm_points **out);
mm_status mmi_points_load_file(const char *path, const mm_options *options, mm_points **out);
/* Copy caller arrays (rgb may be NULL); MM_ERR_ARG for a non-finite coordinate or a colour
 * outside [0, 1]. */
mm_status mmi_points_from_arrays(const float *xyz, const float *rgb, size_t n_points,
                                 mm_points **out);
void mmi_points_free(mm_points *points);

#endif
