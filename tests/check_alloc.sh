#!/bin/sh
# All allocation in lib/ goes through lib/core/alloc.c (mmi_malloc & co.), so that tests can fail the
# Nth allocation and see it reported: no other file calls the C allocator directly, and libpng
# is given that allocator (png_create_read_struct_2). libjpeg cannot be given one at run time;
# lib/media/image.c bounds and frees what it allocates.
cd "$(dirname "$0")/.." || exit 1
status=0
calls='\b(malloc|calloc|realloc|free|strdup|strndup|aligned_alloc|posix_memalign|reallocarray|valloc|memalign|asprintf|vasprintf)\s*\('
# String literals are blanked first, so that "... are free (%d ..." in a message is no call.
hits=$(for f in lib/*.c lib/*.h lib/*/*.c lib/*/*.h; do
           [ "$f" = lib/core/alloc.c ] && continue
           sed -e 's/"\([^"\\]\|\\.\)*"/""/g' "$f" | grep -nE "$calls" | sed "s|^|$f:|"
       done | grep -vE '^\S+:[0-9]+:\s*(/\*|\*|//)')
if [ -n "$hits" ]; then
    echo "lib/ calls the C allocator outside lib/core/alloc.c:"
    echo "$hits"
    status=1
fi
hits=$(grep -nE '\bpng_create_(read|write)_struct\s*\(' lib/*.c lib/*/*.c)
if [ -n "$hits" ]; then
    echo "libpng created without the library's allocator (use png_create_read_struct_2):"
    echo "$hits"
    status=1
fi
[ $status -eq 0 ] && echo "allocation in lib/ goes through lib/core/alloc.c: ok"
exit $status
